"""Shared decoder layers: RMSNorm, RoPE, ALiBi, masks, attention, gated MLP.

The model families (`llama.py`, `gemma.py`, `baichuan.py`) are thin: they
turn a Hugging Face `config.json` into a `decoder.DecoderConfig` and name the
checkpoint tensors; the maths lives here, once, and matches transformers'
implementations (including where they round: norms and softmax in float32,
RoPE frequencies in float32 as HF computes them).
"""

from collections.abc import Callable, Mapping
import dataclasses
import functools
import logging
import math
from typing import Any, NamedTuple

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.errors import JaxrecError

Array = jax.Array
DType = Any

# HF `ACT2FN` names -> JAX functions. "gelu" in HF is the exact (erf) form.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}

ROPE_TYPES = ("default", "linear", "llama3")
FULL, SLIDING = "full_attention", "sliding_attention"


def activation(name: str) -> Callable[[Array], Array]:
  if name not in ACTIVATIONS:
    raise JaxrecError(f"unsupported activation {name!r}; "
                      f"supported: {', '.join(sorted(ACTIVATIONS))}")
  return ACTIVATIONS[name]


# ----------------------------------------------------------------------------
# RoPE


@dataclasses.dataclass(frozen=True)
class Rope:
  """Rotary position embedding settings (HF `rope_parameters`).

  `factor` applies to "linear" (positions divided by it) and "llama3"; the
  other scaling fields only to "llama3". `freq_factors` divides each inverse
  frequency by its own factor, as llama.cpp's `rope_freqs` tensor (how GGUF
  files store Llama 3.1's scaling).
  """

  theta: float = 10000.0
  type: str = "default"
  factor: float = 1.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192
  freq_factors: tuple[float, ...] = ()

  def __post_init__(self):
    if self.type not in ROPE_TYPES:
      raise JaxrecError(f"unsupported rope type {self.type!r}; "
                        f"supported: {', '.join(ROPE_TYPES)}")

  @classmethod
  def from_hf(cls, rope: Mapping[str, Any] | None, theta: float | None,
              max_position_embeddings: int | None = None) -> "Rope":
    """Reads one RoPE parameter dict (v4 `rope_scaling` or v5 `rope_parameters`).

    Args:
      rope: the dict, or None for plain RoPE.
      theta: base used when the dict has no `rope_theta` (v4 layout keeps it
        at the top level of config.json).
      max_position_embeddings: fallback for llama3's original context length.
    """
    rope = dict(rope or {})
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in ROPE_TYPES:
      raise JaxrecError(f"unsupported rope type {kind!r}; "
                        f"supported: {', '.join(ROPE_TYPES)}")
    partial = rope.get("partial_rotary_factor")
    if partial not in (None, 1, 1.0):
      raise JaxrecError(f"partial_rotary_factor {partial} is not supported")
    theta = rope.get("rope_theta", theta)
    fields: dict[str, Any] = {"theta": float(10000.0 if theta is None else theta),
                              "type": kind}
    try:
      if kind in ("linear", "llama3"):
        fields["factor"] = float(rope["factor"])
      if kind == "llama3":
        fields.update(
            low_freq_factor=float(rope["low_freq_factor"]),
            high_freq_factor=float(rope["high_freq_factor"]),
            original_max_position_embeddings=int(rope.get(
                "original_max_position_embeddings", max_position_embeddings)))
    except (KeyError, TypeError) as e:
      raise JaxrecError(f"{kind} rope scaling is missing {e}") from None
    return cls(**fields)

  def inv_freq(self, head_dim: int) -> np.ndarray:
    """Inverse frequencies [head_dim // 2], as transformers computes them.

    Float32 on purpose, to reproduce HF's values bit for bit (they matter at
    large positions, and a deep model amplifies last-bit differences): a
    float32 exponent, theta ** exponent rounded to float32 (torch's float32
    pow is correctly rounded in all but rare cases), its float32 reciprocal.
    """
    exponent = np.arange(0, head_dim, 2, dtype=np.int64).astype(
        np.float32) / np.float32(head_dim)
    power = (np.float64(self.theta) ** exponent.astype(np.float64)).astype(
        np.float32)
    inv_freq = (np.float32(1.0) / power).astype(np.float32)
    if self.type == "linear":
      inv_freq = (inv_freq / np.float32(self.factor)).astype(np.float32)
    elif self.type == "llama3":
      inv_freq = self._llama3(inv_freq)
    if self.freq_factors:
      if len(self.freq_factors) != len(inv_freq):
        raise JaxrecError(f"{len(self.freq_factors)} rope frequency factors "
                          f"for head_dim {head_dim}; need {len(inv_freq)}")
      inv_freq = (inv_freq / np.asarray(self.freq_factors, np.float32)).astype(
          np.float32)
    return inv_freq

  def _llama3(self, inv_freq: np.ndarray) -> np.ndarray:
    """Llama 3.1 frequency scaling (transformers' `_compute_llama3_parameters`).

    Long wavelengths are slowed by `factor`, short ones kept, and the band in
    between interpolated smoothly.
    """
    factor, low, high = self.factor, self.low_freq_factor, self.high_freq_factor
    old_len = self.original_max_position_embeddings
    low_freq_wavelen, high_freq_wavelen = old_len / low, old_len / high
    wavelen = np.float32(2 * math.pi) / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(is_medium, smoothed, scaled).astype(np.float32)


