"""Streamed next-item input: exactly-once epochs, resume = same batches, a lazy TFDS source."""

import collections

import numpy as np
import pytest

from jaxrec.data import grain_input, packing, registry, splits, tfds_builder
from test_lcrec_json import _write as write_lcrec


def _train(n=57, seed=0):
  rng = np.random.default_rng(seed)
  # Lengths 0 and 1 included: such users have no window (a lazy source gives them).
  return tuple(rng.integers(0, 40, size=rng.integers(0, 30)).astype(np.int32) for _ in range(n))


def _targets(batch) -> collections.Counter:
  return collections.Counter(batch["targets"][batch["supervised"]].tolist())


@pytest.mark.parametrize("block_users,mix_blocks,pack", [(7, 2, True), (5, 3, False), (1000, 8, True)])
def test_epoch_supervises_every_target_exactly_once(block_users, mix_blocks, pack):
  train = _train()
  expected = collections.Counter(int(x) + 1 for s in train for x in s[1:])
  g = grain_input.GrainInput(train, max_history=8, batch_size=5, seed=3, pack=pack,
                             block_users=block_users, mix_blocks=mix_blocks)
  assert g.steps_per_epoch == -(-g.num_rows // 5)
  epochs = []
  for epoch in range(2):
    got, order = collections.Counter(), []
    for k in range(g.steps_per_epoch):
      b = g.batch(epoch * g.steps_per_epoch + k)
      assert all(a.shape == (5, 8) for a in b.values()) and b["supervised"].dtype == bool
      np.testing.assert_array_equal(b["targets"] > 0, b["segments"] > 0)
      got.update(_targets(b))
      order.append(b["targets"].tolist())
    assert got == expected
    epochs.append(order)
  assert epochs[0] != epochs[1]                              # reshuffled per epoch
  if pack and block_users > 100:                             # one block: packing as dense as in memory
    assert g.num_rows == packing.pack(train, 8).num_rows


def test_restored_at_step_k_gives_the_uninterrupted_batches():
  kwargs = dict(max_history=8, batch_size=4, seed=11, block_users=6, mix_blocks=2)
  uninterrupted = grain_input.GrainInput(_train(), **kwargs)
  n = 2 * uninterrupted.steps_per_epoch + 3
  want = [uninterrupted.batch(s) for s in range(n)]
  for k in (0, 5, uninterrupted.steps_per_epoch - 1, uninterrupted.steps_per_epoch + 2):
    resumed = grain_input.GrainInput(_train(), **kwargs)       # a new process: only the step survives
    for s in range(k, n):
      got = resumed.batch(s)
      assert all(np.array_equal(got[f], want[s][f]) for f in got), (k, s)
  other = grain_input.GrainInput(_train(), **{**kwargs, "seed": 12})
  assert not np.array_equal(other.batch(0)["targets"], want[0]["targets"])


def test_lazy_leave_one_out_view_of_a_tfds_users_split(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXREC_CACHE", str(tmp_path / "cache"))
  inter = {"0": [0, 2, 10, 1, 2], "1": [10, 0], "2": [1, 0, 2], "3": [2, 10, 0, 1, 0, 2, 1]}
  folder = write_lcrec(tmp_path / "raw", inter=inter)
  builder = tfds_builder.prepare(registry.SOURCES["lcrec_json"], folder, tfds_builder.default_data_dir())
  view = grain_input.LeaveOneOutTrain(builder.as_data_source()["users"])
  data = registry.load_dataset("lcrec_json", str(folder), via_tfds=False)
  expected = collections.Counter(int(x) for s in splits.leave_one_out(data.sequences).train for x in s)
  # Sequences of one item stay in the view (no window) where leave_one_out drops them.
  assert collections.Counter(int(x) for i in range(len(view)) if len(view[i]) >= 2 for x in view[i]) == expected
  g = grain_input.GrainInput(view, max_history=3, batch_size=2, seed=0)
  got = sum((_targets(g.batch(k)) for k in range(g.steps_per_epoch)), collections.Counter())
  train = splits.leave_one_out(data.sequences).train
  assert got == collections.Counter(int(x) + 1 for s in train for x in s[1:])


def test_training_with_grain_input_learns_and_resumes_exactly(tmp_path):
  from jaxrec import train
  from test_train import tiny_config
  config = tiny_config(train={"num_epochs": 12, "eval_every": 60}, data={"input": "grain"},
                       loss={"objective": "next_item", "negatives": "full"}, model={"item_tower": "input"})
  full = train.train_and_evaluate(config, tmp_path / "full")
  # As tests/test_train.py's in-memory run: above chance (10/110) and the popularity ranking.
  assert full["test"]["HR@10"] > 2 * 10 / 110
  assert full["test"]["NDCG@10"] > full["popularity_test"]["NDCG@10"]
  assert train.train_and_evaluate(config, tmp_path / "resumed", stop_after_steps=77) is None
  resumed = train.train_and_evaluate(config, tmp_path / "resumed")
  assert resumed["test"] == full["test"] and resumed["valid_history"] == full["valid_history"]


def test_stream_input_reads_the_tfds_users_split_learns_and_resumes_exactly(tmp_path, monkeypatch, demo_as_lcrec):
  """data.input='stream' takes the training sequences from the flat copy of the array_record users
  split (the demo data written in LC-Rec's format), not from the in-memory split; it learns and
  resumes exactly.
  (TFDS stores users in its own order, so its blocks, and so its batches, differ from grain's.)"""
  from jaxrec import train
  from test_train import tiny_config
  monkeypatch.setenv("JAXREC_CACHE", str(tmp_path / "cache"))
  folder = demo_as_lcrec
  opened = []
  real = registry.load_streamed
  monkeypatch.setattr(registry, "load_streamed", lambda *a, **k: opened.append(a) or real(*a, **k))
  config = tiny_config(data={"kind": "lcrec_json", "path": str(folder), "input": "stream"},
                       train={"num_epochs": 12, "eval_every": 60}, eval={"partial_users": 150},
                       loss={"objective": "next_item", "negatives": "full"}, model={"item_tower": "input"})
  full = train.train_and_evaluate(config, tmp_path / "full")
  assert opened == [("lcrec_json", str(folder))]
  # As the grain and in-memory runs: above chance (10/110) and the popularity ranking.
  assert full["test"]["HR@10"] > 2 * 10 / 110
  assert full["test"]["NDCG@10"] > full["popularity_test"]["NDCG@10"]
  assert train.train_and_evaluate(config, tmp_path / "resumed", stop_after_steps=77) is None
  resumed = train.train_and_evaluate(config, tmp_path / "resumed")
  assert resumed["test"] == full["test"] and resumed["valid_history"] == full["valid_history"]


def test_last_objective_supervises_each_users_final_target_once():
  train = _train()
  g = grain_input.GrainInput(train, max_history=8, batch_size=5, seed=1, objective="last", block_users=9)
  got = sum((_targets(g.batch(k)) for k in range(g.steps_per_epoch)), collections.Counter())
  assert got == collections.Counter(int(s[-1]) + 1 for s in train if len(s) >= 2)
