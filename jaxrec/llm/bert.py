"""BERT encoder in Flax, numerically matching transformers' `BertModel`.

Inference only (no dropout, no pooler): jaxrec uses BERT-family models such as
all-MiniLM-L6-v2 as frozen content encoders, so only `last_hidden_state` is
needed. Module and parameter names are chosen so that `key_map` below maps
Hugging Face keys onto them one to one.
"""

from collections.abc import Mapping
import dataclasses
import functools
from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp

from jaxrec.errors import JaxrecError
from jaxrec.llm import keys
from jaxrec.llm import layers

Array = jax.Array
DType = Any

# HF `ACT2FN` names -> JAX functions (shared with the decoders).
ACTIVATIONS = layers.ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Hyper-parameters of a BERT encoder; defaults are bert-base-uncased."""

  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  pad_token_id: int | None = 0

  def __post_init__(self):
    if self.hidden_act not in ACTIVATIONS:
      raise JaxrecError(
          f"unsupported BERT hidden_act {self.hidden_act!r}; "
          f"supported: {', '.join(sorted(ACTIVATIONS))}")
    if self.hidden_size % self.num_attention_heads:
      raise JaxrecError(
          f"BERT hidden_size {self.hidden_size} is not divisible by "
          f"num_attention_heads {self.num_attention_heads}")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @classmethod
  def from_hf(cls, hf: Mapping[str, Any]) -> "BertConfig":
    """Builds the config from a Hugging Face `config.json` dict."""
    position_type = hf.get("position_embedding_type", "absolute")
    if position_type not in (None, "absolute"):
      raise JaxrecError(
          f"unsupported BERT position_embedding_type {position_type!r}; "
          "only 'absolute' is supported")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
      raise JaxrecError("BERT decoders (is_decoder / add_cross_attention) "
                        "are not supported; need an encoder")
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in hf.items() if k in names})


class BertEmbeddings(nn.Module):
  """Word + absolute position + token type embeddings, then LayerNorm."""

  config: BertConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Array) -> Array:
    cfg = self.config
    embed = functools.partial(
        nn.Embed, features=cfg.hidden_size, dtype=self.dtype,
        param_dtype=self.param_dtype)
    positions = jnp.arange(input_ids.shape[1])[None, :]
    x = embed(cfg.vocab_size, name="word_embeddings")(input_ids)
    x += embed(cfg.max_position_embeddings,
               name="position_embeddings")(positions)
    x += embed(cfg.type_vocab_size, name="token_type_embeddings")(
        token_type_ids)
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_eps, dtype=self.dtype,
        param_dtype=self.param_dtype, name="layer_norm")(x)


class BertSelfAttention(nn.Module):
  """Multi-head self-attention with output projection (no residual)."""

  config: BertConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32
  attention: str = "dot_product_attention"
  implementation: str = "auto"

  @nn.compact
  def __call__(self, x: Array, masking: layers.Masking) -> Array:
    cfg = self.config
    dense = functools.partial(
        nn.Dense, cfg.hidden_size, dtype=self.dtype,
        param_dtype=self.param_dtype)
    heads = lambda y: y.reshape(*y.shape[:2], cfg.num_attention_heads,
                                cfg.head_dim)
    q = heads(dense(name="query")(x))
    k = heads(dense(name="key")(x))
    v = heads(dense(name="value")(x))
    # Softmax runs in float32 on either path, for any dtype.
    out = layers.attend(q, k, v, masking, attention=self.attention,
                        implementation=self.implementation)
    return dense(name="output")(out.reshape(x.shape[:2] + (-1,)))


class BertLayer(nn.Module):
  """One post-LN transformer block: x = LN(x + f(x)) for attention and MLP."""

  config: BertConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32
  attention: str = "dot_product_attention"
  implementation: str = "auto"

  @nn.compact
  def __call__(self, x: Array, masking: layers.Masking) -> Array:
    cfg = self.config
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    norm = functools.partial(nn.LayerNorm, epsilon=cfg.layer_norm_eps, **kw)
    h = BertSelfAttention(cfg, name="attention", attention=self.attention,
                          implementation=self.implementation, **kw)(x, masking)
    x = norm(name="attention_norm")(x + h)
    h = nn.Dense(cfg.intermediate_size, name="intermediate", **kw)(x)
    h = ACTIVATIONS[cfg.hidden_act](h)
    h = nn.Dense(cfg.hidden_size, name="output", **kw)(h)
    return norm(name="output_norm")(x + h)


class BertEncoder(nn.Module):
  """BERT without pooler: token ids -> last_hidden_state [B, T, H].

  Attributes:
    config: model hyper-parameters.
    dtype: activation / computation dtype.
    param_dtype: dtype of the parameters.
    attention, implementation: the attention path (`layers.attention_path`).
  """

  config: BertConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32
  attention: str = "dot_product_attention"
  implementation: str = "auto"

  @nn.compact
  def __call__(self,
               input_ids: Array,
               attention_mask: Array,
               token_type_ids: Array | None = None) -> Array:
    """Encodes a batch; padded positions are excluded as attention keys.

    Args:
      input_ids: [B, T] int token ids.
      attention_mask: [B, T], 1 for real tokens and 0 for padding.
      token_type_ids: [B, T] segment ids; zeros when omitted.

    Returns:
      [B, T, hidden_size] hidden states of the last layer (values at padded
      positions are meaningless, as in transformers).
    """
    cfg = self.config
    if input_ids.ndim != 2:
      raise JaxrecError(
          f"input_ids must be [batch, length], got shape {input_ids.shape}")
    if input_ids.shape[1] > cfg.max_position_embeddings:
      raise JaxrecError(
          f"sequence length {input_ids.shape[1]} exceeds BERT "
          f"max_position_embeddings {cfg.max_position_embeddings}")
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = BertEmbeddings(cfg, name="embeddings", **kw)(input_ids, token_type_ids)
    masking = layers.Masking(attention_mask, causal=False)
    for i in range(cfg.num_hidden_layers):
      x = BertLayer(cfg, name=f"layer_{i}", attention=self.attention,
                    implementation=self.implementation, **kw)(x, masking)
    return x


def key_map(config: BertConfig) -> keys.KeyMap:
  """Flax `BertEncoder` params <- HF `BertModel` state dict keys."""
  out: keys.KeyMap = {}
  for name in ("word_embeddings", "position_embeddings",
               "token_type_embeddings"):
    out |= keys.embed(("embeddings", name), f"embeddings.{name}")
  out |= keys.layer_norm(("embeddings", "layer_norm"), "embeddings.LayerNorm")
  for i in range(config.num_hidden_layers):
    ours, hf = (f"layer_{i}",), f"encoder.layer.{i}"
    for name in ("query", "key", "value"):
      out |= keys.dense(ours + ("attention", name),
                        f"{hf}.attention.self.{name}")
    out |= keys.dense(ours + ("attention", "output"),
                      f"{hf}.attention.output.dense")
    out |= keys.layer_norm(ours + ("attention_norm",),
                           f"{hf}.attention.output.LayerNorm")
    out |= keys.dense(ours + ("intermediate",), f"{hf}.intermediate.dense")
    out |= keys.dense(ours + ("output",), f"{hf}.output.dense")
    out |= keys.layer_norm(ours + ("output_norm",), f"{hf}.output.LayerNorm")
  return out


def _module(config: BertConfig, dtype: DType, param_dtype: DType
            ) -> BertEncoder:
  return BertEncoder(config, dtype=dtype, param_dtype=param_dtype)


FAMILY = keys.Family("bert", ("bert",), BertConfig.from_hf, _module, key_map,
                     ("", "bert."))
