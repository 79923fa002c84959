"""The sweep command: overrides, trial selection on validation, resume, seeds."""

import json

import pytest

from jaxrec import sweep
from jaxrec.config import base_config
from jaxrec.errors import JaxrecError
from test_train import tiny_config


def test_parse_grid_and_overrides():
  grid = sweep.parse_grid("model.dropout=0.1,0.3; train.batch_size=8 ;model.normalize=false")
  assert grid == {"model.dropout": ["0.1", "0.3"], "train.batch_size": ["8"], "model.normalize": ["false"]}
  c = sweep.apply_overrides(base_config(), {"model.dropout": "0.3", "train.batch_size": "8",
                                           "model.normalize": "false", "eval.ks": "(5, 10)"})
  assert c.model.dropout == 0.3 and c.train.batch_size == 8 and c.model.normalize is False
  assert c.eval.ks == (5, 10)
  c = sweep.apply_overrides(base_config(), {"model.d_model|model.d_out": "128|96"})
  assert (c.model.d_model, c.model.d_out) == (128, 96)
  with pytest.raises(JaxrecError, match="one value per field"):
    sweep.apply_overrides(base_config(), {"model.d_model|model.d_out": "128"})
  with pytest.raises(JaxrecError, match="does not exist"):
    sweep.apply_overrides(base_config(), {"model.dropuot": "0.1"})
  with pytest.raises(JaxrecError, match="does not fit"):
    sweep.apply_overrides(base_config(), {"train.batch_size": "many"})


def test_random_search_is_seeded_subset():
  grid = sweep.parse_grid("a=1,2,3;b=x,y")
  every = sweep.trial_points(grid, 0, 0)
  assert len(every) == 6
  pick = sweep.trial_points(grid, 3, 7)
  assert len(pick) == 3 and all(p in every for p in pick) and pick == sweep.trial_points(grid, 3, 7)


def test_sweep_selects_on_validation_and_resumes(tmp_path):
  config = tiny_config(train={"num_epochs": 2, "eval_every": 10})
  report = sweep.sweep(config, tmp_path, "train.learning_rate=0.005,0.00001", seeds=(0, 1))
  trials = {t["overrides"]["train.learning_rate"]: t for t in report["trials"]}
  best = max(report["trials"], key=lambda t: t["valid"]["NDCG@10"])
  assert report["best"] == best["name"]
  assert len(report["seed_results"]) == 2 and set(trials) == {"0.005", "0.00001"}
  assert (tmp_path / "sweep.md").read_text().count("**(best)**") == 1
  summary = report["summary"]["NDCG@10"]
  vals = [r["test"]["NDCG@10"] for r in report["seed_results"]]
  assert summary["mean"] == pytest.approx(sum(vals) / 2)
  # A rerun reads finished trials back instead of training again.
  stamp = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/results.json")}
  again = sweep.sweep(config, tmp_path, "train.learning_rate=0.005,0.00001", seeds=(0, 1))
  assert again["trials"] == json.loads(json.dumps(report["trials"]))
  assert stamp == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/results.json")}
