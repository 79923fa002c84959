"""The configured objectives on a tiny model: each negative mode against a numpy
reference computed from the model's own vectors, and 8 devices against 1."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import objectives, sharding, train
from jaxrec.config import base_config
from jaxrec.data import packing
from jaxrec.model.towers import LearnTowers

NUM_ITEMS = 20


def setup(negatives, item_input="fusion", **loss):
  c = base_config()
  c.loss.objective, c.loss.negatives, c.loss.num_sampled = "next_item", negatives, 7
  for k, v in loss.items():
    c.loss[k] = v
  c.model.item_input, c.model.item_tower = item_input, "input"
  c.model.d_model = c.model.d_out = 8
  c.model.num_heads, c.model.num_layers, c.model.mlp_dim = 2, 1, 16
  c.data.max_history = c.data.target_len = 6
  model = LearnTowers(train.tower_config(c, NUM_ITEMS))
  content = jnp.asarray(train.prepare_content(np.random.default_rng(0).normal(size=(NUM_ITEMS, 5)), "l2"))
  params = train.init_params(model, c, content)
  rng = np.random.default_rng(1)
  seqs = tuple(rng.integers(0, NUM_ITEMS, size=n) for n in (4, 6, 3, 7, 2, 5))
  batch = packing.batch(packing.pack(seqs, 6), 0, batch_size=4, seed=0)
  return c, model, params, content, batch


def reference(c, model, params, content, batch, log_q, rng):
  """The loss from scratch in numpy: per supervised position, -log softmax of the positive."""
  towers = {"params": params["towers"]}
  drop_rng, neg_rng = jax.random.split(rng)
  u = np.asarray(model.apply(towers, batch["inputs"], content, False, batch["segments"], batch["positions"],
                             method=LearnTowers.user, rngs={"dropout": drop_rng})).reshape(-1, 8)
  table = np.asarray(model.apply(towers, jnp.arange(NUM_ITEMS + 1), content, method=LearnTowers.items))
  pos = batch["targets"].reshape(-1)
  mask = batch["supervised"].reshape(-1) & (pos > 0)
  scale = math.exp(float(params["log_scale"]))
  sampled = np.asarray(jax.random.randint(neg_rng, (c.loss.num_sampled,), 1, NUM_ITEMS + 1))
  n_valid = mask.sum()
  losses = []
  for p in np.flatnonzero(mask):
    if c.loss.negatives == "full":
      logits = scale * table[1:] @ u[p]
      losses.append(np.log(np.exp(logits).sum()) - logits[pos[p] - 1])
      continue
    corr = lambda tok: (math.log(n_valid) + log_q[tok]) if c.loss.logq else 0.0
    s_pos = scale * table[pos[p]] @ u[p] - (corr(pos[p]) if c.loss.negatives != "sampled" else 0.0)
    negs = []
    if c.loss.negatives in ("in_batch", "mixed"):
      negs += [scale * table[pos[q]] @ u[p] - corr(pos[q]) for q in np.flatnonzero(mask) if pos[q] != pos[p]]
    if c.loss.negatives in ("sampled", "mixed"):
      k = math.log(c.loss.num_sampled / NUM_ITEMS) if c.loss.negatives == "mixed" and c.loss.logq else 0.0
      negs += [scale * table[t] @ u[p] - k for t in sampled if t != pos[p]]
    all_ = np.array([s_pos] + negs)
    losses.append(np.log(np.exp(all_ - all_.max()).sum()) + all_.max() - s_pos)
  return float(np.mean(losses))


@pytest.mark.parametrize("negatives,logq", [("full", True), ("in_batch", True), ("in_batch", False),
                                            ("sampled", True), ("mixed", True), ("mixed", False)])
def test_negative_modes_match_reference(negatives, logq):
  c, model, params, content, batch = setup(negatives, logq=logq)
  rng_seqs = np.random.default_rng(5)
  log_q = np.log(rng_seqs.dirichlet(np.ones(NUM_ITEMS + 1))).astype(np.float32)
  rng = jax.random.key(3)
  loss, aux = objectives.next_item_loss(params, batch, content, rng, model=model, lc=c.loss, log_q=log_q)
  assert float(loss) == pytest.approx(reference(c, model, params, content, batch, log_q, rng), rel=1e-4)
  assert int(aux["pairs"]) == int(batch["supervised"].sum())


def test_item_log_q_counts_training_targets():
  lq = objectives.item_log_q((np.array([0, 1, 1]), np.array([2, 1])), 4)
  np.testing.assert_allclose(np.exp(lq[1:3]), [0.0, 1.0], atol=1e-6)   # item 0 is never a target
  assert lq[0] == 0.0


@pytest.mark.parametrize("negatives", ["full", "in_batch", "mixed"])
def test_eight_devices_equal_one(negatives):
  c, model, params, content, batch = setup(negatives)
  log_q = objectives.item_log_q((np.arange(NUM_ITEMS),), NUM_ITEMS)
  fn = jax.value_and_grad(objectives.make_loss_fn(c, model, log_q), has_aux=True)
  rng = jax.random.key(0)
  out = {}
  for n in (1, 8):
    mesh = sharding.make_mesh(n)
    batch8 = {k: np.concatenate([v, v]) for k, v in batch.items()}      # 8 rows: divisible by 8
    step = jax.jit(fn, in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh),
                                     sharding.replicated(mesh), None))
    (loss, _), grads = step(params, batch8, content, rng)
    out[n] = (float(loss), jax.tree.leaves(grads))
  assert out[1][0] == pytest.approx(out[8][0], rel=1e-5)
  for a, b in zip(out[1][1], out[8][1]):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


@pytest.mark.parametrize("negatives", ["in_batch", "sampled", "mixed"])
def test_padding_positions_give_finite_gradients(negatives):
  """Content through the whitening adapter maps the zero padding row to 0, whose L2 norm has a
  NaN gradient: padded positions (and a batch's empty filler rows) must not reach it."""
  c, model, params, content, batch = setup(negatives, item_input="content")
  c.model.adapter = "whiten"
  model = LearnTowers(train.tower_config(c, NUM_ITEMS))
  params = train.init_params(model, c, content)
  batch = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in batch.items()}   # empty filler rows
  fn = objectives.make_loss_fn(c, model, objectives.item_log_q((np.arange(NUM_ITEMS),), NUM_ITEMS))
  (loss, _), grads = jax.value_and_grad(fn, has_aux=True)(params, batch, content, jax.random.key(0))
  assert np.isfinite(float(loss))
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
