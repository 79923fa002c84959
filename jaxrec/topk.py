"""Exact scoring of users against a whole catalogue, in bounded memory: top-k and target ranks.

One pass over the items serves both evaluation (the rank of each user's
targets) and retrieval (the k best items per user). Users are processed in
fixed-size blocks; inside a block the items are scanned in chunks of
`item_chunk`, so the largest intermediate is [user block, item chunk], never
users x items: memory is O(items x d + user_chunk x (item_chunk + k)),
whatever the number of users. History exclusion uses each user's list of
item ids, scattered into the current chunk's mask; no users x items matrix.

Placement over the mesh axis `data` (`shard_items`):
- False: the item table is replicated, each device scores its share of the
  user block against every item.
- True: the item table is sharded (each device holds a contiguous slice, the
  table never exists whole on one device), every device scores the whole user
  block against its slice; counts are summed (psum) and per-device top-k
  lists are gathered and merged.

Order and ties: items sort by (score descending, item index ascending), the
order of a stable sort. `lax.top_k` is stable and chunks are merged in
ascending item order (running list first), so top-k follows that order
exactly; a target's rank counts the items that sort before it. Scores are
float32 dot products at `Precision.HIGHEST` (TPUs otherwise round matmul
inputs to bfloat16); equal means bitwise equal, as the scan computed them.
The target's score is needed before the scan reaches the target, so it is
estimated by a dot of the same shape and checked bitwise against the scan's
own; a block where they differ is counted again with the scan's scores
(`Block.rescored`), so a target and its duplicate tie exactly.

XLA rounds a float32 matmul according to its block shapes, so scores may
differ by an ulp between device counts, placements or chunk sizes; ids and
ranks then differ only where two items' scores are that close. On exactly
representable scores (integer-valued embeddings) every placement and chunk
size gives bitwise the same ids, scores and ranks (tests/test_topk.py).

Non-finite scores (a diverged model) are never recommended and rank below
every finite score; a target whose own score is not finite gets `UNRANKED`.
Excluded items are never returned; when fewer than k items remain, the tail
of a row is id -1, score -inf.

`approx_recall` in (0, 1) replaces the per-chunk exact top-k by
`jax.lax.approx_max_k` (fast on TPU; on CPU and GPU it has no speed-up and
weaker guarantees) with `reduction_input_size_override` = the catalogue size,
since each call sees only one chunk of it. Ranks are always exact.
"""

import functools
from collections.abc import Sequence
from typing import Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrec.errors import JaxrecError

UNRANKED = np.iinfo(np.int32).max   # rank of a target whose score is not finite: a miss
AXIS = "data"


class Block(NamedTuple):
  """Results for users [start, stop): top-k ids/scores [n, k] (None if k == 0), ranks [n, T]
  (None without targets); rescored: the block's ranks needed the second scan (see scan)."""
  start: int
  stop: int
  ids: np.ndarray | None
  scores: np.ndarray | None
  ranks: np.ndarray | None
  rescored: bool = False


def _dot(a, b):
  return lax.dot_general(a, b, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST,
                         preferred_element_type=jnp.float32)


def _mark(ids, lo, width):
  """[C, width] bool: which of items [lo, lo + width) appear in each row of ids [C, H] (-1 = none)."""
  rows = jnp.arange(ids.shape[0])[:, None]
  loc = ids - lo
  inside = (ids >= 0) & (loc >= 0) & (loc < width)
  mask = jnp.zeros((ids.shape[0], width + 1), bool)
  return mask.at[rows, jnp.where(inside, loc, width)].set(True)[:, :width]


def _approx_top(x, k, approx_recall, total):
  return lax.approx_max_k(x, k, recall_target=approx_recall,
                          reduction_input_size_override=total if total > x.shape[-1] else -1)


_GROUP = 64        # items per group on the shortlist path
_SHORTLIST = 32    # at most this many items of a chunk beat a row's k-th best: the shortlist path


