"""Where each LLM parameter lives on a ('data', 'model') mesh: logical axes -> mesh axes.

A 7B model in float32 (28 GB) does not fit one small accelerator, and each
device of a data-parallel CEG job holding a full copy wastes memory. So every
parameter gets logical axis names from its path (`logical_axes`), and rules
map those names onto the mesh, as flax's logical partitioning does:

  tensor parallel  heads, mlp, vocab -> 'model' (attention heads and MLP
                   columns split over the model axis; Megatron style)
  FSDP (optional)  embed -> 'data' (the hidden dimension of every matrix
                   split over the data axis too; XLA gathers it per layer)
  batch            'data' (CEG batches are split over the data axis)

A dimension that does not divide evenly by its mesh axis (e.g. SmolLM2's 9
heads over 4 devices, or BERT's 30,522-word vocabulary) stays replicated, so
any model runs on any mesh; only the memory saving shrinks. Norm scales and
other vectors are replicated (a few KB). The checkpoint loaders place each
parameter straight onto its devices with these shardings, shard by shard
(see `checkpoint.load_params`).
"""

from collections.abc import Mapping
from typing import Any

from flax import linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrec.errors import JaxrecError

AXES = ("data", "model")
# Logical axis -> mesh axis (flax `logical_axis_rules` format).
RULES = (("batch", "data"), ("heads", "model"), ("kv_heads", "model"), ("mlp", "model"),
         ("vocab", "model"), ("embed", None))
FSDP_RULES = tuple((name, "data") if name == "embed" else (name, axis) for name, axis in RULES)

# Layer names -> what their kernel's output columns are (the input rows are 'embed'),
# for the Llama-style decoders (q_proj...) and BERT (query...). BERT's 'output' is the
# attention output under 'attention', the MLP output otherwise.
_COLUMNS = {"q_proj": "heads", "query": "heads", "k_proj": "kv_heads", "key": "heads",
            "v_proj": "kv_heads", "value": "heads", "gate_proj": "mlp", "up_proj": "mlp",
            "intermediate": "mlp"}
_ROWS = {"o_proj": "heads", "down_proj": "mlp"}


def logical_axes(path: tuple[str, ...], ndim: int) -> tuple[str | None, ...]:
  """Logical axis names of the parameter at `path` (e.g. ('layers_0', 'mlp', 'up_proj', 'kernel'))."""
  layer, leaf = (path[-2] if len(path) > 1 else ""), path[-1]
  parent = path[-3] if len(path) > 2 else ""
  if leaf == "embedding":
    return ("vocab", "embed") if layer in ("embed_tokens", "word_embeddings") else (None, "embed")
  if layer == "output":   # BERT: attention output or MLP output projection
    rows = "heads" if parent == "attention" else "mlp"
    return (rows, "embed") if leaf == "kernel" else (None,)
  if layer in _COLUMNS:
    return ("embed", _COLUMNS[layer]) if leaf == "kernel" else (_COLUMNS[layer],)
  if layer in _ROWS and leaf == "kernel":
    return (_ROWS[layer], "embed")
  return (None,) * ndim   # norms, output biases: replicated


def make_mesh(devices: Any, model: int) -> Mesh:
  """('data', 'model') mesh over `devices` (a list, or a Mesh's devices), `model` devices per model copy."""
  devices = np.asarray(devices).reshape(-1)
  if model < 1 or len(devices) % model:
    raise JaxrecError(f"config.ceg.mesh_model={model} must divide the number of devices "
                      f"({len(devices)})")
  return Mesh(devices.reshape(len(devices) // model, model), AXES)


def _spec(axes: tuple[str | None, ...], shape: tuple[int, ...], mesh: Mesh, rules,
          head_dim: int | None) -> P:
  """The mesh PartitionSpec of one parameter; dimensions that do not split evenly stay whole."""
  spec = list(nn.logical_to_mesh_axes(axes, rules))
  for i, axis in enumerate(spec):
    if axis is None:
      continue
    size, units = mesh.shape[axis], shape[i]
    if axes[i] in ("heads", "kv_heads") and head_dim:
      units = shape[i] // head_dim     # never split a head
    if units % size or shape[i] % size:
      spec[i] = None
  return P(*spec)


def sharding_for(path: tuple[str, ...], shape: tuple[int, ...], mesh: Mesh, fsdp: bool = False,
                 head_dim: int | None = None) -> NamedSharding:
  """The NamedSharding of the parameter at `path` with this shape."""
  return NamedSharding(mesh, _spec(logical_axes(path, len(shape)), tuple(shape), mesh,
                                   FSDP_RULES if fsdp else RULES, head_dim))


def param_shardings(shapes: Mapping, mesh: Mesh, fsdp: bool = False,
                    head_dim: int | None = None) -> dict:
  """Tree of NamedShardings matching `shapes` (a params tree of arrays or ShapeDtypeStructs)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: sharding_for(tuple(getattr(k, "key", str(k)) for k in path),
                                      tuple(leaf.shape), mesh, fsdp, head_dim), shapes)


def place(params: Mapping, mesh: Mesh, fsdp: bool = False, head_dim: int | None = None) -> dict:
  """Host (or differently placed) params onto the mesh by the rules."""
  return jax.device_put(params, param_shardings(params, mesh, fsdp, head_dim))


def bytes_per_device(params: Mapping) -> dict[Any, int]:
  """Parameter bytes each device holds (its shards), to check what sharding saves."""
  out: dict[Any, int] = {}
  for leaf in jax.tree_util.tree_leaves(params):
    for shard in leaf.addressable_shards:
      out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
  return out


def total_bytes(params: Mapping) -> int:
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
             for x in jax.tree_util.tree_leaves(params))
