"""Weight-name maps: which checkpoint tensor fills which Flax parameter.

Each model family (`bert.py`, `llama.py`, `gemma.py`, `baichuan.py`) builds
its own `KeyMap` beside its config; `checkpoint.py` only follows the map. A
source is a tensor name, whether it is a torch `Linear` weight to transpose,
and optionally which of its equal row blocks to take, for fused tensors such as Baichuan's `W_pack`
(q, k and v stacked in one Linear), which is split into our q/k/v kernels at
load time so every family shares one attention layout (and one sharding).
"""

from collections.abc import Callable, Mapping
import dataclasses
from typing import Any, NamedTuple


class Src(NamedTuple):
  """Where a parameter comes from in the checkpoint.

  Attributes:
    key: tensor name, without the model prefix ('model.', 'bert.', ...).
    transpose: a torch Linear weight [out, in], stored by Flax as [in, out].
    split: (i, n): take the i-th of n equal blocks of the tensor's first axis
      (before transposing); None takes it whole.
  """

  key: str
  transpose: bool = False
  split: tuple[int, int] | None = None


# Flax param path -> source tensor.
KeyMap = dict[tuple[str, ...], Src]


def dense(flax_path: tuple[str, ...], hf_prefix: str, bias: bool = True,
          split: tuple[int, int] | None = None) -> KeyMap:
  """A torch Linear `hf_prefix` (or a block of its outputs) -> Flax Dense."""
  out = {flax_path + ("kernel",): Src(f"{hf_prefix}.weight", True, split)}
  if bias:
    out[flax_path + ("bias",)] = Src(f"{hf_prefix}.bias", False, split)
  return out


def layer_norm(flax_path: tuple[str, ...], hf_prefix: str) -> KeyMap:
  return {flax_path + ("scale",): Src(f"{hf_prefix}.weight"),
          flax_path + ("bias",): Src(f"{hf_prefix}.bias")}


def rms_norm(flax_path: tuple[str, ...], hf_prefix: str) -> KeyMap:
  return {flax_path + ("scale",): Src(f"{hf_prefix}.weight")}


def embed(flax_path: tuple[str, ...], hf_prefix: str) -> KeyMap:
  return {flax_path + ("embedding",): Src(f"{hf_prefix}.weight")}


@dataclasses.dataclass(frozen=True)
class Family:
  """How to build and fill one model family from a Hugging Face folder.

  Attributes:
    name: short name for messages.
    model_types: the `config.json` `model_type`s it reads.
    from_hf: config.json dict -> the family's config.
    module: (config, dtype, param_dtype) -> Flax module.
    key_map: config -> KeyMap.
    prefixes: model prefixes checkpoint keys may carry ('model.', 'bert.'...);
      the loader picks the one under which most keys exist.
  """

  name: str
  model_types: tuple[str, ...]
  from_hf: Callable[[Mapping[str, Any]], Any]
  module: Callable[..., Any]
  key_map: Callable[[Any], KeyMap]
  prefixes: tuple[str, ...]
