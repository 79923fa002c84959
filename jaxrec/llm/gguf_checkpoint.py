"""Loads llama.cpp GGUF checkpoints (Llama/Mistral/SmolLM, Qwen2, Qwen3).

A `.gguf` file holds the config as metadata (`llama.block_count`, ...) and
the tensors under llama.cpp's names (`blk.N.attn_q.weight`, ...), possibly
quantised (Q4_1, Q8_0, K-quants ...). The `gguf` package reads it (memory
mapped) and dequantises each tensor to float32; we map the names onto
`decoder.Decoder` params and cast. Two llama.cpp conventions are undone here:

  * for the "llama" architecture its converter permutes the rows of the q and
    k projections (interleaved rotary pairs instead of HF's two halves); we
    apply the inverse permutation, as transformers' GGUF loader does
    (`reverse_permute_weights`). Qwen2/Qwen3 files are not permuted.
  * Llama 3.1's RoPE scaling is stored as per-frequency divisors
    (`rope_freqs.weight`), which become `Rope.freq_factors`.

The output head (`output.weight`) is not needed and not read. The tokenizer
also lives in the file; `sources.load_tokenizer` builds it with transformers.
"""

from collections.abc import Callable, Mapping
import os
import pathlib
import re
from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from jaxrec.errors import JaxrecError
from jaxrec.llm import checkpoint
from jaxrec.llm import decoder
from jaxrec.llm import keys
from jaxrec.llm import partitioning
from jaxrec.llm.decoder import DecoderConfig
from jaxrec.llm.layers import Rope

ARCHITECTURES = ("llama", "qwen2", "qwen3")
# Architectures whose converter permutes q/k rows for llama.cpp's RoPE.
_PERMUTED = ("llama",)
# Tensors that exist in GGUF files but are not Decoder params.
_SKIPPED = ("output.weight", "rope_freqs.weight")

# llama.cpp tensor name (after "blk.N.") -> (our path under layers_N, linear?).
_LAYER_TENSORS: dict[str, tuple[tuple[str, ...], bool]] = {
    "attn_norm.weight": (("input_layernorm", "scale"), False),
    "ffn_norm.weight": (("post_attention_layernorm", "scale"), False),
    "attn_q.weight": (("self_attn", "q_proj", "kernel"), True),
    "attn_k.weight": (("self_attn", "k_proj", "kernel"), True),
    "attn_v.weight": (("self_attn", "v_proj", "kernel"), True),
    "attn_output.weight": (("self_attn", "o_proj", "kernel"), True),
    "attn_q.bias": (("self_attn", "q_proj", "bias"), False),
    "attn_k.bias": (("self_attn", "k_proj", "bias"), False),
    "attn_v.bias": (("self_attn", "v_proj", "bias"), False),
    "attn_q_norm.weight": (("self_attn", "q_norm", "scale"), False),
    "attn_k_norm.weight": (("self_attn", "k_norm", "scale"), False),
    "ffn_gate.weight": (("mlp", "gate_proj", "kernel"), True),
    "ffn_up.weight": (("mlp", "up_proj", "kernel"), True),
    "ffn_down.weight": (("mlp", "down_proj", "kernel"), True),
}
_GLOBAL_TENSORS = {
    "token_embd.weight": ("embed_tokens", "embedding"),
    "output_norm.weight": ("norm", "scale"),
}


def _gguf():
  try:
    import gguf  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise JaxrecError("reading .gguf checkpoints needs the gguf package: "
                      "pip install gguf") from None
  return gguf


def is_gguf(path: str | os.PathLike) -> bool:
  path = pathlib.Path(path)
  return path.suffix.lower() == ".gguf" and path.is_file()


