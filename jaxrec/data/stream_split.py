"""Leave-one-out of a TFDS `users` split, read in one streaming pass: the split's numbers in
memory, its sequences on disk.

`leave_one_out(source, num_items)` reads every user once, in bulk chunks, and keeps
what training and evaluation need of each user (where its record is, its validation and
test targets, its length) and the training item counts. The evaluation histories are
`Histories`, lazy views that read the users' records again when evaluation reaches them
(`evaluate.by_user_chunks`: a chunk of users at a time), and training reads its sequences
through `grain_input.LeaveOneOutTrain`. So a run's memory holds a few numbers a user,
not the users' sequences (config data.input='stream').

Users are put in the dataset's user order (each record's `index`), the order
`splits.leave_one_out` of the loaded dataset has, so both give the same split: the same
users, targets, histories and counts (tested). Only the training sequences' order differs
(on-disk order; training shuffles them anyway).
"""

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from jaxrec.data import grain_input, splits
from jaxrec.data.dataset import sequence_stats
from jaxrec.errors import JaxrecError

_READ = 4096   # records read from the source in one bulk read


class Histories(Sequence):
  """Users' histories read on demand from a users source: record `positions[i]`'s items without
  their last `drop` (leave-one-out's validation history drops 2, the test history 1)."""

  def __init__(self, source, positions: np.ndarray, drop: int):
    self._source, self._positions, self._drop = source, np.asarray(positions, np.int64), drop

  def __len__(self) -> int:
    return len(self._positions)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return Histories(self._source, self._positions[i], self._drop)
    return self._cut(self._source[int(self._positions[i])])

  def take(self, indices) -> "Histories":
    """The histories of users `indices` (a lazy view, as a slice is)."""
    indices = np.asarray(indices)
    if indices.dtype == bool:
      indices = np.flatnonzero(indices)
    return Histories(self._source, self._positions[indices.astype(np.int64)], self._drop)

  def __iter__(self):
    for a in range(0, len(self), _READ):
      yield from (self._cut(r) for r in _read(self._source, self._positions[a:a + _READ]))

  def _cut(self, record) -> np.ndarray:
    return np.asarray(record["items"], np.int32)[:-self._drop]


@dataclasses.dataclass(frozen=True)
class StreamedLeaveOneOut:
  """splits.LeaveOneOut with lazy sequences and the counts that would need them all."""
  train: grain_input.LeaveOneOutTrain   # every user's training sequence, on-disk order (lazy)
  valid: splits.EvalSplit               # histories: Histories
  test: splits.EvalSplit
  num_dropped_users: int                # users with < 3 interactions (no split possible)
  num_train_sequences: int              # users whose training sequence has >= 2 items
  counts: splits.TrainCounts            # of the training sequences (>= 2 items), as train_counts
  stats: dict                           # RecDataset.stats() of the whole dataset


def _read(source, positions) -> list:
  return source.__getitems__([int(p) for p in positions])


def leave_one_out(source, num_items: int,
                  progress: Callable[[int], object] | None = None) -> StreamedLeaveOneOut:
  """The leave-one-out split of a `users` split data source, in one pass over it.

  `progress(n)` is called after each chunk of n users (a tqdm's `update`).
  """
  n = len(source)
  index, length = np.empty(n, np.int64), np.empty(n, np.int64)
  valid_t, test_t = np.full(n, -1, np.int32), np.full(n, -1, np.int32)
  items, targets = np.zeros(num_items, np.int64), np.zeros(num_items, np.int64)
  num_train = 0
  for a in range(0, n, _READ):
    b = min(a + _READ, n)
    seqs = []
    for i, r in enumerate(_read(source, range(a, b)), start=a):
      s = np.asarray(r["items"], np.int32)
      if s.size == 0 or s.min() < 0 or s.max() >= num_items:
        raise JaxrecError(f"users split record {i} (user {int(r['index'])}): items must be a non-empty "
                          f"list of indices in 0..{num_items - 1}; the prepared dataset is damaged: "
                          "delete it to prepare it again")
      index[i], length[i] = int(r["index"]), len(s)
      if len(s) >= 3:
        valid_t[i], test_t[i] = s[-2], s[-1]
      if len(s) >= 4:                   # a training sequence of >= 2 items
        seqs.append(s[:-2])
    if seqs:
      num_train += len(seqs)
      counts = splits.train_counts(seqs, num_items, chunk=len(seqs))
      items += counts.items
      targets += counts.targets
    if progress is not None:
      progress(b - a)
  order = np.argsort(index, kind="stable")
  if not np.array_equal(index[order], np.arange(n)):
    raise JaxrecError("the users split's records do not number the users 0..n-1; the prepared "
                      "dataset is damaged: delete it to prepare it again")
  kept = order[length[order] >= 3]       # source positions of the evaluated users, in user order
  if not len(kept):
    raise JaxrecError("leave-one-out split: no user has the 3 interactions it needs")
  users = index[kept].astype(np.int32)
  return StreamedLeaveOneOut(
      train=grain_input.LeaveOneOutTrain(source),
      valid=splits.EvalSplit(users, Histories(source, kept, 2), valid_t[kept]),
      test=splits.EvalSplit(users, Histories(source, kept, 1), test_t[kept]),
      num_dropped_users=n - len(kept), num_train_sequences=num_train,
      counts=splits.TrainCounts(items, targets), stats=sequence_stats(length[order], num_items))
