"""Exact full-ranking evaluation on the device: HR@K, NDCG@K, Recall@K.

Every item of the catalogue is scored for every user (no sampled negatives);
the user's history items are excluded from the ranking (the target itself is
never excluded, so a repeat purchase can still be a hit). Users are processed
in fixed-size chunks, padded, so memory is bounded and nothing recompiles;
ranks are integers and metrics are averaged on the host in float64, so the
result does not depend on the chunk size.

Rank of a target = number of items that sort before it by (score descending,
item index ascending): ties are broken the way a stable top-k would, never in
the target's favour by accident.

Non-finite scores (a diverged model, damaged inputs) are the worst possible,
never hits: a NaN or inf score of another item ranks it below every finite
score, and a target whose own score is not finite gets rank `UNRANKED`, a
miss at every K. (Comparisons with NaN are all false, so without this a model
whose parameters are NaN put every target at the top: HR = NDCG = 1.0.)
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxrec import sharding
from jaxrec.data import batching
from jaxrec.model.towers import LearnTowers

DEFAULT_KS = (10, 50, 200)
UNRANKED = np.iinfo(np.int32).max   # rank of a target whose score is not finite: a miss


@functools.partial(jax.jit, static_argnums=0)
def _item_chunk(model: LearnTowers, params, tokens, content):
  return model.apply({"params": params}, tokens, content, method=LearnTowers.items)


@functools.partial(jax.jit, static_argnums=0)
def _user_chunk(model: LearnTowers, params, tokens, content):
  out = model.apply({"params": params}, tokens, content, method=LearnTowers.user)
  last = jnp.maximum(jnp.sum(tokens > 0, axis=1) - 1, 0)
  return jnp.take_along_axis(out, last[:, None, None], axis=1)[:, 0]


@jax.jit
def _rank_chunk(user_emb, item_emb, targets, exclude):
  """ranks [C, T] of targets [C, T] (-1 = padding) among all items; a target
  whose score is not finite gets UNRANKED, other non-finite scores rank last."""
  num_items = item_emb.shape[0]
  raw = user_emb @ item_emb.T                                     # [C, N]
  finite = jnp.isfinite(raw)
  scores = jnp.where(finite, raw, -jnp.inf)
  rows = jnp.arange(scores.shape[0])[:, None]
  excl = jnp.zeros((scores.shape[0], num_items + 1), bool)
  excl = excl.at[rows, jnp.where(exclude >= 0, exclude, num_items)].set(True)[:, :num_items]
  t = jnp.maximum(targets, 0)
  is_target = jnp.zeros_like(excl).at[rows, t].set(targets >= 0)
  scores = jnp.where(excl & ~is_target, -jnp.inf, scores)
  t_score = jnp.take_along_axis(scores, t, axis=1)                # [C, T]
  idx = jnp.arange(num_items)
  before = (scores[:, None, :] > t_score[..., None]) | (
      (scores[:, None, :] == t_score[..., None]) & (idx < t[..., None]))
  t_finite = jnp.take_along_axis(finite, t, axis=1)
  return jnp.where(t_finite, jnp.sum(before, axis=-1), UNRANKED)


def _chunks(n: int, chunk: int):
  for start in range(0, n, chunk):
    yield start, min(start + chunk, n)


def _pad_rows(x: np.ndarray, rows: int, fill) -> np.ndarray:
  if len(x) == rows:
    return x
  pad = np.full((rows - len(x),) + x.shape[1:], fill, x.dtype)
  return np.concatenate([x, pad])


def item_embeddings(model: LearnTowers, params, content, num_items: int, mesh: Mesh,
                    chunk: int = 1024) -> jnp.ndarray:
  """[num_items, d] embeddings of every item, each embedded alone."""
  chunk = _round_up(chunk, mesh.devices.size)
  tokens = np.arange(1, num_items + 1, dtype=np.int32)
  out = []
  for a, b in _chunks(num_items, chunk):
    tok = sharding.put_batch(_pad_rows(tokens[a:b], chunk, 0), mesh)
    out.append(_item_chunk(model, params, tok, content)[:b - a])
  return jnp.concatenate(out)


def user_embeddings(model: LearnTowers, params, content, histories: np.ndarray, mesh: Mesh,
                    chunk: int = 1024) -> jnp.ndarray:
  """[U, d] user embeddings: the last real position of the user tower."""
  chunk = _round_up(chunk, mesh.devices.size)
  out = []
  for a, b in _chunks(len(histories), chunk):
    tok = sharding.put_batch(_pad_rows(histories[a:b], chunk, 0), mesh)
    out.append(_user_chunk(model, params, tok, content)[:b - a])
  return jnp.concatenate(out)


def rank_targets(user_emb: jnp.ndarray, item_emb: jnp.ndarray, targets: np.ndarray,
                 exclude: np.ndarray, mesh: Mesh, chunk: int = 256) -> np.ndarray:
  """[U, T] integer ranks (0 = top) of each user's targets; -1 where padded."""
  chunk = _round_up(chunk, mesh.devices.size)
  targets = targets.reshape(len(targets), -1).astype(np.int32)
  item_emb = sharding.put_replicated(item_emb, mesh)
  ranks = []
  for a, b in _chunks(len(targets), chunk):
    u = sharding.put_batch(_pad_rows(np.asarray(user_emb[a:b]), chunk, 0), mesh)
    t = sharding.put_batch(_pad_rows(targets[a:b], chunk, -1), mesh)
    e = sharding.put_batch(_pad_rows(exclude[a:b], chunk, -1), mesh)
    ranks.append(np.asarray(_rank_chunk(u, item_emb, t, e))[:b - a])
  ranks = np.concatenate(ranks)
  return np.where(targets >= 0, ranks, -1)