def open_reader(path: str | os.PathLike):
  """A `gguf.GGUFReader` over the file (memory mapped), or a JaxrecError."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise JaxrecError(f"GGUF file not found: {path}")
  gguf = _gguf()
  try:
    return gguf.GGUFReader(path)
  except (ValueError, OSError, KeyError) as e:
    raise JaxrecError(f"cannot read GGUF file {path}: {e}") from None


def metadata(reader) -> dict[str, Any]:
  """Scalar and string metadata (arrays such as the vocabulary left out)."""
  out = {}
  for name, field in reader.fields.items():
    if name.startswith("tokenizer.ggml.") and len(field.data) > 1:
      continue
    try:
      out[name] = field.contents()
    except (ValueError, IndexError, TypeError):
      continue
  return out


def config_from_metadata(meta: Mapping[str, Any],
                         rope_freqs: np.ndarray | None = None,
                         vocab_rows: int | None = None) -> DecoderConfig:
  """DecoderConfig from GGUF metadata (`{arch}.block_count` etc.)."""
  arch = meta.get("general.architecture")
  if arch not in ARCHITECTURES:
    raise JaxrecError(f"unsupported GGUF architecture {arch!r}; "
                      f"supported: {', '.join(ARCHITECTURES)}")

  def get(key: str, default: Any = None) -> Any:
    value = meta.get(f"{arch}.{key}", default)
    if value is None:
      raise JaxrecError(f"GGUF metadata lacks {arch}.{key}")
    return value

  heads = int(get("attention.head_count"))
  kv_heads = get("attention.head_count_kv", heads)
  if isinstance(kv_heads, (list, tuple)):  # Per-layer counts.
    if len(set(kv_heads)) != 1:
      raise JaxrecError(f"GGUF with per-layer kv head counts {kv_heads} is "
                        "not supported")
    kv_heads = kv_heads[0]
  hidden = int(get("embedding_length"))
  head_dim = int(get("attention.key_length", hidden // heads))
  rope_dim = int(get("rope.dimension_count", head_dim))
  if rope_dim != head_dim:
    raise JaxrecError(f"GGUF partial RoPE ({rope_dim} of {head_dim} dims) "
                      "is not supported")
  scaling = meta.get(f"{arch}.rope.scaling.type", "none")
  if scaling not in ("none", "linear"):
    raise JaxrecError(f"GGUF rope scaling {scaling!r} is not supported; "
                      "supported: none, linear (and llama3 rope_freqs)")
  rope = Rope(
      theta=float(get("rope.freq_base", 10000.0)),
      type="linear" if scaling == "linear" else "default",
      factor=float(meta.get(f"{arch}.rope.scaling.factor", 1.0)),
      freq_factors=() if rope_freqs is None else tuple(
          float(f) for f in np.asarray(rope_freqs, np.float32).ravel()))
  vocab = meta.get(f"{arch}.vocab_size", vocab_rows)
  if vocab is None:
    raise JaxrecError(f"GGUF metadata lacks {arch}.vocab_size")
  return DecoderConfig(
      vocab_size=int(vocab),
      hidden_size=hidden,
      intermediate_size=int(get("feed_forward_length")),
      num_hidden_layers=int(get("block_count")),
      num_attention_heads=heads,
      num_key_value_heads=int(kv_heads),
      head_dim=head_dim,
      rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-6)),
      max_position_embeddings=int(get("context_length", 4096)),
      rope=rope,
      qkv_bias=arch == "qwen2",
      qk_norm=arch == "qwen3",
  )


def unpermute_rows(w: np.ndarray, heads: int) -> np.ndarray:
  """Undoes llama.cpp's q/k row permutation (per head: interleaved pairs ->
  HF's halves); works on weights [heads * head_dim, in] and biases."""
  half = w.shape[0] // heads // 2
  return (w.reshape(heads, half, 2, *w.shape[1:]).swapaxes(1, 2)
          .reshape(w.shape))


def _flax_path(name: str) -> tuple[tuple[str, ...], bool] | None:
  if name in _GLOBAL_TENSORS:
    return _GLOBAL_TENSORS[name], False
  match = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
  if match and match.group(2) in _LAYER_TENSORS:
    path, linear = _LAYER_TENSORS[match.group(2)]
    return (f"layers_{match.group(1)}",) + path, linear
  return None


def tensor_shape(tensor) -> tuple[int, ...]:
  """A GGUF tensor's shape in numpy (row-major) order; `tensor.shape` is ggml's (ne0 first)."""
  return tuple(int(d) for d in reversed(tensor.shape))


