"""Llama family: Llama 2/3, Mistral, Qwen2/2.5 and Qwen3 from a config.json.

All are `decoder.Decoder` with pre-norm RMSNorm blocks, RoPE and grouped-query
attention; they differ in biases (Qwen2: q/k/v), q/k norm (Qwen3), RoPE
scaling (Llama 3.1) and sliding windows (Mistral; Qwen's optional one).
`key_map` names Hugging Face's tensors (`model.layers.N.self_attn.q_proj`...);
Gemma and Baichuan build theirs on it.
"""

from collections.abc import Mapping
from typing import Any

from jaxrec.errors import JaxrecError
from jaxrec.llm import decoder
from jaxrec.llm import keys
from jaxrec.llm.decoder import DecoderConfig
from jaxrec.llm.layers import FULL, SLIDING, Rope

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
# HF class defaults that differ from hidden_size // num_attention_heads.
_HEAD_DIM = {"qwen3": 128}


def required(hf: Mapping[str, Any], model_type: str,
             names: tuple[str, ...] = ("vocab_size", "hidden_size",
                                       "intermediate_size", "num_hidden_layers",
                                       "num_attention_heads")) -> None:
  missing = [key for key in names if hf.get(key) is None]
  if missing:
    raise JaxrecError(f"{model_type} config lacks {', '.join(missing)}")


def get(hf: Mapping[str, Any], key: str, default: Any) -> Any:
  """hf[key], or `default` when absent or null."""
  return default if hf.get(key) is None else hf[key]


def rope_from_hf(hf: Mapping[str, Any]) -> Rope:
  """RoPE from the v4 (`rope_theta` + `rope_scaling`) or v5 layout."""
  rope = hf.get("rope_parameters") or hf.get("rope_scaling")
  if rope and all(isinstance(v, Mapping) for v in rope.values()):
    raise JaxrecError("per-layer-type rope_parameters are not supported for "
                      f"model_type {hf.get('model_type')!r}")
  return Rope.from_hf(rope, hf.get("rope_theta"),
                      hf.get("max_position_embeddings"))


def layer_types_from_hf(hf: Mapping[str, Any], num_layers: int,
                        default: list[str]) -> tuple[str, ...]:
  types = hf.get("layer_types") or default
  if len(types) != num_layers or set(types) - {FULL, SLIDING}:
    raise JaxrecError(f"layer_types must list {num_layers} entries of "
                      f"{FULL!r}/{SLIDING!r}, got {types}")
  return tuple(types)


def _sliding_window(hf: Mapping[str, Any], model_type: str, num_layers: int
                    ) -> tuple[int | None, tuple[str, ...]]:
  """(window or None, per-layer types), as transformers decides them."""
  window = hf.get("sliding_window")
  if model_type == "llama" or window is None:
    return None, (FULL,) * num_layers
  if model_type == "mistral":
    return int(window), (SLIDING,) * num_layers
  # qwen2/qwen3: the window is only used when switched on, and not in all layers.
  if not hf.get("use_sliding_window"):
    return None, (FULL,) * num_layers
  start = get(hf, "max_window_layers", 28)
  types = layer_types_from_hf(hf, num_layers, [
      SLIDING if i >= start else FULL for i in range(num_layers)])
  return int(window), types


def from_hf(hf: Mapping[str, Any]) -> DecoderConfig:
  """Builds the decoder config from a Llama/Mistral/Qwen2/Qwen3 config.json."""
  model_type = hf.get("model_type")
  if model_type not in MODEL_TYPES:
    raise JaxrecError(f"llama.from_hf cannot read model_type {model_type!r}; "
                      f"supported: {', '.join(MODEL_TYPES)}")
  required(hf, model_type)
  num_layers = hf["num_hidden_layers"]
  if model_type == "qwen2":
    qkv_bias, o_bias, mlp_bias = True, False, False
  elif model_type == "mistral":
    qkv_bias = o_bias = mlp_bias = False
  else:
    qkv_bias = o_bias = bool(get(hf, "attention_bias", False))
    mlp_bias = bool(get(hf, "mlp_bias", False))
  window, types = _sliding_window(hf, model_type, num_layers)
  return DecoderConfig(
      vocab_size=hf["vocab_size"],
      hidden_size=hf["hidden_size"],
      intermediate_size=hf["intermediate_size"],
      num_hidden_layers=num_layers,
      num_attention_heads=hf["num_attention_heads"],
      num_key_value_heads=hf.get("num_key_value_heads"),
      head_dim=hf.get("head_dim", _HEAD_DIM.get(model_type)),
      rms_norm_eps=get(hf, "rms_norm_eps", 1e-6),
      max_position_embeddings=get(hf, "max_position_embeddings", 4096),
      rope=rope_from_hf(hf),
      qkv_bias=qkv_bias,
      o_bias=o_bias,
      mlp_bias=mlp_bias,
      hidden_act=get(hf, "hidden_act", "silu"),
      sliding_window=window,
      layer_types=types,
      qk_norm=model_type == "qwen3",
  )


def key_map(config: DecoderConfig) -> keys.KeyMap:
  """Flax `Decoder` params <- HF `LlamaModel`-style state dict keys.

  Also covers Qwen3's and Gemma's `q_norm`/`k_norm` and Gemma's sandwich
  norms (`pre_feedforward_layernorm`, `post_feedforward_layernorm`).
  """
  out: keys.KeyMap = keys.embed(("embed_tokens",), "embed_tokens")
  out |= keys.rms_norm(("norm",), "norm")
  norms = ["input_layernorm", "post_attention_layernorm"]
  if config.sandwich_norms:
    norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
  for i in range(config.num_hidden_layers):
    ours, hf = (f"layers_{i}",), f"layers.{i}"
    for name in norms:
      out |= keys.rms_norm(ours + (name,), f"{hf}.{name}")
    attn, hf_attn = ours + ("self_attn",), f"{hf}.self_attn"
    for name in ("q_proj", "k_proj", "v_proj"):
      out |= keys.dense(attn + (name,), f"{hf_attn}.{name}", config.qkv_bias)
    out |= keys.dense(attn + ("o_proj",), f"{hf_attn}.o_proj", config.o_bias)
    if config.qk_norm:
      for name in ("q_norm", "k_norm"):
        out |= keys.rms_norm(attn + (name,), f"{hf_attn}.{name}")
    for name in ("gate_proj", "up_proj", "down_proj"):
      out |= keys.dense(ours + ("mlp", name), f"{hf}.mlp.{name}",
                        config.mlp_bias)
  return out


def module(config: DecoderConfig, dtype: Any, param_dtype: Any
           ) -> decoder.Decoder:
  return decoder.Decoder(config, dtype=dtype, param_dtype=param_dtype)


FAMILY = keys.Family("llama", MODEL_TYPES, from_hf, module, key_map,
                     ("model.", ""))
