"""Baichuan2: fused W_pack checkpoints, RoPE (7B) and ALiBi (13B).

transformers has no Baichuan class, so the RoPE model is checked against a
tiny transformers Llama whose q/k/v weights are stacked into Baichuan's
`W_pack` layout, and the ALiBi model against a NumPy forward pass written
here from Baichuan2-13B's modeling code.
"""

import json
import math

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from jaxrec.errors import JaxrecError
from jaxrec.llm import baichuan
from jaxrec.llm import checkpoint
from jaxrec.llm import layers
import llm_parity

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

HIDDEN, HEADS, LAYERS, FFN = 64, 4, 2, 96
# Keys of Baichuan2-7B-Base's config.json (13B: no max_position_embeddings).
BAICHUAN2_7B = {
    "architectures": ["BaichuanForCausalLM"],
    "auto_map": {"AutoConfig": "configuration_baichuan.BaichuanConfig",
                 "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM"},
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    "hidden_act": "silu", "hidden_size": HIDDEN, "initializer_range": 0.02,
    "intermediate_size": FFN, "max_position_embeddings": 128,
    "model_max_length": 128, "model_type": "baichuan",
    "num_attention_heads": HEADS, "num_hidden_layers": LAYERS,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
    "torch_dtype": "float32", "use_cache": True,
    "vocab_size": llm_parity.VOCAB, "z_loss_weight": 0,
}


@pytest.fixture(scope="module")
def llama_ref():
  """A tiny multi-head (no GQA) Llama with an lm_head, as Baichuan has."""
  torch.manual_seed(0)
  config = transformers.LlamaConfig(
      vocab_size=llm_parity.VOCAB, hidden_size=HIDDEN, intermediate_size=FFN,
      num_hidden_layers=LAYERS, num_attention_heads=HEADS,
      num_key_value_heads=HEADS, max_position_embeddings=128,
      rms_norm_eps=1e-6)
  model = transformers.LlamaForCausalLM(config).eval()
  llm_parity.perturb_(model)
  return model


def _write_baichuan(folder, llama_model, **config_changes) -> dict:
  """Saves the Llama's weights in Baichuan's layout: q/k/v -> W_pack."""
  state = {k: v.detach().clone().contiguous()
           for k, v in llama_model.state_dict().items()}
  for i in range(LAYERS):
    attn = f"model.layers.{i}.self_attn"
    state[f"{attn}.W_pack.weight"] = torch.cat(
        [state.pop(f"{attn}.{n}_proj.weight") for n in "qkv"], dim=0)
  save_file(state, str(folder / "model.safetensors"))
  config = {k: v for k, v in {**BAICHUAN2_7B, **config_changes}.items()
            if v is not None}
  (folder / "config.json").write_text(json.dumps(config))
  return {k: v.double().numpy() for k, v in state.items()}


def test_rope_baichuan2_matches_the_llama_it_was_packed_from(tmp_path,
                                                             llama_ref):
  _write_baichuan(tmp_path, llama_ref)

  module, params, _ = checkpoint.load_hf_model(tmp_path)

  assert module.config.position == "rope" and module.config.rope.theta == 1e4
  q = params["layers_1"]["self_attn"]["q_proj"]["kernel"]
  np.testing.assert_array_equal(
      q, llama_ref.model.layers[1].self_attn.q_proj.weight.detach().numpy().T)
  ids, mask = llm_parity.padded_batch()
  llm_parity.assert_close_on_real(
      module.apply({"params": params}, ids, mask),
      llm_parity.torch_hidden(llama_ref.model, ids, mask), mask,
      label="baichuan2 rope (W_pack) vs llama")


