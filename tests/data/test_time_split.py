"""Time split: one cut time, disjoint evaluated users, no future or evaluated user in training."""

import numpy as np
import pytest

from jaxrec import evaluate
from jaxrec.data import time_split
from jaxrec.errors import JaxrecError


def _data(num_users=40, seed=0):
  rng = np.random.default_rng(seed)
  seqs, times = [], []
  for _ in range(num_users):
    n = int(rng.integers(3, 15))
    seqs.append(rng.integers(0, 30, n).astype(np.int32))
    times.append(np.sort(rng.integers(0, 1000, n)).astype(np.int64))
  return tuple(seqs), tuple(times)


def test_split_properties():
  seqs, times = _data()
  s = time_split.time_split(seqs, times, cut_quantile=0.7, valid_users=0.25, test_users=0.25, target_len=3)
  assert s.cut_time == np.quantile(np.concatenate(times), 0.7, method="higher")
  assert not set(s.valid.users) & set(s.test.users)
  evaluated = set(s.valid.users) | set(s.test.users)
  train_users = [u for u in range(len(seqs)) if u not in evaluated and (times[u] < s.cut_time).sum() >= 2]
  assert len(s.train) == len(train_users)
  for t, u in zip(s.train, train_users):                 # only what came before the cut
    np.testing.assert_array_equal(t, seqs[u][times[u] < s.cut_time])
  assert len(s.train) + len(evaluated) + s.num_dropped_users == len(seqs)
  for split in (s.valid, s.test):
    assert split.targets.shape == (len(split.users), 3)
    for u, h, row in zip(split.users, split.histories, split.targets):
      np.testing.assert_array_equal(h, seqs[u][times[u] < s.cut_time])
      real = row[row != time_split.PAD]
      after = [i for i in seqs[u][times[u] >= s.cut_time] if i not in set(h.tolist())]
      assert len(real) >= 1 and list(real) == list(dict.fromkeys(after))[:3]


def test_seeded_and_needs_timestamps():
  seqs, times = _data()
  kw = dict(cut_quantile=0.6, valid_users=0.2, test_users=0.2, target_len=2)
  a, b = time_split.time_split(seqs, times, **kw), time_split.time_split(seqs, times, **kw)
  np.testing.assert_array_equal(a.test.users, b.test.users)
  with pytest.raises(JaxrecError, match="needs interaction timestamps"):
    time_split.time_split(seqs, None, **kw)
  with pytest.raises(JaxrecError, match="too few"):
    time_split.time_split(seqs[:2], times[:2], **kw)


def test_metrics_are_learns_h_and_r():
  """H@K: any target in the top K; R@K: the fraction of targets in the top K (PAD rows ignored)."""
  ranks = np.array([[0, 60, -1], [70, 80, 90]])
  m = evaluate.metrics_from_ranks(ranks, (50, 100))
  assert m["HR@50"] == 0.5 and m["Recall@50"] == pytest.approx((1 / 2 + 0) / 2)
  assert m["HR@100"] == 1.0 and m["Recall@100"] == 1.0


def test_load_data_selects_the_time_split(shared_data):
  from jaxrec import config as config_lib, train
  c = config_lib.base_config()
  c.data.kind, c.data.path = "movielens_100k", str(shared_data / "ml-100k")
  c.data.protocol, c.data.cut_quantile, c.data.valid_users, c.data.test_users = "time_split", 0.8, 0.3, 0.5
  dataset, split, cold = train.load_data(c)
  assert isinstance(split, time_split.TimeSplit) and len(cold) == 0
  assert split.test.targets.shape == (54, c.data.target_len)        # the ML-100K table's split
  assert max(len(s) for s in split.train) <= max(len(s) for s in dataset.sequences)
