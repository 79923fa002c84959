"""Gemma, Gemma 2 and Gemma 3 through load_hf_model against transformers."""

import jax.numpy as jnp
import pytest

from jaxrec.llm import checkpoint
from jaxrec.llm import gemma
from jaxrec.llm.layers import FULL, SLIDING
import llm_parity

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=llm_parity.VOCAB, hidden_size=64, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            intermediate_size=96, max_position_embeddings=128)
# Local, global, local: a 3-key window bites on the 10-token batch.
TYPES = [SLIDING, FULL, SLIDING]

CONFIGS = {
    "gemma": lambda: transformers.GemmaConfig(**TINY),
    # A small cap and scalar, so that ignoring either would show.
    "gemma2_softcap_window": lambda: transformers.Gemma2Config(
        **TINY, sliding_window=3, query_pre_attn_scalar=20,
        attn_logit_softcapping=1.0),
    "gemma3_local_rope": lambda: transformers.Gemma3TextConfig(
        **TINY, sliding_window=3, query_pre_attn_scalar=20, layer_types=TYPES,
        rope_parameters={
            SLIDING: {"rope_type": "default", "rope_theta": 100.0},
            FULL: {"rope_type": "linear", "factor": 4.0,
                   "rope_theta": 10000.0}}),
    # EmbeddingGemma-style: bidirectional, |q - k| < 6 // 2 + 1 locally.
    "gemma3_bidirectional": lambda: transformers.Gemma3TextConfig(
        **TINY, sliding_window=6, use_bidirectional_attention=True,
        layer_types=TYPES),
}


def _reference(config) -> "torch.nn.Module":
  torch.manual_seed(0)
  # Eager: the reference path that applies soft-capping.
  model = transformers.AutoModel.from_config(
      config, attn_implementation="eager").eval()
  llm_parity.perturb_(model, norm_center=0.0)  # Gemma norms are 1 + w.
  return model


def _check(folder, ref, label, atol=1e-4, **load_kw):
  module, params, _ = checkpoint.load_hf_model(folder, **load_kw)
  ids, mask = llm_parity.padded_batch()
  ours = module.apply({"params": params}, ids, mask)
  llm_parity.assert_close_on_real(ours, llm_parity.torch_hidden(ref, ids, mask),
                                  mask, atol, label)
  return module, params


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_torch(tmp_path, name):
  ref = _reference(CONFIGS[name]())
  ref.save_pretrained(tmp_path)

  _, params = _check(tmp_path, ref, name)

  assert checkpoint.param_count(params) == sum(
      p.numel() for p in ref.parameters())


def test_gemma2_reads_the_published_switches(tmp_path):
  ref = _reference(CONFIGS["gemma2_softcap_window"]())
  config = gemma.from_hf({"model_type": "gemma2", **ref.config.to_dict()})

  assert config.layer_types == tuple(TYPES) and config.sliding_window == 3
  assert config.attn_logit_softcap == 1.0
  assert config.attention_scale == 20 ** -0.5
  assert config.sandwich_norms and config.embed_scale and config.norm_unit_offset
  assert config.hidden_act == "gelu_pytorch_tanh" and not config.qk_norm


def test_gemma3_bidirectional_window_is_halved():
  config = gemma.from_hf({"model_type": "gemma3_text", **TINY,
                          "sliding_window": 512,
                          "use_bidirectional_attention": True})
  assert not config.causal and config.sliding_window == 257


def test_gemma3_v4_config_layout_loads_the_same(tmp_path):
  ref = _reference(CONFIGS["gemma3_local_rope"]())
  ref.save_pretrained(tmp_path)
  v5 = gemma.from_hf(llm_parity.edit_config(tmp_path))

  # transformers v4 wrote rope_theta (global), rope_local_base_freq,
  # rope_scaling (global only) and sliding_window_pattern, not layer_types.
  llm_parity.edit_config(
      tmp_path, drop=("rope_parameters", "layer_types"), rope_theta=10000.0,
      rope_local_base_freq=100.0,
      rope_scaling={"rope_type": "linear", "factor": 4.0},
      sliding_window_pattern=2)
  module, _ = _check(tmp_path, ref, "gemma3 v4 config")

  assert module.config == v5


def test_sparse_hub_text_config_takes_transformers_defaults():
  # As in gemma-3-4b's config.json: the text_config lists only a few keys.
  sparse = {"hidden_size": 2560, "intermediate_size": 10240,
            "model_type": "gemma3_text", "num_hidden_layers": 34,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "sliding_window": 1024}
  ours = gemma.from_hf({"model_type": "gemma3", "text_config": sparse})
  hf = transformers.Gemma3TextConfig(**sparse)

  assert (ours.vocab_size, ours.num_attention_heads, ours.num_key_value_heads,
          ours.head_dim, ours.rms_norm_eps) == (
              hf.vocab_size, hf.num_attention_heads, hf.num_key_value_heads,
              hf.head_dim, hf.rms_norm_eps)
  assert ours.attention_scale == hf.query_pre_attn_scalar ** -0.5
  assert list(ours.layer_types) == hf.layer_types
  assert ours.rope.theta == hf.rope_parameters[FULL]["rope_theta"] == 1e6
  assert ours.rope.type == "linear" and ours.rope.factor == 8.0
  assert ours.local_rope.theta == hf.rope_parameters[SLIDING]["rope_theta"]
  assert ours.local_rope.type == "default"


def test_multimodal_gemma3_checkpoint_reads_its_language_model(tmp_path):
  text = dict(TINY, sliding_window=3, layer_types=TYPES)
  vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, image_size=28, patch_size=14)
  config = transformers.Gemma3Config(
      text_config=text, vision_config=vision, mm_tokens_per_image=4,
      boi_token_index=96, eoi_token_index=97, image_token_index=98)
  torch.manual_seed(0)
  ref = transformers.Gemma3ForConditionalGeneration(config).eval()
  llm_parity.perturb_(ref, norm_center=0.0)
  ref.save_pretrained(tmp_path)

  _check(tmp_path, ref.model.language_model, "gemma3 multimodal text")


def test_gemma2_bfloat16_stays_close(tmp_path):
  ref = _reference(CONFIGS["gemma2_softcap_window"]())
  ref.save_pretrained(tmp_path)

  # bf16 weights and activations against the fp32 reference: hidden states
  # are O(1) (final norm), bf16 keeps ~3 significant digits over 3 layers.
  _check(tmp_path, ref, "gemma2 bf16", atol=0.1, dtype=jnp.bfloat16,
         param_dtype=jnp.bfloat16)
