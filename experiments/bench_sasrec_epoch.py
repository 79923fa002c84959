"""Seconds per training epoch: jaxrec's SASRec-equivalent vs RecBole's SASRec, same CPU, one run.

jaxrec: the recipe `configs/office.py:sasrec` (ID input, next-item at every
position, full softmax, tied embeddings, 2 layers x 2 heads, 64-d, dropout 0.5,
max length 50, lr 1e-3), the jitted train step built as `train.train_and_evaluate`
builds it, on a 1-device mesh. One epoch = `steps_per_epoch` steps, including
host batch assembly and transfer, ended by `jax.block_until_ready`. The first
epoch (compilation + warm-up) is timed and reported separately.

RecBole 1.2.1: SASRec with the settings of ../shared/baselines/recbole/run_recbole.py
(batch 256, lr 1e-3, hidden 64, 2 layers, 2 heads, dropout 0.5, length 50, CE
over all items, torch threads 2) on the same Office sequences (atomic files as
make_atomic.py writes them); one epoch = `trainer._train_epoch(train_data, i)`.
It runs in a subprocess of the RecBole venv that stays alive, so the epochs of
the two systems alternate (jaxrec, RecBole, jaxrec, RecBole, ...) and share
whatever else the machine is doing; each system's median epoch is reported.

  .venv/bin/python experiments/bench_sasrec_epoch.py [--epochs 2] \
      [--recbole_python /work/recbole-venv/bin/python]   # "" = jaxrec only

RecBole set-up (separate venv): python3 -m venv /work/recbole-venv &&
/work/recbole-venv/bin/pip install torch==2.13.0 recbole==1.2.1 "numpy<2" "pandas<2.3"
(RecBole 1.2.1 uses np.float_, gone in numpy 2.)
"""

import argparse
import datetime
import functools
import importlib.util
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxrec import objectives, sharding, train
from jaxrec.model.towers import LearnTowers

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_RECBOLE_PYTHON = "/work/recbole-venv/bin/python"

# The RecBole side: reads "epoch" lines on stdin, answers one JSON line per epoch.
RECBOLE_PROGRAM = r'''
import functools, json, os, sys, time
import torch
_orig_load = torch.load  # RecBole 1.2.1 + torch >= 2.6: checkpoints hold a Config object
torch.load = functools.wraps(_orig_load)(lambda *a, **k: _orig_load(*a, **{"weights_only": False, **k}))
import recbole
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed, init_logger, get_model, get_trainer

seqs_path, workdir, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
torch.set_num_threads(threads)
seqs = json.load(open(seqs_path))
os.makedirs(f"{workdir}/data/Office", exist_ok=True)
with open(f"{workdir}/data/Office/Office.inter", "w") as f:  # as make_atomic.py: timestamp = position
    f.write("user_id:token\titem_id:token\ttimestamp:float\n")
    for u, s in seqs.items():
        for i, it in enumerate(s):
            f.write(f"{u}\t{it}\t{i}\n")
cfg = {
    "data_path": f"{workdir}/data", "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
    "TIME_FIELD": "timestamp", "RATING_FIELD": None,
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 50,
    "rm_dup_inter": None, "val_interval": None, "filter_inter_by_user_or_item": False,
    "user_inter_num_interval": None, "item_inter_num_interval": None,
    "normalize_all": False, "normalize_field": None,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
    "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
    "epochs": 1, "learning_rate": 1e-3, "train_batch_size": 256, "eval_batch_size": 4096,
    "train_neg_sample_args": None, "seed": 2020, "reproducibility": True, "use_gpu": False,
    "device": "cpu", "checkpoint_dir": f"{workdir}/saved", "show_progress": False,
    "save_dataset": False, "save_dataloaders": False, "log_wandb": False,
    "n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256,
    "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "loss_type": "CE",
}
config = Config(model="SASRec", dataset="Office", config_dict=cfg)
init_seed(config["seed"], config["reproducibility"])
init_logger(config)
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
model = get_model("SASRec")(config, train_data._dataset).to(config["device"])
trainer = get_trainer(config["MODEL_TYPE"], "SASRec")(config, model)
print(json.dumps({"ready": True, "setup_s": time.perf_counter() - t0, "recbole": recbole.__version__,
                  "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "targets_per_epoch": len(train_data._dataset),
                  "steps_per_epoch": -(-len(train_data._dataset) // 256),
                  # every row is one prefix -> target, padded to MAX_ITEM_LIST_LENGTH
                  "positions_per_epoch": len(train_data._dataset) * 50}), flush=True)
for epoch, line in enumerate(sys.stdin):
    t, c = time.perf_counter(), time.process_time()
    loss = trainer._train_epoch(train_data, epoch, show_progress=False)
    print(json.dumps({"epoch_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                      "loss": float(loss) / -(-len(train_data._dataset) // 256)}), flush=True)  # sum -> mean
'''


