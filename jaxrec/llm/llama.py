"""Llama-family decoder (Llama, Mistral, Qwen2) in Flax, matching transformers.

Inference only and without `lm_head`: jaxrec reads `last_hidden_state` (after
the final RMSNorm) of a frozen causal LLM as a content embedding. Module and
parameter names mirror Hugging Face's so `checkpoint.py` maps keys one to one.
"""

from collections.abc import Mapping
import dataclasses
import functools
import math
from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.errors import JaxrecError

Array = jax.Array
DType = Any

MODEL_TYPES = ("llama", "mistral", "qwen2")
ROPE_TYPES = ("default", "llama3")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  """Hyper-parameters of a Llama-style decoder; defaults are Llama-2-7B.

  `num_key_value_heads` and `head_dim` of None resolve to `num_attention_heads`
  and `hidden_size // num_attention_heads`. Fields prefixed `rope_` other than
  `rope_theta` only apply to `rope_type="llama3"`. `sliding_window` limits
  attention to that many most recent tokens (Mistral), except in the layers
  listed in `full_attention_layers` (Qwen2's `max_window_layers`).
  """

  vocab_size: int = 32000
  hidden_size: int = 4096
  intermediate_size: int = 11008
  num_hidden_layers: int = 32
  num_attention_heads: int = 32
  num_key_value_heads: int | None = None
  head_dim: int | None = None
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_type: str = "default"
  rope_factor: float = 8.0
  rope_low_freq_factor: float = 1.0
  rope_high_freq_factor: float = 4.0
  rope_original_max_position_embeddings: int = 8192
  max_position_embeddings: int = 4096
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  hidden_act: str = "silu"
  sliding_window: int | None = None
  full_attention_layers: tuple[int, ...] = ()

  def __post_init__(self):
    # Frozen dataclass: resolve the derived defaults in place.
    if self.num_key_value_heads is None:
      object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
    if self.head_dim is None:
      object.__setattr__(self, "head_dim",
                         self.hidden_size // self.num_attention_heads)
    object.__setattr__(self, "full_attention_layers",
                       tuple(self.full_attention_layers))
    if self.num_attention_heads % self.num_key_value_heads:
      raise JaxrecError(
          f"num_attention_heads {self.num_attention_heads} is not a multiple "
          f"of num_key_value_heads {self.num_key_value_heads}")
    if self.rope_type not in ROPE_TYPES:
      raise JaxrecError(f"unsupported rope type {self.rope_type!r}; "
                        f"supported: {', '.join(ROPE_TYPES)}")
    if self.hidden_act not in ("silu", "swish"):
      raise JaxrecError(f"unsupported Llama hidden_act {self.hidden_act!r}; "
                        "only 'silu' is supported")

  @classmethod
  def from_hf(cls, hf: Mapping[str, Any]) -> "LlamaConfig":
    """Builds the config from a Hugging Face `config.json` dict.

    Accepts both the transformers v4 layout (`rope_theta` + `rope_scaling`)
    and the v5 one (`rope_parameters` holding `rope_theta`).
    """
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
      raise JaxrecError(f"LlamaConfig cannot read model_type {model_type!r}; "
                        f"supported: {', '.join(MODEL_TYPES)}")
    required = ("vocab_size", "hidden_size", "intermediate_size",
                "num_hidden_layers", "num_attention_heads")
    missing = [key for key in required if hf.get(key) is None]
    if missing:
      raise JaxrecError(f"{model_type} config lacks {', '.join(missing)}")
    get = lambda key, default: default if hf.get(key) is None else hf[key]
    num_layers = hf["num_hidden_layers"]
    if model_type == "qwen2":
      qkv_bias, o_bias, mlp_bias = True, False, False
    elif model_type == "mistral":
      qkv_bias = o_bias = mlp_bias = False
    else:
      qkv_bias = o_bias = bool(get("attention_bias", False))
      mlp_bias = bool(get("mlp_bias", False))
    sliding_window, full_layers = _sliding_window(hf, model_type, num_layers)
    return cls(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_hidden_layers=num_layers,
        num_attention_heads=hf["num_attention_heads"],
        num_key_value_heads=hf.get("num_key_value_heads"),
        head_dim=hf.get("head_dim"),
        rms_norm_eps=get("rms_norm_eps", 1e-6),
        max_position_embeddings=get("max_position_embeddings", 4096),
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_bias=mlp_bias,
        hidden_act=get("hidden_act", "silu"),
        sliding_window=sliding_window,
        full_attention_layers=full_layers,
        **_rope_fields(hf),
    )


def _rope_fields(hf: Mapping[str, Any]) -> dict[str, Any]:
  """Reads RoPE settings from either the v4 or the v5 config layout."""
  rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
  if rope and all(isinstance(v, Mapping) for v in rope.values()):
    raise JaxrecError("per-layer-type rope_parameters are not supported")
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if rope_type not in ROPE_TYPES:
    raise JaxrecError(f"unsupported rope type {rope_type!r}; "
                      f"supported: {', '.join(ROPE_TYPES)}")
  partial = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor"))
  if partial not in (None, 1, 1.0):
    raise JaxrecError(f"partial_rotary_factor {partial} is not supported")
  theta = rope.get("rope_theta", hf.get("rope_theta"))
  fields = {"rope_theta": float(10000.0 if theta is None else theta),
            "rope_type": rope_type}
  if rope_type == "llama3":
    try:
      fields.update(
          rope_factor=float(rope["factor"]),
          rope_low_freq_factor=float(rope["low_freq_factor"]),
          rope_high_freq_factor=float(rope["high_freq_factor"]),
          rope_original_max_position_embeddings=int(rope.get(
              "original_max_position_embeddings",
              hf.get("max_position_embeddings"))))
    except (KeyError, TypeError) as e:
      raise JaxrecError(f"llama3 rope scaling is missing {e}") from None
  return fields


def _sliding_window(hf: Mapping[str, Any], model_type: str,
                    num_layers: int) -> tuple[int | None, tuple[int, ...]]:
  """(window or None, indices of layers without it), as transformers does."""
  window = hf.get("sliding_window")
  if model_type == "llama" or window is None:
    return None, ()
  if model_type == "mistral":
    return int(window), ()
  # qwen2: the window is only used when switched on, and not in all layers.
  if not hf.get("use_sliding_window"):
    return None, ()
  layer_types = hf.get("layer_types") or [
      "sliding_attention" if i >= hf.get("max_window_layers", 0) else
      "full_attention" for i in range(num_layers)]
  full = tuple(i for i, t in enumerate(layer_types) if t != "sliding_attention")
  return int(window), full


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
  """Inverse RoPE frequencies [head_dim // 2], as transformers computes them.

  Float32 arithmetic on purpose: it reproduces HF's rounding, which matters
  at large positions.
  """
  dim = config.head_dim
  exponent = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim
  inv_freq = (1.0 / (np.float32(config.rope_theta) ** exponent)).astype(
      np.float32)
  if config.rope_type == "llama3":
    inv_freq = _llama3_scaling(inv_freq, config)
  return inv_freq


def _llama3_scaling(inv_freq: np.ndarray, config: LlamaConfig) -> np.ndarray:
  """Llama 3.1 frequency scaling (transformers' `_compute_llama3_parameters`).

  Long wavelengths are slowed by `factor`, short ones kept, and the band in
  between interpolated smoothly.
  """
  factor = config.rope_factor
  low, high = config.rope_low_freq_factor, config.rope_high_freq_factor
  old_len = config.rope_original_max_position_embeddings
  low_freq_wavelen, high_freq_wavelen = old_len / low, old_len / high
  wavelen = np.float32(2 * math.pi) / inv_freq
  scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
  return np.where(is_medium, smoothed, scaled).astype(np.float32)


def rotate_half(x: Array) -> Array:
  """HF RoPE convention: the two halves of the head dim form the pairs."""
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([-x2, x1], axis=-1)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
  """Rotates [B, T, N, D] by per-position angles given as [T, D] cos/sin."""
  cos, sin = cos[:, None, :], sin[:, None, :]
  return x * cos + rotate_half(x) * sin


def rope_cos_sin(config: LlamaConfig, length: int,
                 dtype: DType) -> tuple[Array, Array]:
  """cos/sin tables [T, head_dim] for positions 0..length-1, made in fp32."""
  positions = jnp.arange(length, dtype=jnp.float32)
  freqs = positions[:, None] * jnp.asarray(rope_inv_freq(config))[None, :]
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def causal_mask(attention_mask: Array,
                sliding_window: int | None = None) -> Array:
  """Boolean [B, 1, T, T] mask: causal, real keys only, optional window.

  Assumes right padding, so positions are 0..T-1 in every row.
  """
  length = attention_mask.shape[1]
  q = jnp.arange(length)[:, None]
  k = jnp.arange(length)[None, :]
  allowed = k <= q
  if sliding_window is not None:
    allowed &= k > q - sliding_window
  return allowed[None, None] & (attention_mask > 0)[:, None, None, :]


class RMSNorm(nn.Module):
  """RMSNorm computed in float32, then scaled in the activation dtype."""

  epsilon: float = 1e-6
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],),
                       self.param_dtype)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) +
                              self.epsilon)
    return (scale.astype(self.dtype) * x32.astype(self.dtype)).astype(
        self.dtype)


