"""The ScaNN index: exact reference, tuning to a target recall, mutation, persistence."""

import json

import numpy as np
import pytest

from jaxrec.errors import JaxrecError
from jaxrec.serving import index as index_lib
from jaxrec.serving.index import IndexSettings, ItemIndex


def _data(n, d=16, seed=0, clusters=0):
  rng = np.random.default_rng(seed)
  if clusters:
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n + 200)] + 0.2 * rng.normal(size=(n + 200, d))
  else:
    x = rng.normal(size=(n + 200, d))
  x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
  return x[:n], x[n:], [f"item{i}" for i in range(n)]


def test_exact_top_k_matches_full_sort_across_chunks():
  items, queries, _ = _data(1000)
  idx, scores = index_lib.exact_top_k(queries[:20], items, 10, chunk=77)
  full = queries[:20] @ items.T
  want = np.argsort(-full, axis=1, kind="stable")[:, :10]
  np.testing.assert_array_equal(idx, want)
  np.testing.assert_allclose(scores, np.take_along_axis(full, want, 1), rtol=1e-6)


def test_small_catalogue_is_exact_brute_force():
  items, queries, ids = _data(500)
  index = ItemIndex.build(items, ids, queries, IndexSettings(recall_k=50))
  assert index.params["mode"] == "brute_force"
  assert index.report["recall"] == 1.0
  assert "brute_force_below" in index.report["why"]


def test_unclustered_vectors_need_tuning_and_the_tuner_reaches_the_target():
  items, queries, ids = _data(6000, d=32)
  s = IndexSettings(recall_k=20, brute_force_below=1000, target_recall=0.95, num_leaves=60)
  index = ItemIndex.build(items, ids, queries, s)
  grid = index.report["grid"]
  assert grid[0]["recall"] < 0.8          # the cheapest fixed setting is far off the target
  if index.report["target_reached"]:
    assert index.params["mode"] == "tree_ah"
    assert index.report["recall"] >= 0.95
  else:                                   # it says so and serves exact search
    assert index.params["mode"] == "brute_force" and "no tree/AH setting" in index.report["why"]
    assert index.report["recall"] == 1.0


def test_upsert_updates_in_place_delete_removes_and_save_load_keeps_both(tmp_path):
  items, queries, ids = _data(3000, clusters=30)
  index = ItemIndex.build(items, ids, queries, IndexSettings(recall_k=10, brute_force_below=1000,
                                                             num_leaves=30))
  new = -items[:2]                                   # far from everything else
  index.upsert(["brand-new", "item5"], new)
  assert index.size() == 3001                        # item5 updated, not duplicated
  assert index.search(new[0], 1)[0][0] == ["brand-new"]
  assert index.search(new[1], 1)[0][0] == ["item5"]
  index.upsert(["brand-new"], new[:1])               # again: still one copy
  assert index.size() == 3001
  index.delete(["item7"])
  with pytest.raises(JaxrecError, match="not in the index"):
    index.delete(["nope"])
  index.save(tmp_path / "idx")
  assert not list(tmp_path.glob("idx/*.pkl"))       # no pickled docids
  loaded = ItemIndex.load(tmp_path / "idx")
  assert loaded.size() == 3000 and "item7" not in loaded and "brand-new" in loaded
  assert loaded.params == index.params
  assert loaded.search(new[0], 1)[0][0] == ["brand-new"]
  assert loaded.search_ids(queries[:5], 10) == index.search_ids(queries[:5], 10)


def test_damaged_index_file_is_one_clear_error(tmp_path):
  items, queries, ids = _data(300)
  ItemIndex.build(items, ids, queries).save(tmp_path / "idx")
  (tmp_path / "idx" / "dataset.npy").write_bytes(b"garbage")
  with pytest.raises(JaxrecError, match="damaged"):
    ItemIndex.load(tmp_path / "idx")
  meta = json.loads((tmp_path / "idx" / "index.json").read_text())
  assert "files" in meta