def _chunk_top(m, thr, kk):
  """Exact top-kk (stable) of chunk scores m [C, B] as far as it can change top-k lists whose
  k-th scores are thr [C, 1]: a later item must beat thr strictly (ties go to lower ids).

  XLA's CPU top-k costs grow with k, so once the running lists are full and at most
  _SHORTLIST items of the chunk beat thr in every row, only the _SHORTLIST groups of
  _GROUP items with the highest maxima are searched (in ascending order, so ties still
  go to lower ids), for their top _SHORTLIST; the rest of the output is -inf. Every
  item that beats thr is in those groups, so the merged lists are exact either way.
  """
  c, b = m.shape
  if b % _GROUP or b // _GROUP <= _SHORTLIST or kk <= _SHORTLIST:
    return lax.top_k(m, kk)
  groups = m.reshape(c, b // _GROUP, _GROUP)
  n = _SHORTLIST * _GROUP

  def shortlist(_):
    gi = jnp.sort(lax.top_k(groups.max(-1), _SHORTLIST)[1], axis=1)
    vals = jnp.take_along_axis(groups, gi[..., None], axis=1).reshape(c, n)
    idx = (gi[..., None] * _GROUP + jnp.arange(_GROUP)).reshape(c, n)
    v, pos = lax.top_k(vals, _SHORTLIST)
    i = jnp.take_along_axis(idx, pos, axis=1)
    return (jnp.pad(v, ((0, 0), (0, kk - _SHORTLIST)), constant_values=-jnp.inf),
            jnp.pad(i, ((0, 0), (0, kk - _SHORTLIST))))

  few = jnp.max(jnp.sum(m > thr, axis=1)) <= _SHORTLIST
  return lax.cond(few, shortlist, lambda _: tuple(lax.top_k(m, kk)), None)


def _merge(v1, i1, v2, i2, k):
  """Top-k of two lists; on ties the first list (lower item ids) wins."""
  v, pos = lax.top_k(jnp.concatenate([v1, v2], 1), k)
  return v, jnp.take_along_axis(jnp.concatenate([i1, i2], 1), pos, axis=1)


def _same(a, b):
  """Bitwise equality of float32 arrays (NaN included)."""
  return lax.bitcast_convert_type(a, jnp.int32) == lax.bitcast_convert_type(b, jnp.int32)


def _estimate(u, tv, chunk):
  """[C, T] scores of users u [C, d] for their targets' embeddings tv [C, T, d], by a dot
  of the scan's shape [C, chunk] where they fit (XLA rounds by shape)."""
  c, t, d = tv.shape
  rows = tv.reshape(-1, d)
  if len(rows) <= chunk:
    rows = jnp.pad(rows, ((0, chunk - len(rows)), (0, 0)))
  return _dot(u, rows)[:, :c * t].reshape(c, c, t)[jnp.arange(c), jnp.arange(c)]


def _body(u, items, excl, tgt, ts_given, *, k, chunk, num_items, shard_items, approx_recall,
          with_ranks, given_ts):
  """Per device: ranks [C, T] and top-k of users u [C, d] over this device's items, the
  targets' scores as the scan computed them, and which users' ranks need a rerun."""
  c, n_local, d = u.shape[0], items.shape[0], items.shape[1]
  offset = lax.axis_index(AXIS) * n_local if shard_items else 0
  if given_ts or not with_ranks:
    ts = ts_given
  else:
    # The targets' scores are needed before the scan meets them, so they are estimated
    # by a dot of the same shape as the scan's; the scan then checks them bitwise.
    t = jnp.maximum(tgt, 0)
    own = (t >= offset) & (t < offset + n_local)
    tv = jnp.where(own[..., None], items[jnp.clip(t - offset, 0, n_local - 1)], 0.0)
    if shard_items:  # a sharded table is gathered by summing each device's own rows
      tv = lax.psum(tv, AXIS)
    ts = _estimate(u, tv, chunk)
  kk = min(k, chunk)

  def step(j, carry):
    cnt, seen, best_v, best_i = carry
    lo = offset + j * chunk
    s = _dot(u, lax.dynamic_slice_in_dim(items, j * chunk, chunk))      # [C, B]
    gidx = lo + jnp.arange(chunk)
    ok = (gidx < num_items) & jnp.isfinite(s)
    ex = _mark(excl, lo, chunk)
    if with_ranks:  # the targets themselves are never excluded
      counted = ok & ~(ex & ~_mark(tgt, lo, chunk))
      sv, tsv, tt = s[:, None, :], ts[..., None], tgt[..., None]
      before = (sv > tsv) | ((sv == tsv) & (gidx < tt))
      cnt = cnt + jnp.sum(counted[:, None, :] & before & (gidx != tt), axis=-1, dtype=jnp.int32)
      here = (tgt >= lo) & (tgt < lo + chunk)
      seen = jnp.where(here, jnp.take_along_axis(s, jnp.clip(tgt - lo, 0, chunk - 1), axis=1), seen)
    if k:
      m = jnp.where(ok & ~ex, s, -jnp.inf)
      v, i = (_approx_top(m, kk, approx_recall, num_items) if approx_recall > 0
              else _chunk_top(m, best_v[:, -1:], kk))
      best_v, best_i = _merge(best_v, best_i, v, i + lo, k)
    return cnt, seen, best_v, best_i

  init = (jnp.zeros(tgt.shape, jnp.int32), jnp.zeros(tgt.shape, jnp.float32),
          jnp.full((c, k), -jnp.inf, jnp.float32), jnp.full((c, k), -1, jnp.int32))
  cnt, seen, best_v, best_i = lax.fori_loop(0, n_local // chunk, step, init)
  if shard_items:
    cnt = lax.psum(cnt, AXIS)
    seen = lax.psum(seen, AXIS)   # one device holds each target, the others add exact zeros
    if k:  # device order = ascending item ranges, so the stable merge keeps index order
      best_v = lax.all_gather(best_v, AXIS, axis=1, tiled=True)
      best_i = lax.all_gather(best_i, AXIS, axis=1, tiled=True)
      best_v, pos = lax.top_k(best_v, k)
      best_i = jnp.take_along_axis(best_i, pos, axis=1)
  ranks = jnp.where(jnp.isfinite(ts), cnt, UNRANKED)
  stale = jnp.any(~_same(seen, ts) & (tgt >= 0), axis=1)
  return ranks, jnp.where(best_v == -jnp.inf, -1, best_i), best_v, seen, stale


@functools.lru_cache(maxsize=32)
def _compiled(mesh: Mesh, **static):
  users = P() if static["shard_items"] else P(AXIS)
  items = P(AXIS) if static["shard_items"] else P()
  fn = jax.shard_map(functools.partial(_body, **static), mesh=mesh,
                     in_specs=(users, items, users, users, users), out_specs=(users,) * 5,
                     check_vma=False)
  return jax.jit(fn), NamedSharding(mesh, users), NamedSharding(mesh, items)


def pad_rows(x: np.ndarray, rows: int, fill) -> np.ndarray:
  """x padded with `fill` to `rows` rows (fixed block shapes: nothing recompiles)."""
  if len(x) == rows:
    return x
  return np.concatenate([x, np.full((rows - len(x),) + x.shape[1:], fill, x.dtype)])


def pad_lists(lists, rows: int) -> np.ndarray:
  """[rows, W] the 1-D id lists, -1 padded, W their longest length rounded up to a power of two:
  a block's exclusion lists cost what its longest needs, and a few widths compile."""
  width = max(1, max((len(x) for x in lists), default=1))
  out = np.full((rows, 1 << (width - 1).bit_length()), -1, np.int32)
  for r, x in enumerate(lists):
    out[r, :len(x)] = x
  return out


def round_up(x: int, multiple: int) -> int:
  return -(-x // multiple) * multiple


def scan(user_emb, item_emb, *, mesh: Mesh, k: int = 0, exclude: np.ndarray | Sequence | None = None,
         targets: np.ndarray | None = None, user_chunk: int = 256, item_chunk: int = 8192,
         shard_items: bool = False, approx_recall: float = 0.0) -> Iterator[Block]:
  """Yields a Block per user block: top-k ([n, k], if k > 0) and target ranks ([n, T], if targets).

  user_emb [U, d], item_emb [N, d] (host or device arrays); exclude: item ids
  never recommended, [U, H] (-1 = padding) or a sequence of U 1-D arrays (padded
  block by block, `pad_lists`: one long list costs only its block); a user's
  targets are never excluded from its ranks; targets [U] or [U, T] (-1 =
  padding, rank -1). A generator, so callers can consume results block by block
  in bounded memory.
  """
  num_items, d = item_emb.shape
  if k < 0 or k > num_items:
    raise JaxrecError(f"top-k wants k={k} of {num_items} items; use 0 <= k <= the catalogue size")
  if not 0.0 <= approx_recall < 1.0:
    raise JaxrecError(f"approx_recall={approx_recall} must be in [0, 1) (0 = exact top-k)")
  n_users = len(user_emb)
  n_dev = mesh.devices.size
  if exclude is None or isinstance(exclude, np.ndarray):
    exclude = np.full((n_users, 1), -1, np.int32) if exclude is None else np.asarray(exclude, np.int32)
    exclude = exclude.reshape(n_users, -1)
    exclude_block = lambda a, b, rows: pad_rows(exclude[a:b], rows, -1)
  else:
    if len(exclude) != n_users:
      raise JaxrecError(f"top-k: {len(exclude)} exclusion lists for {n_users} users")
    exclude_block = lambda a, b, rows: pad_lists(exclude[a:b], rows)
  with_ranks = targets is not None
  tgt = (np.asarray(targets, np.int32).reshape(n_users, -1) if with_ranks
         else np.full((n_users, 1), -1, np.int32))
  # Items: padded to a whole number of chunks per device; padded rows are never scored.
  per_dev = -(-num_items // n_dev) if shard_items else num_items
  chunk = max(1, min(item_chunk, per_dev))
  n_local = round_up(per_dev, chunk)
  total = n_local * (n_dev if shard_items else 1)
  static = dict(chunk=chunk, num_items=num_items, shard_items=shard_items, with_ranks=with_ranks)
  fn, user_sharding, item_sharding = _compiled(mesh, k=k, approx_recall=float(approx_recall),
                                               given_ts=False, **static)
  rescore = _compiled(mesh, k=0, approx_recall=0.0, given_ts=True, **static)[0]
  items = jnp.asarray(item_emb, jnp.float32)
  if total != num_items:
    items = jnp.pad(items, ((0, total - num_items), (0, 0)))
  items = jax.device_put(items, item_sharding)
  block = user_chunk if shard_items else round_up(user_chunk, n_dev)
  for a in range(0, n_users, block):
    b = min(a + block, n_users)
    u = pad_rows(np.asarray(user_emb[a:b], np.float32), block, 0.0)
    args = [jax.device_put(x, user_sharding) for x in
            (u, exclude_block(a, b, block), pad_rows(tgt[a:b], block, -1),
             np.zeros((block, tgt.shape[1]), np.float32))]
    ranks, ids, scores, seen, stale = jax.device_get(fn(args[0], items, *args[1:]))
    rescored = bool(stale.any())
    if rescored:  # an estimated target score differed from the scan's: count again with the scan's
      ranks, _, _, _, stale = jax.device_get(
          rescore(args[0], items, args[1], args[2], jax.device_put(seen, user_sharding)))
      if stale.any():
        raise JaxrecError("full ranking: a target's score changed between two identical scans "
                          "(non-deterministic matmul); report this with the device and jax version")
    yield Block(a, b, ids[:b - a] if k else None, scores[:b - a] if k else None,
                np.where(tgt[a:b] >= 0, ranks[:b - a], -1) if with_ranks else None, rescored)


def top_k(user_emb, item_emb, k: int, exclude: np.ndarray | None = None, *, mesh: Mesh,
          user_chunk: int = 256, item_chunk: int = 8192, shard_items: bool = False,
          approx_recall: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """(ids [U, k] int32, scores [U, k] float32) of each user's k best items, best first.

  Exact (unless approx_recall > 0), excluded ids never returned, ties by
  lower item id; rows with fewer than k eligible items end in (-1, -inf).
  Holds all U x k results; use `scan` to stream them.
  """
  blocks = list(scan(user_emb, item_emb, mesh=mesh, k=k, exclude=exclude, user_chunk=user_chunk,
                     item_chunk=item_chunk, shard_items=shard_items, approx_recall=approx_recall))
  if not blocks:
    return np.zeros((0, k), np.int32), np.zeros((0, k), np.float32)
  return np.concatenate([b.ids for b in blocks]), np.concatenate([b.scores for b in blocks])


def recall_against(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
  """Share of the exact top-k ids (ignoring -1) that an approximate top-k also returned."""
  hits = total = 0
  for a, e in zip(approx_ids, exact_ids):
    e = e[e >= 0]
    hits += np.isin(e, a).sum()
    total += len(e)
  return float(hits / max(total, 1))
