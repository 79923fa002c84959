"""Leave-one-out split (HSTU / HLLM / RecBole protocol).

Per user: the last item is the test target, the second-to-last the validation
target, everything before is training. The validation history is the training
sequence; the test history is the training sequence plus the validation item.
"""

import dataclasses
import itertools

import numpy as np

from jaxrec.errors import JaxrecError


@dataclasses.dataclass(frozen=True)
class EvalSplit:
  """What one evaluation needs: a history and a target per user."""
  users: np.ndarray                    # [U] row index into the dataset's users
  histories: tuple[np.ndarray, ...]    # full history per user (all of it is excluded)
  targets: np.ndarray                  # [U] item index of the held-out item


@dataclasses.dataclass(frozen=True)
class LeaveOneOut:
  train: tuple[np.ndarray, ...]        # training sequences (users with >= 2 items)
  valid: EvalSplit
  test: EvalSplit
  num_dropped_users: int               # users with < 3 interactions (no split possible)


def leave_one_out(sequences: tuple[np.ndarray, ...]) -> LeaveOneOut:
  """Splits chronological sequences; users with fewer than 3 items are dropped."""
  users, train, valid_t, test_t, test_h = [], [], [], [], []
  for u, seq in enumerate(sequences):
    if len(seq) < 3:
      continue
    users.append(u)
    train.append(np.asarray(seq[:-2], np.int32))
    valid_t.append(seq[-2])
    test_t.append(seq[-1])
    test_h.append(np.asarray(seq[:-1], np.int32))
  if not users:
    raise JaxrecError("leave-one-out split: no user has the 3 interactions it needs")
  users = np.asarray(users, np.int32)
  return LeaveOneOut(
      train=tuple(s for s in train if len(s) >= 2),
      valid=EvalSplit(users, tuple(train), np.asarray(valid_t, np.int32)),
      test=EvalSplit(users, tuple(test_h), np.asarray(test_t, np.int32)),
      num_dropped_users=len(sequences) - len(users),
  )


@dataclasses.dataclass(frozen=True)
class TrainCounts:
  """How often each item occurs in the training sequences: the popularity baseline's scores,
  the target-count groups, and (as targets) the logQ correction's frequencies."""
  items: np.ndarray      # [N] occurrences anywhere in a training sequence
  targets: np.ndarray    # [N] occurrences as a training target (every position but the first)


def train_counts(train, num_items: int, chunk: int = 4096) -> TrainCounts:
  """TrainCounts of training sequences (any iterable, read once, `chunk` sequences at a time)."""
  items, targets = np.zeros(num_items, np.int64), np.zeros(num_items, np.int64)
  it = iter(train)
  while part := list(itertools.islice(it, chunk)):
    items += np.bincount(np.concatenate(part), minlength=num_items)
    targets += np.bincount(np.concatenate([s[1:] for s in part]), minlength=num_items)
  return TrainCounts(items, targets)


def hold_out_items(split: LeaveOneOut, num_items: int, fraction: float,
                   seed: int) -> tuple[LeaveOneOut, np.ndarray]:
  """Cold-item protocol: a seeded `fraction` of items never appears in training.

  Their interactions are removed from the training sequences (sequences left
  with < 2 items are dropped); validation and test are unchanged, so users
  whose held-out target is a cold item measure retrieval of unseen items.
  Returns the new split and the sorted cold item indices.
  """
  rng = np.random.default_rng([seed, 7])
  cold = np.sort(rng.choice(num_items, size=int(round(fraction * num_items)), replace=False))
  is_cold = np.zeros(num_items, bool)
  is_cold[cold] = True
  train = tuple(t for t in (s[~is_cold[s]] for s in split.train) if len(t) >= 2)
  if not train:
    raise JaxrecError(f"cold-item protocol: holding out {fraction:.0%} of items leaves no training sequence")
  return dataclasses.replace(split, train=train), cold.astype(np.int32)
