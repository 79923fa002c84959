"""Next-item training input streamed by a grain pipeline: its memory is flat in the number of users.

The same rows as `packing` (sliding windows, several users' windows packed
into rows of `max_history`), but never all of them at once:

    MapDataset.range(users).shuffle(seed)       a lazy seeded permutation of the users
    MapDataset.range(0, users, block_users)     fixed blocks of that permutation
      .map(read the block's sequences)          one bulk read from the source (any random-access
                                                sequence, e.g. a lazy view of a TFDS `users` split)
      .map(pack the block's windows)            packed rows of one block

One pass at construction counts each block's rows (a few ints per block); an
epoch then orders the blocks by a permutation seeded by (seed, epoch), shuffles
the rows of each window of `mix_blocks` consecutive blocks together, and cuts
the resulting row stream into batches (the last one filled with empty rows).
Every training target is supervised exactly once per epoch, steps per epoch are
the same every epoch, and a batch needs only the blocks it covers: memory holds
the block counts plus at most two windows of `mix_blocks * block_users` users
(measured: experiments/bench_grain_input.py). Building it packs every block
once to count rows (as long as one epoch). Training wraps `batch` in
`prefetch.Prefetched`, which packs the next two steps' batches on a worker
thread while the device runs the current one.

Shuffle: users are assigned to blocks once (grain's lazy index shuffle, seeded),
the block order is a global permutation per (seed, epoch), and rows are mixed
across `mix_blocks` blocks, so a batch draws from mix_blocks random blocks of
random users; it is not a permutation of all rows (that would need them all).

Checkpointable by construction from the step number, not grain's
`get_state`/`set_state`: the batch of step s is a pure function of (seed, s)
and the source, so the step the training checkpoint already stores is the
whole iterator state, resuming costs packing one or two windows of blocks, and
the training loop's `batch_at(step)` contract (and checkpoint format) stays as
the in-memory input has it.
"""

import functools
from collections.abc import Sequence

import grain
import numpy as np

from jaxrec.data import packing

BLOCK_USERS = 1024         # users packed together (packing efficiency grows with it)
MIX_BLOCKS = 8             # blocks whose rows are shuffled together (batch diversity)
_FIELDS = ("inputs", "targets", "supervised", "segments", "positions")


class LeaveOneOutTrain(Sequence):
  """Lazy training sequences (all but the last two items) of a `users` split data source.

  Leave-one-out's training sequence without reading every user first; users
  with fewer than 4 items give a sequence with no window, as in `splits`.
  """

  def __init__(self, users_source):
    self._source = users_source

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, i):
    return self._train(self._source[i])

  def __getitems__(self, indices: list[int]) -> list[np.ndarray]:
    return [self._train(r) for r in self._source.__getitems__(indices)]

  @staticmethod
  def _train(record) -> np.ndarray:
    items = np.asarray(record["items"], np.int32)
    return items[:-2] if len(items) >= 3 else items[:0]


def _seed(*parts: int) -> int:
  return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _read(train, indices: list[int]) -> list[np.ndarray]:
  """The sequences at `indices`: one bulk read when the source has one (array_record: ~4x faster)."""
  if hasattr(train, "__getitems__"):
    return train.__getitems__(indices)
  return [train[i] for i in indices]


def _pack_block(seqs: list[np.ndarray], **kwargs) -> packing.PackedRows:
  return packing.pack(tuple(s for s in seqs if len(s) >= 2), **kwargs)


class GrainInput:
  """step -> batch of next-item rows, streamed from `train` (see the module docstring)."""

  def __init__(self, train: Sequence[np.ndarray], *, max_history: int, batch_size: int, seed: int,
               objective: str = "next_item", pack: bool = True, stride: int = 0,
               block_users: int = BLOCK_USERS, mix_blocks: int = MIX_BLOCKS):
    self.batch_size, self.seed, self.max_history, self.mix_blocks = batch_size, seed, max_history, mix_blocks
    n = len(train)
    users = grain.MapDataset.range(n).shuffle(seed=_seed(seed, 1))      # lazy: O(1) memory
    self.blocks = (grain.MapDataset.range(0, n, block_users)
                   .map(lambda start: _read(train, [users[i] for i in range(start, min(start + block_users, n))]))
                   .map(functools.partial(_pack_block, max_history=max_history, objective=objective,
                                          pack_rows=pack, stride=stride)))
    # By index, not by iterating: the MapDataset iterator's prefetch thread adds nothing here.
    self.block_rows = np.array([self.blocks[b].num_rows for b in range(len(self.blocks))], np.int64)
    self.num_rows = int(self.block_rows.sum())
    self.steps_per_epoch = -(-self.num_rows // batch_size)
    self._epoch = None               # (epoch, windows of blocks, prefix sums of their rows)
    self._cache = {}                 # window -> its shuffled rows (at most two kept)

  def _order(self, epoch: int):
    if self._epoch is None or self._epoch[0] != epoch:
      perm = np.random.default_rng([self.seed, epoch, 5]).permutation(len(self.blocks))
      windows = [perm[i:i + self.mix_blocks] for i in range(0, len(perm), self.mix_blocks)]
      starts = np.concatenate([[0], np.cumsum([self.block_rows[w].sum() for w in windows])])
      self._epoch, self._cache = (epoch, windows, starts), {}
    return self._epoch

  def _window_rows(self, epoch: int, j: int) -> dict[str, np.ndarray]:
    if j not in self._cache:
      _, windows, _ = self._order(epoch)
      parts = [self.blocks[int(b)] for b in windows[j]]
      rows = {f: np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS}
      order = np.random.default_rng([self.seed, epoch, j, 6]).permutation(len(rows["inputs"]))
      self._cache = {k: v for k, v in self._cache.items() if k == j - 1}
      self._cache[j] = {f: a[order] for f, a in rows.items()}
    return self._cache[j]

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """The batch of global step `step` (any order of calls; sequential calls reuse packed blocks)."""
    epoch, k = divmod(step, self.steps_per_epoch)
    _, _, starts = self._order(epoch)
    lo, hi = k * self.batch_size, min((k + 1) * self.batch_size, self.num_rows)
    parts = []
    j = int(np.searchsorted(starts, lo, side="right")) - 1
    while lo < hi:
      rows, end = self._window_rows(epoch, j), int(starts[j + 1])
      take = slice(lo - int(starts[j]), min(hi, end) - int(starts[j]))
      parts.append({f: a[take] for f, a in rows.items()})
      lo, j = min(hi, end), j + 1
    out = {}
    for f in _FIELDS:
      dtype = bool if f == "supervised" else np.int32
      a = np.concatenate([p[f] for p in parts]) if parts else np.zeros((0, self.max_history), dtype)
      pad = np.zeros((self.batch_size - len(a), self.max_history), a.dtype)
      out[f] = np.concatenate([a, pad])
    return out