def row_reader(tensor, rows: np.ndarray | None = None,
               record: Callable[[int], None] | None = None) -> Callable[[Any], np.ndarray]:
  """`read(index)` = the dequantised tensor[index], dequantising only that block.

  GGUF quantises in blocks along the last, contiguous axis, so a set of rows
  is dequantised from its own bytes; so is a column range that starts and
  ends on quantisation blocks (other column ranges dequantise whole rows,
  then cut). `rows` maps a row of the result to a row of the file (llama.cpp's
  q/k permutation undone by gathering rows), None for the identity. `record`
  gets the bytes of each read's float32 result before any cut (what the host
  held for it).
  """
  gguf = _gguf()
  data = tensor.data
  # Quantised and bf16 tensors are stored as bytes: `per_block` bytes hold `cols` columns.
  cols, per_block = gguf.GGML_QUANT_SIZES[tensor.tensor_type] if data.dtype == np.uint8 else (1, 1)

  def read(index: Any) -> np.ndarray:
    index = tuple(index) if index is not None else ()
    pick = index[0] if index else slice(None)
    raw = data[rows[pick]] if rows is not None else data[pick]
    rest = index[1:]
    if rest and rest[0].start % cols == 0 and rest[0].stop % cols == 0 and rest[0].step in (None, 1):
      c = rest[0]
      raw = raw[..., c.start // cols * per_block:c.stop // cols * per_block]
      rest = (slice(None),) + rest[1:]
    try:
      value = np.asarray(gguf.quants.dequantize(raw, tensor.tensor_type), np.float32)
    except NotImplementedError as e:
      raise JaxrecError(f"cannot dequantise {tensor.name!r}: {e}") from None
    if record is not None:
      record(value.nbytes)
    return value[(slice(None),) + rest]
  return read


def load_gguf_model(path: str | os.PathLike, dtype: Any = jnp.float32,
                    param_dtype: Any = jnp.float32, *, mesh: Mesh | None = None,
                    fsdp: bool = False, stats: checkpoint.LoadStats | None = None
                    ) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
  """Loads a `.gguf` file as (module, params, metadata), like `load_hf_model`.

  With a mesh, each parameter is built on its devices by
  `jax.make_array_from_callback` under `partitioning`'s sharding, and each
  device's block is dequantised from the memory-mapped file alone (its rows;
  see `row_reader`): the host holds one block's rows at a time, never the
  dequantised model (a 7B Q4 file is 28 GB in float32). `stats` records the
  float32 rows dequantised per block.

  Raises:
    JaxrecError: unreadable file, unsupported architecture or quantisation,
      missing, unexpected or misshapen tensors.
  """
  gguf = _gguf()
  reader = open_reader(path)
  meta = metadata(reader)
  tensors = {t.name: t for t in reader.tensors}
  rope_freqs = None
  if "rope_freqs.weight" in tensors:
    t = tensors["rope_freqs.weight"]
    rope_freqs = gguf.quants.dequantize(t.data, t.tensor_type)
  embd = tensors.get("token_embd.weight")
  config = config_from_metadata(
      meta, rope_freqs, None if embd is None else int(embd.shape[-1]))
  module = decoder.Decoder(config, dtype=dtype, param_dtype=param_dtype)
  expected = checkpoint.expected_shapes(module)
  permuted = meta["general.architecture"] in _PERMUTED
  heads = {"q_proj": config.num_attention_heads,
           "k_proj": config.num_key_value_heads}
  stats = checkpoint.LoadStats() if stats is None else stats

  params: dict[tuple[str, ...], Any] = {}
  for name, tensor in tensors.items():
    if name in _SKIPPED:
      continue
    found = _flax_path(name)
    if found is None or found[0] not in expected:
      raise JaxrecError(f"unexpected tensor {name!r} in {path} for a "
                        f"{meta['general.architecture']} decoder "
                        "(unsupported GGUF variant?)")
    flax_path, linear = found
    shape = tensor_shape(tensor)
    proj = flax_path[-2]
    # Rows of the file (torch layout: rows of the weight = columns of our kernel).
    rows = (unpermute_rows(np.arange(shape[0]), heads[proj])
            if permuted and proj in heads else None)
    block = checkpoint.block_reader(name, shape, keys.Src(name, transpose=linear),
                                    expected[flax_path].shape,
                                    row_reader(tensor, rows, None if mesh is None else stats.record),
                                    where=str(path))
    if mesh is None:
      params[flax_path] = jnp.asarray(block(None), param_dtype)
      continue

    def read(index, block=block):
      return block(index).astype(param_dtype)
    sharding = partitioning.sharding_for(flax_path, expected[flax_path].shape, mesh, fsdp,
                                         config.head_dim)
    params[flax_path] = jax.make_array_from_callback(expected[flax_path].shape, sharding, read)
  missing = sorted(set(expected) - set(params))
  if missing:
    raise JaxrecError(f"GGUF file {path} lacks {len(missing)} tensor(s) the "
                      f"model needs, e.g. for {'/'.join(missing[0])}")
  info = {"model_type": f"gguf:{meta['general.architecture']}",
          "gguf_file": str(path), **meta}
  return module, checkpoint.unflatten(params), info
