r"""Amazon Books at the real shape: preprocessing time and peak memory, the full
config's data stage, and its train step time on this machine.

The real files are not on our machines, so a synthetic pair with the real shape
is written first, streaming (`jaxrec.data.books_synthetic`: 22.5M ratings, 8M
users, 2.3M items, power-law activity and popularity, a metadata line with
text for 98% of the items, plus a few malformed lines). Then, each in a fresh
subprocess so that getrusage's peak RSS is its own:

  preprocess  `amazon_books.preprocess` (HSTU's filter, streamed), then the
              full config's data stage: leave-one-out split and the next-item
              packing of `train.training_input` (configs/amazon_books.py).
  step        the full config's model (12 layers, d 768, mixed negatives with
              8,192 samples) on one CPU device: a few jitted train steps on
              packed rows of the synthetic data, with a random content table
              (Baichuan2-7B's width 4096, on a 20k-item slice of the catalogue:
              a step reads only the rows it uses, so its cost does not depend
              on the catalogue size), at a reduced batch (`--step_batch`).
              FLOPs are counted analytically; accelerator times in
              configs/amazon_books.py are these FLOPs over an assumed MFU.

  nice -n 5 python experiments/bench_books_preprocess.py --work=/work/scratch-books/full \
      --out=experiments/results/books_preprocess

Big files are deleted at the end unless --keep.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PREPROCESS = r"""
import json, resource, sys, time, importlib.util
import numpy as np
from jaxrec.data import amazon_books, splits
from jaxrec import train
spec = importlib.util.spec_from_file_location("c", sys.argv[2]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
cfg = m.get_config(); cfg.data.path = sys.argv[1]
t0 = time.perf_counter()
dataset, report = amazon_books.preprocess(sys.argv[1])
t1 = time.perf_counter()
rss_pre = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
split = splits.leave_one_out(dataset.sequences)
per_epoch, batch_at = train.training_input(cfg, split)
first = batch_at(0)
t2 = time.perf_counter()
report = {k: v for k, v in vars(report).items()}
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"preprocess_s": round(t1 - t0, 1), "data_stage_s": round(t2 - t1, 1),
                  "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
                  "peak_rss_preprocess_gib": round(rss_pre, 2),
                  "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                  "report": report, "stats": dataset.stats(), "train_sequences": len(split.train),
                  "steps_per_epoch": per_epoch, "batch_size": cfg.train.batch_size,
                  "rows_per_batch": int(first["inputs"].shape[0])}))
"""

STEP = r"""
import functools, json, sys, time, importlib.util
import numpy as np, jax, jax.numpy as jnp
from jaxrec import objectives, sharding, train
from jaxrec.data import packing
from jaxrec.model.towers import LearnTowers
spec = importlib.util.spec_from_file_location("c", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
cfg = m.get_config(); batch, steps, n_items, d_llm = (int(a) for a in sys.argv[2:6])
cfg.train.batch_size = batch
rng = np.random.default_rng(0)
seqs = tuple(rng.integers(0, n_items, int(rng.integers(5, 120))).astype(np.int32) for _ in range(4 * batch))
rows = packing.pack(seqs, cfg.data.max_history)
content = jnp.asarray(train.prepare_content(rng.normal(size=(n_items, d_llm)).astype(np.float32), "l2"))
model = LearnTowers(train.tower_config(cfg, n_items))
tx = train.make_optimizer(cfg.train, 1000)
params = train.init_params(model, cfg, content)
mesh = sharding.make_mesh(1)
state = train.TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params))
log_q = objectives.item_log_q(seqs, n_items)
step_fn = jax.jit(functools.partial(train.train_step, loss_fn=objectives.make_loss_fn(cfg, model, log_q),
                                    tx=tx, seed=0), donate_argnums=0)
times = []
for s in range(steps + 1):
  b = packing.batch(rows, s, batch_size=batch, seed=0)
  t = time.perf_counter()
  state, metrics = step_fn(state, b, content)
  jax.block_until_ready(metrics["loss"])
  times.append(time.perf_counter() - t)
