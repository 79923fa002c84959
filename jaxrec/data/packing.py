"""Next-item training input: sliding windows over every training sequence, packed into rows.

Every training interaction but a sequence's first is a next-item target once
per epoch. A sequence longer than `max_history` + 1 is cut into windows of
`max_history` inputs that overlap (by half unless `stride` says otherwise):
each window supervises only the targets the previous window did not, so every
target is seen exactly once and with at least max_history - stride items of
context (all of it in the first window). With `objective="last"` only each user's final target is supervised
(the official LEARN fine-tuning objective).

Windows are packed into rows of `max_history` positions (best-fit
decreasing, once): most users' sequences on public data are far shorter than
the cap, and packing several into a row (attention kept inside each segment,
positions restarting per segment) removes most of the padding a one-user-per-row
batch would compute on. The rows are fixed; their order is reshuffled each
epoch, and the batch of a step is a pure function of (seed, step), so resumed
training sees exactly the batches an uninterrupted run would.
"""

import dataclasses

import numpy as np

OBJECTIVES = ("next_item", "last")


def windows(seq: np.ndarray, max_history: int, objective: str = "next_item", stride: int = 0
            ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """(inputs, targets, supervised) item-index windows of one sequence (len >= 2).

  Consecutive windows end `stride` targets apart (0 = max_history // 2), so a
  supervised target has at least max_history - stride items of context.
  """
  n = len(seq)
  if objective == "last":
    start = max(0, n - 1 - max_history)
    sup = np.zeros(n - 1 - start, bool)
    sup[-1] = True
    return [(seq[start:n - 1], seq[start + 1:], sup)]
  out, prev_end, end = [], 0, min(max_history, n - 1)     # targets are seq[1..n-1]
  stride = min(max_history, stride) if stride > 0 else max(1, max_history // 2)
  while True:
    start = end - min(max_history, end)                  # inputs seq[start:end], targets seq[start+1:end+1]
    sup = np.arange(start + 1, end + 1) > prev_end
    out.append((seq[start:end], seq[start + 1:end + 1], sup))
    if end == n - 1:
      return out
    prev_end, end = end, min(end + stride, n - 1)


@dataclasses.dataclass(frozen=True)
class PackedRows:
  """[R, L] arrays; tokens are item index + 1 with 0 = padding."""
  inputs: np.ndarray
  targets: np.ndarray
  supervised: np.ndarray      # bool: this position's target counts in the loss
  segments: np.ndarray        # 1.. per window in the row, 0 = padding
  positions: np.ndarray       # position inside the window

  @property
  def num_rows(self) -> int:
    return len(self.inputs)


def pack(train: tuple[np.ndarray, ...], max_history: int, objective: str = "next_item",
         pack_rows: bool = True, stride: int = 0) -> PackedRows:
  """Windows of every sequence, packed best-fit decreasing into rows of max_history."""
  wins = [w for s in train if len(s) >= 2
          for w in windows(np.asarray(s), max_history, objective, stride)]
  lengths = np.array([len(w[0]) for w in wins])
  rows = []                                   # window ids per row
  by_room = [[] for _ in range(max_history + 1)]   # rows with exactly that much room left
  for i in np.argsort(-lengths, kind="stable"):
    n = int(lengths[i])
    room = next((r for r in range(n, max_history + 1) if by_room[r]), None) if pack_rows else None
    if room is None:
      rows.append([i])
      by_room[max_history - n].append(len(rows) - 1)
    else:
      r = by_room[room].pop()
      rows[r].append(i)
      by_room[room - n].append(r)
  shape = (len(rows), max_history)
  out = {k: np.zeros(shape, np.int32) for k in ("inputs", "targets", "segments", "positions")}
  sup = np.zeros(shape, bool)
  for r, ids in enumerate(rows):
    at = 0
    for seg, i in enumerate(ids, 1):
      x, y, s = wins[i]
      n = len(x)
      out["inputs"][r, at:at + n] = x + 1
      out["targets"][r, at:at + n] = y + 1
      out["segments"][r, at:at + n] = seg
      out["positions"][r, at:at + n] = np.arange(n)
      sup[r, at:at + n] = s
      at += n
  return PackedRows(supervised=sup, **out)


def steps_per_epoch(rows: PackedRows, batch_size: int) -> int:
  """Every row once per epoch; the last batch is filled with empty rows."""
  return -(-rows.num_rows // batch_size)


def batch(rows: PackedRows, step: int, *, batch_size: int, seed: int) -> dict[str, np.ndarray]:
  """The batch of global step `step`: rows reshuffled per epoch, padded with empty rows."""
  per_epoch = steps_per_epoch(rows, batch_size)
  epoch, k = divmod(step, per_epoch)
  order = np.random.default_rng([seed, epoch, 2]).permutation(rows.num_rows)
  take = order[k * batch_size:(k + 1) * batch_size]
  out = {}
  for name in ("inputs", "targets", "supervised", "segments", "positions"):
    a = getattr(rows, name)[take]
    if len(take) < batch_size:
      a = np.concatenate([a, np.zeros((batch_size - len(take),) + a.shape[1:], a.dtype)])
    out[name] = a
  return out
