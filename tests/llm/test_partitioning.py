"""Sharded CEG on 8 fake devices (2 data x 4 model): same embeddings as 1 device, ~1/4
(tensor parallel) or ~1/8 (FSDP) of the parameter bytes per device, and a shard-by-shard
load that never reads a whole sharded tensor onto the host."""

import jax
import numpy as np
import pytest

from jaxrec import sharding
from jaxrec.errors import JaxrecError
from jaxrec.llm import checkpoint, embed, partitioning
import llm_parity

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = [f"item {i}: " + " ".join(["red mug", "blue pen", "green lamp", "desk"][: 1 + i % 4]) * (1 + i % 3)
         for i in range(24)]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
  """8 query / 4 key-value heads of 8, MLP 128, vocabulary 96: everything splits by 4."""
  torch.manual_seed(0)
  folder = tmp_path_factory.mktemp("tiny_llama")
  config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2,
                                    num_attention_heads=8, num_key_value_heads=4,
                                    intermediate_size=128, max_position_embeddings=64)
  transformers.AutoModel.from_config(config).eval().save_pretrained(folder)
  return folder


def _mesh():
  assert len(jax.devices()) == 8, "tests/conftest.py gives 8 fake CPU devices"
  return partitioning.make_mesh(jax.devices(), 4)


def test_logical_axes_of_decoder_and_bert_parameters():
  axes = partitioning.logical_axes
  assert axes(("layers_0", "self_attn", "q_proj", "kernel"), 2) == ("embed", "heads")
  assert axes(("layers_0", "self_attn", "k_proj", "bias"), 1) == ("kv_heads",)
  assert axes(("layers_0", "self_attn", "o_proj", "kernel"), 2) == ("heads", "embed")
  assert axes(("layers_0", "mlp", "down_proj", "kernel"), 2) == ("mlp", "embed")
  assert axes(("embed_tokens", "embedding"), 2) == ("vocab", "embed")
  assert axes(("layer_0", "attention", "output", "kernel"), 2) == ("heads", "embed")
  assert axes(("layer_0", "output", "kernel"), 2) == ("mlp", "embed")
  assert axes(("embeddings", "position_embeddings", "embedding"), 2) == (None, "embed")
  assert axes(("layers_0", "input_layernorm", "scale"), 1) == (None,)
  with pytest.raises(JaxrecError, match="mesh_model=3"):
    partitioning.make_mesh(jax.devices(), 3)


def test_dimensions_that_do_not_split_stay_whole():
  mesh = _mesh()
  # 9 heads of 64 (SmolLM2) do not split over 4 devices: replicated, never half a head.
  q = partitioning.sharding_for(("layers_0", "self_attn", "q_proj", "kernel"), (576, 576), mesh,
                                head_dim=64)
  assert q.spec == jax.sharding.PartitionSpec(None, None)
  up = partitioning.sharding_for(("layers_0", "mlp", "up_proj", "kernel"), (576, 1536), mesh,
                                 fsdp=True)
  assert up.spec == jax.sharding.PartitionSpec("data", "model")


@pytest.mark.parametrize("fsdp,share", [(False, 4), (True, 8)])
def test_shard_by_shard_load(tiny_llama, fsdp, share):
  _, whole, _ = checkpoint.load_hf_model(tiny_llama)
  stats = checkpoint.LoadStats()
  _, params, _ = checkpoint.load_hf_model(tiny_llama, mesh=_mesh(), fsdp=fsdp, stats=stats)
  for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  total = partitioning.total_bytes(params)
  per_device = partitioning.bytes_per_device(params)
  assert len(per_device) == 8
  # Norm scales are replicated (2% of this tiny model): a little over 1/4 or 1/8.
  assert all(total / share <= b <= 1.05 * total / share for b in per_device.values()), (
      total, per_device)
  # The host read each device's blocks at most once, one block at a time, and never
  # a whole sharded tensor: its largest read is a shard of the largest tensor.
  largest_tensor = max(x.nbytes for x in jax.tree.leaves(whole))
  largest_shard = max(s.data.nbytes for x in jax.tree.leaves(params) for s in x.addressable_shards)
  assert stats.largest_read == largest_shard <= largest_tensor // share
  assert stats.bytes_read <= sum(per_device.values())
  print(f"\nSHARDING fsdp={fsdp}: total {total} B, per device {max(per_device.values())} B "
        f"({max(per_device.values()) / total:.3f}), largest host read {stats.largest_read} B "
        f"of largest tensor {largest_tensor} B, read {stats.bytes_read} B")


