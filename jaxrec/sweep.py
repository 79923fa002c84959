r"""Hyper-parameter sweeps selected on validation only: python -m jaxrec.sweep.

  python -m jaxrec.sweep --config=configs/office.py --workdir=sweeps/office \
      --grid="model.dropout=0.3,0.5;train.learning_rate=1e-3,3e-4" --seeds=0,1,2

Fields that must change together are joined with `|`, and so are their values:
`--grid="model.d_model|model.d_out=64|64,128|128"`.

Each trial (a point of the grid, or `--random=N` points drawn with
`--search_seed`) runs `train.train_and_evaluate` in its own workdir, so an
interrupted sweep resumes: finished trials are read back, unfinished ones
resume from their checkpoints. The trial with the best validation metric
(`config.eval.select`) is then rerun with every seed of `--seeds`; test
metrics are reported for that configuration as mean +- std over the seeds,
and never used to choose anything. Writes `sweep.json` and `sweep.md`.
"""

import ast
import copy
import itertools
import json
import logging
import pathlib
import re
import sys

import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jaxrec import malloc_arenas
from jaxrec.config import changed_fields
from jaxrec.errors import JaxrecError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Base config file (get_config()).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep folder: one sub-folder per trial.")
_GRID = flags.DEFINE_string("grid", "", "'a.b=v1,v2;c.d=v3,v4': the values of each field.")
_RANDOM = flags.DEFINE_integer("random", 0, "> 0: this many random grid points instead of all.")
_SEARCH_SEED = flags.DEFINE_integer("search_seed", 0, "Seed of the random search.")
_SEEDS = flags.DEFINE_string("seeds", "0,1,2", "Seeds the validation-best trial is rerun with.")
flags.mark_flags_as_required(["config", "workdir"])

METRIC_ORDER = ("HR@10", "HR@50", "HR@200", "NDCG@10", "NDCG@50", "NDCG@200")
log = logging.getLogger(__name__)


def parse_grid(text: str) -> dict[str, list[str]]:
  """'a.b=1,2;c=x' -> {'a.b': ['1', '2'], 'c': ['x']}."""
  grid = {}
  for part in filter(None, (p.strip() for p in text.split(";"))):
    if "=" not in part:
      raise JaxrecError(f"--grid entry {part!r} is not field=v1,v2,...")
    key, values = part.split("=", 1)
    grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
  return grid


def _coerce(old, text: str):
  if isinstance(old, bool):
    if text.lower() not in ("true", "false"):
      raise JaxrecError(f"{text!r} is not a bool")
    return text.lower() == "true"
  if isinstance(old, (int, float)):
    return type(old)(float(text)) if isinstance(old, int) and float(text).is_integer() else type(old)(text)
  if isinstance(old, tuple):
    return tuple(ast.literal_eval(text))
  return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, str]) -> ml_collections.ConfigDict:
  """A copy of `config` with string overrides cast to each field's type."""
  c = copy.deepcopy(config)
  pairs = []
  for paths, texts in overrides.items():
    paths, texts = paths.split("|"), texts.split("|")
    if len(paths) != len(texts):
      raise JaxrecError(f"--grid value {'|'.join(texts)!r} does not give one value per field of {'|'.join(paths)}")
    pairs += zip(paths, texts)
  for path, text in pairs:
    *sections, key = path.split(".")
    node = c
    for s in sections:
      node = node[s]
    if key not in node:
      raise JaxrecError(f"--grid names config.{path}, which does not exist")
    try:
      node[key] = _coerce(node[key], text)
    except (ValueError, SyntaxError, JaxrecError) as e:
      raise JaxrecError(f"--grid value {text!r} does not fit config.{path}: {e}") from e
  return c


def trial_points(grid: dict[str, list[str]], random: int, seed: int) -> list[dict[str, str]]:
  points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
  if 0 < random < len(points):
    pick = np.random.default_rng(seed).choice(len(points), size=random, replace=False)
    points = [points[i] for i in sorted(pick)]
  return points


def slug(overrides: dict[str, str]) -> str:
  short = lambda k: "|".join(p.split(".")[-1] for p in k.split("|"))
  text = "_".join(f"{short(k)}={v}" for k, v in overrides.items()) or "base"
  return re.sub(r"[^A-Za-z0-9_.=+-]", "-", text)[:120]