NOTE = ("Both systems were timed in the same run, back to back, alternating epochs (jaxrec, RecBole, "
        "jaxrec, RecBole, ...), so both saw the same background load; the machine may be shared with other "
        "jobs (see loadavg), which inflates RecBole's long epoch (2 torch threads contending) more than "
        "jaxrec's; quiet-machine reference: RecBole ~95 s/epoch incl. validation (shared/baselines/README.md). "
        "Both supervise every training target once per epoch; RecBole runs the transformer on one padded "
        "50-position row per target (prefix augmentation), jaxrec on packed rows supervising every position "
        "(see positions_per_epoch), which is most of the gap.")


class RecBole:
  """The RecBole timing program in a child process; `epoch()` runs and times one epoch."""

  def __init__(self, python: str, seqs: dict, workdir: pathlib.Path, threads: int):
    (workdir / "Office.seqs.json").write_text(json.dumps(seqs))
    (workdir / "recbole_epoch.py").write_text(RECBOLE_PROGRAM)
    self.log = workdir / "recbole.log"  # RecBole's own logging (stderr)
    with open(self.log, "w") as log:
      self.proc = subprocess.Popen(
          [python, str(workdir / "recbole_epoch.py"), str(workdir / "Office.seqs.json"), str(workdir),
           str(threads)], cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    self.info = self._read()

  def _read(self) -> dict:
    for line in self.proc.stdout:  # RecBole's logger may print too: skip non-JSON lines
      if line.startswith("{"):
        return json.loads(line)
    tail = self.log.read_text()[-1500:]
    raise RuntimeError(f"RecBole subprocess exited with {self.proc.wait()}:\n{tail}")

  def epoch(self) -> dict:
    self.proc.stdin.write("epoch\n")
    self.proc.stdin.flush()
    return self._read()

  def close(self) -> None:
    self.proc.stdin.close()
    self.proc.wait()


def load_config(variant: str, data_path: str | None) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location("office_config", REPO / "configs" / "office.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(variant)
  if data_path:
    config.data.path = data_path
  return config


def jaxrec_epoch_fn(config: ml_collections.ConfigDict) -> tuple[dict, Callable[[], dict], dict]:
  """(info, run_epoch, raw sequences) for the config's training, set up as train_and_evaluate does."""
  mesh = sharding.make_mesh(1)
  dataset, split, cold = train.load_data(config)
  per_epoch, batch_at = train.training_input(config, split)
  content = train.content_table(config, dataset, mesh)
  content = None if content is None else sharding.put_replicated(jnp.asarray(content), mesh)
  model = LearnTowers(train.tower_config(config, dataset.num_items))
  tx = train.make_optimizer(config.train, per_epoch * config.train.num_epochs)
  params = train.init_params(model, config, content)
  state = sharding.put_replicated(train.TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params)), mesh)
  log_q = objectives.item_log_q(split.train, dataset.num_items)
  step_fn = jax.jit(
      functools.partial(train.train_step, loss_fn=objectives.make_loss_fn(config, model, log_q, None),
                        tx=tx, seed=config.seed),
      in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh), sharding.replicated(mesh)),
      out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)),
      donate_argnums=0)
  targets = sum(int(np.sum(b["supervised"] & (b["targets"] > 0))) for b in map(batch_at, range(per_epoch)))
  seqs = {u: [dataset.item_ids[i] for i in s] for u, s in zip(dataset.user_ids, dataset.sequences)}
  box = {"state": state, "epoch": 0}

  def run_epoch() -> dict:
    t, c = time.perf_counter(), time.process_time()
    first, losses = box["epoch"] * per_epoch, []
    for step in range(first, first + per_epoch):
      box["state"], metrics = step_fn(box["state"], sharding.put_batch(batch_at(step), mesh), content)
      losses.append(metrics["loss"])
    jax.block_until_ready((box["state"], losses))
    out = {"epoch_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}
    box["epoch"] += 1
    return {**out, "loss": float(np.mean(jax.device_get(losses)))}

  info = {"steps_per_epoch": per_epoch, "batch_rows": config.train.batch_size,
          "targets_per_epoch": targets, "positions_per_epoch": per_epoch * config.train.batch_size *
          config.data.max_history, "num_items": dataset.num_items, "users": len(dataset.sequences)}
  return info, run_epoch, seqs


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--epochs", type=int, default=2, help="timed epochs per system (after jaxrec's warm-up)")
  ap.add_argument("--variant", default="sasrec", help="configs/office.py variant")
  ap.add_argument("--data_path", default=None, help="default: the config's (../shared/data/amazon-office)")
  ap.add_argument("--recbole_python", default=DEFAULT_RECBOLE_PYTHON if os.path.exists(
      DEFAULT_RECBOLE_PYTHON) else "", help="python of a venv with recbole==1.2.1 ('' = skip RecBole)")
  ap.add_argument("--threads", type=int, default=2, help="torch threads for RecBole")
  ap.add_argument("--workdir", default=None, help="RecBole's atomic data and logs (default: a temp dir)")
  ap.add_argument("--out", default=str(REPO / "experiments" / "results" / "bench_sasrec_epoch.json"))
  args = ap.parse_args()

  load_start = os.getloadavg()
  config = load_config(args.variant, args.data_path)
  info, jax_epoch, seqs = jaxrec_epoch_fn(config)
  t = time.perf_counter()
  warm = jax_epoch()  # compilation + one epoch
  jax_warm_s = time.perf_counter() - t
  print(f"jaxrec: warm-up epoch (incl. compile) {jax_warm_s:.1f} s; {info}", flush=True)

  recbole, note = None, ""
  if not args.recbole_python or not os.path.exists(args.recbole_python):
    note = f"RecBole not installed: no python at {args.recbole_python!r} (see the docstring); jaxrec only"
    print(note)
  tmp = tempfile.TemporaryDirectory(prefix="bench_recbole_")
  if not note:
    workdir = pathlib.Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
      recbole = RecBole(args.recbole_python, seqs, workdir, args.threads)
      print(f"RecBole: set-up {recbole.info['setup_s']:.1f} s; {recbole.info}", flush=True)
    except Exception as e:  # e.g. recbole missing from that venv
      note = f"RecBole not installed or failed to start: {e!r}; jaxrec only"
      print(note)

  runs = {"jaxrec": [], "recbole": []}
  for i in range(args.epochs):  # alternate, so both see the same background load
    runs["jaxrec"].append(jax_epoch())
    print(f"epoch {i}: jaxrec {runs['jaxrec'][-1]['epoch_s']:.2f} s", flush=True)
    if recbole is not None:
      runs["recbole"].append(recbole.epoch())
      print(f"epoch {i}: RecBole {runs['recbole'][-1]['epoch_s']:.2f} s", flush=True)
  if recbole is not None:
    recbole.close()
  tmp.cleanup()

  def summary(name: str, warm_s: float, targets: int) -> dict:
    times = [r["epoch_s"] for r in runs[name]]
    med = statistics.median(times)
    return {"epoch_s_median": round(med, 3), "epoch_s": [round(x, 3) for x in times],
            "cpu_s_median": round(statistics.median(r["cpu_s"] for r in runs[name]), 3),
            "warmup_s": round(warm_s, 2), "targets_per_epoch": targets,
            "targets_per_s": round(targets / med, 1), "losses": [round(r["loss"], 4) for r in runs[name]]}

  systems = {"jaxrec": {**summary("jaxrec", jax_warm_s, info["targets_per_epoch"]), **info,
                        "warmup_loss": round(warm["loss"], 4)}}
  if runs["recbole"]:
    systems["recbole"] = {**summary("recbole", recbole.info["setup_s"], recbole.info["targets_per_epoch"]),
                          **{k: recbole.info[k] for k in ("recbole", "torch", "threads", "steps_per_epoch",
                                                          "positions_per_epoch")}}
  ratio = cpu_ratio = None
  if "recbole" in systems:
    ratio = systems["recbole"]["epoch_s_median"] / systems["jaxrec"]["epoch_s_median"]
    cpu_ratio = systems["recbole"]["cpu_s_median"] / systems["jaxrec"]["cpu_s_median"]

  print(f"\n{'system':<8} | {'epoch s':>8} | {'compile/warm-up s':>17} | {'targets/s':>9} | ratio (RecBole/jaxrec)")
  for name, s in systems.items():
    r = f"{ratio:.2f}x" if ratio and name == "recbole" else ("1.00x" if ratio else "-")
    print(f"{name:<8} | {s['epoch_s_median']:>8.2f} | {s['warmup_s']:>17.1f} | {s['targets_per_s']:>9.0f} | {r}")
  if ratio:
    print(f"jaxrec is {ratio:.2f}x faster per epoch (target >= 3x: {'met' if ratio >= 3 else 'NOT met'}); "
          f"process CPU seconds per epoch: {cpu_ratio:.2f}x fewer; 1-min load average at start/end: "
          f"{load_start[0]:.1f}/{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

  print(note or NOTE)
  git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
  record = {
      "what": "seconds per training epoch, SASRec on Amazon Office (median of the timed epochs); "
              "RecBole 'warmup_s' is its data/model set-up (no compilation); cpu_s: process CPU seconds "
              "per epoch; losses: mean batch CE per timed epoch",
      "ratio_recbole_over_jaxrec": None if ratio is None else round(ratio, 2),
      "cpu_ratio_recbole_over_jaxrec": None if cpu_ratio is None else round(cpu_ratio, 2),
      "systems": systems,
      "note": note or NOTE,
      "machine": {"nproc": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                  "jax": jax.__version__, "jax_devices": [str(d) for d in jax.devices()],
                  "loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg()},
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "git_head": git.stdout.strip(),
      "command": " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, REPO), *sys.argv]),
      "config_variant": f"configs/office.py:{args.variant}",
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(record, indent=2) + "\n")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
