"""Leave-one-out streamed from a TFDS users split equals the in-memory split of the loaded dataset."""

import numpy as np
import pytest

from jaxrec.data import registry, splits, stream_split
from jaxrec.errors import JaxrecError
from test_lcrec_json import _write as write_lcrec


def _inter(n_users=300, n_items=40, seed=0):
  """Users of every length that matters: 1 and 2 (dropped), 3 (a one-item training sequence), more."""
  rng = np.random.default_rng(seed)
  lengths = np.concatenate([[1, 2, 3, 4], rng.integers(1, 25, size=n_users - 4)])
  return {str(u): rng.integers(0, n_items, size=n).tolist() for u, n in enumerate(lengths)}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(streamed split, in-memory split, dataset) of one LC-Rec folder prepared as TFDS."""
  tmp = tmp_path_factory.mktemp("stream")
  mp = pytest.MonkeyPatch()
  mp.setenv("JAXREC_CACHE", str(tmp / "cache"))
  items = {str(i): {"title": f"item {i}"} for i in range(40)}
  folder = write_lcrec(tmp / "raw", items=items, inter=_inter())
  seen = []
  catalogue, flat = registry.load_streamed("lcrec_json", str(folder), progress=seen.append)
  streamed = stream_split.leave_one_out(flat, catalogue.num_items)
  dataset = registry.load_dataset("lcrec_json", str(folder))
  assert registry.load_items("lcrec_json", str(folder)).item_ids == catalogue.item_ids
  again = registry.load_streamed("lcrec_json", str(folder), progress=seen.append)[1]
  mp.undo()
  assert again.folder == flat.folder and len(seen) == 1     # the copy is written once, then reused
  return streamed, splits.leave_one_out(dataset.sequences), dataset, catalogue, seen


def _same(a, b) -> bool:
  return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_streamed_split_equals_the_in_memory_split(prepared):
  streamed, memory, dataset, catalogue, seen = prepared
  assert sum(seen) == dataset.num_users                   # progress counted every user once
  for name in ("valid", "test"):
    s, m = getattr(streamed, name), getattr(memory, name)
    np.testing.assert_array_equal(s.users, m.users)
    np.testing.assert_array_equal(s.targets, m.targets)
    assert _same(list(s.histories), m.histories)            # bulk reads in user order
    assert _same([s.histories[i] for i in range(len(s.histories))], m.histories)  # one by one
  assert streamed.num_dropped_users == memory.num_dropped_users > 0
  assert streamed.num_train_sequences == len(memory.train)
  counts = splits.train_counts(memory.train, dataset.num_items)
  np.testing.assert_array_equal(streamed.counts.items, counts.items)
  np.testing.assert_array_equal(streamed.counts.targets, counts.targets)
  assert streamed.stats == dataset.stats()
  assert catalogue.item_ids == dataset.item_ids and catalogue.item_fields == dataset.item_fields
  assert catalogue.name == dataset.name and catalogue.field_names == dataset.field_names


def test_histories_slice_and_take_are_lazy_views_of_the_same_users(prepared):
  streamed, memory, *_ = prepared
  h = streamed.test.histories
  assert isinstance(h[5:40], stream_split.Histories)
  assert _same(list(h[5:40]), memory.test.histories[5:40])
  idx = np.array([7, 0, 200, 3])
  assert _same(list(h.take(idx)), [memory.test.histories[i] for i in idx])
  assert np.array_equal(h[-1], memory.test.histories[-1])


def test_train_counts_match_a_hand_count():
  counts = splits.train_counts((np.array([0, 1, 1]), np.array([2, 1])), 4)
  np.testing.assert_array_equal(counts.items, [1, 3, 1, 0])
  np.testing.assert_array_equal(counts.targets, [0, 3, 0, 0])    # the first item is no target


class _Records:
  """A users source of records given in a list (the data-source protocol: len, getitems)."""

  def __init__(self, records):
    self.records = records

  def __len__(self):
    return len(self.records)

  def __getitem__(self, i):
    return self.records[i]

  def __getitems__(self, indices):
    return [self.records[i] for i in indices]


@pytest.mark.parametrize("records,match", [
    ([{"index": 0, "items": [0, 1, 9]}], "record 0 .*0..4; the prepared dataset is damaged"),
    ([{"index": 0, "items": []}], "non-empty"),
    ([{"index": 0, "items": [0, 1, 2]}, {"index": 0, "items": [1, 2, 3]}], "do not number the users"),
])
def test_a_damaged_users_split_is_one_clear_error_and_leaves_no_copy(tmp_path, records, match):
  with pytest.raises(JaxrecError, match=match):
    stream_split.open_flat(_Records(records), tmp_path / "flat", num_items=5)
  assert not any(tmp_path.iterdir())


def test_a_damaged_flat_copy_is_written_again_and_a_complete_one_is_reused(tmp_path):
  records = [{"index": 1, "items": [0, 1, 2, 3]}, {"index": 0, "items": [4, 3, 2]}]
  flat = stream_split.open_flat(_Records(records), tmp_path / "flat", num_items=5)
  assert [flat.row(0).tolist(), flat.row(1).tolist()] == [[0, 1, 2, 3], [4, 3, 2]]
  split = stream_split.leave_one_out(flat, 5)
  assert split.test.users.tolist() == [0, 1] and split.test.targets.tolist() == [2, 3]
  assert split.valid.targets.tolist() == [3, 2] and list(map(list, split.test.histories)) == [[4, 3], [0, 1, 2]]
  assert split.counts.items.tolist() == [1, 1, 0, 0, 0] and split.num_train_sequences == 1
  stream_split.open_flat(_Unreadable(records), tmp_path / "flat", num_items=5)     # reused, not read
  with pytest.raises(AssertionError, match="read again"):                          # another version
    stream_split.open_flat(_Unreadable(records), tmp_path / "flat", num_items=5, source_id="v2")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["flat"]          # kept until a copy is whole
  with open(tmp_path / "flat" / "items.int32", "r+b") as f:
    f.truncate(8)                                                                  # damaged
  (tmp_path / "flat.tmp-99999999").mkdir()                                         # a killed writer's
  flat = stream_split.open_flat(_Records(records), tmp_path / "flat", num_items=5)
  assert flat.row(1).tolist() == [4, 3, 2] and sorted(p.name for p in tmp_path.iterdir()) == ["flat"]
  with pytest.raises(JaxrecError, match="no user has the 3 interactions"):
    stream_split.leave_one_out(stream_split.open_flat(_Records([{"index": 0, "items": [1]}]),
                                                      tmp_path / "short", num_items=5), 5)


class _Unreadable(_Records):
  def __getitems__(self, indices):
    raise AssertionError("the source was read again")