def rope_cos_sin(inv_freq: np.ndarray, length: int,
                 dtype: DType) -> tuple[Array, Array]:
  """cos/sin tables [T, head_dim] for positions 0..length-1, made in fp32
  (as transformers), or float64 when that is the dtype."""
  acc = jnp.promote_types(dtype, jnp.float32)
  positions = jnp.arange(length, dtype=acc)
  freqs = positions[:, None] * jnp.asarray(inv_freq, acc)[None, :]
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def rotate_half(x: Array) -> Array:
  """HF RoPE convention: the two halves of the head dim form the pairs."""
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([-x2, x1], axis=-1)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
  """Rotates [B, T, N, D] by per-position angles given as [T, D] cos/sin."""
  cos, sin = cos[:, None, :], sin[:, None, :]
  return x * cos + rotate_half(x) * sin


# ----------------------------------------------------------------------------
# ALiBi


def alibi_slopes(num_heads: int) -> np.ndarray:
  """Per-head ALiBi slopes (Press et al.; Baichuan's `_get_interleave`).

  For n a power of two: 2^(-8/n), 2^(-16/n), ...; otherwise the slopes of
  the nearest lower power of two, then every other slope of the next one.
  """
  def power_of_2(n: int) -> list[float]:
    start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
    return [start * start**i for i in range(n)]

  if math.log2(num_heads).is_integer():
    slopes = power_of_2(num_heads)
  else:
    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = (power_of_2(closest) +
              list(alibi_slopes(2 * closest))[0::2][:num_heads - closest])
  return np.asarray(slopes, np.float32)


def alibi_bias(num_heads: int, length: int) -> Array:
  """[1, N, T, T] additive bias slope_h * (k - q) (<= 0 for causal keys).

  Baichuan adds slope * k; per query row that differs by a constant, which
  the softmax ignores, and k - q keeps the logits small.
  """
  pos = jnp.arange(length, dtype=jnp.float32)
  rel = pos[None, :] - pos[:, None]
  return (jnp.asarray(alibi_slopes(num_heads))[:, None, None] * rel)[None]


# ----------------------------------------------------------------------------
# Masks


def attention_mask(attention_mask: Array, causal: bool = True,
                   window: int | None = None) -> Array:
  """Boolean [B, 1, T, T] mask: real keys, causal or not, optional window.

  Assumes right padding, so positions are 0..T-1 in every row. A causal
  window keeps keys k with q - window < k <= q (HF's sliding window); a
  bidirectional one keeps |q - k| < window (Gemma 3 bidirectional).
  """
  length = attention_mask.shape[1]
  q = jnp.arange(length)[:, None]
  k = jnp.arange(length)[None, :]
  allowed = (k <= q) if causal else jnp.ones((length, length), bool)
  if window is not None:
    allowed &= (k > q - window) if causal else (jnp.abs(q - k) < window)
  return allowed[None, None] & (attention_mask > 0)[:, None, None, :]


