"""Exact full-ranking evaluation on the device: HR@K, NDCG@K, Recall@K.

Every item of the catalogue is scored for every user (no sampled negatives);
the user's history items are excluded from the ranking (the target itself is
never excluded, so a repeat purchase can still be a hit). Users are read
HOST_USERS at a time (histories may be lazy views of a dataset on disk) and
sent to the device in fixed-size blocks, padded, so memory is bounded; a block
pads its exclusion lists to its own longest history rounded up to a power of
two (topk.pad_lists), so a few shapes compile, not one per block;
and each block is scanned over the items in chunks (jaxrec/topk.py), so no
users x items matrix exists and the item table may be replicated or sharded
over the mesh (config eval.shard_items); ranks are integers and metrics are
averaged on the host in float64, so the result depends on neither chunk size
nor device count (up to XLA's float32 rounding of a score by block shape,
which can only swap items whose scores are an ulp apart; see topk.py). `partial_users` picks the fixed seeded subset of users that
training's periodic validation uses (config eval.partial_users).

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
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxrec import sharding
from jaxrec import topk
from jaxrec.data import batching, splits
from jaxrec.model.towers import LearnTowers

DEFAULT_KS = (10, 50, 200)
UNRANKED = topk.UNRANKED   # rank of a target whose score is not finite: a miss


@functools.partial(jax.jit, static_argnums=0)
def _item_chunk(model: LearnTowers, params, tokens, content):
  return model.apply({"params": params}, tokens, content, method=LearnTowers.items)


@functools.partial(jax.jit, static_argnums=0)
def _user_chunk(model: LearnTowers, params, tokens, content):
  out = model.apply({"params": params}, tokens, content, method=LearnTowers.user)
  last = jnp.maximum(jnp.sum(tokens > 0, axis=1) - 1, 0)
  return jnp.take_along_axis(out, last[:, None, None], axis=1)[:, 0]


def _chunks(n: int, chunk: int):
  for start in range(0, n, chunk):
    yield start, min(start + chunk, n)


def item_embeddings(model: LearnTowers, params, content, num_items: int, mesh: Mesh,
                    chunk: int = 1024) -> jnp.ndarray:
  """[num_items, d] embeddings of every item, each embedded alone."""
  chunk = topk.round_up(chunk, mesh.devices.size)
  tokens = np.arange(1, num_items + 1, dtype=np.int32)
  out = []
  for a, b in _chunks(num_items, chunk):
    tok = sharding.put_batch(topk.pad_rows(tokens[a:b], chunk, 0), mesh)
    out.append(_item_chunk(model, params, tok, content)[:b - a])
  return jnp.concatenate(out)


def user_embeddings(model: LearnTowers, params, content, histories: np.ndarray, mesh: Mesh,
                    chunk: int = 1024) -> jnp.ndarray:
  """[U, d] user embeddings: the last real position of the user tower."""
  chunk = topk.round_up(chunk, mesh.devices.size)
  out = []
  for a, b in _chunks(len(histories), chunk):
    tok = sharding.put_batch(topk.pad_rows(histories[a:b], chunk, 0), mesh)
    out.append(_user_chunk(model, params, tok, content)[:b - a])
  return jnp.concatenate(out)


def rank_targets(user_emb, item_emb, targets: np.ndarray, exclude, mesh: Mesh,
                 chunk: int = 256, *, item_chunk: int = 8192, shard_items: bool = False,
                 approx_recall: float = 0.0, max_k: int = max(DEFAULT_KS)) -> np.ndarray:
  """[U, T] integer ranks (0 = top) of each user's targets; -1 where padded.

  `exclude`: the item ids each user never gets, [U, H] (-1 padded) or one 1-D
  array a user (topk.scan pads those block by block). Exact (topk.scan: items
  scanned in chunks of `item_chunk`, the item table replicated or sharded over
  the mesh). With approx_recall > 0 the ranks come
  from an approximate top-`max_k` list instead (`lax.approx_max_k`): a target
  outside it is UNRANKED, so only metrics at K <= max_k are meaningful.
  """
  targets = np.asarray(targets).reshape(len(targets), -1).astype(np.int32)
  kw = dict(mesh=mesh, user_chunk=chunk, item_chunk=item_chunk, shard_items=shard_items)
  if approx_recall > 0:
    ids, _ = topk.top_k(user_emb, item_emb, min(max_k, item_emb.shape[0]),
                        _without_targets(exclude, targets), approx_recall=approx_recall, **kw)
    return ranks_in_top_k(ids, targets)
  return np.concatenate([b.ranks for b in topk.scan(user_emb, item_emb, targets=targets,
                                                    exclude=exclude, **kw)] or [targets])


def _without_targets(exclude, targets: np.ndarray):
  """The exclusion lists with each user's own targets removed (targets are never excluded)."""
  if not isinstance(exclude, np.ndarray):          # one 1-D list a user
    return tuple(np.asarray(e)[~np.isin(e, t)] for e, t in zip(exclude, targets))
  exclude = np.asarray(exclude, np.int32).reshape(len(exclude), -1)
  is_target = (exclude[:, :, None] == targets[:, None, :]).any(-1)
  return np.where(is_target, -1, exclude)


