"""LEARN twin towers: the user tower (a causal PCH) and the item tower.

Inputs are tokens (item index + 1, 0 = padding), turned into vectors by
`ItemInput` (frozen content through an adapter, a learned ID, or both; the
content table is an argument: it is data, not a parameter). The ID baseline
and the SASRec-equivalent run through the very same towers, losses and
evaluation.

Item tower (`item_tower`; paper section 3.2.2, DESIGN.md section 1):
  "causal"   Variant 1: PCH over the target sequence, causal attention.
  "diagonal" Variant 2: PCH, each target attends only to itself.
  "content"  Variant 3: a linear map of the raw content embedding (ablation).
  "input"    tied (SASRec, UniSRec): the item's own input vector, the one the
             user tower reads; needs d_out == d_model.
Variants 1/2 share the user tower's PCH (the paper) unless `share_towers` is
False (an untied item tower). At inference every item is embedded alone
(`items`).
"""

import dataclasses

import jax.numpy as jnp
from flax import linen as nn

from jaxrec.model.item_input import InputConfig, ItemInput
from jaxrec.model.pch import PCH, l2_normalize

ITEM_TOWERS = ("causal", "diagonal", "content", "input")


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
  normalize: bool = True          # L2-normalise user and item vectors (cosine scores)
  norm: str = "pre"               # PCH LayerNorm placement: pre | post
  init_std: float = 0.0           # > 0: N(0, init_std) weight init (BERT/SASRec 0.02)
  head: bool = True               # PCH output Dense
  share_towers: bool = True       # Variants 1/2: item tower reuses the user tower's PCH
  adapter: str = "linear"
  adapter_experts: int = 4
  adapter_dropout: float = 0.0
  fusion: str = "sum"
  id_dropout: float = 0.0

  def input_config(self) -> InputConfig:
    return InputConfig(self.num_items, self.d_model, self.item_input, self.adapter,
                       self.adapter_experts, self.adapter_dropout, self.fusion, self.id_dropout)


class LearnTowers(nn.Module):
  config: TowerConfig

  def setup(self):
    c = self.config
    self.item_input = ItemInput(c.input_config(), name="item_input")
    make_pch = lambda name: PCH(c.num_layers, c.num_heads, c.mlp_dim, c.d_out, c.max_len,
                                c.dropout, c.normalize, c.norm, c.init_std, c.head, name=name)
    self.pch = make_pch("pch")
    if c.item_tower in ("causal", "diagonal") and not c.share_towers:
      self.item_pch = make_pch("item_pch")
    if c.item_tower == "content":
      self.content_head = nn.Dense(c.d_out, name="variant3_projection")

  def _norm(self, x: jnp.ndarray) -> jnp.ndarray:
    return l2_normalize(x) if self.config.normalize else x

  def user(self, tokens: jnp.ndarray, content: jnp.ndarray | None, deterministic: bool = True,
           segments: jnp.ndarray | None = None, positions: jnp.ndarray | None = None) -> jnp.ndarray:
    """[B, L] history tokens -> [B, L, d_out]; position i sees items 0..i (of its segment)."""
    return self.pch(self.item_input(tokens, content, deterministic), tokens > 0, "causal",
                    deterministic, segments, positions)

  def item_sequence(self, tokens: jnp.ndarray, content: jnp.ndarray | None,
                    deterministic: bool = True) -> jnp.ndarray:
    """[B, L] target tokens -> [B, L, d_out] item embeddings (training path)."""
    mode = self.config.item_tower
    if mode == "content":
      return self._norm(self.content_head(jnp.take(content, tokens, axis=0)))
    if mode == "input":
      return self._norm(self.item_input(tokens, content, deterministic))
    pch = self.pch if self.config.share_towers else self.item_pch
    return pch(self.item_input(tokens, content, deterministic), tokens > 0, mode, deterministic)

  def items(self, tokens: jnp.ndarray, content: jnp.ndarray | None,
            deterministic: bool = True) -> jnp.ndarray:
    """[N] item tokens -> [N, d_out]: each item alone, as served."""
    return self.item_sequence(tokens[:, None], content, deterministic)[:, 0]

  def __call__(self, history: jnp.ndarray, target: jnp.ndarray, content: jnp.ndarray | None,
               deterministic: bool = True) -> tuple[jnp.ndarray, jnp.ndarray]:
    u = self.user(history, content, deterministic)
    return u, self.item_sequence(target, content, deterministic)
