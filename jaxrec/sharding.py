"""The device mesh and the two placements jaxrec uses: replicated and batch-sharded.

Training and evaluation are data-parallel over the mesh axis `data`: the
batch is split across devices, parameters are replicated, and computing the
global in-batch logits inside jit makes XLA insert the all-gather of the item
embeddings (as big_vision's SigLIP trainer does).
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrec.errors import JaxrecError


def make_mesh(num_devices: int = -1) -> Mesh:
  """1-D mesh ('data',) over the first `num_devices` devices (-1: all)."""
  devices = jax.devices()
  n = len(devices) if num_devices in (-1, None) else num_devices
  if not 1 <= n <= len(devices):
    raise JaxrecError(f"mesh wants {n} devices but {len(devices)} are available")
  return Mesh(np.asarray(devices[:n]), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def check_divisible(size: int, mesh: Mesh, what: str) -> None:
  n = mesh.devices.size
  if size % n:
    raise JaxrecError(f"{what} ({size}) must be divisible by the number of devices ({n})")


def put_batch(tree, mesh: Mesh):
  """Places host arrays on the mesh, split along their first axis."""
  return jax.device_put(tree, batch_sharded(mesh))


def put_replicated(tree, mesh: Mesh):
  return jax.device_put(tree, replicated(mesh))
