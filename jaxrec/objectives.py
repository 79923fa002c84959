"""Training objectives: which positions are supervised and against which negatives.

`loss.objective`:
  dense_all_action  LEARN eq. 1: every (history position, target position)
                    pair of a user, in-batch negatives from the other users.
  next_item         every causal position predicts the next item (SASRec,
                    HSTU, HLLM); input from `data.packing`.
  last              only each user's last position (official LEARN fine-tuning).
`loss.negatives` (next_item / last):
  full              softmax over the whole catalogue (chunked, exact).
  in_batch          the batch's other positives, logQ-corrected by item frequency.
  sampled           `num_sampled` uniform items per step, shared by the batch.
  mixed             in-batch and sampled together (Yang et al., 2020), each
                    corrected by its own expected count.
Negatives that are the positive's item are masked in every mode, and
negatives are drawn only from `negative_items` (all items, or in the
cold-item protocol the items known at training time: a held-out item must
not be pushed down before it exists). The
candidate side (item vectors scored against users) is computed without
dropout, as SASRec scores against its clean embedding table.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxrec.data import splits
from jaxrec.model.losses import candidates_softmax, dense_all_action_infonce, full_softmax, in_batch_top1
from jaxrec.model.towers import LearnTowers


def logit_scale(params, lc: ml_collections.ConfigDict) -> jnp.ndarray:
  log_scale = params["log_scale"] if lc.learn_temperature else jax.lax.stop_gradient(params["log_scale"])
  return jnp.minimum(jnp.exp(log_scale), lc.max_logit_scale)


def item_log_q(train: tuple[np.ndarray, ...], num_items: int) -> np.ndarray:
  """[N + 1] log frequency of each token among training targets (row 0: padding)."""
  return log_q(splits.train_counts(train, num_items).targets)


def log_q(target_counts: np.ndarray) -> np.ndarray:
  """[N + 1] log frequency of each token among training targets, from their counts (row 0: padding).

  Items never seen in training get a large negative log q; they never appear
  as in-batch candidates, so it only guards against log(0).
  """
  counts = np.asarray(target_counts, np.float64)
  q = counts / max(counts.sum(), 1.0)
  return np.concatenate([[0.0], np.log(np.maximum(q, 1e-12))]).astype(np.float32)


def dense_loss(params, batch, content, rng, *, model: LearnTowers, lc):
  u, v = model.apply({"params": params["towers"]}, batch["history"], batch["target"], content,
                     deterministic=False, rngs={"dropout": rng})
  scale = logit_scale(params, lc)
  loss, aux = dense_all_action_infonce(u, v, batch["history"], batch["target"], scale,
                                       lc.mask_duplicates)
  return loss, {**aux, "logit_scale": scale}


def next_item_loss(params, batch, content, rng, *, model: LearnTowers, lc, log_q,
                   negative_items: np.ndarray | None = None):
  """Loss over the supervised positions of packed next-item rows."""
  towers = params["towers"]
  drop_rng, neg_rng = jax.random.split(rng)
  u = model.apply({"params": towers}, batch["inputs"], content, False, batch["segments"],
                  batch["positions"], method=LearnTowers.user, rngs={"dropout": drop_rng})
  u = u.reshape(-1, u.shape[-1])
  pos = batch["targets"].reshape(-1)
  mask = batch["supervised"].reshape(-1) & (pos > 0)
  items = functools.partial(model.apply, {"params": towers}, content=content, method=LearnTowers.items)
  num_items = model.config.num_items
  scale = logit_scale(params, lc)
  allowed = None
  if negative_items is not None:
    allowed = jnp.zeros((num_items,), bool).at[jnp.asarray(negative_items)].set(True)
  if lc.negatives == "full":
    table = items(jnp.arange(1, num_items + 1))
    loss = full_softmax(u, table, pos, mask, scale, lc.full_chunk, allowed)
    v_pos = jnp.take(table, jnp.maximum(pos - 1, 0), axis=0)
  else:
    # Padding / unsupervised positions embed item 1 instead of the zero padding row, whose
    # L2 normalisation has a NaN gradient; they are masked out of the loss and the candidates.
    v_pos = items(jnp.where(mask, pos, 1))
    cand, tokens, ok, cand_lq, pos_lq = [], [], [], [], 0.0
    if lc.negatives in ("in_batch", "mixed"):
      # Expected count of an item among the batch's positives: n_valid * q(item).
      lq = (jnp.log(jnp.maximum(jnp.sum(mask), 1)) + jnp.take(jnp.asarray(log_q), pos)
            if lc.logq else jnp.zeros(pos.shape))
      cand, tokens, ok, cand_lq, pos_lq = [v_pos], [pos], [mask], [lq], lq
    if lc.negatives in ("sampled", "mixed"):
      if negative_items is None:
        sampled = jax.random.randint(neg_rng, (lc.num_sampled,), 1, num_items + 1)
      else:
        pool = jnp.asarray(negative_items) + 1
        sampled = pool[jax.random.randint(neg_rng, (lc.num_sampled,), 0, len(negative_items))]
      cand.append(items(sampled))
      tokens.append(sampled)
      ok.append(jnp.ones(sampled.shape, bool))
      pool_size = num_items if negative_items is None else len(negative_items)
      corr = math.log(lc.num_sampled / pool_size) if lc.negatives == "mixed" and lc.logq else 0.0
      cand_lq.append(jnp.full(sampled.shape, corr))
    loss = candidates_softmax(u, v_pos, pos, mask, scale, jnp.concatenate(cand), jnp.concatenate(tokens),
                              jnp.concatenate(ok), pos_lq, jnp.concatenate(cand_lq))
  return loss, {"pairs": jnp.sum(mask), "logit_scale": scale, "top1_acc": in_batch_top1(u, v_pos, pos, mask)}


def make_loss_fn(config: ml_collections.ConfigDict, model: LearnTowers, log_q: np.ndarray | None,
                 negative_items: np.ndarray | None = None):
  """(params, batch, content, rng) -> (loss, aux) for the configured objective.

  `negative_items`: item indices negatives may be (None = the whole catalogue).
  """
  if config.loss.objective == "dense_all_action":
    return functools.partial(dense_loss, model=model, lc=config.loss)
  return functools.partial(next_item_loss, model=model, lc=config.loss, log_q=log_q,
                           negative_items=negative_items)
