import math

import jax
import numpy as np
import pytest

from jaxrec import evaluate, sharding
from jaxrec.model.towers import LearnTowers, TowerConfig


def test_metrics_by_hand():
  # Ranks (0 = top) of one target per user.
  ranks = np.array([[0], [9], [10], [49], [199], [200]])
  m = evaluate.metrics_from_ranks(ranks, ks=(10, 50, 200))
  assert m["HR@10"] == pytest.approx(2 / 6)
  assert m["HR@50"] == pytest.approx(4 / 6)
  assert m["HR@200"] == pytest.approx(5 / 6)
  assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(11)) / 6)
  assert m["NDCG@50"] == pytest.approx((1 + 1 / math.log2(11) + 1 / math.log2(12) + 1 / math.log2(51)) / 6)
  assert m["Recall@50"] == m["HR@50"]


def test_multi_target_metrics_by_hand():
  ranks = np.array([[0, 3, -1], [20, 1, 2]])      # user 0: 2 targets, user 1: 3
  m = evaluate.metrics_from_ranks(ranks, ks=(10,))
  assert m["HR@10"] == 1.0
  assert m["Recall@10"] == pytest.approx((2 / 2 + 2 / 3) / 2)
  dcg0, idcg0 = 1 + 1 / math.log2(5), 1 + 1 / math.log2(3)
  dcg1, idcg1 = 1 / math.log2(3) + 1 / math.log2(4), 1 + 1 / math.log2(3) + 1 / math.log2(4)
  assert m["NDCG@10"] == pytest.approx((dcg0 / idcg0 + dcg1 / idcg1) / 2)


def test_rank_excludes_history_and_breaks_ties_by_index():
  mesh = sharding.make_mesh(1)
  items = np.array([[1.0, 0], [0.9, 0.1], [0.8, 0.2], [1.0, 0], [0.0, 1.0]], np.float32)
  users = np.array([[1.0, 0], [1.0, 0], [0.0, 1.0]], np.float32)
  targets = np.array([1, 3, 4])
  exclude = np.array([[0, -1], [-1, -1], [4, 2]])       # user 2's target is in its history
  ranks = evaluate.rank_targets(users, items, targets, exclude, mesh, chunk=2)
  # user 0: item 0 excluded, item 3 scores 1.0 > 0.9 -> rank 1.
  # user 1: item 3 ties item 0 (lower index first) -> rank 1.
  # user 2: the target is never excluded -> rank 0.
  np.testing.assert_array_equal(ranks[:, 0], [1, 1, 0])


def _model_and_params(num_items=50, item_input="id"):
  model = LearnTowers(TowerConfig(num_items=num_items, item_input=item_input, d_model=16,
                                  num_heads=2, mlp_dim=32, d_out=16, max_len=8, dropout=0.0))
  content = None
  if item_input == "content":
    content = np.concatenate([np.zeros((1, 12)), np.random.default_rng(0).normal(size=(num_items, 12))]).astype(np.float32)
  tok = np.ones((2, 8), np.int32)
  params = model.init(jax.random.key(0), tok, tok, content)["params"]
  return model, params, content


def test_results_do_not_depend_on_chunk_size():
  model, params, content = _model_and_params(item_input="content")
  rng = np.random.default_rng(3)
  histories = tuple(rng.choice(50, size=rng.integers(1, 12), replace=False) for _ in range(37))
  targets = rng.integers(0, 50, size=37)
  mesh = sharding.make_mesh(1)
  a = evaluate.evaluate(model, params, content, histories, targets, max_history=8, mesh=mesh,
                        ks=(1, 5, 10), user_chunk=5)
  b = evaluate.evaluate(model, params, content, histories, targets, max_history=8, mesh=mesh,
                        ks=(1, 5, 10), user_chunk=64)
  assert a == b
  assert 0.0 < a["HR@10"] < 1.0


