"""The in-memory dataset every reader produces and every later stage consumes.

Readers map original user/item ids to dense internal indices once, here, so
splitting, batching and the models never see raw ids. Item indices are
0..N-1 with no padding slot: the model reserves its own.
"""

import dataclasses
import os
import pathlib

import numpy as np

from jaxrec.errors import JaxrecError

# Offending rows are quoted in error messages, cut to this many characters.
_SNIPPET_CHARS = 80


# eq=False: == on tuples of arrays is ambiguous; compare datasets explicitly.
@dataclasses.dataclass(frozen=True, eq=False)
class RecDataset:
  """Users' chronological item sequences plus each item's text fields.

  Attributes:
    name: Short dataset name used in logs and error messages.
    item_ids: Original item id of internal item index i (0..N-1).
    item_fields: Text fields of item i, e.g. {"title": ..., "categories": ...}.
    user_ids: Original user id of row u.
    sequences: int32 internal item indices per user, oldest first.
    timestamps: Per user, the int64 time of each interaction (non-decreasing),
      for readers whose files have times (the time-split protocol needs them);
      None otherwise.
  """

  name: str
  item_ids: tuple[str, ...]
  item_fields: tuple[dict[str, str], ...]
  user_ids: tuple[str, ...]
  sequences: tuple[np.ndarray, ...]
  timestamps: tuple[np.ndarray, ...] | None = None

  @property
  def num_items(self) -> int:
    return len(self.item_ids)

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_interactions(self) -> int:
    return int(sum(len(s) for s in self.sequences))

  @property
  def field_names(self) -> tuple[str, ...]:
    """Sorted union of the text field names over all items."""
    names = set()
    for fields in self.item_fields:
      names.update(fields)
    return tuple(sorted(names))

  def stats(self) -> dict:
    """Counts and sequence-length summary, for logs and README tables."""
    return sequence_stats(np.array([len(s) for s in self.sequences], dtype=np.int64), self.num_items)

  def validate(self) -> "RecDataset":
    """Checks the invariants later stages rely on; returns self for chaining."""
    where = f"dataset {self.name!r}"
    if len(self.item_fields) != len(self.item_ids):
      raise JaxrecError(
          f"{where}: {len(self.item_ids)} item ids but "
          f"{len(self.item_fields)} item field dicts")
    if len(self.sequences) != len(self.user_ids):
      raise JaxrecError(
          f"{where}: {len(self.user_ids)} user ids but "
          f"{len(self.sequences)} sequences")
    if not self.item_ids:
      raise JaxrecError(f"{where}: has no items")
    if not self.user_ids:
      raise JaxrecError(f"{where}: has no users")
    _check_unique(self.item_ids, f"{where}: item id")
    _check_unique(self.user_ids, f"{where}: user id")
    for user_id, seq in zip(self.user_ids, self.sequences):
      _check_sequence(seq, self.num_items, f"{where}: user {user_id!r}")
    if self.timestamps is not None:
      if len(self.timestamps) != len(self.sequences):
        raise JaxrecError(f"{where}: {len(self.sequences)} sequences but {len(self.timestamps)} "
                          f"timestamp arrays")
      for user_id, seq, times in zip(self.user_ids, self.sequences, self.timestamps):
        if len(times) != len(seq) or np.any(np.diff(times) < 0):
          raise JaxrecError(f"{where}: user {user_id!r}: timestamps must be one per interaction, "
                            f"oldest first")
    return self


def sequence_stats(lengths: np.ndarray, num_items: int) -> dict:
  """RecDataset.stats() from every user's sequence length."""
  has_users = lengths.size > 0
  return {
      "users": int(lengths.size),
      "items": num_items,
      "interactions": int(lengths.sum()),
      "mean_seq_len": float(lengths.mean()) if has_users else 0.0,
      "median_seq_len": float(np.median(lengths)) if has_users else 0.0,
      "min_seq_len": int(lengths.min()) if has_users else 0,
      "max_seq_len": int(lengths.max()) if has_users else 0,
  }


