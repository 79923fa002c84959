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
