r"""Runs -> a markdown table and PNG plots: `python -m jaxrec.report`.

  python -m jaxrec.report workdirs/demo workdirs/demo-sasrec --out=reports/demo

Each argument is a finished run: a workdir (its `results.json`, and
`metrics.jsonl` for the training curves when present) or a `results.json`
file itself (e.g. experiments/results/quality_runs/*__results.json). Writes,
in --out: `report.md` (test metrics at each run's best validation step, with
the popularity ranking of the same split), `curves.png` (training loss,
in-batch top-1 accuracy and the validation metric against steps) and
`metrics.png` (test metrics side by side). matplotlib is imported only when
plotting, so training never needs it (`pip install jaxrec[report]`).
"""

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Any, Sequence

from jaxrec import cli
from jaxrec.errors import JaxrecError

DEFAULT_METRICS = ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "HR@200", "NDCG@200")


@dataclasses.dataclass
class Run:
  name: str
  results: dict[str, Any]
  train: list[dict[str, float]]            # metrics.jsonl training lines (empty without the file)
  valid: list[dict[str, float]]            # [{"step": s, metric: value, ...}] every validation

  @property
  def select(self) -> str:
    return self.results.get("config", {}).get("eval", {}).get("select", "NDCG@10")


def _read_json(path: pathlib.Path) -> Any:
  try:
    return json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise JaxrecError(f"{path} cannot be read ({type(e).__name__}: {e})") from e


def load_run(path: str | pathlib.Path, name: str | None = None) -> Run:
  """A finished run from its workdir or its results.json file."""
  path = pathlib.Path(path)
  results_file = path / "results.json" if path.is_dir() else path
  if not results_file.is_file():
    raise JaxrecError(f"{path}: no results.json (a workdir of a finished run, or a results.json file)")
  results = _read_json(results_file)
  if not isinstance(results, dict) or "test" not in results:
    raise JaxrecError(f"{results_file} is not a jaxrec results.json (no 'test' metrics)")
  train, valid = [], []
  metrics_file = results_file.parent / "metrics.jsonl"
  if metrics_file.is_file():
    for line in metrics_file.read_text().splitlines():
      try:
        record = json.loads(line)
      except ValueError:
        continue                                 # a line cut short by a crash
      if "valid" in record:
        valid.append({"step": record["step"], **record["valid"]})
      elif "loss" in record:
        train.append(record)
  if not valid:
    valid = list(results.get("valid_history", []))
  if name is None:
    name = path.name if path.is_dir() else path.stem.removesuffix("__results").removesuffix("results") \
        or path.parent.name
  return Run(name, results, train, valid)


def describe(results: dict[str, Any]) -> str:
  """What a run trained, in a few words: item input and content model, objective, item side."""
  c = results.get("config", {})
  if c.get("method") == "baseline_v1":
    return f"Baseline-v1 ({c.get('ceg', {}).get('model', '?')}, no training)"
  m, loss = c.get("model", {}), c.get("loss", {})
  item = m.get("item_input", "?")
  if item != "id":
    item += f" ({c.get('ceg', {}).get('model', '?')})"
  objective = loss.get("objective", "?")
  if objective != "dense_all_action":
    objective += f"/{loss.get('negatives', '?')}"
  return f"{item}, {objective}, item tower {m.get('item_tower', '?')}"


def dataset_name(results: dict[str, Any]) -> str:
  d = results.get("config", {}).get("data", {})
  name = d.get("name") or (pathlib.Path(d["path"]).name if d.get("path") else d.get("kind", "?"))
  if d.get("cold_items"):
    name += f" ({d['cold_items']:g} cold items)"
  return name


def _fmt(x: float | None) -> str:
  return "-" if x is None else f"{x:.4f}"


def markdown_table(runs: Sequence[Run], metrics: Sequence[str] = DEFAULT_METRICS) -> str:
  """Test metrics at each run's best validation step; popularity once per dataset."""
  head = ["run", "what", "dataset", "best step", *metrics]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  popularity: dict[str, dict] = {}
  for r in runs:
    dataset = dataset_name(r.results)
    best = f"{r.results.get('best_step', '-')} of {r.results.get('total_steps', '-')}"
    lines.append("| " + " | ".join([r.name, describe(r.results), dataset, best,
                                     *(_fmt(r.results["test"].get(k)) for k in metrics)]) + " |")
    if "popularity_test" in r.results:
      popularity.setdefault(dataset, r.results["popularity_test"])
  for dataset, pop in popularity.items():
    lines.append("| " + " | ".join(["popularity", "most popular unseen items", dataset, "-",
                                     *(_fmt(pop.get(k)) for k in metrics)]) + " |")
  return "\n".join(lines) + "\n"


