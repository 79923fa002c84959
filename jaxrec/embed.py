r"""Command line for CEG alone: python -m jaxrec.embed --config=configs/office.py.

Embeds every item's text of the configured dataset with the frozen LLM
(config.ceg) into the chunked store (jaxrec/llm/store.py), with a progress bar,
and prints the store's folder, shape and items/s. A team runs it as its own
job (on the machines with the accelerators) and trains later with the same
config: `python -m jaxrec.main` then finds the store and does not recompute.
Killed (SIGKILL, preemption, Ctrl-C), the same command resumes from the chunks
already written. Bad input ends with one line on stderr and exit status 2,
as for jaxrec.main; `--config.SECTION.KEY=VALUE` overrides work the same way.
"""

import logging
import signal
import sys
import time

from absl import app
from absl import logging as absl_logging
from ml_collections import config_flags

from jaxrec import cli, preemption
from jaxrec.errors import JaxrecError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (get_config()).",
                                          lock_config=True)


def main(argv: list[str]) -> None:
  del argv  # cli.parse_flags has refused extra arguments
  absl_logging.set_verbosity(absl_logging.WARNING)
  logging.getLogger("jaxrec").setLevel(logging.INFO)
  preemption.interrupt_on_signals()   # SIGTERM, like Ctrl-C, ends with one line
  config = _CONFIG.value
  try:
    from jaxrec import config as config_lib, distributed, sharding, train  # noqa: PLC0415 (keeps --help fast)
    from jaxrec.llm import embed  # noqa: PLC0415
    from jaxrec import workdir  # noqa: PLC0415
    config_lib.validate(config)
    distributed.initialize(config)   # before any device is used
    distributed.quiet_other_processes()
    embed.check_max_tokens(embed.resolve_model_dir(config.ceg.model), config.ceg.max_tokens,
                           config.ceg.model)
    workdir.check_folder(workdir.cache_folder(config), "embedding cache folder",
                         "set $JAXREC_CACHE or config.ceg.cache_dir to a writable folder")
    dataset = train.load_items(config)
    texts = train.item_texts(config, dataset)
    mesh = sharding.make_mesh(config.mesh.num_devices)
    start = time.perf_counter()
    store = embed.build_store(texts, **train.ceg_options(config, dataset), **distributed.ceg_share(mesh))
    seconds = time.perf_counter() - start
  except JaxrecError as e:
    cli.fail(str(e))
  except KeyboardInterrupt as e:
    name = signal.Signals(getattr(e, "signum", signal.SIGINT)).name
    print(f"interrupted by {name}; run the same command again to continue from the chunks "
          "already written", file=sys.stderr)
    sys.exit(preemption.exit_code(getattr(e, "signum", signal.SIGINT)))
  if not distributed.is_main():
    return
  print(f"store: {store.path}")
  print(f"shape: {store.num_items} x {store.hidden} {store.dtype} "
        f"({store.num_chunks} chunks of {store.chunk} items)")
  print(f"time: {seconds:.1f} s, {store.num_items / max(seconds, 1e-9):.1f} items/s "
        "(including model loading; a store already complete is only verified)")


def parse_flags(argv: list[str]) -> list[str]:
  """cli.parse_flags (one-line errors), with this command's own --help."""
  if any(a in cli.HELP_FLAGS for a in argv[1:]):
    print(__doc__.strip() + "\n\n" + cli.help_text().split("Any config field", 1)[1].join(
        ["Any config field", ""]))
    sys.exit(0)
  return cli.parse_flags(argv)


def run() -> None:
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