def metrics_from_ranks(ranks: np.ndarray, ks=DEFAULT_KS) -> dict[str, float]:
  """HR@K (any target in top K), Recall@K (fraction of targets in top K) and
  NDCG@K (DCG over hits / ideal DCG), averaged over users; ranks [U, T], -1 = pad,
  UNRANKED = a miss at every K."""
  ranks = ranks.reshape(len(ranks), -1)
  valid = ranks >= 0
  n_targets = valid.sum(1)
  out = {}
  for k in ks:
    hit = valid & (ranks < k)
    gain = np.where(hit, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0).sum(1)
    ideal = np.array([sum(1.0 / math.log2(r + 2) for r in range(min(n, k))) for n in n_targets])
    out[f"HR@{k}"] = float(np.mean(hit.any(1)))
    out[f"Recall@{k}"] = float(np.mean(hit.sum(1) / np.maximum(n_targets, 1)))
    out[f"NDCG@{k}"] = float(np.mean(gain / np.maximum(ideal, 1e-12)))
  return out


def rank(model: LearnTowers, params, content, histories: tuple[np.ndarray, ...],
         targets: np.ndarray, *, max_history: int, mesh: Mesh,
         user_chunk: int = 256) -> np.ndarray:
  """[U, T] ranks of each user's targets among all items; all history items excluded."""
  items = item_embeddings(model, params, content, model.config.num_items, mesh)
  users = user_embeddings(model, params, content, batching.to_tokens(histories, max_history),
                          mesh, chunk=user_chunk)
  return rank_targets(users, items, targets, batching.pad_items(histories), mesh, chunk=user_chunk)


def evaluate(model: LearnTowers, params, content, histories: tuple[np.ndarray, ...],
             targets: np.ndarray, *, max_history: int, mesh: Mesh, ks=DEFAULT_KS,
             user_chunk: int = 256) -> dict[str, float]:
  """Full-ranking metrics for (history, target) pairs; all history items excluded."""
  return metrics_from_ranks(rank(model, params, content, histories, targets, max_history=max_history,
                                 mesh=mesh, user_chunk=user_chunk), ks)


# Paper Table 7: users grouped by how often their target item was seen in training.
COUNT_BUCKETS = ((0, 0), (1, 4), (5, 19), (20, None))


def target_count_groups(train: tuple[np.ndarray, ...], targets: np.ndarray,
                        num_items: int) -> dict[str, np.ndarray]:
  """{"0": mask, "1-4": ..., "5-19": ..., "20+": ...} over users, by the target's training count."""
  counts = np.bincount(np.concatenate(train), minlength=num_items)[np.asarray(targets).reshape(-1)]
  groups = {}
  for lo, hi in COUNT_BUCKETS:
    name = f"{lo}+" if hi is None else (f"{lo}" if lo == hi else f"{lo}-{hi}")
    groups[name] = (counts >= lo) & (counts <= (hi if hi is not None else counts.max(initial=0)))
  return groups


def metrics_by_group(ranks: np.ndarray, groups: dict[str, np.ndarray], ks=DEFAULT_KS) -> dict:
  """Metrics of each group of users (rows of `ranks`), with the group's size."""
  return {name: {"users": int(mask.sum()), **(metrics_from_ranks(ranks[mask], ks) if mask.any() else {})}
          for name, mask in groups.items()}


def popularity(train: tuple[np.ndarray, ...], histories: tuple[np.ndarray, ...],
               targets: np.ndarray, num_items: int, *, mesh: Mesh,
               ks=DEFAULT_KS) -> dict[str, float]:
  """The popularity baseline under the same protocol: items ranked by training
  count (ties by index), history excluded. A floor every model must clear."""
  return metrics_from_ranks(popularity_ranks(train, histories, targets, num_items, mesh=mesh), ks)


def popularity_ranks(train: tuple[np.ndarray, ...], histories: tuple[np.ndarray, ...],
                     targets: np.ndarray, num_items: int, *, mesh: Mesh) -> np.ndarray:
  counts = np.bincount(np.concatenate(train), minlength=num_items).astype(np.float32)
  return rank_targets(np.ones((len(targets), 1), np.float32), counts[:, None], targets,
                      batching.pad_items(histories), mesh)


def _round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple
