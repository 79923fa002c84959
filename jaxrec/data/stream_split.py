"""Leave-one-out of a TFDS `users` split without holding the users' sequences in memory.

`open_flat` copies the split's items once into one flat int32 file beside
the cache (`FlatUsers`: the items memory-mapped, an offset and a user index a
record in memory), in one streaming pass over the array_record records;
later runs reuse it. Reading a history from it is a slice of a memory map:
evaluation reads every validation history at each full validation, and
decoding them from array_record costs 50 s at Amazon Books' size (711k
users) where the slices cost 4.5 s (experiments/results/books_tfds.md). Its pages belong to the page
cache, which the kernel reclaims, not to the process's own memory.

`leave_one_out(flat, num_items)` then keeps what training and evaluation need
of each user (its row, its validation and test targets, its length) and the
training item counts; histories and training sequences are `Histories`,
lazy views of the flat file. Users are put in the dataset's user order (each
record's `index`), the order `splits.leave_one_out` of the loaded dataset
has, so both give the same split: the same users, targets, histories and
counts (tested). Only the training sequences' order differs (on-disk order;
training shuffles them anyway).
"""

import dataclasses
import json
import os
import pathlib
import shutil
from collections.abc import Callable, Sequence

import numpy as np

from jaxrec.data import splits
from jaxrec.data.dataset import sequence_stats
from jaxrec.errors import JaxrecError

_READ = 4096       # records read from the source in one bulk read
_FORMAT = 1        # bump when the files' layout changes


class FlatUsers:
  """Every record's items in one flat int32 file (memory-mapped), in the source's record order."""

  def __init__(self, folder: pathlib.Path):
    meta = json.loads((folder / "meta.json").read_text())
    self.folder, self.num_items = folder, meta["num_items"]
    self.offsets = np.load(folder / "offsets.npy")     # [n + 1] int64: record r is items[o[r]:o[r + 1]]
    self.index = np.load(folder / "index.npy")         # [n] the record's user index in the dataset
    total = int(self.offsets[-1])
    self.items = (np.memmap(folder / "items.int32", np.int32, "r", shape=(total,)) if total
                  else np.zeros(0, np.int32))

  def __len__(self) -> int:
    return len(self.index)

  def row(self, r: int) -> np.ndarray:
    return np.asarray(self.items[self.offsets[r]:self.offsets[r + 1]])


def open_flat(source, folder: str | os.PathLike, num_items: int,
              progress: Callable[[int], object] | None = None, source_id: str = "") -> FlatUsers:
  """The FlatUsers copy of a `users` split data source in `folder`, written first (one pass over the
  source; `progress(n)` after each chunk of n records) unless a complete copy of this source is
  there. `source_id` names the source's version (a copy of another version is written again), as
  does a damaged or partial copy; the source itself is never changed. Callers serialise calls on
  one folder (registry.load_streamed holds the prepare lock)."""
  folder = pathlib.Path(folder)
  meta = {"format": _FORMAT, "records": len(source), "num_items": num_items, "source": source_id}
  if not _complete(folder, meta):
    for stale in folder.parent.glob(f"{folder.name}.tmp-*"):   # left by a killed writer
      shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    try:
      _write(source, tmp, meta, progress)
      shutil.rmtree(folder, ignore_errors=True)     # a damaged, partial or other version's copy
      os.replace(tmp, folder)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
  return FlatUsers(folder)


def _complete(folder: pathlib.Path, meta: dict) -> bool:
  try:
    found = json.loads((folder / "meta.json").read_text())
    offsets = np.load(folder / "offsets.npy", mmap_mode="r")
    index = np.load(folder / "index.npy", mmap_mode="r")
    size = (folder / "items.int32").stat().st_size
    total = int(offsets[-1])
  except (OSError, ValueError, IndexError):
    return False
  return (found == {**meta, "items": total} and offsets.shape == (meta["records"] + 1,)
          and index.shape == (meta["records"],) and size == 4 * total)


