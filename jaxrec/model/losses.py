"""Dense all-action InfoNCE with in-batch negatives (LEARN eq. 1, PinnerFormer).

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
    (loss, aux) with aux["pairs"] = number of positive pairs.
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
  return loss, {"pairs": pairs}
