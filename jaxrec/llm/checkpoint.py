"""Loads Hugging Face safetensors checkpoints into jaxrec's Flax LLMs.

Only local folders are read (config.json + model.safetensors or a sharded
model.safetensors.index.json); nothing is downloaded. Every parameter the
Flax module expects must be found with the right shape, so a wrong or
truncated checkpoint fails loudly here rather than as garbage embeddings.
"""

from collections.abc import Iterator, Mapping
import json
import os
import pathlib
from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp
from safetensors import safe_open

from jaxrec.errors import JaxrecError
from jaxrec.llm import bert
from jaxrec.llm import llama

# Flax param path -> (HF key without model prefix, transpose torch Linear?).
KeyMap = dict[tuple[str, ...], tuple[str, bool]]

SUPPORTED_MODEL_TYPES = ("bert",) + llama.MODEL_TYPES
_CONFIG = "config.json"
_SINGLE = "model.safetensors"
_INDEX = "model.safetensors.index.json"
# Very old BERT checkpoints (converted from TF) name LayerNorm params this way.
_ALIASES = {"LayerNorm.weight": "LayerNorm.gamma",
            "LayerNorm.bias": "LayerNorm.beta"}


def _dense(flax_path: tuple[str, ...], hf_prefix: str,
           bias: bool = True) -> KeyMap:
  out = {flax_path + ("kernel",): (f"{hf_prefix}.weight", True)}
  if bias:
    out[flax_path + ("bias",)] = (f"{hf_prefix}.bias", False)
  return out


def _layer_norm(flax_path: tuple[str, ...], hf_prefix: str) -> KeyMap:
  return {flax_path + ("scale",): (f"{hf_prefix}.weight", False),
          flax_path + ("bias",): (f"{hf_prefix}.bias", False)}


def _embed(flax_path: tuple[str, ...], hf_prefix: str) -> KeyMap:
  return {flax_path + ("embedding",): (f"{hf_prefix}.weight", False)}


def bert_key_map(config: bert.BertConfig) -> KeyMap:
  """Flax `BertEncoder` params <- HF `BertModel` state dict keys."""
  keys: KeyMap = {}
  for name in ("word_embeddings", "position_embeddings",
               "token_type_embeddings"):
    keys |= _embed(("embeddings", name), f"embeddings.{name}")
  keys |= _layer_norm(("embeddings", "layer_norm"), "embeddings.LayerNorm")
  for i in range(config.num_hidden_layers):
    ours, hf = (f"layer_{i}",), f"encoder.layer.{i}"
    for name in ("query", "key", "value"):
      keys |= _dense(ours + ("attention", name), f"{hf}.attention.self.{name}")
    keys |= _dense(ours + ("attention", "output"),
                   f"{hf}.attention.output.dense")
    keys |= _layer_norm(ours + ("attention_norm",),
                        f"{hf}.attention.output.LayerNorm")
    keys |= _dense(ours + ("intermediate",), f"{hf}.intermediate.dense")
    keys |= _dense(ours + ("output",), f"{hf}.output.dense")
    keys |= _layer_norm(ours + ("output_norm",), f"{hf}.output.LayerNorm")
  return keys


def llama_key_map(config: llama.LlamaConfig) -> KeyMap:
  """Flax `LlamaDecoder` params <- HF `LlamaModel` state dict keys."""
  keys: KeyMap = _embed(("embed_tokens",), "embed_tokens")
  keys[("norm", "scale")] = ("norm.weight", False)
  for i in range(config.num_hidden_layers):
    ours, hf = (f"layers_{i}",), f"layers.{i}"
    for name in ("input_layernorm", "post_attention_layernorm"):
      keys[ours + (name, "scale")] = (f"{hf}.{name}.weight", False)
    for name in ("q_proj", "k_proj", "v_proj"):
      keys |= _dense(ours + ("self_attn", name), f"{hf}.self_attn.{name}",
                     config.qkv_bias)
    keys |= _dense(ours + ("self_attn", "o_proj"), f"{hf}.self_attn.o_proj",
                   config.o_bias)
    for name in ("gate_proj", "up_proj", "down_proj"):
      keys |= _dense(ours + ("mlp", name), f"{hf}.mlp.{name}",
                     config.mlp_bias)
  return keys


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


