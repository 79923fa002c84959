"""One decoder trunk for every causal-LM family jaxrec reads.

Inference only and without `lm_head`: jaxrec reads `last_hidden_state` (after
the final norm) of a frozen LLM as a content embedding. Families differ in a
handful of switches, all in `DecoderConfig`:

  Llama 2/3, Mistral, Qwen2   pre-norm RMSNorm, RoPE (llama3 scaling), GQA,
                              optional q/k/v bias, sliding window
  Qwen3                       + RMSNorm on each query/key head (`qk_norm`)
  Gemma 2                     (1 + w) RMSNorm, sqrt(hidden) embedding scale,
                              GELU-tanh MLP, sandwich norms, logit soft-capping,
                              `query_pre_attn_scalar`, alternating local/global
  Gemma 3                     as Gemma 2 with q/k norm instead of soft-capping
                              and a separate RoPE base for local layers
  Baichuan2                   Llama blocks; RoPE (7B) or ALiBi (13B)

The family modules turn a `config.json` into this config and name the
checkpoint tensors; parameter names mirror Hugging Face's so their key maps
are one to one.
"""

import dataclasses
import functools
import math
from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp

from jaxrec.errors import JaxrecError
from jaxrec.llm import layers
from jaxrec.llm.layers import FULL, SLIDING, Rope

Array = jax.Array
DType = Any

