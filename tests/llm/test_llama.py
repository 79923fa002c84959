"""Decoder + load_hf_model against transformers' Llama/Mistral/Qwen2/Qwen3."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.errors import JaxrecError
from jaxrec.llm import checkpoint
from jaxrec.llm import decoder
from jaxrec.llm import llama
import llm_parity

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = llm_parity.VOCAB
TINY = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=96, max_position_embeddings=128)
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0,
               # Small, so the tiny head dim spans all three frequency bands.
               "original_max_position_embeddings": 64}

CONFIGS = {
    "llama_gqa": lambda: transformers.LlamaConfig(**TINY),
    "llama_biases_head_dim": lambda: transformers.LlamaConfig(
        **TINY, attention_bias=True, mlp_bias=True, head_dim=8),
    "llama3_rope": lambda: transformers.LlamaConfig(
        **TINY, rope_theta=500.0, rope_scaling=dict(LLAMA3_ROPE)),
    "llama_linear_rope": lambda: transformers.LlamaConfig(
        **TINY, rope_scaling={"rope_type": "linear", "factor": 4.0}),
    "qwen2": lambda: transformers.Qwen2Config(**TINY),
    "qwen2_window_upper_layers": lambda: transformers.Qwen2Config(
        **TINY, use_sliding_window=True, sliding_window=3,
        max_window_layers=1),
    "qwen3_qk_norm": lambda: transformers.Qwen3Config(**TINY, head_dim=24),
    "qwen3_window_bias": lambda: transformers.Qwen3Config(
        **TINY, attention_bias=True, use_sliding_window=True,
        sliding_window=4, max_window_layers=1),
    "mistral_window": lambda: transformers.MistralConfig(
        **TINY, sliding_window=3),
}


def _reference(config, make=transformers.AutoModel.from_config
               ) -> "torch.nn.Module":
  torch.manual_seed(0)
  model = make(config).eval()
  llm_parity.perturb_(model)
  return model


_padded_batch = llm_parity.padded_batch
_torch_hidden = llm_parity.torch_hidden


def _assert_close_on_real(ours, ref, mask, atol=1e-4, label="llama"):
  llm_parity.assert_close_on_real(ours, ref, mask, atol, label)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_torch(tmp_path, name):
  ref = _reference(CONFIGS[name]())
  ref.save_pretrained(tmp_path)

  module, params, _ = checkpoint.load_hf_model(tmp_path)

  assert isinstance(module, decoder.Decoder)
  assert checkpoint.param_count(params) == sum(
      p.numel() for p in ref.parameters())
  ids, mask = _padded_batch()
  ours = jax.jit(module.apply)({"params": params}, ids, mask)
  assert ours.shape == (2, 10, 64) and ours.dtype == jnp.float32
  _assert_close_on_real(ours, _torch_hidden(ref, ids, mask), mask, label=name)


def test_qwen2_has_qkv_bias_but_no_o_bias(tmp_path):
  _reference(CONFIGS["qwen2"]()).save_pretrained(tmp_path)

  _, params, _ = checkpoint.load_hf_model(tmp_path)

  attn = params["layers_0"]["self_attn"]
  assert {"kernel", "bias"} == set(attn["q_proj"]) == set(attn["v_proj"])
  assert set(attn["o_proj"]) == {"kernel"}


def test_llama3_inv_freq_matches_transformers():
  ref = _reference(CONFIGS["llama3_rope"]())
  hf = {"model_type": "llama", **ref.config.to_dict()}

  config = llama.from_hf(hf)
  ours = config.rope.inv_freq(config.head_dim)

  default = llama.from_hf({**hf, "rope_parameters": {"rope_theta": 500.0}})
  default = default.rope.inv_freq(default.head_dim)
  np.testing.assert_allclose(ours, ref.rotary_emb.inv_freq.numpy(), rtol=1e-6)
  # Sanity: the scaling changes low frequencies and keeps the highest.
  assert ours[0] == default[0] and ours[-1] < default[-1]


def test_causal_lm_checkpoint_loads_and_ignores_lm_head(tmp_path):
  ref = _reference(CONFIGS["llama_gqa"](), transformers.LlamaForCausalLM)
  ref.save_pretrained(tmp_path)

  module, params, _ = checkpoint.load_hf_model(tmp_path)

  ids, mask = _padded_batch()
  ours = module.apply({"params": params}, ids, mask)
  _assert_close_on_real(ours, _torch_hidden(ref.model, ids, mask), mask)
  assert "lm_head" not in params


def test_sharded_bfloat16_checkpoint(tmp_path):
  ref = _reference(CONFIGS["qwen2"]()).to(torch.bfloat16)
  ref.save_pretrained(tmp_path, max_shard_size="40KB")
  assert (tmp_path / "model.safetensors.index.json").is_file()

  module, params, _ = checkpoint.load_hf_model(tmp_path)

  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  ids, mask = _padded_batch()
  ours = module.apply({"params": params}, ids, mask)
  _assert_close_on_real(ours, _torch_hidden(ref.float(), ids, mask), mask)


def test_bfloat16_compute_stays_close(tmp_path):
  ref = _reference(CONFIGS["llama_gqa"]())
  ref.save_pretrained(tmp_path)
  ids, mask = _padded_batch()

  module, params, _ = checkpoint.load_hf_model(
      tmp_path, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)

  ours = module.apply({"params": params}, ids, mask)
  assert ours.dtype == jnp.bfloat16
  _assert_close_on_real(ours, _torch_hidden(ref, ids, mask), mask, atol=0.1,
                        label="llama bf16")


def test_config_reads_transformers_v4_layout():
  hf = {"model_type": "llama", "vocab_size": 10, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 1,
        "head_dim": 32, "rope_theta": 500000.0, "rope_scaling": LLAMA3_ROPE}

  config = llama.from_hf(hf)

  assert config.head_dim == 32 and config.num_key_value_heads == 1
  assert config.rope.theta == 500000.0 and config.rope.type == "llama3"
  assert config.rope.original_max_position_embeddings == 64
  default = llama.from_hf({**hf, "rope_scaling": None, "head_dim": None})
  assert default.rope.type == "default" and default.head_dim == 16


@pytest.mark.parametrize("rope", [{"rope_type": "yarn", "factor": 4.0},
                                  {"type": "dynamic", "factor": 2.0}])
def test_unsupported_rope_type_is_named(rope):
  hf = {"model_type": "llama", "vocab_size": 10, "hidden_size": 64,
        "intermediate_size": 96, "num_hidden_layers": 1,
        "num_attention_heads": 4, "rope_scaling": rope}
  kind = rope.get("rope_type", rope.get("type"))

  with pytest.raises(JaxrecError, match=f"unsupported rope type '{kind}'"):
    llama.from_hf(hf)


def test_config_missing_required_field():
  with pytest.raises(JaxrecError, match="qwen2 config lacks hidden_size"):
    llama.from_hf({"model_type": "qwen2", "vocab_size": 10})


def _to_v4_layout(folder) -> dict:
  """config.json as transformers v4 wrote it: rope_theta + rope_scaling."""
  config = llm_parity.edit_config(folder)
  rope = dict(config.pop("rope_parameters"))
  theta = rope.pop("rope_theta")
  scaling = rope if rope.get("rope_type", "default") != "default" else None
  return llm_parity.edit_config(folder, drop=("rope_parameters",),
                                rope_theta=theta, rope_scaling=scaling)


@pytest.mark.parametrize("name", ["llama3_rope", "llama_linear_rope",
                                  "mistral_window"])
def test_transformers_v4_config_layout_loads_the_same(tmp_path, name):
  ref = _reference(CONFIGS[name]())
  ref.save_pretrained(tmp_path)
  assert "rope_parameters" in llm_parity.edit_config(tmp_path)  # v5 layout
  v5 = llama.from_hf(llm_parity.edit_config(tmp_path))

  v4_json = _to_v4_layout(tmp_path)
  module, params, _ = checkpoint.load_hf_model(tmp_path)

  assert "rope_parameters" not in v4_json and "rope_theta" in v4_json
  assert module.config == v5
  ids, mask = _padded_batch()
  _assert_close_on_real(module.apply({"params": params}, ids, mask),
                        _torch_hidden(ref, ids, mask), mask,
                        label=f"{name} v4 config")