class LlamaAttention(nn.Module):
  """Grouped-query self-attention with RoPE on queries and keys."""

  config: LlamaConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, cos: Array, sin: Array) -> Array:
    cfg = self.config
    dense = functools.partial(nn.Dense, dtype=self.dtype,
                              param_dtype=self.param_dtype)
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
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    # Handles GQA natively (query head h uses kv head h // group), fp32 softmax.
    out = jax.nn.dot_product_attention(q, k, v, mask=mask)
    out = out.reshape(batch, length, cfg.num_attention_heads * cfg.head_dim)
    return dense(cfg.hidden_size, use_bias=cfg.o_bias, name="o_proj")(out)


class LlamaMLP(nn.Module):
  """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

  config: LlamaConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.config
    dense = functools.partial(nn.Dense, use_bias=cfg.mlp_bias,
                              dtype=self.dtype, param_dtype=self.param_dtype)
    gate = dense(cfg.intermediate_size, name="gate_proj")(x)
    up = dense(cfg.intermediate_size, name="up_proj")(x)
    return dense(cfg.hidden_size, name="down_proj")(jax.nn.silu(gate) * up)


class LlamaDecoderLayer(nn.Module):
  """Pre-norm block: x += attn(norm(x)); x += mlp(norm(x))."""

  config: LlamaConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array, cos: Array, sin: Array) -> Array:
    cfg = self.config
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    norm = functools.partial(RMSNorm, epsilon=cfg.rms_norm_eps, **kw)
    h = norm(name="input_layernorm")(x)
    x = x + LlamaAttention(cfg, name="self_attn", **kw)(h, mask, cos, sin)
    h = norm(name="post_attention_layernorm")(x)
    return x + LlamaMLP(cfg, name="mlp", **kw)(h)


class LlamaDecoder(nn.Module):
  """Llama / Mistral / Qwen2 trunk: token ids -> last_hidden_state [B, T, H].

  Attributes:
    config: model hyper-parameters.
    dtype: activation / computation dtype (softmax and norms run in fp32).
    param_dtype: dtype of the parameters.
  """

  config: LlamaConfig
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, attention_mask: Array) -> Array:
    """Runs the decoder over a right-padded batch.

    Args:
      input_ids: [B, T] int token ids.
      attention_mask: [B, T], 1 for real tokens, 0 for trailing padding.

    Returns:
      [B, T, hidden_size] hidden states after the final norm (as HF
      `LlamaModel`); values at padded positions are meaningless.
    """
    cfg = self.config
    if input_ids.ndim != 2:
      raise JaxrecError(
          f"input_ids must be [batch, length], got shape {input_ids.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="embed_tokens",
                 **kw)(input_ids)
    cos, sin = rope_cos_sin(cfg, input_ids.shape[1], self.dtype)
    full_mask = causal_mask(attention_mask)
    window_mask = (
        full_mask if cfg.sliding_window is None or
        cfg.sliding_window >= input_ids.shape[1] else
        causal_mask(attention_mask, cfg.sliding_window))
    for i in range(cfg.num_hidden_layers):
      mask = full_mask if i in cfg.full_attention_layers else window_mask
      x = LlamaDecoderLayer(cfg, name=f"layers_{i}", **kw)(x, mask, cos, sin)
    return RMSNorm(cfg.rms_norm_eps, name="norm", **kw)(x)
