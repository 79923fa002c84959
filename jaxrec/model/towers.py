"""LEARN twin towers: one PCH shared by the user tower and the item tower.

Inputs are tokens (item index + 1, 0 = padding). With `item_input="content"`
a token is looked up in the frozen content table (CEG output, passed in as an
argument: it is data, not a parameter) and projected to d_model; with
`item_input="id"` it is looked up in a learned ID table instead: the ID
baseline runs through the very same towers, loss and evaluation.

Item tower variants (paper section 3.2.2, DESIGN.md section 1):
  "causal"   Variant 1: shared PCH over the target sequence, causal attention.
  "diagonal" Variant 2: shared PCH, each target attends only to itself.
  "content"  Variant 3: the projected content embedding itself (ablation).
At inference every variant embeds one item alone (`items`).
"""

import dataclasses

import jax.numpy as jnp
from flax import linen as nn

from jaxrec.model.pch import PCH

ITEM_INPUTS = ("content", "id")
ITEM_TOWERS = ("causal", "diagonal", "content")


@dataclasses.dataclass(frozen=True)
class TowerConfig:
  num_items: int
  item_input: str = "content"
  item_tower: str = "causal"
  d_model: int = 64
  num_layers: int = 2
  num_heads: int = 2
  mlp_dim: int = 256
  d_out: int = 64
  max_len: int = 50
  dropout: float = 0.1


class LearnTowers(nn.Module):
  config: TowerConfig

  def setup(self):
    c = self.config
    if c.item_input == "content":
      self.embed_in = nn.Dense(c.d_model, name="content_projection")
    else:
      self.embed_in = nn.Embed(c.num_items + 1, c.d_model, embedding_init=nn.initializers.normal(0.02),
                               name="item_id_embedding")
    self.pch = PCH(c.num_layers, c.num_heads, c.mlp_dim, c.d_out, c.max_len, c.dropout, name="pch")
    if c.item_tower == "content":
      self.content_head = nn.Dense(c.d_out, name="variant3_projection")

  def _inputs(self, tokens: jnp.ndarray, content: jnp.ndarray | None) -> jnp.ndarray:
    if self.config.item_input == "content":
      return self.embed_in(jnp.take(content, tokens, axis=0))
    return self.embed_in(tokens)

  def user(self, tokens: jnp.ndarray, content: jnp.ndarray | None,
           deterministic: bool = True) -> jnp.ndarray:
    """[B, L] history tokens -> [B, L, d_out]; position i sees items 0..i."""
    return self.pch(self._inputs(tokens, content), tokens > 0, "causal", deterministic)

  def item_sequence(self, tokens: jnp.ndarray, content: jnp.ndarray | None,
                    deterministic: bool = True) -> jnp.ndarray:
    """[B, L] target tokens -> [B, L, d_out] item embeddings (training path)."""
    mode = self.config.item_tower
    if mode == "content":
      out = self.content_head(jnp.take(content, tokens, axis=0))
      return out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-6)
    return self.pch(self._inputs(tokens, content), tokens > 0, mode, deterministic)

  def items(self, tokens: jnp.ndarray, content: jnp.ndarray | None) -> jnp.ndarray:
    """[N] item tokens -> [N, d_out]: each item alone, as served."""
    return self.item_sequence(tokens[:, None], content, deterministic=True)[:, 0]

  def __call__(self, history: jnp.ndarray, target: jnp.ndarray, content: jnp.ndarray | None,
               deterministic: bool = True) -> tuple[jnp.ndarray, jnp.ndarray]:
    u = self.user(history, content, deterministic)
    return u, self.item_sequence(target, content, deterministic)
