"""TensorBoard event files for a training run, without TensorFlow.

clu's metric writers import TensorFlow; `tensorboardX` writes the same event
files with protobuf alone. `open_writer` is the one hook `train.py` needs: it
writes `workdir/tensorboard/` with

  train/loss, train/grad_norm, train/lr, train/temperature, train/top1_acc
      (in-batch top-1 accuracy), train/pairs   -- from the train step's metrics
  perf/step_time_s, perf/users_per_s, perf/tflops_per_s, perf/mfu
      -- host timing between two logging points of the same training stretch
  valid/<metric>, e.g. valid/NDCG_10          -- every validation ('@' is not allowed in tags)

Timing: the train step's metrics are fetched to the host at each logging
point, so the wall time between two of them covers exactly the steps between
them. The first stretch (compilation) and time spent in validation and
checkpointing are never counted. `perf/users_per_s` counts batch rows: users
for dense_all_action, packed windows for next_item / last.

MFU = model FLOPs per step / (step time * devices * peak FLOP/s per device).
The FLOPs come from XLA's cost analysis of the lowered (unpartitioned) train
step: the whole global batch, forward + backward + optimiser. Peaks are the
dense bf16 peaks of `PEAK_FLOPS`; on CPU the peak is nominal (an MFU there
only compares CPU runs with each other). A resumed run restarts its event
stream at the resumed step, so TensorBoard drops the events written after the
last checkpoint (tensorboardX's `purge_step`).
"""

import contextlib
import logging
import pathlib
import time
from typing import Any, Iterator

import jax

log = logging.getLogger(__name__)

SUBDIR = "tensorboard"

# Dense bf16 peak FLOP/s of one JAX device, by a substring of `device.device_kind`
# (the longest match wins). TPU v2/v3 expose each core as a device; v4 and later
# one device per chip. GPUs: the datasheet's dense (not sparse) tensor-core bf16 rate.
PEAK_FLOPS = {
    "TPU v2": 22.5e12,
    "TPU v3": 61.5e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,    # v5e: Colab's free TPU (one chip)
    "TPU v5e": 197e12,
    "TPU v5": 459e12,         # v5p
    "TPU v6 lite": 918e12,    # v6e (Trillium)
    "TPU7x": 2307e12,
    "V100": 125e12,           # fp16 tensor cores (no bf16)
    "T4": 65e12,              # fp16 tensor cores (no bf16)
    "A100": 312e12,
    "A10G": 70e12,
    "L4": 121e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H200": 989e12,
    "B200": 2250e12,
}
CPU_NOMINAL_FLOPS = 1e11      # per CPU device; nominal, not measured


def peak_flops(device_kind: str) -> tuple[float | None, str]:
  """(peak FLOP/s of one device or None if unknown, a note saying where it comes from)."""
  matches = [k for k in PEAK_FLOPS if k.lower() in device_kind.lower()]
  if matches:
    key = max(matches, key=len)
    return PEAK_FLOPS[key], f"{device_kind}: dense bf16 peak {PEAK_FLOPS[key] / 1e12:g} TFLOP/s per device"
  if device_kind.lower() == "cpu":
    return CPU_NOMINAL_FLOPS, (f"cpu: NOMINAL peak {CPU_NOMINAL_FLOPS / 1e12:g} TFLOP/s per device "
                               "(not measured; compare CPU MFUs only with each other)")
  return None, f"{device_kind}: peak unknown (add it to jaxrec.metric_writer.PEAK_FLOPS); no MFU"


def step_flops(jitted_step, *args) -> float | None:
  """FLOPs of one call of a jitted function, from XLA's cost analysis of its lowering."""
  try:
    cost = jitted_step.lower(*args).cost_analysis()
  except Exception as e:  # noqa: BLE001 -- a backend without cost analysis: no MFU, not a failure
    log.warning("no FLOP count for MFU (%s: %s)", type(e).__name__, e)
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def tag(group: str, metric: str) -> str:
  """TensorBoard tag of a metric: `valid/NDCG@10` -> `valid/NDCG_10` ('@' is not allowed)."""
  return f"{group}/{metric.replace('@', '_')}"


