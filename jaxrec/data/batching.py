"""Padded history/target batches for LEARN training and evaluation.

Batches hold *tokens*: item index + 1, with 0 as padding, right-padded. The
batch for a training step is a pure function of (seed, step), so a resumed run
sees exactly the batches an uninterrupted run would, and no input state needs
checkpointing. The sequences are small and in memory, which is why this is a
few lines of numpy rather than a grain pipeline.
"""

import numpy as np

PAD = 0
CUT_MODES = ("random", "last")


def to_tokens(seqs: list[np.ndarray] | tuple[np.ndarray, ...], length: int) -> np.ndarray:
  """[n, length] right-padded tokens of the *last* `length` items of each seq."""
  out = np.zeros((len(seqs), length), np.int32)
  for r, s in enumerate(seqs):
    s = np.asarray(s[-length:], np.int32)
    out[r, :len(s)] = s + 1
  return out


def cut_sequence(seq: np.ndarray, rng: np.random.Generator, max_history: int,
                 target_len: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
  """Cuts one training sequence into (history, targets), both non-empty.

  `random` draws the cut point uniformly, so across epochs every item serves
  both as history and as target (augmentation for short public sequences);
  `last` takes the last up-to-`target_len` items as targets, as in the paper's
  time split.
  """
  n = len(seq)
  if mode == "random":
    cut = int(rng.integers(1, n))
  elif mode == "last":
    cut = max(1, n - target_len)
  else:
    raise ValueError(f"unknown cut mode {mode!r}; valid: {CUT_MODES}")
  return seq[max(0, cut - max_history):cut], seq[cut:cut + target_len]


def steps_per_epoch(num_sequences: int, batch_size: int) -> int:
  """Full batches only: in-batch negatives want a fixed global batch."""
  return num_sequences // batch_size


def train_batch(train: tuple[np.ndarray, ...], step: int, *, batch_size: int,
                seed: int, max_history: int, target_len: int,
                mode: str) -> dict[str, np.ndarray]:
  """The batch of global step `step`: users shuffled per epoch, cuts per step."""
  per_epoch = steps_per_epoch(len(train), batch_size)
  epoch, k = divmod(step, per_epoch)
  order = np.random.default_rng([seed, epoch]).permutation(len(train))
  rng = np.random.default_rng([seed, epoch, k, 1])
  hist, tgt = [], []
  for u in order[k * batch_size:(k + 1) * batch_size]:
    h, t = cut_sequence(train[u], rng, max_history, target_len, mode)
    hist.append(h)
    tgt.append(t)
  return {"history": to_tokens(hist, max_history), "target": to_tokens(tgt, target_len)}
