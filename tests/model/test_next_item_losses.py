"""Next-item losses and every negative mode against hand-computed references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.model.losses import candidates_softmax, full_softmax, in_batch_top1


def test_candidates_softmax_by_hand():
  u = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  v_pos = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  pos = jnp.array([3, 4])
  cand = jnp.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
  cand_tokens = jnp.array([4, 3, 9])                      # row 0: cand 1 is its own item
  ok = jnp.array([True, True, False])                      # the last candidate is unusable
  loss = candidates_softmax(u, v_pos, pos, jnp.array([True, True]), 2.0, cand, cand_tokens, ok)
  # Row 0: positive logit 2, negatives: cand 0 (logit 0); cand 1 masked (same item), cand 2 not ok.
  # Row 1: positive logit 2, negatives: cand 1 (logit 0); cand 0 masked.
  assert float(loss) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)


def test_logq_correction_by_hand():
  u = jnp.array([[1.0, 0.0]])
  v_pos = jnp.array([[1.0, 0.0]])
  cand = jnp.array([[0.5, 0.0], [0.0, 0.0]])
  loss = candidates_softmax(u, v_pos, jnp.array([1]), jnp.array([True]), 1.0, cand, jnp.array([2, 3]),
                            jnp.array([True, True]), pos_log_q=math.log(0.5),
                            cand_log_q=jnp.array([math.log(0.25), math.log(0.1)]))
  s_pos = 1.0 - math.log(0.5)
  s = [0.5 - math.log(0.25), 0.0 - math.log(0.1)]
  expected = -s_pos + math.log(math.exp(s_pos) + sum(math.exp(x) for x in s))
  assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_padding_positions_do_not_count():
  rng = np.random.default_rng(0)
  u = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  items = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  pos = jnp.array([1, 2, 3, 0])
  a = full_softmax(u, items, pos, pos > 0, 1.0)
  b = full_softmax(u[:3], items, pos[:3], pos[:3] > 0, 1.0)
  assert float(a) == pytest.approx(float(b), rel=1e-6)


@pytest.mark.parametrize("chunk", [1000, 7, 4])
def test_full_softmax_equals_brute_force(chunk):
  rng = np.random.default_rng(1)
  u = rng.normal(size=(5, 4)).astype(np.float32)
  items = rng.normal(size=(23, 4)).astype(np.float32)
  pos = np.array([1, 5, 23, 7, 0])
  mask = pos > 0
  scale = 3.0
  ref = []
  for p in range(4):
    logits = scale * items @ u[p]
    ref.append(np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[pos[p] - 1])
  got = full_softmax(jnp.asarray(u), jnp.asarray(items), jnp.asarray(pos), jnp.asarray(mask), scale, chunk)
  assert float(got) == pytest.approx(float(np.mean(ref)), rel=1e-5)


def test_chunked_full_softmax_gradient_matches_unchunked():
  rng = np.random.default_rng(2)
  u = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  items = jnp.asarray(rng.normal(size=(30, 4)), jnp.float32)
  pos = jnp.array([1, 2, 3, 30, 29, 0])
  f = lambda chunk: jax.grad(lambda u, it: full_softmax(u, it, pos, pos > 0, 2.0, chunk), (0, 1))(u, items)
  for a, b in zip(f(1000), f(8)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_in_batch_top1_matches_a_loop():
  rng = np.random.default_rng(4)
  P, d = 12, 6
  u, v = rng.normal(size=(P, d)).astype(np.float32), rng.normal(size=(P, d)).astype(np.float32)
  pos = rng.integers(1, 6, size=P)
  mask = rng.random(P) > 0.2
  for max_queries in (P, 5):
    hits = [all(u[p] @ v[p] > u[p] @ v[c] for c in range(P) if mask[c] and pos[c] != pos[p])
            for p in range(min(P, max_queries)) if mask[p]]
    got = in_batch_top1(jnp.asarray(u), jnp.asarray(v), jnp.asarray(pos), jnp.asarray(mask), max_queries)
    assert float(got) == pytest.approx(np.mean(hits))
