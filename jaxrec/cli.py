"""Command-line plumbing for jaxrec.main: flag parsing with one-line errors, --help,
and the end-of-run summary.

absl and ml_collections report a bad flag, an unknown `--config.x.y` key or a
config file that cannot be loaded as tracebacks (the "did you mean" hint is
inside one); here each becomes one line on stderr and exit status 2.
"""

import importlib.util
import pathlib
import re
import sys
from typing import Any, NoReturn

from absl import flags
import ml_collections

from jaxrec import config as config_lib

USAGE_EXIT = 2
HELP_FLAGS = ("-h", "--help", "--helpshort", "-?")

SECTIONS = {
    "data": "dataset, item-text template, history/target lengths",
    "ceg": "content embeddings from a frozen LLM: model, pooling, token caps, cache",
    "model": "the PCH towers: ID or content input, variant, sizes, dropout",
    "loss": "dense all-action InfoNCE: temperature, duplicate masking",
    "train": "batch, epochs, learning rate, schedule, validation/log cadence, checkpoints",
    "eval": "cut-offs K, users per device call, the metric that selects the best step",
    "mesh": "devices on the data axis",
    "dist": "several processes (hosts): coordinator, process count and id (or $JAXREC_*)",
}


def help_text(prog: str = "python -m jaxrec.main") -> str:
  c = config_lib.base_config()
  lines = [
      f"usage: {prog} --config=CONFIG.py --workdir=DIR [--overwrite] [--config.SECTION.KEY=VALUE ...]",
      "",
      "Trains and evaluates a LEARN recommender; writes DIR/results.json, config.json,",
      "metrics.jsonl and checkpoints/. Run the same command again on the same DIR to",
      "resume (SIGTERM and Ctrl-C save a checkpoint at the current step first).",
      "",
      "  --config=FILE[:ARG]  a Python file with get_config() (e.g. configs/demo.py)",
      "  --workdir=DIR        where the run's files go (created if needed)",
      "  --overwrite          replace the run in DIR (its results.json, config.json,",
      "                       metrics.jsonl, checkpoints/) instead of refusing a",
      "                       different config or resuming the same one",
      "",
      "Any config field can be overridden: --config.SECTION.KEY=VALUE, e.g.",
      "  --config.train.learning_rate=3e-4 --config.model.item_input=id --config.eval.ks='(10,50)'",
      "An unknown key or a value outside its range is an error (exit status 2).",
      "Sections and their keys (defaults and meanings: jaxrec/config.py):",
  ]
  for section, about in SECTIONS.items():
    lines.append(f"  {section:6} {about}")
    keys = " ".join(c[section].keys())
    lines.append(f"         {keys}")
  lines.append(f"  seed   {'top level: parameters, dropout and batch order'}")
  lines += ["", "Exit status: 0 finished, 2 bad input or damaged files (one line on stderr),",
            "143 / 130 stopped by SIGTERM / Ctrl-C (checkpoint saved; rerun to resume)."]
  return "\n".join(lines)


def fail(message: str) -> NoReturn:
  """The one way the command line reports bad input: one line on stderr, exit 2."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
  sys.exit(USAGE_EXIT)


def _config_arg(argv: list[str]) -> str | None:
  value = None
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      value = a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def check_config_file(arg: str) -> None:
  """A config file that is missing, does not load or has no get_config() -> one line."""
  path = pathlib.Path(arg.split(":", 1)[0]).expanduser()
  if not path.exists():
    fail(f"--config={arg}: file not found: {path}")
  if not path.is_file():
    fail(f"--config={arg}: {path} is not a file")
  try:
    spec = importlib.util.spec_from_file_location("jaxrec_user_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001  any error in the user's file
    where = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ""
    fail(f"--config={arg}: {path} could not be loaded{where}: {type(e).__name__}: {_first_line(e)}")
  if not callable(getattr(module, "get_config", None)):
    fail(f"--config={arg}: {path} has no get_config() function "
         "(it must return an ml_collections.ConfigDict, see configs/demo.py)")
  try:
    result = module.get_config(*arg.split(":", 1)[1:])
  except Exception as e:  # noqa: BLE001
    fail(f"--config={arg}: get_config() failed: {type(e).__name__}: {_first_line(e)}")
  if not isinstance(result, ml_collections.ConfigDict):
    fail(f"--config={arg}: get_config() returned {type(result).__name__}, "
         "not an ml_collections.ConfigDict")


def _first_line(e: BaseException) -> str:
  text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
  return (text.strip() or type(e).__name__).splitlines()[0]


def _unknown_key_message(e: BaseException, argv: list[str]) -> str | None:
  """ml_collections' KeyError/AttributeError for an unknown override key, as one line."""
  text = str(e).replace("\\n", "\n").replace("\\'", "'")
  m = re.match(r"""\W*'?([A-Za-z0-9_]+)'?""", text)
  if not m:
    return None
  key = m[1]
  flag = next((a.split("=", 1)[0] for a in argv
               if a.startswith("--config.") and re.search(rf"\.{re.escape(key)}(\.|$)", a.split("=", 1)[0])),
              f"--config...{key}")
  hint = re.search(r'Did you mean "([^"]+)"', text)
  hint = f'; did you mean "{hint[1]}"?' if hint else ""
  return f"{flag}: unknown config key {key!r}{hint} (every key is in jaxrec/config.py; see --help)"


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with every failure as one line and exit status 2."""
  if any(a in HELP_FLAGS for a in argv[1:]):
    print(help_text())
    sys.exit(0)
  arg = _config_arg(argv[1:])
  if arg:
    check_config_file(arg)
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(_first_line(e))
  except (KeyError, AttributeError) as e:
    fail(_unknown_key_message(e, argv) or f"{type(e).__name__}: {_first_line(e)}")
  except Exception as e:  # noqa: BLE001  ml_collections raises many types for a bad override
    fail(f"{type(e).__name__}: {_first_line(e)}")
  if len(rest) > 1:
    fail(f"unexpected arguments: {' '.join(rest[1:])} (flags are --name=value; see --help)")
  return rest


def _metric_order(metrics: dict[str, float]) -> list[str]:
  """HR@10 HR@50 HR@200 NDCG@10 ... (Recall equals HR for one target; it is in results.json)."""
  def key(name):
    kind, k = name.split("@")
    return ({"HR": 0, "NDCG": 1}[kind], int(k))
  return sorted((n for n in metrics if n.split("@")[0] in ("HR", "NDCG")), key=key)


def summary(results: dict[str, Any], workdir: str) -> str:
  """The end-of-run table: test metrics in K order, the best step, the popularity row.
  (A results dict without validation, e.g. of an untrained method, gets no best-step line.)"""
  names = _metric_order(results["test"])
  width = max(8, *(len(n) for n in names)) + 1
  row = lambda label, m: f"{label:<12}" + "".join(f"{m[n]:>{width}.4f}" for n in names)
  select = results.get("config", {}).get("eval", {}).get("select")
  if results.get("valid") and "best_step" in results and select in results["valid"]:
    head = (f"best step {results['best_step']} of {results.get('total_steps', '?')} "
            f"(valid {select}={results['valid'][select]:.4f}); test metrics at that step:")
  else:
    head = "test metrics:"
  lines = [head, f"{'':<12}" + "".join(f"{n:>{width}}" for n in names), row("test", results["test"])]
  if "popularity_test" in results:
    lines.append(row("popularity", results["popularity_test"]))
  return "\n".join(lines + [f"results: {workdir}/results.json"])
