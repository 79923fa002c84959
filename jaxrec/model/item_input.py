"""Item input representations: frozen content through an adapter, learned IDs, or both.

What the PCH reads for an item token (item index + 1, 0 = padding):
  content  adapter(CEG vector): LEARN's input, the only path for cold items.
  id       a learned ID embedding (the paper's "ID" baseline, SASRec's input).
  fusion   content and ID combined (UniSRec / LLM-ESR style): `sum`, `concat`
           (then a linear map back to d_model) or `gate` (a learned sigmoid
           mix). ID dropout zeroes whole ID vectors in training so the content
           path alone must carry an item, as it must for a cold one.

Adapters over the frozen content (UniSRec's finding: linear beats MLPs):
  linear   Dense with bias.
  whiten   (x - b) W: a learned centring then a linear map (parametric whitening).
  moe      softmax-gated mixture of `whiten` experts.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

ITEM_INPUTS = ("content", "id", "fusion")
ADAPTERS = ("linear", "whiten", "moe")
FUSIONS = ("sum", "concat", "gate")


@dataclasses.dataclass(frozen=True)
class InputConfig:
  num_items: int
  d_model: int = 64
  item_input: str = "content"
  adapter: str = "linear"
  adapter_experts: int = 4
  adapter_dropout: float = 0.0
  fusion: str = "sum"
  id_dropout: float = 0.0


class Whiten(nn.Module):
  """(x - b) W: UniSRec's parametric whitening."""
  features: int

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b = self.param("center", nn.initializers.zeros, (x.shape[-1],))
    return nn.Dense(self.features, use_bias=False, name="proj")(x - b)


class MoEAdapter(nn.Module):
  """Softmax-gated mixture of whitening experts over the content vector."""
  features: int
  experts: int

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    gate = nn.softmax(nn.Dense(self.experts, use_bias=False, name="gate")(x), axis=-1)
    outs = jnp.stack([Whiten(self.features, name=f"expert_{k}")(x) for k in range(self.experts)], -2)
    return jnp.sum(gate[..., None] * outs, axis=-2)


class ItemInput(nn.Module):
  """tokens [...] -> [..., d_model] item input vectors."""
  config: InputConfig

  def setup(self):
    c = self.config
    if c.item_input in ("content", "fusion"):
      if c.adapter == "linear":
        self.adapter = nn.Dense(c.d_model, name="content_projection")
      elif c.adapter == "whiten":
        self.adapter = Whiten(c.d_model, name="content_whiten")
      else:
        self.adapter = MoEAdapter(c.d_model, c.adapter_experts, name="content_moe")
      self.adapter_drop = nn.Dropout(c.adapter_dropout)
    if c.item_input in ("id", "fusion"):
      self.id_embedding = nn.Embed(c.num_items + 1, c.d_model,
                                   embedding_init=nn.initializers.normal(0.02), name="item_id_embedding")
    if c.item_input == "fusion":
      # Whole ID vectors dropped (broadcast over features), so content must carry the item.
      self.id_drop = nn.Dropout(c.id_dropout, broadcast_dims=(-1,))
      if c.fusion == "concat":
        self.fuse = nn.Dense(c.d_model, name="fusion_concat")
      elif c.fusion == "gate":
        self.fuse = nn.Dense(c.d_model, name="fusion_gate")

  def content_vector(self, tokens: jnp.ndarray, content: jnp.ndarray,
                     deterministic: bool = True) -> jnp.ndarray:
    x = jnp.take(content, tokens, axis=0)
    return self.adapter(self.adapter_drop(x, deterministic=deterministic))

  def __call__(self, tokens: jnp.ndarray, content: jnp.ndarray | None,
               deterministic: bool = True) -> jnp.ndarray:
    c = self.config
    if c.item_input == "id":
      return self.id_embedding(tokens)
    x = self.content_vector(tokens, content, deterministic)
    if c.item_input == "content":
      return x
    i = self.id_drop(self.id_embedding(tokens), deterministic=deterministic)
    if c.fusion == "sum":
      return x + i
    if c.fusion == "concat":
      return self.fuse(jnp.concatenate([x, i], -1))
    g = nn.sigmoid(self.fuse(jnp.concatenate([x, i], -1)))
    return g * x + (1.0 - g) * i


def pca_basis(content: np.ndarray, d: int, std: float = 0.02) -> tuple[np.ndarray, np.ndarray, float]:
  """(mean [H], components [k, H], scale) of the content table ([N + 1, H], row 0 =
  padding): what `pca_project` needs to place any content vector, including one of
  an item added after training, exactly where `pca_id_table` put the catalogue's."""
  x = np.asarray(content[1:], np.float64)
  mean = x.mean(0)
  _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
  comps = vt[:min(d, vt.shape[0])]
  proj = (x - mean) @ comps.T
  return mean, comps, float(max(proj.std(), 1e-12) / std)


def pca_project(x: np.ndarray, basis: tuple[np.ndarray, np.ndarray, float], d: int) -> np.ndarray:
  """[n, H] content vectors -> [n, d] ID rows on the content's principal components."""
  mean, comps, scale = basis
  proj = (np.asarray(x, np.float64) - mean) @ comps.T / scale
  out = np.zeros((len(x), d), np.float32)
  out[:, :comps.shape[0]] = proj
  return out


def pca_id_table(content: np.ndarray, d: int, std: float = 0.02) -> np.ndarray:
  """[N + 1, d] ID table from the top-d principal components of the content
  table ([N + 1, H], row 0 = padding), scaled to the default init's std.

  Items start where their text puts them (LLM2BERT4Rec); ids then learn.
  """
  out = np.zeros((len(content), d), np.float32)
  out[1:] = pca_project(content[1:], pca_basis(content, d, std), d)
  return out