@pytest.mark.parametrize("fsdp", [False, True])
def test_decoder_embeddings_on_2x4_equal_one_device(tiny_llama, fsdp):
  rng = np.random.default_rng(0)
  token_ids = [list(rng.integers(1, 96, size=n)) for n in rng.integers(3, 40, size=20)]
  module, params, _ = checkpoint.load_hf_model(tiny_llama)
  one = embed.embed_texts(module, params, token_ids, pooling="mean", token_budget=256,
                          mesh=sharding.make_mesh(1))
  mesh = _mesh()
  _, sharded, _ = checkpoint.load_hf_model(tiny_llama, mesh=mesh, fsdp=fsdp)
  eight = embed.embed_texts(module, sharded, token_ids, pooling="mean", token_budget=256, mesh=mesh)
  np.testing.assert_allclose(eight, one, atol=1e-5, rtol=1e-5)


def test_bert_store_on_2x4_equals_one_device(tmp_path):
  """The whole CEG path (build_store with ceg.mesh_model=4 and FSDP) on a tiny BERT."""
  model = llm_parity.tiny_minilm(tmp_path / "bert", intermediate_size=48)
  kw = dict(model=str(model), max_tokens=32, token_budget=64, label="t")
  one = embed.build_store(TEXTS, mesh=sharding.make_mesh(1), cache_dir=tmp_path / "one", **kw)
  eight = embed.build_store(TEXTS, mesh=sharding.make_mesh(8), cache_dir=tmp_path / "eight",
                            mesh_model=4, fsdp=True, **kw)
  np.testing.assert_allclose(eight.read_table(), one.read_table(), atol=1e-5, rtol=1e-5)


def test_sharded_bf16_load_reads_numpy_blocks_and_keeps_bf16(tiny_llama, tmp_path, monkeypatch):
  """Each device's block is read as a numpy array: a jax array per block (safetensors'
  framework="flax") cost a 7B-shaped load 0.1-0.2 GB more host memory per process
  (experiments/results/llm_load.md). bf16 stays bf16, bit for bit."""
  from safetensors import safe_open  # noqa: PLC0415
  folder = tmp_path / "bf16"
  transformers.AutoModel.from_pretrained(tiny_llama, dtype=torch.bfloat16).save_pretrained(folder)
  frameworks = []

  def recording_open(path, framework, **kw):
    frameworks.append(framework)
    return safe_open(path, framework=framework, **kw)
  monkeypatch.setattr(checkpoint, "safe_open", recording_open)
  bf16 = jax.numpy.bfloat16
  _, params, _ = checkpoint.load_hf_model(folder, dtype=bf16, param_dtype=bf16, mesh=_mesh(), fsdp=True)
  assert frameworks and set(frameworks) == {"numpy"}
  with safe_open(folder / "model.safetensors", framework="numpy") as f:
    table = f.get_tensor("embed_tokens.weight")
    up = f.get_tensor("layers.1.mlp.up_proj.weight")
  for got, want in ((params["embed_tokens"]["embedding"], table),
                    (params["layers_1"]["mlp"]["up_proj"]["kernel"], up.T)):
    assert got.dtype == bf16 and len(got.addressable_shards) == 8
    np.testing.assert_array_equal(np.asarray(got).view(np.uint16), want.view(np.uint16))