@pytest.mark.parametrize("mesh_size,shard_items", [(1, False), (8, False), (8, True)])
def test_ranks_do_not_depend_on_how_many_users_the_host_reads_at_once(monkeypatch, mesh_size, shard_items):
  """Users are read, embedded and ranked HOST_USERS at a time (the host memory of an evaluation);
  with chunks of a few device blocks the ranks equal one chunk's (user_chunk=3 is no multiple of
  8 devices: the chunks are multiples of both the embedding blocks (8) and the scan's (3 or 8))."""
  model, params, content = _model_and_params(item_input="content")
  rng = np.random.default_rng(5)
  # History lengths spread so that blocks pad their exclusion lists to different widths.
  histories = tuple(rng.choice(50, size=rng.integers(1, 40), replace=False) for _ in range(43))
  targets = rng.integers(0, 50, size=43)
  mesh = sharding.make_mesh(mesh_size)
  kw = dict(max_history=8, mesh=mesh, user_chunk=3, shard_items=shard_items)
  whole = evaluate.rank(model, params, content, histories, targets, **kw)
  counts = rng.integers(0, 9, size=50)
  pop_whole = evaluate.popularity_ranks(counts, histories, targets, mesh=mesh)
  chunks = []
  monkeypatch.setattr(evaluate, "HOST_USERS", 10)
  real = evaluate.rank_targets
  monkeypatch.setattr(evaluate, "rank_targets", lambda u, i, t, *a, **k: chunks.append(len(t)) or real(u, i, t, *a, **k))
  np.testing.assert_array_equal(evaluate.rank(model, params, content, histories, targets, **kw), whole)
  assert len(chunks) > 1 and max(chunks) <= 24                  # 10 users rounded up to blocks of 3 or 8
  np.testing.assert_array_equal(evaluate.popularity_ranks(counts, histories, targets, mesh=mesh), pop_whole)
  assert (whole >= 0).all() and len(set(whole[:, 0].tolist())) > 5


def test_eight_devices_equal_one():
  model, params, content = _model_and_params(item_input="id")
  rng = np.random.default_rng(4)
  histories = tuple(rng.choice(50, size=rng.integers(1, 12), replace=False) for _ in range(29))
  targets = rng.integers(0, 50, size=29)
  kw = dict(max_history=8, ks=(1, 5, 10), user_chunk=16)
  one = evaluate.evaluate(model, params, content, histories, targets, mesh=sharding.make_mesh(1), **kw)
  eight = evaluate.evaluate(model, params, content, histories, targets, mesh=sharding.make_mesh(8), **kw)
  assert one == eight


def test_popularity_baseline_by_hand():
  train = (np.array([0, 1, 1]), np.array([1, 2, 2, 2]))
  # Counts: item 0: 1, item 1: 3, item 2: 3, item 3: 0; the 1-2 tie goes to the lower index.
  histories = (np.array([1]), np.array([3]))
  targets = np.array([2, 0])
  m = evaluate.popularity(train, histories, targets, 4, mesh=sharding.make_mesh(1), ks=(1, 2))
  # user 0: item 1 excluded; order 2, 0, 3 -> target 2 at rank 0.
  # user 1: item 3 excluded; order 1, 2, 0 -> target 0 at rank 2.
  assert m["HR@1"] == 0.5 and m["HR@2"] == 0.5


def test_non_finite_scores_are_misses_never_hits():
  mesh = sharding.make_mesh(1)
  items = np.array([[1.0, 0], [np.nan, 0], [0.5, 0], [np.inf, 0], [0.1, 0]], np.float32)
  users = np.array([[1.0, 0], [1.0, 0], [1.0, 0], [np.nan, np.nan]], np.float32)
  targets = np.array([[2], [1], [3], [0]])
  exclude = np.full((4, 1), -1)
  ranks = evaluate.rank_targets(users, items, targets, exclude, mesh)[:, 0]
  # user 0: the NaN and inf items rank below every finite score -> rank 1.
  # users 1, 2: the target's own score is NaN / inf -> a miss (UNRANKED).
  # user 3: every score is NaN -> a miss, not the top (index order) rank.
  np.testing.assert_array_equal(ranks, [1, evaluate.UNRANKED, evaluate.UNRANKED, evaluate.UNRANKED])
  m = evaluate.metrics_from_ranks(ranks[:, None], ks=(1, 2, 5))
  assert m["HR@5"] == m["Recall@5"] == 0.25
  assert m["HR@1"] == 0.0 and m["NDCG@5"] == pytest.approx(0.25 / math.log2(3))