class MetricWriter:
  """Scalars to TensorBoard event files; timing and MFU between logging points."""

  def __init__(self, logdir: str | pathlib.Path, *, batch_size: int, num_devices: int,
               flops_per_step: float | None, peak_per_device: float | None, peak_note: str = "",
               first_step: int = 0):
    from tensorboardX import SummaryWriter  # noqa: PLC0415 -- protobuf only, no TensorFlow

    # purge_step: TensorBoard drops events of an earlier attempt from this step on.
    self._writer = SummaryWriter(str(logdir), purge_step=first_step if first_step > 0 else None)
    self._batch_size = batch_size
    self._num_devices = num_devices
    self._flops = flops_per_step
    self._peak = peak_per_device
    self._clock: tuple[int, float] | None = None    # (step, time) the current stretch began
    if peak_note:
      self._writer.add_text("perf/peak", peak_note, first_step)
    if flops_per_step:
      self._writer.add_text("perf/flops_per_step", f"{flops_per_step:.4g}", first_step)

  def train(self, step: int, metrics: dict[str, float]) -> None:
    """At a logging point: the step's metrics, and throughput since the previous point."""
    now = time.perf_counter()
    for name in ("loss", "grad_norm", "lr", "top1_acc", "pairs"):
      if name in metrics:
        self._writer.add_scalar(f"train/{name}", metrics[name], step)
    if metrics.get("logit_scale"):
      self._writer.add_scalar("train/temperature", 1.0 / metrics["logit_scale"], step)
    if self._clock is not None and step > self._clock[0]:
      step_time = (now - self._clock[1]) / (step - self._clock[0])
      self._writer.add_scalar("perf/step_time_s", step_time, step)
      self._writer.add_scalar("perf/users_per_s", self._batch_size / step_time, step)
      if self._flops:
        self._writer.add_scalar("perf/tflops_per_s", self._flops / step_time / 1e12, step)
        if self._peak:
          self._writer.add_scalar("perf/mfu", self._flops / step_time / (self._num_devices * self._peak),
                                  step)
    self._clock = (step, now)

  def valid(self, step: int, metrics: dict[str, float]) -> None:
    """After a validation (and its checkpoint): its metrics; the timing restarts here."""
    for name, value in metrics.items():
      self._writer.add_scalar(tag("valid", name), value, step)
    self._writer.flush()
    self._clock = (step, time.perf_counter())

  def close(self) -> None:
    self._writer.close()


class _NoWriter:
  """What processes other than 0 get in a multi-host run: one writer per run."""

  def train(self, step: int, metrics: dict[str, float]) -> None:
    pass

  def valid(self, step: int, metrics: dict[str, float]) -> None:
    pass


@contextlib.contextmanager
def open_writer(workdir: str | pathlib.Path, *, batch_size: int, num_devices: int, first_step: int,
                jitted_step=None, step_args: tuple[Any, ...] = ()) -> Iterator[MetricWriter | _NoWriter]:
  """The run's writer (workdir/tensorboard), with FLOPs from `jitted_step(*step_args)`.

  `num_devices`: the devices the step runs on (the mesh), which MFU divides by.
  """
  if jax.process_index() != 0:
    yield _NoWriter()
    return
  peak, note = peak_flops(jax.devices()[0].device_kind)
  flops = step_flops(jitted_step, *step_args) if jitted_step is not None else None
  if flops:
    note += f"; {flops:.4g} FLOPs per step (XLA cost analysis)"
  writer = MetricWriter(pathlib.Path(workdir) / SUBDIR, batch_size=batch_size, num_devices=num_devices,
                        flops_per_step=flops, peak_per_device=peak, peak_note=note,
                        first_step=first_step)
  try:
    yield writer
  finally:
    writer.close()