def _numpy_alibi_forward(w: dict, ids: np.ndarray, mask: np.ndarray,
                         eps: float = 1e-6) -> np.ndarray:
  """Baichuan2-13B's forward in float64 NumPy, from its modeling code.

  Attention logits are q.k / sqrt(d) + slope_h * key_position (the 13B's
  `_gen_alibi_mask`), then causal and padding masks; no RoPE.
  """
  def rms(x, weight):
    return weight * x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps)

  batch, length = ids.shape
  head_dim = HIDDEN // HEADS
  slopes = np.array([2.0 ** (-8.0 * (h + 1) / HEADS) for h in range(HEADS)])
  alibi = slopes[:, None, None] * np.arange(length)[None, None, :]  # [N, 1, S]
  q_pos, k_pos = np.arange(length)[:, None], np.arange(length)[None, :]
  allowed = (k_pos <= q_pos)[None] & (mask[:, None, :] > 0)  # [B, T, S]
  x = w["model.embed_tokens.weight"][ids]
  for i in range(LAYERS):
    p = f"model.layers.{i}."
    h = rms(x, w[p + "input_layernorm.weight"])
    qkv = h @ w[p + "self_attn.W_pack.weight"].T
    q, k, v = (t.reshape(batch, length, HEADS, head_dim).transpose(0, 2, 1, 3)
               for t in np.split(qkv, 3, axis=-1))
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + alibi[None]
    logits = np.where(allowed[:, None], logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, HIDDEN)
    x = x + out @ w[p + "self_attn.o_proj.weight"].T
    h = rms(x, w[p + "post_attention_layernorm.weight"])
    gate = h @ w[p + "mlp.gate_proj.weight"].T
    up = h @ w[p + "mlp.up_proj.weight"].T
    x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
  return rms(x, w["model.norm.weight"])


def test_alibi_baichuan2_matches_numpy_reference(tmp_path, llama_ref):
  # 13B-style config.json: model_max_length only -> ALiBi.
  weights = _write_baichuan(tmp_path, llama_ref, max_position_embeddings=None)

  module, params, _ = checkpoint.load_hf_model(tmp_path)

  assert module.config.position == "alibi"
  ids, mask = llm_parity.padded_batch(length=12, real_second=7)
  ours = module.apply({"params": params}, ids, mask)
  ref = _numpy_alibi_forward(weights, ids, mask)
  llm_parity.assert_close_on_real(ours, ref, mask,
                                  label="baichuan2 alibi vs numpy")
  # ALiBi really is in play: the RoPE model differs on the same weights.
  rope_module = type(module)(baichuan.from_hf(
      {**BAICHUAN2_7B, "position_embedding": "rope"}))
  rope_out = rope_module.apply({"params": params}, ids, mask)
  assert llm_parity.max_diff_on_real(rope_out, ref, mask) > 1e-2


def test_alibi_slopes_follow_baichuan():
  np.testing.assert_allclose(layers.alibi_slopes(8),
                             [2.0 ** -i for i in range(1, 9)])
  # 40 heads (13B): 32 slopes 2^(-8i/32), then the odd ones of 64 heads.
  expected = ([2.0 ** (-8.0 * i / 32) for i in range(1, 33)] +
              [2.0 ** (-8.0 * i / 64) for i in range(1, 17, 2)])
  np.testing.assert_allclose(layers.alibi_slopes(40), expected, rtol=1e-6)


@pytest.mark.parametrize("changes,position", [
    ({}, "rope"),
    ({"max_position_embeddings": None}, "alibi"),
    ({"max_position_embeddings": None,
      "architectures": ["BaiChuanForCausalLM"]}, "rope"),
    ({"position_embedding": "alibi"}, "alibi"),
])
def test_position_encoding_from_config(changes, position):
  config = {k: v for k, v in {**BAICHUAN2_7B, **changes}.items()
            if v is not None}
  assert baichuan.from_hf(config).position == position


def test_bad_position_embedding_is_named():
  with pytest.raises(JaxrecError, match="position_embedding 'xpos'"):
    baichuan.from_hf({**BAICHUAN2_7B, "position_embedding": "xpos"})


def test_w_pack_that_does_not_split_in_three_is_named(tmp_path, llama_ref):
  _write_baichuan(tmp_path, llama_ref)
  path = tmp_path / "model.safetensors"
  state = load_file(path)
  key = "model.layers.1.self_attn.W_pack.weight"
  state[key] = state[key][:-1]
  save_file(state, str(path))

  with pytest.raises(JaxrecError, match=rf"'{key}' .* shape \(191, 64\), "
                     "whose first axis does not split into 3 equal blocks"):
    checkpoint.load_hf_model(tmp_path)
