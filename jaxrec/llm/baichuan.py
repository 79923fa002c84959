"""Baichuan / Baichuan2 (the LEARN paper's LLM) from a config.json.

Llama blocks (pre-norm RMSNorm, SwiGLU, multi-head attention without biases)
with q, k and v fused into one Linear, `self_attn.W_pack` [3 * hidden, hidden];
the key map takes its three row blocks as our q/k/v kernels. The 7B models use
RoPE (base 10000), the 13B ones ALiBi (no RoPE). transformers has no Baichuan
class (the checkpoints ship their own `modeling_baichuan.py`), so which one a
checkpoint uses is read from its config.json:

  * `position_embedding` ("rope" | "alibi"), a jaxrec key, when present;
  * else RoPE when the config has `max_position_embeddings` (Baichuan2-7B's
    and Baichuan-7B's configs do), or names `BaiChuanForCausalLM` (Baichuan-7B);
  * else ALiBi (the 13B configs only have `model_max_length`).
"""

from collections.abc import Mapping
from typing import Any

from jaxrec.errors import JaxrecError
from jaxrec.llm import keys
from jaxrec.llm import llama
from jaxrec.llm.decoder import POSITIONS, DecoderConfig
from jaxrec.llm.layers import Rope

MODEL_TYPES = ("baichuan",)


def position_encoding(hf: Mapping[str, Any]) -> str:
  """"rope" (7B) or "alibi" (13B); see the module docstring."""
  explicit = hf.get("position_embedding")
  if explicit is not None:
    if explicit not in POSITIONS:
      raise JaxrecError(f"baichuan position_embedding {explicit!r} is not one "
                        f"of {', '.join(POSITIONS)}")
    return explicit
  if (hf.get("max_position_embeddings") is not None or
      "BaiChuanForCausalLM" in (hf.get("architectures") or ())):
    return "rope"
  return "alibi"


def from_hf(hf: Mapping[str, Any]) -> DecoderConfig:
  """Builds the decoder config from a Baichuan / Baichuan2 config.json."""
  if hf.get("model_type") not in MODEL_TYPES:
    raise JaxrecError(f"baichuan.from_hf cannot read model_type "
                      f"{hf.get('model_type')!r}")
  llama.required(hf, "baichuan")
  heads = hf["num_attention_heads"]
  if hf.get("num_key_value_heads") not in (None, heads):
    raise JaxrecError("baichuan has no grouped-query attention; "
                      f"num_key_value_heads {hf['num_key_value_heads']} != "
                      f"num_attention_heads {heads}")
  if hf["hidden_size"] % heads:
    raise JaxrecError(f"baichuan hidden_size {hf['hidden_size']} is not "
                      f"divisible by num_attention_heads {heads}")
  return DecoderConfig(
      vocab_size=hf["vocab_size"],
      hidden_size=hf["hidden_size"],
      intermediate_size=hf["intermediate_size"],
      num_hidden_layers=hf["num_hidden_layers"],
      num_attention_heads=heads,
      rms_norm_eps=llama.get(hf, "rms_norm_eps", 1e-6),
      max_position_embeddings=llama.get(
          hf, "max_position_embeddings", llama.get(hf, "model_max_length", 4096)),
      rope=Rope(theta=float(llama.get(hf, "rope_theta", 10000.0))),
      position=position_encoding(hf),
      hidden_act=llama.get(hf, "hidden_act", "silu"),
  )


def key_map(config: DecoderConfig) -> keys.KeyMap:
  """Flax `Decoder` params <- Baichuan keys: Llama's, with q/k/v in W_pack."""
  out = llama.key_map(config)
  for i in range(config.num_hidden_layers):
    attn = (f"layers_{i}", "self_attn")
    for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
      out |= keys.dense(attn + (name,), f"layers.{i}.self_attn.W_pack",
                        bias=False, split=(j, 3))
  return out


FAMILY = keys.Family("baichuan", MODEL_TYPES, from_hf, llama.module, key_map,
                     ("model.", ""))