def ranks_in_top_k(ids: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """[U, T] position of each target in the top-k lists ids [U, k]; UNRANKED if absent, -1 if padded."""
  targets = np.asarray(targets).reshape(len(targets), -1)
  found = ids[:, None, :] == targets[:, :, None]                  # [U, T, k]
  ranks = np.where(found.any(-1), found.argmax(-1), UNRANKED)
  return np.where(targets >= 0, ranks, -1)


def eval_options(eval_config) -> dict:
  """Keyword arguments of rank/evaluate/rank_targets from a config's `eval` section."""
  return dict(item_chunk=eval_config.item_chunk, shard_items=eval_config.shard_items,
              approx_recall=eval_config.approx_recall, max_k=max(eval_config.ks))


def partial_users(num_users: int, size: int, seed: int) -> np.ndarray:
  """Sorted indices of a fixed seeded subset of `size` users (all users if size is 0 or >= num_users).

  Periodic validation on this subset is cheap and, being the same users every
  time, comparable across steps; the final validation and test use everyone.
  """
  if size <= 0 or size >= num_users:
    return np.arange(num_users)
  return np.sort(np.random.default_rng(seed).choice(num_users, size, replace=False))


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


def rank(model: LearnTowers, params, content, histories: Sequence[np.ndarray],
         targets: np.ndarray, *, max_history: int, mesh: Mesh,
         user_chunk: int = 256, **options) -> np.ndarray:
  """[U, T] ranks of each user's targets among all items; all history items excluded.

  `histories` is any sequence of arrays (a tuple, or a lazy view that reads them
  from disk, `data.stream_split`): users are read `HOST_USERS` at a time.
  `options`: item_chunk, shard_items, approx_recall, max_k of rank_targets."""
  items = item_embeddings(model, params, content, model.config.num_items, mesh)
  def rank_chunk(hist, tgt):
    users = user_embeddings(model, params, content, batching.to_tokens(hist, max_history), mesh,
                            chunk=user_chunk)
    return rank_targets(users, items, tgt, hist, mesh, chunk=user_chunk, **options)
  return by_user_chunks(rank_chunk, histories, targets, round_up_users=_device_block(user_chunk, mesh))


def _device_block(user_chunk: int, mesh: Mesh) -> int:
  """Users in a multiple of both blocks that meet the device: user_embeddings' (user_chunk rounded up
  to the devices) and topk.scan's (the same, or user_chunk itself with sharded items)."""
  return math.lcm(topk.round_up(user_chunk, mesh.devices.size), user_chunk)


# Users read, embedded and ranked together: bounds the host memory of an evaluation (their
# histories, tokens and embeddings) whatever the number of users.
HOST_USERS = 16384


def by_user_chunks(fn, histories: Sequence[np.ndarray], targets: np.ndarray, *,
                   round_up_users: int = 1) -> np.ndarray:
  """fn(histories tuple, targets) over consecutive chunks of about HOST_USERS users, concatenated.

  The chunk is a multiple of `round_up_users` (the device block), so users meet the
  device in the same blocks as in one call and the ranks do not depend on the chunking.
  """
  targets = np.asarray(targets)
  chunk = topk.round_up(HOST_USERS, max(1, round_up_users))
  parts = [fn(tuple(histories[a:b]), targets[a:b]) for a, b in _chunks(len(targets), chunk)]
  return np.concatenate(parts) if parts else np.zeros((0, 1), np.int32)


def evaluate(model: LearnTowers, params, content, histories: tuple[np.ndarray, ...],
             targets: np.ndarray, *, max_history: int, mesh: Mesh, ks=DEFAULT_KS,
             user_chunk: int = 256, **options) -> dict[str, float]:
  """Full-ranking metrics for (history, target) pairs; all history items excluded."""
  return metrics_from_ranks(rank(model, params, content, histories, targets, max_history=max_history,
                                 mesh=mesh, user_chunk=user_chunk, **options), ks)


# Paper Table 7: users grouped by how often their target item was seen in training.
COUNT_BUCKETS = ((0, 0), (1, 4), (5, 19), (20, None))


def target_count_groups(item_counts: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
  """{"0": mask, "1-4": ..., "5-19": ..., "20+": ...} over users, by the target's training count
  (`item_counts`: splits.train_counts(...).items)."""
  counts = np.asarray(item_counts)[np.asarray(targets).reshape(-1)]
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
  counts = splits.train_counts(train, num_items).items
  return metrics_from_ranks(popularity_ranks(counts, histories, targets, mesh=mesh), ks)


def popularity_ranks(item_counts: np.ndarray, histories: Sequence[np.ndarray],
                     targets: np.ndarray, *, mesh: Mesh) -> np.ndarray:
  """`popularity`'s ranks, from the training count of every item (read chunk by chunk, as `rank`)."""
  scores = np.asarray(item_counts, np.float32)[:, None]
  return by_user_chunks(
      lambda hist, tgt: rank_targets(np.ones((len(tgt), 1), np.float32), scores, tgt, hist, mesh),
      histories, targets, round_up_users=_device_block(256, mesh))
