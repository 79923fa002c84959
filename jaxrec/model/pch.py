"""PCH: the preference-comprehension transformer of LEARN.

A small pre-LN transformer over a sequence of item vectors (already projected
to d_model), with learned absolute positions, causal or diagonal attention, a
linear head and L2-normalised outputs, so dot products are cosine similarities
and the loss temperature alone sets the logit scale. Pre-LN rather than BERT's
post-LN: it trains without warm-up tricks at the small widths used here.
"""

import jax.numpy as jnp
from flax import linen as nn

ATTENTION_MODES = ("causal", "diagonal")


def attention_mask(valid: jnp.ndarray, mode: str) -> jnp.ndarray:
  """[B, 1, L, L] mask: query i may attend key j.

  `causal`: j <= i and j is a real item (Variant 1 / user tower).
  `diagonal`: j == i, each item sees only itself (Variant 2).
  Every query keeps at least itself or position 0, so no softmax row is empty.
  """
  length = valid.shape[-1]
  if mode == "causal":
    allowed = jnp.tril(jnp.ones((length, length), bool))[None] & valid[:, None, :]
  elif mode == "diagonal":
    allowed = jnp.broadcast_to(jnp.eye(length, dtype=bool), (valid.shape[0], length, length))
  else:
    raise ValueError(f"unknown attention mode {mode!r}; valid: {ATTENTION_MODES}")
  return allowed[:, None]


class Block(nn.Module):
  """Pre-LN transformer block: attention and GELU MLP, each residual."""
  num_heads: int
  mlp_dim: int
  dropout: float

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray, deterministic: bool) -> jnp.ndarray:
    y = nn.LayerNorm(name="ln_attn")(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dropout_rate=self.dropout, name="attn")(
            y, y, mask=mask, deterministic=deterministic)
    x = x + nn.Dropout(self.dropout)(y, deterministic=deterministic)
    y = nn.LayerNorm(name="ln_mlp")(x)
    y = nn.gelu(nn.Dense(self.mlp_dim, name="mlp_in")(y))
    y = nn.Dense(x.shape[-1], name="mlp_out")(nn.Dropout(self.dropout)(y, deterministic=deterministic))
    return x + nn.Dropout(self.dropout)(y, deterministic=deterministic)


class PCH(nn.Module):
  """Transformer + head over [B, L, d_model] inputs -> [B, L, d_out] unit vectors."""
  num_layers: int
  num_heads: int
  mlp_dim: int
  d_out: int
  max_len: int
  dropout: float

  @nn.compact
  def __call__(self, x: jnp.ndarray, valid: jnp.ndarray, mode: str,
               deterministic: bool) -> jnp.ndarray:
    length = x.shape[1]
    if length > self.max_len:
      raise ValueError(f"sequence length {length} > max_len {self.max_len}")
    pos = self.param("pos_embedding", nn.initializers.normal(0.02), (self.max_len, x.shape[-1]))
    h = nn.Dropout(self.dropout)(x + pos[:length], deterministic=deterministic)
    mask = attention_mask(valid, mode)
    for i in range(self.num_layers):
      h = Block(self.num_heads, self.mlp_dim, self.dropout, name=f"block_{i}")(h, mask, deterministic)
    h = nn.LayerNorm(name="ln_final")(h)
    out = nn.Dense(self.d_out, name="head")(h)
    return out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-6)
