"""TensorBoard events: written by a training run, read back by TensorBoard's own reader, no TensorFlow."""

import json
import sys

import jax
import jax.numpy as jnp
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboardX import SummaryWriter

from jaxrec import metric_writer, train
from test_train import tiny_config


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
  acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture()
def no_tensorflow(monkeypatch):
  """`import tensorflow` fails, as on a machine without it (even where it is installed)."""
  monkeypatch.setitem(sys.modules, "tensorflow", None)
  with pytest.raises(ImportError):
    import tensorflow  # noqa: F401, PLC0415


def test_training_writes_events_tensorboard_reads_without_tensorflow(tmp_path, no_tensorflow):
  config = tiny_config(train={"num_epochs": 1, "eval_every": 20, "log_every": 5},
                       loss={"objective": "next_item", "negatives": "full"})
  train.train_and_evaluate(config, tmp_path)
  scalars = read_scalars(tmp_path / metric_writer.SUBDIR)
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logged = [l for l in lines if "loss" in l]
  validated = [l for l in lines if "valid" in l]
  assert len(logged) >= 3 and validated
  # The same values as metrics.jsonl, at the same steps.
  assert [s for s, _ in scalars["train/loss"]] == [l["step"] for l in logged]
  assert [v for _, v in scalars["train/loss"]] == pytest.approx([l["loss"] for l in logged], rel=1e-6)
  assert [v for _, v in scalars["train/temperature"]] == pytest.approx(
      [1 / l["logit_scale"] for l in logged], rel=1e-6)
  assert [s for s, _ in scalars["valid/NDCG_10"]] == [l["step"] for l in validated]
  assert [v for _, v in scalars["valid/HR_10"]] == pytest.approx([l["valid"]["HR@10"] for l in validated])
  # lr follows the cosine schedule of the run; top-1 accuracy is a fraction.
  schedule = train.lr_schedule(config.train, lines[-1]["step"])
  assert [v for _, v in scalars["train/lr"]] == pytest.approx(
      [float(schedule(s - 1)) for s, _ in scalars["train/lr"]], rel=1e-5)
  assert all(0.0 <= v <= 1.0 for _, v in scalars["train/top1_acc"])
  # Throughput after the first stretch (compilation is never timed); MFU against the nominal CPU peak.
  for tag in ("perf/step_time_s", "perf/users_per_s", "perf/tflops_per_s", "perf/mfu"):
    assert scalars[tag] and all(v > 0 for _, v in scalars[tag]), tag
  assert scalars["perf/step_time_s"][0][0] > logged[0]["step"]
  (step, st), (_, ups) = scalars["perf/step_time_s"][0], scalars["perf/users_per_s"][0]
  assert ups == pytest.approx(config.train.batch_size / st, rel=1e-5)
  assert all(v < 1.0 for _, v in scalars["perf/mfu"])


def test_resumed_run_replaces_the_events_after_its_checkpoint(tmp_path):
  config = tiny_config(train={"num_epochs": 1, "eval_every": 10, "log_every": 5})
  assert train.train_and_evaluate(config, tmp_path, stop_after_steps=13) is None  # checkpoint at 13
  # A crash after the checkpoint: events of steps 15 and 20 were written, then lost with the run.
  with SummaryWriter(str(tmp_path / metric_writer.SUBDIR)) as w:
    for step in (15, 20):
      w.add_scalar("train/loss", 999.0, step)
  train.train_and_evaluate(config, tmp_path)
  loss = read_scalars(tmp_path / metric_writer.SUBDIR)["train/loss"]
  steps = [s for s, _ in loss]
  assert 999.0 not in [v for _, v in loss]
  assert steps == sorted(set(steps)) and steps[0] == 5 and 15 in steps   # each step once, in order
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert steps == [l["step"] for l in lines if "loss" in l]


def test_peak_flops_table():
  assert metric_writer.peak_flops("TPU v5 lite")[0] == 197e12          # Colab's v5e
  assert metric_writer.peak_flops("TPU v5")[0] == 459e12               # v5p, not v5e
  assert metric_writer.peak_flops("NVIDIA H100 PCIe")[0] == 756e12
  assert metric_writer.peak_flops("NVIDIA H100 80GB HBM3")[0] == 989e12
  peak, note = metric_writer.peak_flops("cpu")
  assert peak == metric_writer.CPU_NOMINAL_FLOPS and "NOMINAL" in note
  assert metric_writer.peak_flops("Strange accelerator")[0] is None


def test_step_flops_counts_a_matmul():
  a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
  assert metric_writer.step_flops(jax.jit(lambda x, y: x @ y), a, b) == pytest.approx(2 * 64 * 32 * 16, rel=0.01)