def test_nan_parameters_score_zero_not_one():
  model, params, content = _model_and_params(item_input="id")
  nan_params = jax.tree.map(lambda p: np.full_like(p, np.nan), params)
  rng = np.random.default_rng(5)
  histories = tuple(rng.choice(50, size=rng.integers(1, 12), replace=False) for _ in range(20))
  targets = rng.integers(0, 50, size=20)
  m = evaluate.evaluate(model, nan_params, content, histories, targets, max_history=8,
                        mesh=sharding.make_mesh(1), ks=(1, 10, 200))
  assert all(v == 0.0 for v in m.values()), m


def test_partial_users_is_a_fixed_seeded_sorted_subset():
  a = evaluate.partial_users(1000, 50, seed=7)
  assert len(a) == 50 and len(set(a)) == 50 and (np.diff(a) > 0).all() and a.max() < 1000
  np.testing.assert_array_equal(a, evaluate.partial_users(1000, 50, seed=7))
  assert not np.array_equal(a, evaluate.partial_users(1000, 50, seed=8))
  np.testing.assert_array_equal(evaluate.partial_users(30, 0, seed=7), np.arange(30))
  np.testing.assert_array_equal(evaluate.partial_users(30, 30, seed=7), np.arange(30))


def test_item_chunk_and_sharded_items_do_not_change_metrics():
  model, params, content = _model_and_params(item_input="id")
  rng = np.random.default_rng(6)
  histories = tuple(rng.choice(50, size=rng.integers(1, 12), replace=False) for _ in range(29))
  targets = rng.integers(0, 50, size=29)
  kw = dict(max_history=8, ks=(1, 5, 10), user_chunk=16)
  base = evaluate.evaluate(model, params, content, histories, targets, mesh=sharding.make_mesh(1), **kw)
  for n, options in [(1, dict(item_chunk=7)), (8, dict(shard_items=True, item_chunk=3)),
                     (4, dict(shard_items=True))]:
    assert evaluate.evaluate(model, params, content, histories, targets, mesh=sharding.make_mesh(n),
                             **kw, **options) == base


def test_ranks_in_top_k_by_hand():
  ids = np.array([[4, 2, 7], [1, -1, -1]])
  ranks = evaluate.ranks_in_top_k(ids, np.array([[7, 5, -1], [1, 4, 2]]))
  np.testing.assert_array_equal(ranks, [[2, evaluate.UNRANKED, -1], [0, evaluate.UNRANKED, evaluate.UNRANKED]])


def test_approx_path_ranks_are_exact_ranks_within_max_k_on_cpu():
  rng = np.random.default_rng(7)
  users = rng.integers(-3, 4, (40, 4)).astype(np.float32)
  items = rng.integers(-3, 4, (300, 4)).astype(np.float32)
  targets = rng.integers(0, 300, 40)
  exclude = rng.integers(-1, 300, (40, 10))
  targets[:3] = (users[:3] @ items.T).argmax(1)        # rank 0 ...
  exclude[:3, 0] = targets[:3]                         # ... and in the history: still ranked
  mesh = sharding.make_mesh(1)
  exact = evaluate.rank_targets(users, items, targets, exclude, mesh)
  approx = evaluate.rank_targets(users, items, targets, exclude, mesh, approx_recall=0.9, max_k=20)
  # CPU's approx_max_k is the exact top-k (jax 0.10.2), so every rank below max_k is found;
  # on TPU only about recall_target of them would be.
  np.testing.assert_array_equal(approx, np.where(exact < 20, exact, evaluate.UNRANKED))
  np.testing.assert_array_equal(approx[:3, 0], [0, 0, 0])