def plot_curves(runs: Sequence[Run]):
  """Figure: training loss, in-batch top-1 accuracy, and the validation metric against steps."""
  from matplotlib.figure import Figure  # noqa: PLC0415 -- plotting only

  fig = Figure(figsize=(15, 4), layout="constrained")
  ax_loss, ax_acc, ax_valid = fig.subplots(1, 3)
  for r in runs:
    if r.train:
      steps = [t["step"] for t in r.train]
      ax_loss.plot(steps, [t["loss"] for t in r.train], label=r.name)
      if all("top1_acc" in t for t in r.train):
        ax_acc.plot(steps, [t["top1_acc"] for t in r.train], label=r.name)
    if r.valid:
      ax_valid.plot([v["step"] for v in r.valid], [v.get(r.select, float("nan")) for v in r.valid],
                    marker="o", markersize=3, label=f"{r.name} ({r.select})")
  for ax, title, ylabel in ((ax_loss, "training loss", "loss"),
                            (ax_acc, "in-batch top-1 accuracy (training)", "accuracy"),
                            (ax_valid, "validation", "metric")):
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if ax.lines:
      ax.legend(fontsize="small")
    else:
      ax.text(0.5, 0.5, "no data (no metrics.jsonl)", ha="center", va="center", transform=ax.transAxes)
  return fig


def plot_metrics(runs: Sequence[Run], metrics: Sequence[str] = DEFAULT_METRICS, popularity: bool = True):
  """Figure: test metrics of every run side by side; with `popularity`, the first run's
  popularity ranking (same split) hatched."""
  from matplotlib.figure import Figure  # noqa: PLC0415

  import numpy as np  # noqa: PLC0415

  fig = Figure(figsize=(min(14.0, max(6.0, 1.3 * len(metrics) * (1 + len(runs) / 4))), 4.5), layout="constrained")
  ax = fig.subplots()
  x = np.arange(len(metrics))
  pop = runs[0].results.get("popularity_test") if runs and popularity else None
  bars = [(r.name, r.results["test"], None) for r in runs] + ([("popularity", pop, "//")] if pop else [])
  width = 0.8 / max(len(bars), 1)
  for i, (name, values, hatch) in enumerate(bars):
    ax.bar(x + (i - (len(bars) - 1) / 2) * width, [values.get(k, 0.0) for k in metrics], width,
           label=name, hatch=hatch, fill=hatch is None)
  ax.set_xticks(x, metrics)
  ax.set_ylabel("test")
  ax.set_title("test metrics at the best validation step")
  ax.legend(fontsize="small")
  return fig


def write_report(runs: Sequence[Run], out: str | pathlib.Path,
                 metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, pathlib.Path]:
  """report.md, curves.png and metrics.png in `out`; returns their paths."""
  if not runs:
    raise JaxrecError("no runs to report")
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  paths = {"report": out / "report.md", "curves": out / "curves.png", "metrics": out / "metrics.png"}
  table = markdown_table(runs, metrics)
  paths["report"].write_text(f"# jaxrec runs\n\n{table}\n![training curves](curves.png)\n\n"
                             f"![test metrics](metrics.png)\n")
  plot_curves(runs).savefig(paths["curves"], dpi=80)
  plot_metrics(runs, metrics).savefig(paths["metrics"], dpi=80)
  return paths


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m jaxrec.report", description=__doc__.split("\n")[0])
  parser.add_argument("runs", nargs="+", help="workdirs or results.json files")
  parser.add_argument("--out", required=True, help="folder for report.md, curves.png, metrics.png")
  parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated test metrics")
  args = parser.parse_args(argv)
  try:
    runs = [load_run(p) for p in args.runs]
    metrics = [m for m in args.metrics.split(",") if m]
    unknown = [m for m in metrics if m not in runs[0].results["test"]]
    if unknown:
      raise JaxrecError(f"--metrics: {', '.join(unknown)} not in the results (they have "
                        f"{', '.join(runs[0].results['test'])})")
    paths = write_report(runs, args.out, metrics)
  except JaxrecError as e:
    cli.fail(str(e))
  print(markdown_table(runs, metrics))
  print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)


if __name__ == "__main__":
  main()
