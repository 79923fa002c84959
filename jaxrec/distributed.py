"""Multi-host runs: one jaxrec process per host (or several on one machine), one global mesh.

`initialize` starts `jax.distributed` before anything touches a device: with
an explicit coordinator (`config.dist.*`, or the `JAXREC_*` variables that
`experiments/tpu_vm/launch.sh` sets), or with no arguments on a Cloud TPU VM
(JAX finds the slice's workers itself), or not at all (one process: every
helper here is then the single-process code path unchanged).

Training stays one global computation: every process builds the same global
batch on the host (integer indices, cheap) and `jax.device_put` onto the
global mesh places only the rows its own devices hold, so the in-batch
negatives are the global batch's and N processes compute what one does.
Evaluation splits the users over the processes, each ranking its share on its
local devices, and gathers the integer ranks (`rank_users`). Only process 0
writes results, metrics and logs (`is_main`); every process takes part in
Orbax checkpoints. A stop signal seen by any process stops all of them after
the same step (`agree_on_stop`, a one-integer all-gather per step): JAX's own
preemption sync point (`multihost_utils.reached_preemption_sync_point`) only
knows SIGTERM through a C++ handler of its own, so jaxrec keeps one mechanism,
preemption.py's, for SIGTERM and Ctrl-C alike, and turns JAX's service off.
"""

import dataclasses
import functools
import logging
import os
import socket
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxrec.errors import JaxrecError

log = logging.getLogger(__name__)

ENV_COORDINATOR = "JAXREC_COORDINATOR"      # host:port of process 0, or "auto"
ENV_NUM_PROCESSES = "JAXREC_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXREC_PROCESS_ID"
AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class Settings:
  coordinator: str          # "" = one process; "auto" = JAX detects the cluster; else host:port
  num_processes: int        # 0 = detected
  process_id: int           # -1 = detected


def _env_int(name: str, default: int) -> int:
  value = os.environ.get(name, "")
  if not value:
    return default
  try:
    return int(value)
  except ValueError:
    raise JaxrecError(f"${name}={value!r} must be an integer") from None


def _on_cloud_tpu_vm() -> bool:
  try:
    from jax._src.cloud_tpu_init import running_in_cloud_tpu_vm  # noqa: PLC0415 (private, may move)
  except ImportError:
    return False
  return bool(running_in_cloud_tpu_vm)


def settings(config: ml_collections.ConfigDict) -> Settings:
  """config.dist, with the launcher's environment variables filling unset fields."""
  d = config.dist
  coordinator = d.coordinator or os.environ.get(ENV_COORDINATOR, "") or (AUTO if _on_cloud_tpu_vm() else "")
  num = d.num_processes or _env_int(ENV_NUM_PROCESSES, 0)
  pid = d.process_id if d.process_id >= 0 else _env_int(ENV_PROCESS_ID, -1)
  if coordinator not in ("", AUTO):
    if num < 1 or not 0 <= pid < num:
      raise JaxrecError(
          f"coordinator {coordinator} needs the number of processes and this process's id "
          f"(config.dist.num_processes / ${ENV_NUM_PROCESSES} and config.dist.process_id / "
          f"${ENV_PROCESS_ID}, 0 <= id < number), got {num} and {pid}")
  return Settings(coordinator, num, pid)


