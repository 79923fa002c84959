"""Time split (LEARN's industrial protocol), for datasets with timestamps.

One cut time for everyone (a quantile of all interaction times): what came
before it is history, what came after are targets. Evaluation users are a
seeded sample of the users active on both sides of the cut, disjoint from the
training users (as LEARN's test users), split into validation and test users.
Training sees only interactions before the cut, and only of training users,
so no future interaction and no evaluated user leaks into training.

An evaluated user's targets are its first `target_len` distinct items after
the cut that are not in its history (history items are excluded from the
ranking, so they could never be hit). Metrics are those of
`evaluate.metrics_from_ranks` on [users, target_len] ranks: HR@K is LEARN's
H@K (at least one target in the top K), Recall@K its R@K (the fraction of
targets in the top K); LEARN reports K = 50 and 100.
"""

import dataclasses

import numpy as np

from jaxrec.data.splits import EvalSplit
from jaxrec.errors import JaxrecError

PAD = -1                  # padding of a user's target row


@dataclasses.dataclass(frozen=True)
class TimeSplit:
  train: tuple[np.ndarray, ...]        # training users' sequences before the cut (>= 2 items)
  valid: EvalSplit                     # targets [U, target_len], PAD-padded
  test: EvalSplit
  num_dropped_users: int               # users neither trained on nor evaluated
  cut_time: int                        # interactions at or after this time are targets


def time_split(sequences: tuple[np.ndarray, ...], timestamps: tuple[np.ndarray, ...] | None, *,
               cut_quantile: float, valid_users: float, test_users: float, target_len: int,
               seed: int = 0) -> TimeSplit:
  """Splits chronological sequences at the `cut_quantile` of all interaction times."""
  if timestamps is None:
    raise JaxrecError("data.protocol='time_split' needs interaction timestamps, and this dataset has "
                      "none (MovieLens and Amazon Books have them); use data.protocol='leave_one_out'")
  cut = int(np.quantile(np.concatenate(timestamps), cut_quantile, method="higher"))
  before = [int(np.searchsorted(t, cut, side="left")) for t in timestamps]
  targets = [_targets(s[:b], s[b:], target_len) for s, b in zip(sequences, before)]
  eligible = np.array([b > 0 and len(t) > 0 for b, t in zip(before, targets)])
  pool = np.flatnonzero(eligible)
  rng = np.random.default_rng([seed, 11])
  pool = rng.permutation(pool)
  n_valid, n_test = int(round(valid_users * len(pool))), int(round(test_users * len(pool)))
  if n_valid == 0 or n_test == 0:
    raise JaxrecError(f"time split at the {cut_quantile} quantile: {len(pool)} users are active on both "
                      f"sides of the cut, too few for valid_users={valid_users} and test_users={test_users}; "
                      f"move data.cut_quantile or raise the fractions")
  valid_ids, test_ids = np.sort(pool[:n_valid]), np.sort(pool[n_valid:n_valid + n_test])
  evaluated = np.zeros(len(sequences), bool)
  evaluated[valid_ids] = evaluated[test_ids] = True
  train = tuple(np.asarray(s[:b], np.int32) for s, b, e in zip(sequences, before, evaluated)
                if not e and b >= 2)
  if not train:
    raise JaxrecError(f"time split at the {cut_quantile} quantile leaves no training user with 2 "
                      f"interactions before the cut; raise data.cut_quantile")
  def eval_split(ids: np.ndarray) -> EvalSplit:
    rows = np.full((len(ids), target_len), PAD, np.int32)
    for r, u in enumerate(ids):
      rows[r, :len(targets[u])] = targets[u]
    return EvalSplit(ids.astype(np.int32), tuple(np.asarray(sequences[u][:before[u]], np.int32) for u in ids),
                     rows)
  return TimeSplit(train=train, valid=eval_split(valid_ids), test=eval_split(test_ids),
                   num_dropped_users=len(sequences) - len(train) - n_valid - n_test, cut_time=cut)


def _targets(history: np.ndarray, after: np.ndarray, target_len: int) -> np.ndarray:
  """The first `target_len` distinct items after the cut that the history does not hold."""
  seen, out = set(history.tolist()), []
  for item in after.tolist():
    if item not in seen:
      seen.add(item)
      out.append(item)
      if len(out) == target_len:
        break
  return np.asarray(out, np.int32)
