"""Sliding windows and packed rows: every training target exactly once per epoch."""

import collections

import numpy as np
import pytest

from jaxrec.data import packing


def targets_of(rows: packing.PackedRows) -> collections.Counter:
  """Supervised target tokens, with multiplicity."""
  return collections.Counter(rows.targets[rows.supervised].tolist())


@pytest.mark.parametrize("max_history,stride", [(3, 0), (4, 0), (7, 0), (50, 0), (8, 1), (8, 3), (8, 8)])
def test_windows_supervise_each_target_once_with_context(max_history, stride):
  seq = np.arange(100, 117)                                 # 17 items: 16 targets
  seen = []
  step = stride or max_history // 2
  for inputs, targets, sup in packing.windows(seq, max_history, stride=stride):
    assert len(inputs) == len(targets) <= max_history
    np.testing.assert_array_equal(targets, inputs + 1)      # next item of each input
    for k in np.flatnonzero(sup):
      seen.append(int(targets[k]))
      full_prefix = int(targets[k]) - 100
      assert k + 1 >= min(max_history - step, full_prefix)  # context: a window less the stride
  assert sorted(seen) == list(range(101, 117))


def test_last_objective_supervises_only_the_final_target():
  (inputs, targets, sup), = packing.windows(np.arange(10), 4, "last")
  np.testing.assert_array_equal(inputs, [5, 6, 7, 8])
  assert targets[sup].tolist() == [9]


def test_epoch_covers_every_training_interaction_once():
  rng = np.random.default_rng(0)
  train = tuple(rng.integers(0, 40, size=rng.integers(2, 30)) for _ in range(57))
  rows = packing.pack(train, 8)
  expected = collections.Counter(int(x) + 1 for s in train for x in s[1:])
  assert targets_of(rows) == expected
  per_epoch = packing.steps_per_epoch(rows, 5)
  for epoch in range(2):
    got = collections.Counter()
    for k in range(per_epoch):
      b = packing.batch(rows, epoch * per_epoch + k, batch_size=5, seed=3)
      got.update(b["targets"][b["supervised"]].tolist())
    assert got == expected
  assert np.mean(rows.inputs > 0) > 0.9                     # packing leaves little padding


def test_segments_and_positions_describe_each_window():
  rows = packing.pack((np.arange(3), np.arange(4), np.arange(2)), 8)
  for r in range(rows.num_rows):
    for seg in set(rows.segments[r][rows.segments[r] > 0].tolist()):
      at = rows.segments[r] == seg
      np.testing.assert_array_equal(rows.positions[r][at], np.arange(at.sum()))
      np.testing.assert_array_equal(rows.targets[r][at], rows.inputs[r][at] + 1)


def test_batch_is_a_pure_function_of_seed_and_step():
  rows = packing.pack(tuple(np.arange(n) for n in range(2, 40)), 6)
  a = packing.batch(rows, 7, batch_size=4, seed=1)
  b = packing.batch(rows, 7, batch_size=4, seed=1)
  c = packing.batch(rows, 7, batch_size=4, seed=2)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_unpacked_rows_hold_one_window_each():
  rows = packing.pack((np.arange(3), np.arange(4), np.arange(2)), 8, pack_rows=False)
  assert rows.num_rows == 3 and rows.segments.max() == 1