def run_trial(config, workdir: pathlib.Path) -> dict:
  """Results of one trial: read back when finished with this config, else (re)run."""
  from jaxrec import train  # noqa: PLC0415 (keeps --help fast)
  done = workdir / "results.json"
  if done.exists():
    results = json.loads(done.read_text())
    if isinstance(results.get("config"), dict) and not changed_fields(
        results["config"], json.loads(config.to_json_best_effort())):
      return results
  return train.train_and_evaluate(config, workdir)


def summarize(rows: list[dict], select: str) -> dict:
  """Mean and std of test metrics over seeds."""
  out = {}
  for k in METRIC_ORDER:
    vals = np.array([r["test"][k] for r in rows])
    out[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
  out["valid_" + select] = float(np.mean([r["valid"][select] for r in rows]))
  return out


def markdown(report: dict) -> str:
  sel = report["select"]
  lines = [f"# Sweep: {report['config_file']}", "",
           f"Selected on validation {sel} only; test reported, never used to choose.", "",
           "| trial | overrides | valid " + sel + " | best epoch | " + " | ".join(f"test {k}" for k in METRIC_ORDER) + " |",
           "|---|---|---|---|" + "---|" * len(METRIC_ORDER)]
  for t in report["trials"]:
    star = " **(best)**" if t["name"] == report["best"] else ""
    cell = lambda x: str(x).replace("|", "\\|")     # markdown table cells
    lines.append(f"| {cell(t['name'])}{star} | `{cell(t['overrides'])}` | {t['valid'][sel]:.4f} | {t['best_epoch']:.1f} | "
                 + " | ".join(f"{t['test'][k]:.4f}" for k in METRIC_ORDER) + " |")
  if report.get("seeds"):
    lines += ["", f"Best trial over seeds {report['seeds']} (mean +- std):", "",
              "| " + " | ".join(METRIC_ORDER) + " |", "|" + "---|" * len(METRIC_ORDER),
              "| " + " | ".join(f"{report['summary'][k]['mean']:.4f} +- {report['summary'][k]['std']:.4f}"
                                for k in METRIC_ORDER) + " |"]
  return "\n".join(lines) + "\n"


def sweep(config: ml_collections.ConfigDict, workdir: str, grid_text: str, random: int = 0,
          search_seed: int = 0, seeds: tuple[int, ...] = (0, 1, 2), config_file: str = "") -> dict:
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  select = config.eval.select
  points = trial_points(parse_grid(grid_text), random, search_seed)
  configs = [apply_overrides(config, p) for p in points]   # all checked before any trial runs
  trials = []
  for i, (point, c) in enumerate(zip(points, configs)):
    name = f"t{i:02d}-{slug(point)}"
    log.info("trial %d/%d: %s", i + 1, len(points), point)
    r = run_trial(c, workdir / name)
    trials.append({"name": name, "overrides": point, "valid": r["valid"], "test": r["test"],
                   "best_epoch": r.get("best_epoch", 0.0), "workdir": str(workdir / name)})
  best = max(trials, key=lambda t: t["valid"][select])
  best_config = configs[trials.index(best)]
  seed_rows = []
  for s in seeds:
    c = copy.deepcopy(best_config)
    c.seed = s
    seed_rows.append(run_trial(c, workdir / best["name"]) if s == best_config.seed
                     else run_trial(c, workdir / f"{best['name']}-seed{s}"))
  report = {"config_file": config_file, "grid": grid_text, "select": select, "trials": trials,
            "best": best["name"], "best_overrides": best["overrides"], "seeds": list(seeds),
            "seed_results": [{"seed": s, "valid": r["valid"], "test": r["test"]} for s, r in zip(seeds, seed_rows)],
            "summary": summarize(seed_rows, select) if seed_rows else {}}
  (workdir / "sweep.json").write_text(json.dumps(report, indent=2) + "\n")
  (workdir / "sweep.md").write_text(markdown(report))
  return report


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.getLogger("jaxrec").setLevel(logging.INFO)
  try:
    # The grid may stream where the base config does not.
    malloc_arenas.cap_for("grain" if "data.input" in _GRID.value else _CONFIG.value.data.input)
    seeds = tuple(int(s) for s in _SEEDS.value.split(",") if s.strip())
    report = sweep(_CONFIG.value, _WORKDIR.value, _GRID.value, _RANDOM.value, _SEARCH_SEED.value,
                   seeds, config_file=flags.FLAGS["config"].serialize().split("=", 1)[-1])
  except (JaxrecError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(markdown(report))
  print(f"sweep: {_WORKDIR.value}/sweep.md")


if __name__ == "__main__":
  app.run(main)