def _write(source, tmp: pathlib.Path, meta: dict, progress=None) -> None:
  n, num_items = meta["records"], meta["num_items"]
  tmp.mkdir(parents=True)                       # open_flat removed any earlier tmp-* folder
  offsets, index = np.zeros(n + 1, np.int64), np.empty(n, np.int64)
  with open(tmp / "items.int32", "wb") as out:
    for a in range(0, n, _READ):
      b = min(a + _READ, n)
      for r, rec in enumerate(source.__getitems__(list(range(a, b))), start=a):
        s = np.asarray(rec["items"], np.int32)
        if s.size == 0 or s.min() < 0 or s.max() >= num_items:
          raise JaxrecError(f"users split record {r} (user {int(rec['index'])}): items must be a non-empty "
                            f"list of indices in 0..{num_items - 1}; the prepared dataset is damaged: "
                            "delete it to prepare it again")
        out.write(s.tobytes())
        offsets[r + 1], index[r] = offsets[r] + len(s), int(rec["index"])
      if progress is not None:
        progress(b - a)
    out.flush()
    os.fsync(out.fileno())                      # the size check cannot see unwritten pages
  if not np.array_equal(np.sort(index), np.arange(n)):
    raise JaxrecError("the users split's records do not number the users 0..n-1; the prepared "
                      "dataset is damaged: delete it to prepare it again")
  np.save(tmp / "offsets.npy", offsets)
  np.save(tmp / "index.npy", index)
  (tmp / "meta.json").write_text(json.dumps({**meta, "items": int(offsets[-1])}))


class Histories(Sequence):
  """Users' histories read on demand from a FlatUsers: row `rows[i]`'s items without their last
  `drop` (leave-one-out's validation history and training sequence drop 2, the test history 1)."""

  def __init__(self, flat: FlatUsers, rows: np.ndarray, drop: int):
    self._flat, self._rows, self._drop = flat, np.asarray(rows, np.int64), drop

  def __len__(self) -> int:
    return len(self._rows)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return Histories(self._flat, self._rows[i], self._drop)
    return self._flat.row(self._rows[i])[:-self._drop]

  def __getitems__(self, indices) -> list[np.ndarray]:
    return [self[int(i)] for i in indices]

  def take(self, indices) -> "Histories":
    """The histories of users `indices` (a lazy view, as a slice is)."""
    indices = np.asarray(indices)
    if indices.dtype == bool:
      indices = np.flatnonzero(indices)
    return Histories(self._flat, self._rows[indices.astype(np.int64)], self._drop)


@dataclasses.dataclass(frozen=True)
class StreamedLeaveOneOut:
  """splits.LeaveOneOut with lazy sequences and the counts that would need them all."""
  train: Histories                      # every record's training sequence, on-disk order (lazy)
  valid: splits.EvalSplit               # histories: Histories
  test: splits.EvalSplit
  num_dropped_users: int                # users with < 3 interactions (no split possible)
  num_train_sequences: int              # users whose training sequence has >= 2 items
  counts: splits.TrainCounts            # of the training sequences (>= 2 items), as train_counts
  stats: dict                           # RecDataset.stats() of the whole dataset


def leave_one_out(flat: FlatUsers, num_items: int) -> StreamedLeaveOneOut:
  """The leave-one-out split of the users in `flat`."""
  n, length = len(flat), np.diff(flat.offsets)
  order = np.argsort(flat.index, kind="stable")     # rows in user order
  kept = order[length[order] >= 3]                  # the evaluated users' rows, in user order
  if not len(kept):
    raise JaxrecError("leave-one-out split: no user has the 3 interactions it needs")
  ends = flat.offsets[1:][kept]
  users = flat.index[kept].astype(np.int32)
  train_rows = np.flatnonzero(length >= 4)          # a training sequence of >= 2 items
  return StreamedLeaveOneOut(
      train=Histories(flat, np.arange(n), 2),
      valid=splits.EvalSplit(users, Histories(flat, kept, 2), np.asarray(flat.items[ends - 2], np.int32)),
      test=splits.EvalSplit(users, Histories(flat, kept, 1), np.asarray(flat.items[ends - 1], np.int32)),
      num_dropped_users=n - len(kept), num_train_sequences=len(train_rows),
      counts=splits.train_counts(Histories(flat, train_rows, 2), num_items),
      stats=sequence_stats(length[order], num_items))
