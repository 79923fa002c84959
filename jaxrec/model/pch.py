"""PCH: the preference-comprehension transformer of LEARN.

A small pre-LN transformer over a sequence of item vectors (already projected
to d_model), with learned absolute positions, causal or diagonal attention, a
linear head and (by default) L2-normalised outputs, so dot products are cosine
similarities and the loss temperature alone sets the logit scale. Packed rows
(several users' windows in one row, for training throughput) pass segment ids
and per-segment positions. Pre-LN rather than BERT's
post-LN: it trains without warm-up tricks at the small widths used here.
"""

from typing import Any

import jax.numpy as jnp
from flax import linen as nn

ATTENTION_MODES = ("causal", "diagonal")


def attention_mask(valid: jnp.ndarray, mode: str,
                   segments: jnp.ndarray | None = None) -> jnp.ndarray:
  """[B, 1, L, L] mask: query i may attend key j.

  `causal`: j <= i and j is a real item (Variant 1 / user tower).
  `diagonal`: j == i, each item sees only itself (Variant 2).
  `segments` [B, L] (packed rows: several users per row) further restricts
  attention to keys of the query's own segment.
  Every query keeps at least itself or position 0, so no softmax row is empty.
  """
  length = valid.shape[-1]
  if mode == "causal":
    allowed = jnp.tril(jnp.ones((length, length), bool))[None] & valid[:, None, :]
    if segments is not None:
      allowed = allowed & (segments[:, :, None] == segments[:, None, :])
  elif mode == "diagonal":
    allowed = jnp.broadcast_to(jnp.eye(length, dtype=bool), (valid.shape[0], length, length))
  else:
    raise ValueError(f"unknown attention mode {mode!r}; valid: {ATTENTION_MODES}")
  return allowed[:, None]


NORMS = ("pre", "post")


class Block(nn.Module):
  """Transformer block: attention and GELU MLP, each residual.

  `norm="pre"`: LayerNorm before each sublayer (trains without warm-up tricks);
  `norm="post"`: LayerNorm after each residual sum (BERT, and SASRec as RecBole has it).
  """
  num_heads: int
  mlp_dim: int
  dropout: float
  norm: str = "pre"
  kernel_init: Any = nn.linear.default_kernel_init

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
    pre = self.norm == "pre"
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=deterministic)
    y = nn.LayerNorm(name="ln_attn")(x) if pre else x
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dropout_rate=self.dropout, broadcast_dropout=False,
        kernel_init=self.kernel_init, name="attn")(y, y, mask=mask, deterministic=deterministic)
    x = x + drop(y) if pre else nn.LayerNorm(name="ln_attn")(x + drop(y))
    y = nn.LayerNorm(name="ln_mlp")(x) if pre else x
    y = nn.gelu(nn.Dense(self.mlp_dim, kernel_init=self.kernel_init, name="mlp_in")(y))
    y = nn.Dense(x.shape[-1], kernel_init=self.kernel_init, name="mlp_out")(y)
    return x + drop(y) if pre else nn.LayerNorm(name="ln_mlp")(x + drop(y))


class PCH(nn.Module):
  """Transformer + head over [B, L, d_model] inputs -> [B, L, d_out] (unit) vectors.

  `norm="post"` normalises the input sum (item + position) instead of the
  final output, as BERT and SASRec do. `init_std` > 0 draws every weight
  matrix from N(0, init_std) (BERT/SASRec's 0.02) instead of lecun-normal.
  `head=False` drops the output Dense (then d_out must equal d_model).
  """
  num_layers: int
  num_heads: int
  mlp_dim: int
  d_out: int
  max_len: int
  dropout: float
  normalize: bool = True
  norm: str = "pre"
  init_std: float = 0.0
  head: bool = True

  @nn.compact
  def __call__(self, x: jnp.ndarray, valid: jnp.ndarray, mode: str, deterministic: bool,
               segments: jnp.ndarray | None = None,
               positions: jnp.ndarray | None = None) -> jnp.ndarray:
    """`segments`/`positions` [B, L] describe packed rows (position restarts per segment)."""
    length = x.shape[1]
    if length > self.max_len:
      raise ValueError(f"sequence length {length} > max_len {self.max_len}")
    kernel_init = nn.initializers.normal(self.init_std) if self.init_std > 0 else nn.linear.default_kernel_init
    pos = self.param("pos_embedding", nn.initializers.normal(0.02), (self.max_len, x.shape[-1]))
    pos = pos[:length][None] if positions is None else jnp.take(pos, positions, axis=0)
    h = x + pos
    if self.norm == "post":
      h = nn.LayerNorm(name="ln_input")(h)
    h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
    mask = attention_mask(valid, mode, segments)
    for i in range(self.num_layers):
      h = Block(self.num_heads, self.mlp_dim, self.dropout, self.norm, kernel_init,
                name=f"block_{i}")(h, mask, deterministic)
    if self.norm == "pre":
      h = nn.LayerNorm(name="ln_final")(h)
    out = nn.Dense(self.d_out, kernel_init=kernel_init, name="head")(h) if self.head else h
    return l2_normalize(out) if self.normalize else out


def l2_normalize(x: jnp.ndarray) -> jnp.ndarray:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
