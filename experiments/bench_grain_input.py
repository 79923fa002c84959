r"""Peak RSS of the next-item training input against the number of users: grain (streamed) vs memory.

For each user count a synthetic dataset (sequence lengths 3..80, skewed short
like public data; 20k items with a title) is prepared once as a TFDS
array_record dataset through `tfds_builder`. Each (users, input) pair then runs
in a fresh subprocess that opens the prepared dataset, notes its RSS (VmRSS:
Python, the imports, the opened data source with its array_record readers), resets the kernel's peak
(VmHWM, via /proc/self/clear_refs) and reports the peak over building the
input and drawing one full epoch of batches; "input's peak" is the difference:

- grain: `grain_input.GrainInput` over `LeaveOneOutTrain` (the users split read
  lazily from array_record), so nothing per user is held but the block counts;
- grain_generated: the same input over `Generated` (sequences made on demand,
  no file): what the input itself holds, without the array_record reader's
  own memory for random reads over a bigger file;
- memory: the dataset read whole (`tfds_builder.read`), split with
  `splits.leave_one_out`, rows packed with `packing.pack` (today's default).

  python experiments/bench_grain_input.py --users=20000,200000 \
      --out=experiments/results/grain_input.json
  python experiments/bench_grain_input.py --users=20000,200000 --malloc_arena_max=2 \
      --out=experiments/results/grain_input_arena2.json

array_record's bulk reads run on a thread pool, and glibc gives each thread
its own malloc arena that keeps freed buffers: the second command (two arenas)
separates that allocator high-water mark from what the input holds. `--arenas`
compares ways of capping them side by side, e.g. glibc's default, the
environment variable and `jaxrec.malloc_arenas.cap` (mallopt, which
`jaxrec.main` calls for data.input=grain|stream):

  python experiments/bench_grain_input.py --users=200000 --inputs=grain \
      --arenas=default,env:2,mallopt:2 --out=experiments/results/grain_input_mallopt.json
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxrec.data import dataset as ds        # noqa: E402
from jaxrec.data import tfds_builder         # noqa: E402

NUM_ITEMS = 20_000


def synthetic(folder, users: int, seed: int = 0) -> ds.RecDataset:
  """`users` users with 3..80 items (geometric, mean ~12), NUM_ITEMS titled items."""
  del folder
  rng = np.random.default_rng(seed)
  lengths = np.minimum(3 + rng.geometric(1 / 10, users), 80)
  return ds.RecDataset(
      name=f"synthetic-{users}", item_ids=tuple(str(i) for i in range(NUM_ITEMS)),
      item_fields=tuple({"title": f"item {i}"} for i in range(NUM_ITEMS)),
      user_ids=tuple(str(u) for u in range(users)),
      sequences=tuple(rng.integers(0, NUM_ITEMS, n).astype(np.int32) for n in lengths))


class Generated:
  """Training sequences made on demand from the user index (no file, nothing per user in memory)."""

  def __init__(self, users: int):
    self.users = users

  def __len__(self) -> int:
    return self.users

  def __getitem__(self, u: int) -> np.ndarray:
    rng = np.random.default_rng(u)
    return rng.integers(0, NUM_ITEMS, min(3 + rng.geometric(1 / 10), 80) - 2).astype(np.int32)


SOURCE = tfds_builder.Source(name="bench_synthetic_users", reader=synthetic, files=lambda folder, **_: [],
                             item_fields=("title",), description="synthetic users for bench_grain_input")

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[4])
if sys.argv[5]:                                      # mallopt(M_ARENA_MAX) before any reader thread
  from jaxrec import malloc_arenas
  assert malloc_arenas.cap(int(sys.argv[5]))
import numpy as np
from jaxrec.data import grain_input, packing, splits, tfds_builder
sys.path.insert(0, sys.argv[4] + "/experiments")
import bench_grain_input as bench
users, mode, data_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def mb(field):
  line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
  return int(line.split()[1]) / 1024
builder = tfds_builder.prepare(bench.SOURCE, data_dir, data_dir, {"users": users})
source = builder.as_data_source()["users"]
source.__getitems__([0, len(source) - 1])            # open the readers (and their record index) first
before, anon_before = mb("VmRSS"), mb("RssAnon")
open("/proc/self/clear_refs", "w").write("5")        # VmHWM (peak RSS) restarts from here
t0 = time.perf_counter()
if mode in ("grain", "grain_generated"):
  train = grain_input.LeaveOneOutTrain(source) if mode == "grain" else bench.Generated(users)
  g = grain_input.GrainInput(train, max_history=50, batch_size=256, seed=0)
  steps, batch_at = g.steps_per_epoch, g.batch
else:
  data = tfds_builder.read(builder)
  rows = packing.pack(splits.leave_one_out(data.sequences).train, 50)
  steps, batch_at = packing.steps_per_epoch(rows, 256), lambda s: packing.batch(rows, s, batch_size=256, seed=0)
t1 = time.perf_counter()
filled = 0.0
for s in range(steps):
  filled += float(np.mean(batch_at(s)["inputs"] > 0))
t2 = time.perf_counter()
print(json.dumps({"users": users, "input": mode, "steps_per_epoch": steps, "rss_before_mb": round(before, 1),
                  "peak_rss_mb": round(mb("VmHWM"), 1), "delta_mb": round(mb("VmHWM") - before, 1),
                  "anon_delta_mb": round(mb("RssAnon") - anon_before, 1), "file_mb": round(mb("RssFile"), 1),
                  "setup_s": round(t1 - t0, 1), "epoch_s": round(t2 - t1, 1),
                  "filled": round(filled / steps, 3)}))
"""


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--users", default="20000,200000")
  p.add_argument("--inputs", default="grain,grain_generated,memory")
  p.add_argument("--data_dir", default="", help="TFDS data dir ('' = a temporary folder)")
  p.add_argument("--malloc_arena_max", default="", help="MALLOC_ARENA_MAX for the children ('' = glibc's default)")
  p.add_argument("--arenas", default="default",
                 help="comma list of how the children's malloc arenas are set, a row each: default (glibc's, "
                      "or --malloc_arena_max), env:N (MALLOC_ARENA_MAX=N), mallopt:N (jaxrec.malloc_arenas.cap(N), "
                      "what jaxrec.main does for streamed inputs)")
  p.add_argument("--out", default="")
  a = p.parse_args()
  data_dir = a.data_dir or tempfile.mkdtemp(prefix="bench-grain-")
  rows = []
  for users in map(int, a.users.split(",")):
    tfds_builder.prepare(SOURCE, data_dir, data_dir, {"users": users})     # once, outside the measurement
    for mode in a.inputs.split(","):
      for arenas in a.arenas.split(","):
        how, _, n = arenas.partition(":")
        env_max = n if how == "env" else a.malloc_arena_max
        out = subprocess.run([sys.executable, "-c", CHILD, str(users), mode, data_dir, str(ROOT),
                              n if how == "mallopt" else ""],
                             capture_output=True, text=True, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu",
                                  **({"MALLOC_ARENA_MAX": env_max} if env_max else {})})
        rows.append({**json.loads(out.stdout.strip().splitlines()[-1]), "arenas": arenas})
        print(rows[-1], flush=True)
  table = ["| users | input | arenas | steps/epoch | RSS before input (MB) | peak RSS (MB) | input's peak (MB) "
           "| anonymous RSS added, at the end (MB) | setup (s) | epoch (s) | filled |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  table += [f"| {r['users']:,} | {r['input']} | {r['arenas']} | {r['steps_per_epoch']} | {r['rss_before_mb']} | {r['peak_rss_mb']} "
            f"| {r['delta_mb']} | {r['anon_delta_mb']} | {r['setup_s']} | {r['epoch_s']} | {r['filled']} |" for r in rows]
  print("\n".join(table))
  if a.out:
    pathlib.Path(a.out).write_text(json.dumps({"malloc_arena_max": a.malloc_arena_max or "default",
                                               "rows": rows, "table": table}, indent=1) + "\n")


if __name__ == "__main__":
  main()
