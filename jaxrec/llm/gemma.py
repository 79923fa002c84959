"""Gemma family (Google): Gemma, Gemma 2, Gemma 3 (text) from a config.json.

What sets them apart from Llama, all switches of `decoder.DecoderConfig`:
(1 + w) RMSNorm, token embeddings times sqrt(hidden_size), a GELU-tanh gated
MLP; from Gemma 2 on, sandwich norms (after attention and around the MLP),
attention scaled by `query_pre_attn_scalar` ** -0.5 and alternating local
(sliding-window) / global layers. Gemma 2 soft-caps attention logits; Gemma 3
norms each query/key head instead and gives local layers their own RoPE base.
The final-logit soft-cap concerns `lm_head`, which jaxrec does not use.

Missing config.json keys take transformers' class defaults, as there: hub
configs (e.g. Gemma 3's nested `text_config`) rely on them. The multimodal
"gemma3" checkpoint is read for its language model only.
"""

from collections.abc import Mapping
from typing import Any

from jaxrec.errors import JaxrecError
from jaxrec.llm import keys
from jaxrec.llm import llama
from jaxrec.llm.decoder import DecoderConfig
from jaxrec.llm.layers import FULL, SLIDING, Rope

MODEL_TYPES = ("gemma", "gemma2", "gemma3_text", "gemma3")

# transformers' GemmaConfig / Gemma2Config / Gemma3TextConfig defaults.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma": dict(vocab_size=256000, hidden_size=3072, intermediate_size=24576,
                  num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=16, max_position_embeddings=8192),
    "gemma2": dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                   num_hidden_layers=26, num_attention_heads=8,
                   num_key_value_heads=4, max_position_embeddings=8192,
                   query_pre_attn_scalar=256, sliding_window=4096,
                   attn_logit_softcapping=50.0),
    "gemma3_text": dict(vocab_size=262208, hidden_size=2304,
                        intermediate_size=9216, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4,
                        max_position_embeddings=131072,
                        query_pre_attn_scalar=256, sliding_window=4096),
}
_COMMON = dict(head_dim=256, rms_norm_eps=1e-6, attention_bias=False,
               hidden_activation="gelu_pytorch_tanh")


def _text_config(hf: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
  model_type = hf.get("model_type")
  if model_type == "gemma3":  # Multimodal: the language model's config.
    hf = dict(hf.get("text_config") or {})
    model_type = "gemma3_text"
  if model_type not in _DEFAULTS:
    raise JaxrecError(f"gemma.from_hf cannot read model_type {model_type!r}; "
                      f"supported: {', '.join(MODEL_TYPES)}")
  return model_type, {**_COMMON, **_DEFAULTS[model_type],
                      **{k: v for k, v in hf.items() if v is not None
                         or k == "attn_logit_softcapping"}}


def _act(hf: Mapping[str, Any], model_type: str) -> str:
  act = hf.get("hidden_act") if model_type == "gemma" else None
  act = act or hf.get("hidden_activation") or "gelu_pytorch_tanh"
  # Gemma 1 checkpoints say "gelu" but mean the tanh form (as transformers).
  return "gelu_pytorch_tanh" if act == "gelu" else act


def _gemma3_ropes(hf: Mapping[str, Any]) -> tuple[Rope, Rope]:
  """(global, local) RoPE from the v5 per-layer-type dict or the v4 keys."""
  params = hf.get("rope_parameters")
  if params and all(isinstance(v, Mapping) or v is None
                    for v in params.values()):
    glob, local = params.get(FULL) or {}, params.get(SLIDING) or {}
  else:  # v4: rope_theta / rope_scaling are global, rope_local_base_freq local.
    glob, local = dict(params or hf.get("rope_scaling") or {}), {}
  glob_theta = glob.get("rope_theta", get_theta(hf, "rope_theta", 1e6))
  local_theta = local.get("rope_theta",
                          get_theta(hf, "rope_local_base_freq", 10000.0))
  return (Rope.from_hf(glob, glob_theta, hf.get("max_position_embeddings")),
          Rope.from_hf(local, local_theta, hf.get("max_position_embeddings")))


def get_theta(hf: Mapping[str, Any], key: str, default: float) -> float:
  return float(llama.get(hf, key, default))


def from_hf(hf: Mapping[str, Any]) -> DecoderConfig:
  """Builds the decoder config from a Gemma / Gemma 2 / Gemma 3 config.json."""
  model_type, hf = _text_config(hf)
  num_layers = hf["num_hidden_layers"]
  fields: dict[str, Any] = {}
  if model_type == "gemma":
    if hf.get("use_bidirectional_attention"):
      raise JaxrecError("bidirectional Gemma is only supported for Gemma 3")
    fields["rope"] = llama.rope_from_hf(hf)
  else:
    window = int(hf["sliding_window"])
    if model_type == "gemma2":
      if hf.get("use_bidirectional_attention"):
        raise JaxrecError("bidirectional Gemma is only supported for Gemma 3")
      types = llama.layer_types_from_hf(hf, num_layers, [
          SLIDING if (i + 1) % 2 else FULL for i in range(num_layers)])
      fields.update(rope=llama.rope_from_hf(hf),
                    attn_logit_softcap=hf.get("attn_logit_softcapping"))
    else:
      pattern = int(llama.get(hf, "sliding_window_pattern", 6))
      types = llama.layer_types_from_hf(hf, num_layers, [
          SLIDING if (i + 1) % pattern else FULL for i in range(num_layers)])
      fields["rope"], fields["local_rope"] = _gemma3_ropes(hf)
      fields["qk_norm"] = True
      if hf.get("use_bidirectional_attention"):
        # transformers keeps |q - k| < window // 2 + 1 (EmbeddingGemma).
        fields["causal"], window = False, window // 2 + 1
    fields.update(sliding_window=window, layer_types=types,
                  sandwich_norms=True,
                  query_pre_attn_scalar=float(hf["query_pre_attn_scalar"]))
  bias = bool(hf.get("attention_bias"))
  return DecoderConfig(
      vocab_size=hf["vocab_size"],
      hidden_size=hf["hidden_size"],
      intermediate_size=hf["intermediate_size"],
      num_hidden_layers=num_layers,
      num_attention_heads=hf["num_attention_heads"],
      num_key_value_heads=hf.get("num_key_value_heads"),
      head_dim=hf["head_dim"],
      rms_norm_eps=hf["rms_norm_eps"],
      max_position_embeddings=hf["max_position_embeddings"],
      qkv_bias=bias,
      o_bias=bias,
      hidden_act=_act(hf, model_type),
      norm_unit_offset=True,
      embed_scale=True,
      **fields,
  )


FAMILY = keys.Family(
    "gemma", MODEL_TYPES, from_hf, llama.module, llama.key_map,
    # Text models, then the multimodal Gemma 3 (v5 and v4 key layouts).
    ("model.", "", "model.language_model.", "language_model.model."))
