import numpy as np
import pytest

from jaxrec.data import batching, splits
from jaxrec.errors import JaxrecError


def test_leave_one_out():
  seqs = (np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([7, 8, 9]))
  s = splits.leave_one_out(seqs)
  assert s.num_dropped_users == 1
  np.testing.assert_array_equal(s.valid.users, [0, 2])
  np.testing.assert_array_equal(s.valid.targets, [3, 8])
  np.testing.assert_array_equal(s.test.targets, [4, 9])
  np.testing.assert_array_equal(s.test.histories[0], [1, 2, 3])
  np.testing.assert_array_equal(s.valid.histories[1], [7])
  assert len(s.train) == 1                       # user 2's training part has 1 item: no pair
  np.testing.assert_array_equal(s.train[0], [1, 2])
  with pytest.raises(JaxrecError, match="3 interactions"):
    splits.leave_one_out((np.array([1, 2]),))


def test_tokens_keep_the_most_recent_items():
  t = batching.to_tokens([np.array([0, 1, 2, 3, 4]), np.array([7])], 3)
  np.testing.assert_array_equal(t, [[3, 4, 5], [8, 0, 0]])


@pytest.mark.parametrize("mode", ["random", "last"])
def test_cut_is_a_partition_of_a_window(mode):
  rng = np.random.default_rng(0)
  seq = np.arange(20)
  for _ in range(50):
    h, t = batching.cut_sequence(seq, rng, max_history=6, target_len=4, mode=mode)
    assert 1 <= len(h) <= 6 and 1 <= len(t) <= 4
    assert h[-1] + 1 == t[0]                      # targets follow the history directly
  if mode == "last":
    np.testing.assert_array_equal(t, [16, 17, 18, 19])


def test_train_batch_is_a_function_of_the_step():
  train = tuple(np.arange(n) + 10 * n for n in range(2, 12))
  kw = dict(batch_size=4, seed=3, max_history=5, target_len=3, mode="random")
  a = batching.train_batch(train, 7, **kw)
  b = batching.train_batch(train, 7, **kw)
  c = batching.train_batch(train, 8, **kw)
  np.testing.assert_array_equal(a["history"], b["history"])
  assert not np.array_equal(a["history"], c["history"])
  assert a["history"].shape == (4, 5) and a["target"].shape == (4, 3)
  assert np.all(a["history"][:, 0] > 0) and np.all(a["target"][:, 0] > 0)
