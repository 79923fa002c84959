"""python -m jaxrec.report: workdirs and results.json files -> markdown table + PNG plots."""

import json
import pathlib

import pytest

from jaxrec import report

QUALITY_RUNS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "results" / "quality_runs"


def fake_run(workdir: pathlib.Path, hr10: float, *, item_input: str = "id") -> pathlib.Path:
  """A finished run's files, as train.py writes them (values made up)."""
  workdir.mkdir(parents=True)
  metrics = {"HR@10": hr10, "NDCG@10": hr10 / 2}
  config = {"data": {"kind": "synthetic_demo", "name": "", "path": ""}, "eval": {"select": "NDCG@10"},
            "model": {"item_input": item_input, "item_tower": "input"}, "ceg": {"model": "minilm"},
            "loss": {"objective": "next_item", "negatives": "full"}}
  (workdir / "results.json").write_text(json.dumps({
      "test": metrics, "valid": metrics, "popularity_test": {"HR@10": 0.01, "NDCG@10": 0.005},
      "config": config, "best_step": 20, "total_steps": 30}))
  lines = [{"step": s, "epoch": s / 10, "loss": 5.0 - s / 10, "top1_acc": s / 100} for s in (5, 10, 15, 20)]
  lines += [{"step": 10, "epoch": 1.0, "valid": {"NDCG@10": 0.1}}, {"step": 20, "epoch": 2.0, "valid": metrics}]
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines) + '{"step": 2')
  return workdir


def test_cli_writes_table_and_plots(tmp_path, capsys):
  a, b = fake_run(tmp_path / "runA", 0.3), fake_run(tmp_path / "runB", 0.2, item_input="content")
  report.main([str(a), str(b), "--out", str(tmp_path / "out"), "--metrics=HR@10,NDCG@10"])
  table = capsys.readouterr().out
  assert "| HR@10 | NDCG@10 |" in table
  assert "| runA | id, next_item/full, item tower input | synthetic_demo | 20 of 30 | 0.3000 | 0.1500 |" in table
  assert "content (minilm)" in table and "| popularity |" in table
  md = (tmp_path / "out" / "report.md").read_text()
  assert "runB" in md and "curves.png" in md
  for png in ("curves.png", "metrics.png"):
    data = (tmp_path / "out" / png).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_load_run_reads_curves_and_skips_a_cut_line(tmp_path):
  run = report.load_run(fake_run(tmp_path / "r", 0.3))
  assert [t["step"] for t in run.train] == [5, 10, 15, 20]
  assert [v["step"] for v in run.valid] == [10, 20] and run.valid[1]["HR@10"] == 0.3
  fig = report.plot_curves([run])
  assert [len(ax.lines) for ax in fig.axes] == [1, 1, 1]   # loss, top-1 accuracy, validation


def test_committed_results_files_report(tmp_path):
  files = [QUALITY_RUNS / f"office-{name}__results.json" for name in ("id", "content", "paper-v1")]
  runs = [report.load_run(f) for f in files]
  assert runs[0].name == files[0].name.removesuffix("__results.json")
  assert all(r.valid for r in runs)     # curves from results.json's valid_history
  paths = report.write_report(runs, tmp_path)
  assert "| Office |" in paths["report"].read_text()


def test_missing_run_is_one_line(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    report.main([str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and "no results.json" in err[0]
