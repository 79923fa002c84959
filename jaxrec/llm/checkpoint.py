"""Loads Hugging Face safetensors checkpoints into jaxrec's Flax LLMs.

Only local folders are read (config.json + model.safetensors or a sharded
model.safetensors.index.json); nothing is downloaded. The model family is
picked by `model_type` (`FAMILIES`); each family module supplies its config
reader and weight-name map. `.gguf` files go to `gguf_checkpoint`. Every parameter the
Flax module expects must be found with the right shape, so a wrong or
truncated checkpoint fails loudly here rather than as garbage embeddings.
"""

from collections.abc import Callable, Iterator, Mapping
import dataclasses
import json
import os
import pathlib
from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np
from safetensors import safe_open

from jaxrec.errors import JaxrecError
from jaxrec.llm import baichuan
from jaxrec.llm import bert
from jaxrec.llm import gemma
from jaxrec.llm import keys
from jaxrec.llm import llama
from jaxrec.llm import partitioning
from jaxrec.llm.keys import KeyMap

# model_type -> family (config reader, module, key map), one module each.
FAMILIES: dict[str, keys.Family] = {
    t: f for f in (bert.FAMILY, llama.FAMILY, gemma.FAMILY, baichuan.FAMILY)
    for t in f.model_types}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)
_CONFIG = "config.json"
_SINGLE = "model.safetensors"
_INDEX = "model.safetensors.index.json"
# Very old BERT checkpoints (converted from TF) name LayerNorm params this way.
_ALIASES = {"LayerNorm.weight": "LayerNorm.gamma",
            "LayerNorm.bias": "LayerNorm.beta"}


def read_hf_config(folder: str | os.PathLike) -> dict[str, Any]:
  """Reads `config.json` from a model folder, with clear errors."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise JaxrecError(f"model folder not found: {folder}")
  path = folder / _CONFIG
  if not path.is_file():
    raise JaxrecError(f"no {_CONFIG} in model folder {folder}")
  try:
    config = json.loads(path.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise JaxrecError(f"cannot parse {path}: {e}") from None
  if not isinstance(config, dict):
    raise JaxrecError(f"{path} must hold a JSON object")
  return config


def safetensors_files(folder: str | os.PathLike) -> dict[str, pathlib.Path]:
  """Maps every tensor name in the folder's checkpoint to its file."""
  folder = pathlib.Path(folder)
  index = folder / _INDEX
  if index.is_file():
    try:
      weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise JaxrecError(f"bad safetensors index {index}: {e!r}") from None
    files = {key: folder / name for key, name in weight_map.items()}
    for path in sorted(set(files.values())):
      if not path.is_file():
        raise JaxrecError(f"shard {path.name} listed in {index} is missing")
    return files
  single = folder / _SINGLE
  if not single.is_file():
    raise JaxrecError(
        f"no {_SINGLE} or {_INDEX} in model folder {folder} "
        "(only safetensors checkpoints are supported)")
  with safe_open(single, framework="numpy") as f:
    return {key: single for key in f.keys()}


