"""Next-item training end to end, the cold-item protocol and its breakdowns, Baseline-v1."""

import numpy as np
import pytest

from jaxrec import baseline_v1, train
from jaxrec.data import splits
from test_train import tiny_config


def next_item_config(**sections):
  c = tiny_config(**sections)
  c.loss.objective, c.loss.negatives = "next_item", "full"
  c.model.item_tower = "input"
  c.model.norm, c.model.init_std, c.model.head = "post", 0.02, False
  c.train.batch_size = 8
  c.train.schedule = "constant"
  return c


def test_cold_items_never_reach_training():
  seqs = tuple(np.random.default_rng(u).integers(0, 50, size=12) for u in range(40))
  split = splits.leave_one_out(seqs)
  held, cold = splits.hold_out_items(split, 50, 0.1, seed=3)
  assert len(cold) == 5
  assert not np.isin(np.concatenate(held.train), cold).any()
  # Only cold items were removed; evaluation is untouched.
  for before, after in zip((s for s in split.train), held.train):
    np.testing.assert_array_equal(before[~np.isin(before, cold)], after)
  assert held.test is split.test and held.valid is split.valid
  again, cold2 = splits.hold_out_items(split, 50, 0.1, seed=3)
  np.testing.assert_array_equal(cold, cold2)


def test_next_item_learns_and_reports_breakdowns(tmp_path):
  config = next_item_config(train={"num_epochs": 12, "eval_every": 50, "patience": 3})
  config.model.item_input = "fusion"
  config.data.cold_items = 0.1
  results = train.train_and_evaluate(config, tmp_path)
  assert results["test"]["NDCG@10"] > results["popularity_test"]["NDCG@10"]
  groups = results["test_by_target_train_count"]
  assert sum(g["users"] for g in groups.values()) == results["dataset"]["users"]
  cold = results["test_cold_protocol"]
  assert 0 < cold["cold_target"]["users"] <= groups["0"]["users"]   # cold targets have no training count
  assert results["cold_items"] == 12
  # Content keeps cold items retrievable: far better than chance (50/120) at HR@50.
  assert cold["cold_target"]["HR@50"] > 50 / 120


def test_baseline_v1_runs_without_training(tmp_path):
  config = tiny_config()
  config.method = "baseline_v1"
  config.data.demo_users, config.data.demo_items = 60, 40
  config.ceg.cache_dir = str(tmp_path / "cache")
  config.ceg.history_max_tokens = 64
  results = baseline_v1.run(config, tmp_path / "wd")
  assert (tmp_path / "wd" / "results.json").exists()
  assert results["valid"] is None
  for k in (10, 50):
    assert 0.0 <= results["test"][f"NDCG@{k}"] <= results["test"][f"HR@{k}"] <= 1.0
  # The demo's sequences follow the text: reading the history's text beats popularity.
  assert results["test"]["HR@10"] > results["popularity_test"]["HR@10"]


def test_history_text_keeps_the_most_recent_items():
  texts = [f"item{i}" for i in range(10)]
  assert baseline_v1.history_text(texts, np.array([1, 2, 3]), 50, 100) == "item1 ; item2 ; item3"
  assert baseline_v1.history_text(texts, np.array([1, 2, 3]), 50, 14) == "item2 ; item3"