def initialize(config: ml_collections.ConfigDict) -> Settings:
  """Starts jax.distributed as configured (call before any device is used); idempotent."""
  s = settings(config)
  if not s.coordinator or jax.distributed.is_initialized():
    return s
  # Stop signals are jaxrec's own (preemption.py, agreed on by `agree_on_stop`); JAX's
  # preemption service would install a SIGTERM handler of its own in C++.
  jax.config.update("jax_enable_preemption_service", False)
  if s.coordinator != AUTO and s.process_id > 0:
    _wait_for_coordinator(s, config.dist.timeout_seconds)
  try:
    if s.coordinator == AUTO:
      jax.distributed.initialize(
          num_processes=s.num_processes or None, process_id=None if s.process_id < 0 else s.process_id,
          initialization_timeout=config.dist.timeout_seconds)
    else:
      jax.distributed.initialize(s.coordinator, s.num_processes, s.process_id,
                                 initialization_timeout=config.dist.timeout_seconds)
  except Exception as e:  # noqa: BLE001  connection, detection and argument errors alike
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    raise JaxrecError(f"jax.distributed.initialize({s.coordinator}) failed as process "
                      f"{s.process_id} of {s.num_processes}: {type(e).__name__}: {first}; check "
                      "that every process was started with the same coordinator and that "
                      "process 0 is running") from e
  log.info("process %d of %d (%d local devices, %d in all)", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
  return s


def _wait_for_coordinator(s: Settings, timeout: float) -> None:
  """Process 0 must be listening before the others connect: JAX aborts the process
  (no exception) when it cannot reach the coordinator, so that case is checked here."""
  host, port = s.coordinator.rsplit(":", 1)
  deadline = time.monotonic() + timeout
  while True:
    try:
      socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
      return
    except OSError as e:
      if time.monotonic() > deadline:
        raise JaxrecError(
            f"jax.distributed.initialize({s.coordinator}) failed as process {s.process_id} of "
            f"{s.num_processes}: nothing answers at {s.coordinator} after {timeout:g} s "
            f"({type(e).__name__}); start process 0 with the same coordinator, or raise "
            "config.dist.timeout_seconds") from e
      time.sleep(0.5)


def is_main() -> bool:
  """Whether this process writes results, metrics and logs."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (no-op in one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"jaxrec:{name}")


def local_mesh(mesh: Mesh) -> Mesh:
  """This process's devices of `mesh`, on the same axis: for work each process does alone."""
  mine = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
  return Mesh(np.asarray(mine), mesh.axis_names)


def rank_users(rank_fn: Callable[[Any, np.ndarray, Mesh], np.ndarray], histories: tuple,
               targets: np.ndarray, mesh: Mesh) -> np.ndarray:
  """[U, T] ranks from `rank_fn(histories, targets, mesh)`; with several processes each
  ranks a contiguous share of the users on its local devices and the shares are gathered."""
  n = jax.process_count()
  if n == 1:
    return rank_fn(histories, targets, mesh)
  users = len(targets)
  share = -(-users // n)
  a, b = min(users, jax.process_index() * share), min(users, (jax.process_index() + 1) * share)
  part = rank_fn(histories[a:b], targets[a:b], local_mesh(mesh)) if b > a else None
  cols = np.asarray(targets).reshape(users, -1).shape[1]
  padded = np.full((share, cols), -1, np.int32)
  if part is not None:
    padded[:b - a] = np.asarray(part).reshape(b - a, cols)
  gathered = np.asarray(multihost_utils.process_allgather(padded, tiled=True))
  return gathered.reshape(n * share, cols)[:users]


def on_mesh(tree: Any, mesh: Mesh) -> Any:
  """`tree` (replicated arrays, or None) replicated on `mesh` instead, when that is another
  set of devices (a process's local mesh); unchanged otherwise."""
  if tree is None or all(set(x.sharding.device_set) == set(mesh.devices.flat)
                         for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)):
    return tree
  return jax.device_put(jax.device_get(tree), NamedSharding(mesh, P()))


def ceg_share(mesh: Mesh) -> dict:
  """Keyword arguments of embed.build_store / content_embeddings: this process's share
  of the CEG store's chunks, computed on its local devices, and the barrier between."""
  if jax.process_count() == 1:
    return {"mesh": mesh}
  return {"mesh": local_mesh(mesh), "process_index": jax.process_index(),
          "process_count": jax.process_count(), "barrier": barrier}


def agree_on_stop(signum: int | None) -> int | None:
  """The stop signal any process received (the largest number if several), the same on
  every process, so all stop after the same step; called once per step."""
  if jax.process_count() == 1:
    return signum
  seen = multihost_utils.process_allgather(np.asarray(signum or 0, np.int32))
  top = int(np.max(seen))
  return top or None


@functools.cache
def quiet_other_processes() -> None:
  """Processes other than 0 log warnings and errors only (one set of logs per run)."""
  if not is_main():
    logging.getLogger("jaxrec").setLevel(logging.WARNING)