def family_of(hf_config: Mapping[str, Any]) -> keys.Family:
  """The family that reads this config.json, or a one-line JaxrecError."""
  model_type = hf_config.get("model_type")
  if model_type not in FAMILIES:
    arch = hf_config.get("architectures")
    raise JaxrecError(
        f"unsupported model_type {model_type!r}"
        + (f" (architectures {arch})" if arch else "")
        + f"; supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
  return FAMILIES[model_type]


def build_model(hf_config: Mapping[str, Any], dtype: Any = jnp.float32,
                param_dtype: Any = jnp.float32) -> tuple[nn.Module, KeyMap,
                                                         tuple[str, ...]]:
  """(module, key map, HF key prefixes to try) for a config.json dict."""
  family = family_of(hf_config)
  config = family.from_hf(hf_config)
  return (family.module(config, dtype, param_dtype), family.key_map(config),
          family.prefixes)


def expected_shapes(module: nn.Module) -> dict[tuple[str, ...], Any]:
  """Shapes/dtypes of the module's params, without allocating them."""
  ids = jnp.zeros((1, 1), jnp.int32)
  variables = jax.eval_shape(module.init, jax.random.key(0), ids, ids)
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  return {tuple(k.key for k in path): leaf for path, leaf in flat}


def _pick_prefix(available: Mapping[str, Any], key_map: KeyMap,
                 prefixes: tuple[str, ...]) -> str:
  """The model prefix (e.g. 'bert.', 'model.') under which most keys exist."""
  hits = {p: sum(p + src.key in available for src in key_map.values())
          for p in prefixes}
  return max(prefixes, key=lambda p: hits[p])


def _resolve(key: str, available: Mapping[str, Any]) -> str | None:
  if key in available:
    return key
  for new, old in _ALIASES.items():
    if key.endswith(new) and key[:-len(new)] + old in available:
      return key[:-len(new)] + old
  return None


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  return tree


def _by_file(wanted: Mapping[tuple[str, ...], str],
             files: Mapping[str, pathlib.Path]
             ) -> Iterator[tuple[pathlib.Path, dict[tuple[str, ...], str]]]:
  """Groups wanted tensors by shard so each file is opened once."""
  groups: dict[pathlib.Path, dict[tuple[str, ...], str]] = {}
  for path, key in wanted.items():
    groups.setdefault(files[key], {})[path] = key
  yield from groups.items()


@dataclasses.dataclass
class LoadStats:
  """What a sharded load read from disk, to show no host holds a whole checkpoint.

  Attributes:
    reads: blocks read (one per device and parameter; a block is one device's shard).
    bytes_read: their bytes in total.
    largest_read: the largest single block, in bytes: the most the loader held
      on the host at once beyond the memory-mapped file.
  """

  reads: int = 0
  bytes_read: int = 0
  largest_read: int = 0

  def record(self, nbytes: int) -> None:
    self.reads += 1
    self.bytes_read += nbytes
    self.largest_read = max(self.largest_read, nbytes)


def load_params(folder: str | os.PathLike, module: nn.Module, key_map: KeyMap,
                prefixes: tuple[str, ...], param_dtype: Any = jnp.float32,
                mesh: Mesh | None = None, fsdp: bool = False,
                stats: LoadStats | None = None) -> dict[str, Any]:
  """Reads, validates, transposes and casts the params `module` expects.

  With a mesh, each parameter is built on its devices by
  `jax.make_array_from_callback` under `partitioning`'s sharding: every device's
  block is read from the memory-mapped safetensors file alone (`get_slice`),
  cast and sent, so the host holds one block at a time, never a whole tensor
  that is sharded, let alone the checkpoint. `stats` records what was read.
  """
  expected = expected_shapes(module)
  if set(expected) != set(key_map):
    raise JaxrecError(  # A bug in jaxrec, not in the checkpoint.
        f"internal key map mismatch for {type(module).__name__}: "
        f"{sorted(set(expected) ^ set(key_map))[:3]}")
  files = safetensors_files(folder)
  prefix = _pick_prefix(files, key_map, prefixes)
  wanted, missing = {}, []
  for path, src in key_map.items():
    found = _resolve(prefix + src.key, files)
    if found is None:
      missing.append(prefix + src.key)
    else:
      wanted[path] = found
  if missing:
    raise JaxrecError(
        f"checkpoint in {folder} lacks {len(missing)} expected tensor(s), "
        f"e.g. {missing[0]!r}")
  params = {}
  head_dim = getattr(getattr(module, "config", None), "head_dim", None)
  stats = LoadStats() if stats is None else stats
  # Sharded loads read numpy blocks (bfloat16 is ml_dtypes', registered by importing jax): a
  # jax array per block (framework="flax") was one more host copy per block, which cost a
  # 7B-shaped 2-process load 0.1-0.2 GB more per process (experiments/results/llm_load.md).
  # Unsharded loads build each tensor on the default device.
  framework = "numpy" if mesh is not None else "flax"
  for file, group in _by_file(wanted, files):
    with safe_open(file, framework=framework) as f:
      for path, key in group.items():
        tensor = f.get_slice(key)
        block = block_reader(key, tuple(tensor.get_shape()), key_map[path],
                             expected[path].shape, tensor.__getitem__, where=file.name)
        if mesh is None:
          params[path] = jnp.asarray(block(None)).astype(param_dtype)
          continue
        def read(index, block=block):
          value = np.asarray(block(index)).astype(param_dtype, copy=False)
          stats.record(value.nbytes)
          return value
        sharding = partitioning.sharding_for(path, expected[path].shape, mesh, fsdp, head_dim)
        params[path] = jax.make_array_from_callback(expected[path].shape, sharding, read)
  return unflatten(params)


def read_tensor(key: str, shape: tuple[int, ...], src: keys.Src,
                want: tuple[int, ...], read: Callable[[Any], Any],
                where: str) -> Any:
  """Reads (the block `src.split` of) a tensor, checked and transposed.

  `read(index)` returns `tensor[index]`; only the block is read.
  """
  return block_reader(key, shape, src, want, read, where)(None)


def block_reader(key: str, shape: tuple[int, ...], src: keys.Src,
                 want: tuple[int, ...], read: Callable[[Any], Any],
                 where: str) -> Callable[[Any], Any]:
  """Checks a tensor against the parameter it fills; returns `block(index)`.

  `block(index)` is the parameter's value at `index` (a tuple of slices in
  our layout, as `jax.make_array_from_callback` passes; None for all of it):
  the index is mapped through the transpose and the `src.split` offset, and
  only that part of the tensor is read with `read(checkpoint_index)`.
  """
  offset = 0
  if src.split is not None:
    i, n = src.split
    if shape and shape[0] % n == 0:
      offset = i * (shape[0] // n)
      shape = (shape[0] // n,) + shape[1:]
    else:
      raise JaxrecError(f"tensor {key!r} in {where} has shape {shape}, whose "
                        f"first axis does not split into {n} equal blocks")
  if src.transpose:
    shape = shape[::-1]
  if shape != tuple(want):
    done = ["splitting"] * bool(src.split) + [
        "transposing Linear weights"] * src.transpose
    raise JaxrecError(
        f"tensor {key!r} in {where} has shape {shape}"
        + (f" (after {', '.join(done)})" if done else "")
        + f", expected {tuple(want)}")

  def block(index: Any) -> Any:
    index = tuple(index) if index is not None else (slice(None),) * len(want)
    index = tuple(slice(*s.indices(n)[:2]) for s, n in zip(index, want))
    if src.transpose:
      index = index[::-1]
    if offset:
      index = (slice(index[0].start + offset, index[0].stop + offset),) + index[1:]
    value = read(index)
    return value.T if src.transpose else value
  return block


def load_hf_model(path: str | os.PathLike, dtype: Any = jnp.float32,
                  param_dtype: Any = jnp.float32, *, mesh: Mesh | None = None,
                  fsdp: bool = False, stats: LoadStats | None = None,
                  attention: str = "dot_product_attention", attention_impl: str = "auto"
                  ) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
  """Loads a local Hugging Face model folder (or GGUF file) as Flax module + params.

  Args:
    path: folder with config.json and model.safetensors (or a sharded
      model.safetensors.index.json), as written by `save_pretrained`; or a
      llama.cpp `.gguf` file (see `gguf_checkpoint`), whose metadata then
      stands in for hf_config.
    dtype: activation dtype of the returned module.
    param_dtype: dtype the params are cast to.
    mesh: a ('data', 'model') mesh (`partitioning.make_mesh`) to load the
      params onto, each device reading only its own blocks (of a GGUF file:
      dequantising only its rows). None: params on the default device.
    fsdp: also split the hidden dimension over 'data' (`partitioning`).
    stats: filled with what a sharded load read.
    attention, attention_impl: the module's attention path
      (`layers.attention_path`).

  Returns:
    (module, params, hf_config): call it as
    `module.apply({"params": params}, input_ids, attention_mask)`.

  Raises:
    JaxrecError: missing files, unsupported model_type, or a checkpoint whose
      tensors are missing or have the wrong shape.
  """
  from jaxrec.llm import gguf_checkpoint  # pylint: disable=g-import-not-at-top
  if gguf_checkpoint.is_gguf(path):
    module, params, hf_config = gguf_checkpoint.load_gguf_model(
        path, dtype, param_dtype, mesh=mesh, fsdp=fsdp, stats=stats)
  else:
    hf_config = read_hf_config(path)
    module, key_map, prefixes = build_model(hf_config, dtype, param_dtype)
    params = load_params(path, module, key_map, prefixes, param_dtype, mesh, fsdp, stats)
  return module.clone(attention=attention, implementation=attention_impl), params, hf_config


def param_count(params: Any) -> int:
  """Total number of scalars in a params pytree."""
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
