"""Contrastive losses: LEARN's dense all-action InfoNCE and next-item softmaxes.

Dense all-action InfoNCE with in-batch negatives (LEARN eq. 1, PinnerFormer).

For user b, history position i and target position j of the same user, the
positive logit is <u_bi, v_bj> * scale; the negatives are every valid target
position j' of every *other* user w != b in the (global) batch. Optionally a
negative holding the same item id as the positive is dropped (HLLM): another
user's copy of the very item is not evidence against it.
"""

import jax
import jax.numpy as jnp


def dense_all_action_infonce(
    u: jnp.ndarray, v: jnp.ndarray, history: jnp.ndarray, target: jnp.ndarray,
    logit_scale: jnp.ndarray | float, mask_duplicates: bool = True,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Mean loss over valid (b, i, j) pairs.

  Args:
    u: [B, Lh, d] user-tower outputs (unit vectors).
    v: [B, Lt, d] item-tower outputs (unit vectors).
    history, target: [B, Lh] / [B, Lt] tokens; 0 marks padding.
    logit_scale: 1 / temperature.
    mask_duplicates: drop negatives with the positive's item id.
  Returns:
    (loss, aux) with aux["pairs"] = number of positive pairs and aux["top1_acc"] =
    in-batch top-1 accuracy.
  """
  batch = u.shape[0]
  hist_valid, tgt_valid = history > 0, target > 0
  s = jnp.einsum("bid,wkd->biwk", u, v) * logit_scale           # [B, Lh, B, Lt]
  pos = jnp.einsum("bid,bjd->bij", u, v) * logit_scale          # [B, Lh, Lt]
  other = ~jnp.eye(batch, dtype=bool)                            # w != b
  neg_ok = other[:, :, None] & tgt_valid[None, :, :]             # [B, B, Lt]
  # keep[b, j, w, k]: target (w, k) is a negative for the positive (b, j).
  keep = jnp.broadcast_to(neg_ok[:, None], (batch, target.shape[1]) + neg_ok.shape[1:])
  if mask_duplicates:
    keep = keep & (target[:, :, None, None] != target[None, None, :, :])
  # Logits are bounded by the scale (unit vectors), so a per-row max shift is
  # safe, and sum(exp) over kept negatives is one masked matmul: no [B,Lh,Lt,B,Lt] tensor.
  shift = jax.lax.stop_gradient(jnp.max(s, axis=(2, 3)))         # [B, Lh]
  e = jnp.exp(s - shift[:, :, None, None])
  neg_sum = jnp.einsum("biwk,bjwk->bij", e, keep.astype(e.dtype))
  neg_lse = jnp.log(jnp.maximum(neg_sum, 1e-30)) + shift[:, :, None]
  per_pair = jnp.logaddexp(pos, neg_lse) - pos                   # -log softmax of the positive
  pair_ok = hist_valid[:, :, None] & tgt_valid[:, None, :]
  pairs = jnp.sum(pair_ok)
  loss = jnp.sum(jnp.where(pair_ok, per_pair, 0.0)) / jnp.maximum(pairs, 1)
  # In-batch top-1 accuracy (a metric, no gradient): the positive outscores every valid
  # target of every other user. Copies of the positive's item count as negatives here,
  # so with mask_duplicates it is a slight lower bound (exact would need [B,Lh,Lt,B,Lt]).
  best_neg = jnp.max(jnp.where(neg_ok[:, None], s, -jnp.inf), axis=(2, 3))   # [B, Lh]
  top1 = jnp.sum(pair_ok & (pos > best_neg[:, :, None])) / jnp.maximum(pairs, 1)
  return loss, {"pairs": pairs, "top1_acc": jax.lax.stop_gradient(top1)}


# ----------------------------------------------------------------------------
# Next-item objectives: one positive per supervised position, a choice of negatives.
# ----------------------------------------------------------------------------
#
# u [P, d] are user vectors at the supervised positions (flattened over the
# batch), `pos` [P] the next item's token (item index + 1), `mask` [P] which
# positions count. Every mode masks negatives that are the positive's item.


def _masked_mean(x: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def candidates_softmax(
    u: jnp.ndarray, v_pos: jnp.ndarray, pos: jnp.ndarray, mask: jnp.ndarray,
    logit_scale: jnp.ndarray | float, cand: jnp.ndarray, cand_tokens: jnp.ndarray,
    cand_ok: jnp.ndarray, pos_log_q: jnp.ndarray | float = 0.0,
    cand_log_q: jnp.ndarray | float = 0.0,
) -> jnp.ndarray:
  """Mean cross-entropy of the positive against a candidate set of negatives.

  loss_p = -log( e^{s_p} / (e^{s_p} + sum_{c: ok, token_c != pos_p} e^{s_pc}) ),
  with s = scale * <u, v> - log_q (logQ correction: a candidate drawn with
  expected count Q carries log Q less evidence; 0 = no correction).

  Args:
    u: [P, d] user vectors; v_pos: [P, d] the positives' item vectors.
    pos: [P] positive tokens; mask: [P] valid positions.
    cand: [C, d] candidate vectors; cand_tokens: [C]; cand_ok: [C] usable.
    pos_log_q: [P] or scalar; cand_log_q: [C] or scalar.
  """
  s_pos = logit_scale * jnp.sum(u * v_pos, -1) - pos_log_q                 # [P]
  s = logit_scale * (u @ cand.T) - cand_log_q                              # [P, C]
  keep = cand_ok[None, :] & (cand_tokens[None, :] != pos[:, None])
  s = jnp.where(keep, s, -jnp.inf)
  lse = jnp.logaddexp(s_pos, jax.nn.logsumexp(s, axis=-1))
  return _masked_mean(lse - s_pos, mask)


def full_softmax(
    u: jnp.ndarray, items: jnp.ndarray, pos: jnp.ndarray, mask: jnp.ndarray,
    logit_scale: jnp.ndarray | float, chunk: int = 8192, item_ok: jnp.ndarray | None = None,
) -> jnp.ndarray:
  """Exact softmax cross-entropy over the whole catalogue (SASRec / RecBole CE).

  `items` [N, d] holds item i at row i (token i + 1); `item_ok` [N] (optional)
  restricts the catalogue, e.g. to the items known at training time in the
  cold-item protocol (the positive always counts). Catalogues larger than
  `chunk` are scanned in chunks with an online log-sum-exp under remat, so
  memory is O(P * chunk), not O(P * N), in the forward and backward pass.
  """
  n = items.shape[0]
  idx = jnp.maximum(pos - 1, 0)
  s_pos = logit_scale * jnp.sum(u * jnp.take(items, idx, axis=0), -1)
  if item_ok is None:
    item_ok = jnp.ones((n,), bool)
  if n <= chunk:
    s = logit_scale * (u @ items.T)
    lse = jax.nn.logsumexp(jnp.where(item_ok[None, :], s, -jnp.inf), axis=-1)
    lse = jnp.logaddexp(lse, jnp.where(jnp.take(item_ok, idx), -jnp.inf, s_pos))
  else:
    num = -(-n // chunk)
    padded = jnp.pad(items, ((0, num * chunk - n), (0, 0))).reshape(num, chunk, -1)
    valid = jnp.pad(item_ok, (0, num * chunk - n)).reshape(num, chunk)

    @jax.checkpoint
    def body(carry, xs):
      m, acc = carry
      block, ok = xs
      s = jnp.where(ok[None, :], logit_scale * (u @ block.T), -jnp.inf)
      m_new = jnp.maximum(m, jax.lax.stop_gradient(jnp.max(s, axis=-1)))
      acc = acc * jnp.exp(m - m_new) + jnp.sum(jnp.exp(s - m_new[:, None]), axis=-1)
      return (m_new, acc), None

    init = (jnp.full(u.shape[:1], -jnp.inf, u.dtype), jnp.zeros(u.shape[:1], u.dtype))
    (m, acc), _ = jax.lax.scan(body, init, (padded, valid))
    lse = jnp.logaddexp(m + jnp.log(acc), jnp.where(jnp.take(item_ok, idx), -jnp.inf, s_pos))
  return _masked_mean(lse - s_pos, mask)


def in_batch_top1(u: jnp.ndarray, v_pos: jnp.ndarray, pos: jnp.ndarray, mask: jnp.ndarray,
                  max_queries: int = 1024) -> jnp.ndarray:
  """In-batch top-1 accuracy of next-item positions (a training metric, no gradient).

  Share of supervised positions whose positive outscores the batch's other
  positives of a different item. Only the first `max_queries` positions are
  queries (against all P candidates), so the metric costs O(max_queries * P),
  not O(P^2), whatever the batch.
  """
  u, v_pos = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v_pos)
  q = min(max_queries, u.shape[0])
  s = u[:q] @ v_pos.T                                                       # [q, P]
  keep = mask[None, :] & (pos[None, :] != pos[:q, None])
  best_neg = jnp.max(jnp.where(keep, s, -jnp.inf), axis=-1)
  s_pos = jnp.sum(u[:q] * v_pos[:q], -1)
  return _masked_mean((s_pos > best_neg).astype(jnp.float32), mask[:q])
