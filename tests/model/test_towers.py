import jax
import numpy as np
import pytest

from jaxrec.model.pch import attention_mask
from jaxrec.model.towers import LearnTowers, TowerConfig


def make(item_tower="causal", item_input="content", num_items=30):
  model = LearnTowers(TowerConfig(num_items=num_items, item_input=item_input, item_tower=item_tower,
                                  d_model=16, num_heads=2, mlp_dim=32, d_out=8, max_len=6, dropout=0.1))
  content = np.concatenate([np.zeros((1, 12)), np.random.default_rng(0).normal(size=(num_items, 12))])
  content = content.astype(np.float32)
  tok = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]], np.int32)
  params = model.init(jax.random.key(0), tok, tok, content)["params"]
  return model, params, content, tok


def test_attention_masks():
  valid = np.array([[True, True, False]])
  np.testing.assert_array_equal(attention_mask(valid, "causal")[0, 0],
                                [[1, 0, 0], [1, 1, 0], [1, 1, 0]])
  np.testing.assert_array_equal(attention_mask(valid, "diagonal")[0, 0], np.eye(3))


@pytest.mark.parametrize("item_input", ["content", "id"])
def test_user_tower_is_causal_and_unit_norm(item_input):
  model, params, content, tok = make(item_input=item_input)
  out = model.apply({"params": params}, tok, content, method=LearnTowers.user)
  changed = tok.copy()
  changed[1, 4:] = [20, 21]
  out2 = model.apply({"params": params}, changed, content, method=LearnTowers.user)
  np.testing.assert_allclose(out[1, :4], out2[1, :4], atol=1e-6)     # the past is unaffected
  assert not np.allclose(out[1, 4:], out2[1, 4:])                      # the future changes
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("item_tower", ["causal", "diagonal", "content"])
def test_single_item_path_equals_first_position(item_tower):
  """Serving embeds an item alone: that is position 0 of a sequence starting with it."""
  model, params, content, tok = make(item_tower=item_tower)
  seq = model.apply({"params": params}, tok, content, method=LearnTowers.item_sequence)
  alone = model.apply({"params": params}, tok[:, 0], content, method=LearnTowers.items)
  np.testing.assert_allclose(alone, seq[:, 0], atol=1e-6)


def test_diagonal_items_do_not_see_each_other():
  model, params, content, tok = make(item_tower="diagonal")
  seq = model.apply({"params": params}, tok, content, method=LearnTowers.item_sequence)
  changed = tok.copy()
  changed[1, 0] = 25
  seq2 = model.apply({"params": params}, changed, content, method=LearnTowers.item_sequence)
  np.testing.assert_allclose(seq[1, 1:], seq2[1, 1:], atol=1e-6)


def test_dropout_is_active_in_training_only():
  model, params, content, tok = make()
  a = model.apply({"params": params}, tok, tok, content, deterministic=False, rngs={"dropout": jax.random.key(1)})
  b = model.apply({"params": params}, tok, tok, content, deterministic=False, rngs={"dropout": jax.random.key(2)})
  c = model.apply({"params": params}, tok, tok, content)
  d = model.apply({"params": params}, tok, tok, content)
  assert not np.allclose(a[0], b[0])
  np.testing.assert_array_equal(c[0], d[0])


def make_cfg(**kw):
  base = dict(num_items=30, d_model=16, num_heads=2, mlp_dim=32, d_out=16, max_len=6, dropout=0.1)
  model = LearnTowers(TowerConfig(**{**base, **kw}))
  content = np.concatenate([np.zeros((1, 12)), np.random.default_rng(0).normal(size=(30, 12))]).astype(np.float32)
  tok = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]], np.int32)
  params = model.init(jax.random.key(0), tok, tok, content)["params"]
  return model, params, content, tok


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_packed_row_equals_separate_rows(norm):
  """Two users packed in one row (segments, restarted positions) = each user alone."""
  model, params, content, _ = make_cfg(item_input="id", norm=norm, init_std=0.02)
  a, b = [3, 4, 5], [7, 8]
  packed = np.array([a + b + [0]], np.int32)
  seg = np.array([[1, 1, 1, 2, 2, 0]], np.int32)
  pos = np.array([[0, 1, 2, 0, 1, 0]], np.int32)
  out = model.apply({"params": params}, packed, content, True, seg, pos, method=LearnTowers.user)
  alone = model.apply({"params": params}, np.array([a + [0] * 3, b + [0] * 4], np.int32), content,
                      method=LearnTowers.user)
  np.testing.assert_allclose(out[0, :3], alone[0, :3], atol=1e-5)
  np.testing.assert_allclose(out[0, 3:5], alone[1, :2], atol=1e-5)


