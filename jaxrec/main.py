r"""Command line: python -m jaxrec.main --config=configs/demo.py --workdir=/tmp/demo.

Intentionally short (as in flax's examples): the logic lives in
`jaxrec.train`, which a notebook can import. Bad input ends the run with one
line on stderr and exit status 2, before anything is written to the workdir.
"""

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from jaxrec.errors import JaxrecError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (get_config()).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where results, metrics and checkpoints go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  absl_logging.set_verbosity(absl_logging.WARNING)   # libraries (orbax) stay quiet
  logging.getLogger("jaxrec").setLevel(logging.INFO)  # our stage banners and summaries
  from jaxrec import baseline_v1, train  # after flag parsing: keeps --help fast
  run_method = baseline_v1.run if _CONFIG.value.method == "baseline_v1" else train.train_and_evaluate
  try:
    results = run_method(_CONFIG.value, _WORKDIR.value)
  except JaxrecError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  test = results["test"]
  print("test: " + "  ".join(f"{k}={test[k]:.4f}" for k in sorted(test) if not k.startswith("Recall")))
  print(f"results: {_WORKDIR.value}/results.json")


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