n_params = sum(x.size for x in jax.tree.leaves(params))
print(json.dumps({"batch_rows": batch, "first_step_s": round(times[0], 2), "step_s": times[1:],
                  "loss": float(metrics["loss"]), "params": int(n_params), "devices": str(jax.devices()[0])}))
"""


def step_flops(rows: int, length: int, d: int, layers: int, mlp: int, d_llm: int, sampled: int) -> float:
  """Forward + backward FLOPs (3x forward) of one next-item step with mixed negatives."""
  tokens = rows * length
  per_token = 2 * layers * (4 * d * d + 2 * d * mlp) + 2 * layers * 2 * length * d   # matmuls + attention
  adapter = 2 * d_llm * d                                                          # content -> d, per vector
  forward = (tokens * per_token + (2 * tokens + sampled) * adapter                  # user side, positives, samples
             + 2 * tokens * (tokens + sampled) * d)                                # logits
  return 3.0 * forward


def run_child(code: str, *args: str) -> tuple[dict, float]:
  env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": ""}
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
  wall = time.perf_counter() - start
  if proc.returncode != 0:
    raise SystemExit(f"child failed:\n{proc.stderr[-4000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--work", required=True, help="scratch folder for the synthetic files (deleted after)")
  p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "books_preprocess"))
  p.add_argument("--ratings", type=int, default=22_500_000)
  p.add_argument("--users", type=int, default=8_000_000)
  p.add_argument("--items", type=int, default=2_300_000)
  p.add_argument("--step_batch", type=int, default=8, help="packed rows per step for the CPU step time")
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--keep", action="store_true")
  a = p.parse_args()
  from jaxrec.data import books_synthetic
  work = pathlib.Path(a.work)
  work.mkdir(parents=True, exist_ok=True)
  config = str(ROOT / "configs" / "amazon_books.py")
  result = {"shape": {"ratings": a.ratings, "users": a.users, "items": a.items},
            "machine": f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start"}
  try:
    t = time.perf_counter()
    books_synthetic.write_ratings(work / books_synthetic.RATINGS_FILE, a.ratings, a.users, a.items)
    result["write_ratings_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    books_synthetic.write_meta(work / books_synthetic.META_FILE, a.items)
    with open(work / books_synthetic.RATINGS_FILE, "ab") as f:        # malformed rows, as real dumps have
      f.write(b"broken line\nA0000000000001,0000000001,five,1400000000\nA\xff00000000001,0000000001,5.0,1\n")
    result["write_meta_s"] = round(time.perf_counter() - t, 1)
    result["file_bytes"] = {f.name: f.stat().st_size for f in work.iterdir() if f.is_file()}
    print("files written", result, flush=True)
    result["preprocess"], result["preprocess"]["child_wall_s"] = run_child(PREPROCESS, str(work), config)
    print("preprocess", result["preprocess"], flush=True)
  finally:
    if not a.keep:
      for name in (books_synthetic.RATINGS_FILE, books_synthetic.META_FILE):
        (work / name).unlink(missing_ok=True)
  import importlib.util
  spec = importlib.util.spec_from_file_location("c", config)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  d_llm, n_items = 4096, 20_000
  step, _ = run_child(STEP, config, str(a.step_batch), str(a.steps), str(n_items), str(d_llm))
  shape = dict(length=c.data.max_history, d=c.model.d_model, layers=c.model.num_layers, mlp=c.model.mlp_dim,
               d_llm=d_llm, sampled=c.loss.num_sampled)
  flops = step_flops(a.step_batch, **shape)
  full = step_flops(c.train.batch_size, **shape)
  mean = sum(step["step_s"]) / len(step["step_s"])
  step.update(mean_step_s=round(mean, 2), flops_per_step=flops, achieved_gflops=round(flops / mean / 1e9, 1),
              full_batch_rows=c.train.batch_size, full_batch_flops=full,
              full_batch_cpu_s_estimate=round(full / (flops / mean), 1))
  result["full_step"] = step
  print("step", step, flush=True)
  out = pathlib.Path(a.out)
  out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {out.with_suffix('.json')}")
  if not a.keep:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main()
