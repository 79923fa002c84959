r"""Command line: python -m jaxrec.main --config=configs/demo.py --workdir=/tmp/demo.

Intentionally short (as in flax's examples): the logic lives in
`jaxrec.train`, which a notebook can import, and the flag plumbing in
`jaxrec.cli`. Bad input (a flag, a config key or value, a config file, the
workdir or cache, a damaged file) ends the run with one line on stderr and
exit status 2, before anything is written to the workdir. SIGTERM and Ctrl-C
save a checkpoint at the current step and exit 143 / 130 with one line saying
how to resume. `--help` explains the `--config.section.key=value` overrides.
"""

import logging
import signal
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from jaxrec import cli, preemption
from jaxrec.errors import JaxrecError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (get_config()).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where results, metrics and checkpoints go.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace the run in the workdir instead of refusing a different "
                               "config or resuming the same one.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  del argv  # cli.parse_flags has refused extra arguments
  absl_logging.set_verbosity(absl_logging.WARNING)   # libraries (orbax) stay quiet
  logging.getLogger("jaxrec").setLevel(logging.INFO)  # our stage banners and summaries
  try:
    from jaxrec import malloc_arenas   # first: before any import or thread can create arenas
    malloc_arenas.cap_for(_CONFIG.value.data.input)
    from jaxrec import baseline_v1, config as config_lib, distributed, train  # keeps --help fast
    config_lib.validate(_CONFIG.value)
    distributed.initialize(_CONFIG.value)   # before any device is used
    distributed.quiet_other_processes()
    preemption.interrupt_on_signals()
    if _CONFIG.value.method == "baseline_v1":
      results = baseline_v1.run(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)
    else:
      results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)
  except JaxrecError as e:
    cli.fail(str(e))
  except preemption.Stopped as e:
    print(e, file=sys.stderr)
    sys.exit(e.exit_code)
  except KeyboardInterrupt as e:  # outside the training loop, or a second signal in it
    name = signal.Signals(getattr(e, "signum", signal.SIGINT)).name
    print(f"interrupted by {name}; run the same command again to continue from the last "
          "checkpoint (and the CEG cache)", file=sys.stderr)
    sys.exit(preemption.exit_code(getattr(e, "signum", signal.SIGINT)))
  if distributed.is_main():
    print(cli.summary(results, _WORKDIR.value))


def run() -> None:
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