def build_model(hf_config: Mapping[str, Any], dtype: Any = jnp.float32,
                param_dtype: Any = jnp.float32) -> tuple[nn.Module, KeyMap,
                                                         tuple[str, ...]]:
  """(module, key map, HF key prefixes to try) for a config.json dict."""
  model_type = hf_config.get("model_type")
  if model_type == "bert":
    config = bert.BertConfig.from_hf(hf_config)
    module = bert.BertEncoder(config, dtype=dtype, param_dtype=param_dtype)
    return module, bert_key_map(config), ("", "bert.")
  if model_type in llama.MODEL_TYPES:
    config = llama.LlamaConfig.from_hf(hf_config)
    module = llama.LlamaDecoder(config, dtype=dtype, param_dtype=param_dtype)
    return module, llama_key_map(config), ("model.", "")
  raise JaxrecError(f"unsupported model_type {model_type!r}; supported: "
                    f"{', '.join(SUPPORTED_MODEL_TYPES)}")


def _expected_shapes(module: nn.Module) -> dict[tuple[str, ...], Any]:
  """Shapes/dtypes of the module's params, without allocating them."""
  ids = jnp.zeros((1, 1), jnp.int32)
  variables = jax.eval_shape(module.init, jax.random.key(0), ids, ids)
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  return {tuple(k.key for k in path): leaf for path, leaf in flat}


def _pick_prefix(available: Mapping[str, Any], key_map: KeyMap,
                 prefixes: tuple[str, ...]) -> str:
  """The model prefix (e.g. 'bert.', 'model.') under which most keys exist."""
  hits = {p: sum(p + k in available for k, _ in key_map.values())
          for p in prefixes}
  return max(prefixes, key=lambda p: hits[p])


def _resolve(key: str, available: Mapping[str, Any]) -> str | None:
  if key in available:
    return key
  for new, old in _ALIASES.items():
    if key.endswith(new) and key[:-len(new)] + old in available:
      return key[:-len(new)] + old
  return None


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
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


def load_params(folder: str | os.PathLike, module: nn.Module, key_map: KeyMap,
                prefixes: tuple[str, ...], param_dtype: Any = jnp.float32
                ) -> dict[str, Any]:
  """Reads, validates, transposes and casts the params `module` expects."""
  expected = _expected_shapes(module)
  if set(expected) != set(key_map):
    raise JaxrecError(  # A bug in jaxrec, not in the checkpoint.
        f"internal key map mismatch for {type(module).__name__}: "
        f"{sorted(set(expected) ^ set(key_map))[:3]}")
  files = safetensors_files(folder)
  prefix = _pick_prefix(files, key_map, prefixes)
  wanted, missing = {}, []
  for path, (key, _) in key_map.items():
    found = _resolve(prefix + key, files)
    if found is None:
      missing.append(prefix + key)
    else:
      wanted[path] = found
  if missing:
    raise JaxrecError(
        f"checkpoint in {folder} lacks {len(missing)} expected tensor(s), "
        f"e.g. {missing[0]!r}")
  params = {}
  for file, group in _by_file(wanted, files):
    # framework="flax" because numpy has no bfloat16.
    with safe_open(file, framework="flax") as f:
      for path, key in group.items():
        shape = tuple(f.get_slice(key).get_shape())
        if key_map[path][1]:
          shape = shape[::-1]
        if shape != expected[path].shape:
          raise JaxrecError(
              f"tensor {key!r} in {file.name} has shape {shape} (after "
              f"transposing Linear weights), expected {expected[path].shape}")
        value = f.get_tensor(key)
        params[path] = (value.T if key_map[path][1] else value).astype(
            param_dtype)
  return _unflatten(params)


def load_hf_model(path: str | os.PathLike, dtype: Any = jnp.float32,
                  param_dtype: Any = jnp.float32
                  ) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
  """Loads a local Hugging Face model folder as a Flax module and params.

  Args:
    path: folder with config.json and model.safetensors (or a sharded
      model.safetensors.index.json), as written by `save_pretrained`.
    dtype: activation dtype of the returned module.
    param_dtype: dtype the params are cast to.

  Returns:
    (module, params, hf_config): call it as
    `module.apply({"params": params}, input_ids, attention_mask)`.

  Raises:
    JaxrecError: missing files, unsupported model_type, or a checkpoint whose
      tensors are missing or have the wrong shape.
  """
  hf_config = read_hf_config(path)
  module, key_map, prefixes = build_model(hf_config, dtype, param_dtype)
  params = load_params(path, module, key_map, prefixes, param_dtype)
  return module, params, hf_config


def param_count(params: Any) -> int:
  """Total number of scalars in a params pytree."""
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
