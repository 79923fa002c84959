import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.model.losses import dense_all_action_infonce


def reference_loss(u, v, hist, tgt, scale, mask_duplicates):
  """Eq. 1 of the paper, one positive pair at a time."""
  total, pairs = 0.0, 0
  B, Lh, Lt = u.shape[0], hist.shape[1], tgt.shape[1]
  for b in range(B):
    for i in range(Lh):
      if hist[b, i] == 0:
        continue
      for j in range(Lt):
        if tgt[b, j] == 0:
          continue
        pos = scale * float(u[b, i] @ v[b, j])
        negs = [scale * float(u[b, i] @ v[w, k]) for w in range(B) if w != b for k in range(Lt)
                if tgt[w, k] != 0 and not (mask_duplicates and tgt[w, k] == tgt[b, j])]
        logits = np.array([pos] + negs)
        total += -(pos - (np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()))
        pairs += 1
  return total / pairs


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_two_users_by_hand():
  u = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])
  v = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])
  tokens_h = jnp.array([[1], [2]])
  tokens_t = jnp.array([[3], [4]])
  loss, aux = dense_all_action_infonce(u, v, tokens_h, tokens_t, 1.0)
  # Each user: positive logit 1, one negative with logit 0.
  assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
  assert int(aux["pairs"]) == 2


@pytest.mark.parametrize("mask_duplicates", [False, True])
def test_matches_reference_with_padding_and_duplicates(mask_duplicates):
  rng = np.random.default_rng(0)
  B, Lh, Lt, d = 4, 5, 3, 8
  u = unit(rng.normal(size=(B, Lh, d))).astype(np.float32)
  v = unit(rng.normal(size=(B, Lt, d))).astype(np.float32)
  hist = rng.integers(1, 6, size=(B, Lh))
  tgt = rng.integers(1, 6, size=(B, Lt))     # few ids: duplicates across users
  hist[0, 3:] = 0
  hist[2, 1:] = 0
  tgt[1, 2:] = 0
  tgt[3, 1:] = 0
  loss, aux = dense_all_action_infonce(jnp.asarray(u), jnp.asarray(v), jnp.asarray(hist),
                                       jnp.asarray(tgt), 5.0, mask_duplicates)
  ref = reference_loss(u, v, hist, tgt, 5.0, mask_duplicates)
  assert float(loss) == pytest.approx(ref, rel=1e-5)
  assert int(aux["pairs"]) == int(((hist > 0).sum(1) * (tgt > 0).sum(1)).sum())


def test_duplicate_mask_changes_the_loss():
  """Guards against the mask being a no-op: same data, one shared id."""
  rng = np.random.default_rng(1)
  u = jnp.asarray(unit(rng.normal(size=(2, 1, 4))), jnp.float32)
  v = jnp.asarray(unit(rng.normal(size=(2, 2, 4))), jnp.float32)
  h, t = jnp.array([[1], [2]]), jnp.array([[7, 8], [7, 9]])
  a, _ = dense_all_action_infonce(u, v, h, t, 10.0, mask_duplicates=False)
  b, _ = dense_all_action_infonce(u, v, h, t, 10.0, mask_duplicates=True)
  assert float(a) != pytest.approx(float(b))


def test_gradient_is_finite_when_all_negatives_are_masked():
  u = jnp.asarray([[[1.0, 0.0]], [[0.0, 1.0]]])
  v = jnp.asarray([[[0.6, 0.8]], [[0.8, 0.6]]])
  h, t = jnp.array([[1], [2]]), jnp.array([[5], [5]])   # the only negative is the same item
  g = jax.grad(lambda u: dense_all_action_infonce(u, v, h, t, 20.0, True)[0])(u)
  assert np.all(np.isfinite(np.asarray(g)))


def test_top1_accuracy_matches_a_loop():
  rng = np.random.default_rng(3)
  B, Lh, Lt, d = 4, 3, 2, 8
  u = rng.normal(size=(B, Lh, d)).astype(np.float32)
  v = rng.normal(size=(B, Lt, d)).astype(np.float32)
  hist = rng.integers(0, 5, size=(B, Lh))
  tgt = rng.integers(0, 5, size=(B, Lt))
  hits, pairs = 0, 0
  for b in range(B):
    for i in range(Lh):
      for j in range(Lt):
        if hist[b, i] == 0 or tgt[b, j] == 0:
          continue
        negs = [u[b, i] @ v[w, k] for w in range(B) for k in range(Lt) if w != b and tgt[w, k] > 0]
        pairs += 1
        hits += all(u[b, i] @ v[b, j] > n for n in negs)
  _, aux = dense_all_action_infonce(jnp.asarray(u), jnp.asarray(v), jnp.asarray(hist), jnp.asarray(tgt), 5.0)
  assert float(aux["top1_acc"]) == pytest.approx(hits / pairs)
  assert 0 < hits < pairs   # the example is not degenerate
