"""RecDataset: stats and the invariants validate() guards."""

import numpy as np
import pytest

from jaxrec.data.dataset import RecDataset
from jaxrec.errors import JaxrecError


def _dataset(sequences, num_items=3, item_ids=None, user_ids=None):
  return RecDataset(
      name="toy",
      item_ids=item_ids or tuple(str(i) for i in range(num_items)),
      item_fields=tuple({"title": f"t{i}"} for i in range(num_items)),
      user_ids=user_ids or tuple(f"u{i}" for i in range(len(sequences))),
      sequences=tuple(np.asarray(s, dtype=np.int32) for s in sequences),
  )


def test_counts_and_stats():
  data = _dataset([[0, 1, 2], [2], [1, 0]]).validate()
  assert (data.num_users, data.num_items, data.num_interactions) == (3, 3, 6)
  stats = data.stats()
  assert stats["users"] == 3 and stats["items"] == 3
  assert stats["interactions"] == 6
  assert stats["mean_seq_len"] == pytest.approx(2.0)
  assert stats["median_seq_len"] == 2.0
  assert (stats["min_seq_len"], stats["max_seq_len"]) == (1, 3)
  assert data.field_names == ("title",)


@pytest.mark.parametrize("sequences, fragment", [
    ([[0, 3]], "item index 3 outside 0..2"),
    ([[-1]], "item index -1 outside 0..2"),
    ([[0], []], "user 'u1': sequence is empty"),
])
def test_validate_rejects_bad_sequences(sequences, fragment):
  with pytest.raises(JaxrecError, match=fragment):
    _dataset(sequences).validate()


def test_validate_rejects_wrong_dtype_and_lengths():
  bad_dtype = RecDataset("toy", ("0",), ({},), ("u",),
                         (np.array([0], dtype=np.int64),))
  with pytest.raises(JaxrecError, match="expected int32"):
    bad_dtype.validate()
  with pytest.raises(JaxrecError, match="2 user ids but 1 sequences"):
    _dataset([[0]], user_ids=("a", "b")).validate()
  with pytest.raises(JaxrecError, match="item id '0' appears more than once"):
    _dataset([[0]], item_ids=("0", "0", "1")).validate()