@dataclasses.dataclass(frozen=True, eq=False)
class ItemCatalogue:
  """A dataset's items without its users' sequences: what a run holds when it streams the
  sequences from disk (config data.input='stream'). It reads like a RecDataset wherever
  only items are read (CEG's texts, the catalogue size, serving's titles).

  Attributes:
    name, item_ids, item_fields: as RecDataset's.
    user_stats: RecDataset.stats() of the whole dataset, from the pass that read the users.
  """

  name: str
  item_ids: tuple[str, ...]
  item_fields: tuple[dict[str, str], ...]
  user_stats: dict = dataclasses.field(default_factory=dict)

  @property
  def num_items(self) -> int:
    return len(self.item_ids)

  @property
  def field_names(self) -> tuple[str, ...]:
    return RecDataset.field_names.fget(self)

  def stats(self) -> dict:
    return {**self.user_stats, "items": self.num_items}

  def validate(self) -> "ItemCatalogue":
    """Checks what RecDataset.validate checks of the items; returns self for chaining."""
    where = f"dataset {self.name!r}"
    if len(self.item_fields) != len(self.item_ids):
      raise JaxrecError(f"{where}: {len(self.item_ids)} item ids but {len(self.item_fields)} item field dicts")
    if not self.item_ids:
      raise JaxrecError(f"{where}: has no items")
    _check_unique(self.item_ids, f"{where}: item id")
    return self


def _check_unique(ids: tuple[str, ...], what: str) -> None:
  if len(set(ids)) != len(ids):
    seen = set()
    for i in ids:
      if i in seen:
        raise JaxrecError(f"{what} {i!r} appears more than once")
      seen.add(i)


def _check_sequence(seq: np.ndarray, num_items: int, where: str) -> None:
  if not isinstance(seq, np.ndarray) or seq.ndim != 1:
    raise JaxrecError(f"{where}: sequence must be a 1-D numpy array")
  if seq.dtype != np.int32:
    raise JaxrecError(f"{where}: sequence dtype is {seq.dtype}, expected int32")
  if seq.size == 0:
    raise JaxrecError(f"{where}: sequence is empty")
  lo, hi = int(seq.min()), int(seq.max())
  if lo < 0 or hi >= num_items:
    bad = lo if lo < 0 else hi
    raise JaxrecError(
        f"{where}: item index {bad} outside 0..{num_items - 1}")


# Helpers shared by the readers, so their errors read alike.


def require_dir(path: str | os.PathLike, expected: str) -> pathlib.Path:
  """Returns path as a Path, or raises naming what the folder should hold."""
  folder = pathlib.Path(path)
  if not folder.is_dir():
    state = "is not a folder" if folder.exists() else "does not exist"
    raise JaxrecError(
        f"dataset folder {str(folder)!r} {state}; expected a folder with "
        f"{expected}")
  return folder


def require_file(folder: pathlib.Path, filename: str,
                 what: str) -> pathlib.Path:
  """Returns folder/filename, or raises naming the missing file."""
  file = folder / filename
  if not file.is_file():
    raise JaxrecError(f"{str(file)!r} not found; expected {what} there")
  return file


def snippet(row: str) -> str:
  """The row as a quoted string, truncated so error messages stay one line."""
  row = row.rstrip("\r\n")
  if len(row) > _SNIPPET_CHARS:
    row = row[:_SNIPPET_CHARS] + "..."
  return repr(row)


def sort_ids(ids) -> list[str]:
  """Numeric ids in numeric order ("2" < "10"), otherwise string order."""
  ids = list(ids)
  if all(_is_int(i) for i in ids):
    return sorted(ids, key=int)
  return sorted(ids)


def _is_int(text: str) -> bool:
  try:
    int(text)
  except ValueError:
    return False
  return True


def to_sequence(indices: list[int]) -> np.ndarray:
  """The int32 array form of one user's item indices."""
  return np.asarray(indices, dtype=np.int32)