# ----------------------------------------------------------------------------
# Modules


class RMSNorm(nn.Module):
  """RMSNorm over the last axis, computed in float32 (or float64 if given).

  Llama style (`unit_offset=False`): x / rms cast to the activation dtype,
  then times `scale`. Gemma style (`unit_offset=True`): times (1 + scale) in
  float32, then cast, as transformers' Gemma RMSNorm.
  """

  epsilon: float = 1e-6
  unit_offset: bool = False
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    init = nn.initializers.zeros if self.unit_offset else nn.initializers.ones
    scale = self.param("scale", init, (x.shape[-1],), self.param_dtype)
    acc = jnp.promote_types(x.dtype, jnp.float32)
    x32 = x.astype(acc)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) +
                              self.epsilon)
    if self.unit_offset:
      return (x32 * (1.0 + scale.astype(acc))).astype(self.dtype)
    return scale.astype(self.dtype) * x32.astype(self.dtype)


def softcapped_attention(q: Array, k: Array, v: Array, mask: Array,
                         bias: Array | None, scale: float,
                         softcap: float | None) -> Array:
  """Explicit grouped-query attention with optional logit soft-capping.

  q [B, T, N, D], k/v [B, S, K, D] with N a multiple of K; mask [B, 1, T, S]
  boolean; bias broadcastable to [B, N, T, S]. Logits, softmax in float32
  (float64 for float64 inputs);
  softcap as Gemma 2: cap * tanh(logits / cap) before bias and mask.
  """
  b, t, n, d = q.shape
  kv = k.shape[2]
  acc = jnp.promote_types(q.dtype, jnp.float32)
  qg = q.reshape(b, t, kv, n // kv, d)
  logits = jnp.einsum("btkgd,bskd->bkgts", qg, k,
                      preferred_element_type=acc) * scale
  logits = logits.reshape(b, n, t, -1)
  if softcap is not None:
    logits = softcap * jnp.tanh(logits / softcap)
  if bias is not None:
    logits = logits + bias.astype(acc)
  logits = jnp.where(mask, logits, jnp.finfo(acc).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  probs = probs.reshape(b, kv, n // kv, t, -1)
  out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
  return out.reshape(b, t, n, d)


# ----------------------------------------------------------------------------
# Attention paths

# "reference": the explicit einsum/softmax above. "dot_product_attention":
# `jax.nn.dot_product_attention`, whose cuDNN kernel (fused, flash-style) is
# the fast path on GPUs; its "xla" implementation is the same maths as the
# reference and is what CPUs and TPUs run.
ATTENTION = ("reference", "dot_product_attention")
IMPLEMENTATIONS = ("auto", "xla", "cudnn")
_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)
_warned: set[str] = set()


class Masking(NamedTuple):
  """What each query may see, kept structural (not a dense [B, 1, T, S] mask)
  so the fast path can pass sequence lengths and `is_causal` to cuDNN.

  Attributes:
    token_mask: [B, T], 1 for real tokens, 0 for trailing (right) padding.
    causal: keys k <= q only.
    window: sliding window (see `attention_mask`), or None.
  """

  token_mask: Array
  causal: bool = True
  window: int | None = None

  def dense(self) -> Array:
    return attention_mask(self.token_mask, self.causal, self.window)

  def lengths(self) -> Array:
    """Real tokens per row (right padding), at least 1 so an all-padding
    filler row of a batch never softmaxes over nothing."""
    return jnp.maximum(jnp.sum(self.token_mask > 0, axis=1), 1).astype(jnp.int32)


def _warn_once(message: str) -> None:
  if message not in _warned:
    _warned.add(message)
    logging.getLogger(__name__).warning(message)


def attention_path(attention: str, implementation: str, dtype: DType, *,
                   softcap: float | None = None, bias: bool = False,
                   causal: bool = True, window: int | None = None,
                   head_dim: int = 64) -> tuple[str, str | None]:
  """("reference", None) or ("dot_product_attention", "xla" | "cudnn").

  Falls back where the fast path cannot apply: logit soft-capping (Gemma 2)
  and float64 go to the reference path (`jax.nn.dot_product_attention` has
  no cap and takes its softmax in float32); cuDNN needs a GPU, bf16/fp16,
  no additive bias (ALiBi), a head dim that is a multiple of 8 up to 128 and
  no right window (bidirectional sliding), else XLA runs the same call.
  "auto" picks cuDNN when all of that holds, XLA otherwise.
  """
  if attention not in ATTENTION:
    raise JaxrecError(f"unknown attention path {attention!r}; known: {', '.join(ATTENTION)}")
  if implementation not in IMPLEMENTATIONS:
    raise JaxrecError(f"unknown attention implementation {implementation!r}; "
                      f"known: {', '.join(IMPLEMENTATIONS)}")
  if attention == "reference":
    return "reference", None
  if softcap is not None or jnp.dtype(dtype) == jnp.float64:
    _warn_once("attention: soft-capped or float64 attention runs the reference path "
               "(jax.nn.dot_product_attention has no logit cap and a float32 softmax)")
    return "reference", None
  why_not = ("no GPU" if jax.default_backend() != "gpu" else
             f"dtype {jnp.dtype(dtype).name} (needs bfloat16/float16)"
             if jnp.dtype(dtype) not in [jnp.dtype(d) for d in _CUDNN_DTYPES] else
             "an additive bias (ALiBi)" if bias else
             "a bidirectional sliding window" if window is not None and not causal else
             f"head dim {head_dim}" if head_dim % 8 or head_dim > 128 else "")
  if implementation == "xla" or (implementation == "auto" and why_not):
    return "dot_product_attention", "xla"
  if why_not:
    _warn_once(f"attention: cuDNN cannot run here ({why_not}); using XLA")
    return "dot_product_attention", "xla"
  return "dot_product_attention", "cudnn"


def attend(q: Array, k: Array, v: Array, masking: Masking, *,
           bias: Array | None = None, scale: float | None = None,
           softcap: float | None = None, attention: str = "dot_product_attention",
           implementation: str = "auto") -> Array:
  """Multi-head (grouped-query) attention core over right-padded rows.

  q [B, T, N, D], k/v [B, S, K, D]; `attention_path` picks the reference
  einsum or `jax.nn.dot_product_attention` (XLA or cuDNN), which agree to
  float32 rounding on real tokens (tests/llm/test_layers.py).
  """
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  path, impl = attention_path(attention, implementation, q.dtype, softcap=softcap,
                              bias=bias is not None, causal=masking.causal,
                              window=masking.window, head_dim=q.shape[-1])
  if path == "reference":
    return softcapped_attention(q, k, v, masking.dense(), bias, scale, softcap)
  window = None
  if masking.window is not None:
    window = (masking.window - 1, 0 if masking.causal else masking.window - 1)
  if bias is not None:
    bias = bias.astype(q.dtype)
  # Handles GQA natively (query head h uses kv head h // group), fp32 softmax.
  return jax.nn.dot_product_attention(
      q, k, v, bias=bias, scale=scale, is_causal=masking.causal,
      key_value_seq_lengths=masking.lengths(), local_window_size=window,
      implementation=impl)


class GatedMLP(nn.Module):
  """down(act(gate(x)) * up(x)): SwiGLU (Llama) or GeGLU-tanh (Gemma)."""

  hidden_size: int
  intermediate_size: int
  act: str = "silu"
  use_bias: bool = False
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    dense = functools.partial(nn.Dense, use_bias=self.use_bias,
                              dtype=self.dtype, param_dtype=self.param_dtype)
    gate = dense(self.intermediate_size, name="gate_proj")(x)
    up = dense(self.intermediate_size, name="up_proj")(x)
    return dense(self.hidden_size, name="down_proj")(
        activation(self.act)(gate) * up)