POSITIONS = ("rope", "alibi")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Hyper-parameters of a decoder; defaults are Llama-2-7B.

  `num_key_value_heads` and `head_dim` of None resolve to `num_attention_heads`
  and `hidden_size // num_attention_heads`. `layer_types` holds, per layer,
  "full_attention" or "sliding_attention" (the latter limited to
  `sliding_window` keys and using `local_rope` when set); empty means every
  layer is sliding when a window is set, else full.

  Attributes (beyond the obvious sizes):
    rope: RoPE of full-attention layers (and of all layers when `local_rope`
      is None).
    local_rope: RoPE of sliding layers (Gemma 3's local base).
    position: "rope" or "alibi" (Baichuan2-13B; no RoPE then).
    causal: False for bidirectional encoders built from decoders
      (EmbeddingGemma's `use_bidirectional_attention`).
    qk_norm: RMSNorm each query/key head before RoPE (Qwen3, Gemma 3).
    norm_unit_offset: Gemma RMSNorm, x * (1 + w).
    sandwich_norms: also norm the attention and MLP outputs (Gemma 2/3).
    embed_scale: multiply token embeddings by sqrt(hidden_size) (Gemma).
    attn_logit_softcap: cap * tanh(logits / cap) (Gemma 2).
    query_pre_attn_scalar: attention scale is this ** -0.5 instead of
      head_dim ** -0.5 (Gemma).
  """

  vocab_size: int = 32000
  hidden_size: int = 4096
  intermediate_size: int = 11008
  num_hidden_layers: int = 32
  num_attention_heads: int = 32
  num_key_value_heads: int | None = None
  head_dim: int | None = None
  rms_norm_eps: float = 1e-6
  max_position_embeddings: int = 4096
  rope: Rope = Rope()
  local_rope: Rope | None = None
  position: str = "rope"
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  hidden_act: str = "silu"
  sliding_window: int | None = None
  layer_types: tuple[str, ...] = ()
  causal: bool = True
  qk_norm: bool = False
  norm_unit_offset: bool = False
  sandwich_norms: bool = False
  embed_scale: bool = False
  attn_logit_softcap: float | None = None
  query_pre_attn_scalar: float | None = None

  def __post_init__(self):
    # Frozen dataclass: resolve the derived defaults in place.
    if self.num_key_value_heads is None:
      object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
    if self.head_dim is None:
      object.__setattr__(self, "head_dim",
                         self.hidden_size // self.num_attention_heads)
    types = tuple(self.layer_types) or (
        (SLIDING if self.sliding_window else FULL),) * self.num_hidden_layers
    object.__setattr__(self, "layer_types", types)
    if len(types) != self.num_hidden_layers or set(types) - {FULL, SLIDING}:
      raise JaxrecError(
          f"layer_types must list {self.num_hidden_layers} entries of "
          f"{FULL!r}/{SLIDING!r}, got {list(types)}")
    if SLIDING in types and not self.sliding_window:
      raise JaxrecError("sliding_attention layers need a sliding_window")
    if self.num_attention_heads % self.num_key_value_heads:
      raise JaxrecError(
          f"num_attention_heads {self.num_attention_heads} is not a multiple "
          f"of num_key_value_heads {self.num_key_value_heads}")
    if self.position not in POSITIONS:
      raise JaxrecError(f"unsupported position encoding {self.position!r}; "
                        f"supported: {', '.join(POSITIONS)}")
    layers.activation(self.hidden_act)  # Fails early on an unknown one.

  @property
  def attention_scale(self) -> float:
    base = self.query_pre_attn_scalar or self.head_dim
    return float(base) ** -0.5


class Attention(nn.Module):
  """Grouped-query self-attention: RoPE or ALiBi, optional q/k norm, softcap."""

  config: DecoderConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32
  attention: str = "dot_product_attention"
  implementation: str = "auto"

  @nn.compact
  def __call__(self, x: Array, masking: layers.Masking,
               rope: tuple[Array, Array] | None,
               bias: Array | None) -> Array:
    cfg = self.config
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dense = functools.partial(nn.Dense, **kw)
    batch, length = x.shape[:2]
    split = lambda y, n: y.reshape(batch, length, n, cfg.head_dim)
    q = split(dense(cfg.num_attention_heads * cfg.head_dim,
                    use_bias=cfg.qkv_bias, name="q_proj")(x),
              cfg.num_attention_heads)
    k = split(dense(cfg.num_key_value_heads * cfg.head_dim,
                    use_bias=cfg.qkv_bias, name="k_proj")(x),
              cfg.num_key_value_heads)
    v = split(dense(cfg.num_key_value_heads * cfg.head_dim,
                    use_bias=cfg.qkv_bias, name="v_proj")(x),
              cfg.num_key_value_heads)
    if cfg.qk_norm:
      norm = functools.partial(layers.RMSNorm, cfg.rms_norm_eps,
                               cfg.norm_unit_offset, **kw)
      q, k = norm(name="q_norm")(q), norm(name="k_norm")(k)
    if rope is not None:
      q, k = layers.apply_rope(q, *rope), layers.apply_rope(k, *rope)
    out = layers.attend(q, k, v, masking, bias=bias, scale=cfg.attention_scale,
                        softcap=cfg.attn_logit_softcap, attention=self.attention,
                        implementation=self.implementation)
    out = out.reshape(batch, length, cfg.num_attention_heads * cfg.head_dim)
    return dense(cfg.hidden_size, use_bias=cfg.o_bias, name="o_proj")(out)


class DecoderLayer(nn.Module):
  """x += attn(norm(x)); x += mlp(norm(x)), with Gemma's sandwich norms."""

  config: DecoderConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32
  attention: str = "dot_product_attention"
  implementation: str = "auto"

  @nn.compact
  def __call__(self, x: Array, masking: layers.Masking,
               rope: tuple[Array, Array] | None, bias: Array | None) -> Array:
    cfg = self.config
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    norm = functools.partial(layers.RMSNorm, cfg.rms_norm_eps,
                             cfg.norm_unit_offset, **kw)
    h = Attention(cfg, name="self_attn", attention=self.attention,
                  implementation=self.implementation, **kw)(
                      norm(name="input_layernorm")(x), masking, rope, bias)
    if cfg.sandwich_norms:
      h = norm(name="post_attention_layernorm")(h)
      x = x + h
      h = norm(name="pre_feedforward_layernorm")(x)
    else:
      x = x + h
      h = norm(name="post_attention_layernorm")(x)
    h = layers.GatedMLP(cfg.hidden_size, cfg.intermediate_size,
                        cfg.hidden_act, cfg.mlp_bias, name="mlp", **kw)(h)
    if cfg.sandwich_norms:
      h = norm(name="post_feedforward_layernorm")(h)
    return x + h


class Decoder(nn.Module):
  """Decoder trunk: token ids -> last_hidden_state [B, T, H] (final norm on).

  Attributes:
    config: model hyper-parameters.
    dtype: activation / computation dtype (softmax and norms run in fp32).
    param_dtype: dtype of the parameters.
    attention: "dot_product_attention" (default; cuDNN on GPUs) or
      "reference" (see `layers.attention_path`).
    implementation: "auto" | "xla" | "cudnn" for the former.
  """

  config: DecoderConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32
  attention: str = "dot_product_attention"
  implementation: str = "auto"

  @nn.compact
  def __call__(self, input_ids: Array, attention_mask: Array) -> Array:
    """Runs the decoder over a right-padded batch.

    Args:
      input_ids: [B, T] int token ids.
      attention_mask: [B, T], 1 for real tokens, 0 for trailing padding.

    Returns:
      [B, T, hidden_size] hidden states after the final norm (as HF's
      `LlamaModel` etc.); values at padded positions are meaningless.
    """
    cfg = self.config
    if input_ids.ndim != 2:
      raise JaxrecError(
          f"input_ids must be [batch, length], got shape {input_ids.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    length = input_ids.shape[1]
    x = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="embed_tokens",
                 **kw)(input_ids)
    if cfg.embed_scale:
      # HF rounds sqrt(hidden) to the weights' dtype first (55.4 -> 55.5 in bf16).
      scale = jnp.asarray(math.sqrt(cfg.hidden_size), self.param_dtype)
      x = x * scale.astype(x.dtype)

    ropes: dict[str, tuple[Array, Array] | None] = {FULL: None, SLIDING: None}
    bias = None
    if cfg.position == "rope":
      full = layers.rope_cos_sin(cfg.rope.inv_freq(cfg.head_dim), length,
                                 self.dtype)
      local = full if cfg.local_rope is None else layers.rope_cos_sin(
          cfg.local_rope.inv_freq(cfg.head_dim), length, self.dtype)
      ropes = {FULL: full, SLIDING: local}
    else:
      bias = layers.alibi_bias(cfg.num_attention_heads, length)

    full = layers.Masking(attention_mask, cfg.causal)
    masks = {FULL: full, SLIDING: full}
    if SLIDING in cfg.layer_types and cfg.sliding_window < length:
      masks[SLIDING] = layers.Masking(attention_mask, cfg.causal,
                                      cfg.sliding_window)
    for i, kind in enumerate(cfg.layer_types):
      x = DecoderLayer(cfg, name=f"layers_{i}", attention=self.attention,
                       implementation=self.implementation, **kw)(
                           x, masks[kind], ropes[kind], bias)
    return layers.RMSNorm(cfg.rms_norm_eps, cfg.norm_unit_offset, name="norm",
                          **kw)(x)