@pytest.mark.parametrize("item_input", ["content", "id", "fusion"])
def test_tied_item_side_is_the_input_vector(item_input):
  model, params, content, tok = make_cfg(item_input=item_input, item_tower="input")
  v = model.apply({"params": params}, tok[1], content, method=LearnTowers.items)
  x = model.apply({"params": params}, tok[1], content, method=lambda m, t, c: m.item_input(t, c))
  np.testing.assert_allclose(v, x / np.linalg.norm(x, axis=-1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("adapter", ["linear", "whiten", "moe"])
@pytest.mark.parametrize("fusion", ["sum", "concat", "gate"])
def test_fusion_keeps_items_scorable_by_content(adapter, fusion):
  """With content in the input, an item's vector moves with its text, so an item
  no interaction has trained (cold) is still placed by its content."""
  model, params, content, tok = make_cfg(item_input="fusion", item_tower="input", adapter=adapter,
                                         fusion=fusion, adapter_experts=3)
  items = np.arange(1, 31, dtype=np.int32)
  v = model.apply({"params": params}, items, content, method=LearnTowers.items)
  assert np.all(np.isfinite(v)) and v.shape == (30, 16)
  changed = content.copy()
  changed[5] = changed[9]
  v2 = model.apply({"params": params}, items, changed, method=LearnTowers.items)
  assert not np.allclose(v[4], v2[4])
  np.testing.assert_allclose(np.delete(v, 4, 0), np.delete(v2, 4, 0), atol=1e-6)


def test_id_dropout_drops_whole_id_vectors_in_training_only():
  model, params, content, tok = make_cfg(item_input="fusion", item_tower="input", id_dropout=0.5,
                                         dropout=0.0)
  f = lambda det, key: model.apply({"params": params}, np.arange(1, 31), content, det,
                                   method=lambda m, t, c, d: m.item_input(t, c, d), rngs={"dropout": key})
  content_only = model.apply({"params": params}, np.arange(1, 31), content,
                             method=lambda m, t, c: m.item_input.content_vector(t, c))
  train_out = np.asarray(f(False, jax.random.key(0)))
  dropped = np.all(np.isclose(train_out, content_only, atol=1e-6), axis=1)
  assert 3 < dropped.sum() < 27                     # about half the items lost their whole ID vector
  np.testing.assert_allclose(f(True, jax.random.key(0)), f(True, jax.random.key(1)))


def test_pca_id_table():
  from jaxrec.model.item_input import pca_id_table
  content = np.concatenate([np.zeros((1, 12)), np.random.default_rng(0).normal(size=(30, 12))])
  table = pca_id_table(content, 8)
  assert table.shape == (31, 8) and np.all(table[0] == 0)
  assert table[1:].std() == pytest.approx(0.02, rel=1e-3)
  # The first component carries the most variance, as PCA's should.
  var = table[1:].var(0)
  assert var[0] == var.max()


def test_untied_item_tower_has_its_own_weights():
  model, params, content, tok = make_cfg(item_input="content", item_tower="causal", share_towers=False)
  assert "item_pch" in params and "pch" in params
  shared_model, shared_params, _, _ = make_cfg(item_input="content", item_tower="causal")
  assert "item_pch" not in shared_params
  # The item tower reads the item_pch weights: changing the user tower's leaves items alone.
  changed = jax.tree.map(lambda x: x, params)
  changed["pch"] = jax.tree.map(lambda x: x + 1.0, params["pch"])
  a = model.apply({"params": params}, tok[1], content, method=LearnTowers.items)
  b = model.apply({"params": changed}, tok[1], content, method=LearnTowers.items)
  np.testing.assert_allclose(a, b, atol=1e-6)
  u1 = model.apply({"params": params}, tok, content, method=LearnTowers.user)
  u2 = model.apply({"params": changed}, tok, content, method=LearnTowers.user)
  assert not np.allclose(u1, u2)
