r"""Amazon Books at the real shape through the path `jaxrec.main` takes: the TFDS dataset.

`bench_books_preprocess.py` measures HSTU's preprocessing on its own. A run of
`configs/amazon_books.py` does more: `registry.load_dataset` prepares the TFDS
dataset once (the same preprocessing, then every user and item written as
array_record under the cache) and every run reads it back with grain. This
script measures those steps at the real shape, each in a fresh subprocess so
that its peak RSS (getrusage) is its own:

  prepare   `tfds_books.prepare`: preprocess + array_record write (first run)
  load      `train.load_data` of the full config on the prepared dataset: the
            RecDataset read back, leave-one-out split (a later run's data stage),
            then the first batch of `train.training_input`
  stream    the same with `data.input=stream`, which never builds the RecDataset:
            `train.load_data` (the items, and the users split copied once into a
            flat memory-mapped file: targets, counts and lengths come from it),
            the same again as a later run finds it, `train.training_input` (a
            `GrainInput` over the flat copy, whose construction packs every
            block once to count rows), a few batches and each again from a newly
            built input (a restart); then the host side of a full validation
            (every history read back and tokenised, a chunk of users at a time)
            and an exact popularity ranking of the first users

The synthetic pair (`jaxrec.data.books_synthetic`, the real row count and
file sizes, power-law activity and popularity) is written first unless
`--work` already holds it; big files and the prepared dataset are deleted
at the end unless --keep.

  nice -n 5 python experiments/bench_books_tfds.py --work=/work/scratch-books/full \
      --out=experiments/results/books_tfds
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

from jaxrec.files import atomic_write_json  # noqa: E402

_RSS = "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20"
_CPU = "(lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))"

PREPARE = f"""
import json, pathlib, resource, sys, time
from jaxrec.data import tfds_books
t0 = time.perf_counter()
builder = tfds_books.prepare(sys.argv[1], sys.argv[2])
wall = time.perf_counter() - t0
size = sum(f.stat().st_size for f in pathlib.Path(sys.argv[2]).rglob("*") if f.is_file())
print(json.dumps({{"wall_s": round(wall, 1), "cpu_s": round({_CPU}, 1), "peak_rss_gib": round({_RSS}, 2),
                  "users": len(builder.as_data_source()["users"]),
                  "items": len(builder.as_data_source()["items"]), "array_record_bytes": size}}))
"""

LOAD = f"""
import importlib.util, json, resource, sys, time
from jaxrec import train
spec = importlib.util.spec_from_file_location("c", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
cfg = m.get_config(); cfg.data.path = sys.argv[2]
t0 = time.perf_counter()
dataset, split, _ = train.load_data(cfg)
t1 = time.perf_counter()
rss_load = {_RSS}
per_epoch, batch_at = train.training_input(cfg, split)
first = batch_at(0)
t2 = time.perf_counter()
print(json.dumps({{"load_data_s": round(t1 - t0, 1), "training_input_s": round(t2 - t1, 1),
                  "cpu_s": round({_CPU}, 1), "peak_rss_load_gib": round(rss_load, 2),
                  "peak_rss_gib": round({_RSS}, 2), "stats": dataset.stats(),
                  "train_sequences": len(split.train), "steps_per_epoch": per_epoch,
                  "batch_rows": int(first["inputs"].shape[0])}}))
"""

STREAM = f"""
import hashlib, importlib.util, json, resource, sys, time
import numpy as np
from jaxrec import evaluate, sharding, train
from jaxrec.data import batching
spec = importlib.util.spec_from_file_location("c", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
cfg = m.get_config(); cfg.data.path = sys.argv[2]; cfg.data.input = "stream"
t0 = time.perf_counter()
catalogue, split, _ = train.load_data(cfg)
t_first = time.perf_counter()
rss_load = {_RSS}
del catalogue, split                                 # so the two loads do not coexist
catalogue, split, _ = train.load_data(cfg)           # as a later run: the flat copy is there
t1 = time.perf_counter()
per_epoch, batch_at = train.training_input(cfg, split)
t2 = time.perf_counter()
digest = lambda b: hashlib.sha256(b"".join(np.ascontiguousarray(b[k]).tobytes() for k in sorted(b))).hexdigest()
steps = [0, 1, 2, per_epoch // 2]
t = time.perf_counter()
first = [digest(batch_at(s)) for s in steps]
batch_s = (time.perf_counter() - t) / len(steps)
again = [digest(train.training_input(cfg, split)[1](s)) for s in reversed(steps)][::-1]   # a restart at s
rss_input = {_RSS}
t3 = time.perf_counter()
h = split.valid.histories               # the host side of a full validation: read back, tokenised
for a in range(0, len(h), evaluate.HOST_USERS):
  hist = tuple(h[a:a + evaluate.HOST_USERS])
  batching.to_tokens(hist, cfg.data.max_history)
t4 = time.perf_counter()
k = int(sys.argv[3])                    # and an exact popularity ranking of the first users, on this CPU
pop = evaluate.popularity_ranks(train.train_counts(split, catalogue.num_items).items,
                                split.test.histories[:k], split.test.targets[:k], mesh=sharding.make_mesh(1))
t5 = time.perf_counter()
print(json.dumps({{"load_data_s": round(t_first - t0, 1), "load_data_again_s": round(t1 - t_first, 1),
                  "peak_rss_load_gib": round(rss_load, 2),
                  "construct_s": round(t2 - t1, 1), "mean_batch_s": round(batch_s, 2),
                  "steps_per_epoch": per_epoch, "same_batches_after_restart": first == again,
                  "peak_rss_input_gib": round(rss_input, 2), "valid_users": len(h),
                  "eval_host_pass_s": round(t4 - t3, 1), "popularity_users": len(pop),
                  "popularity_s": round(t5 - t4, 1),
                  "popularity_hr10": evaluate.metrics_from_ranks(pop, (10,))["HR@10"],
                  "stats": catalogue.stats(), "cpu_s": round({_CPU}, 1), "peak_rss_gib": round({_RSS}, 2)}}))
"""


def run_child(code: str, *args: str, cache: pathlib.Path) -> dict:
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAXREC_CACHE": str(cache), "XLA_FLAGS": ""}
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
  if proc.returncode != 0:
    raise SystemExit(f"child failed:\n{proc.stderr[-4000:]}")
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  out["child_wall_s"] = round(time.perf_counter() - start, 1)
  return out


def markdown(r: dict, command: str) -> str:
  gib = lambda b: f"{b / 2**30:.2f} GiB"
  p, l, s = r["prepare"], r["load"], r["stream"]
  return "\n".join([
      "# Amazon Books at the real shape through TFDS (the path `jaxrec.main` takes)", "",
      f"Command: `{command}`", "",
      f"Synthetic pair in the real formats (`jaxrec.data.books_synthetic`): {r['shape']['ratings']:,} ratings, "
      f"users drawn from {r['shape']['users']:,}, items from {r['shape']['items']:,}; "
      f"{r['machine']}. Each step in a fresh process (its own peak RSS); the stream rows run in one process, "
      f"one after another.", "",
      "| step | wall s | CPU s | peak RSS |", "|---|---|---|---|",
      f"| prepare: HSTU preprocessing + array_record write (`tfds_books.prepare`, first run) | "
      f"{p['wall_s']} | {p['cpu_s']} | {p['peak_rss_gib']} GiB |",
      f"| load: `train.load_data` of the full config (RecDataset read back with grain, split; a later "
      f"run's data stage) | {l['load_data_s']} | | {l['peak_rss_load_gib']} GiB |",
      f"| then `train.training_input` and its first batch (in-memory packing) | {l['training_input_s']} | "
      f"{l['cpu_s']} (load + input) | {l['peak_rss_gib']} GiB |",
      f"| stream: `train.load_data` with `data.input=stream`, first run (items; the users split copied to a "
      f"flat memory-mapped file in one pass) | {s['load_data_s']} | | {s['peak_rss_load_gib']} GiB |",
      f"| stream: `train.load_data` again, as a later run (items; the flat copy reused; same process, page "
      f"cache warm) | "
      f"{s['load_data_again_s']} | | |",
      f"| stream: then `train.training_input` (`GrainInput` over the flat copy; packs every block "
      f"once) | {s['construct_s']} | | |",
      f"| stream: a batch of {r['batch_size']} rows (mean of 4; then each again after a restart) | "
      f"{s['mean_batch_s']} | | {s['peak_rss_input_gib']} GiB |",
      f"| stream: host side of a full validation ({s['valid_users']:,} histories read back and "
      f"tokenised, {r['host_users']:,} users at a time) | {s['eval_host_pass_s']} | | |",
      f"| stream: popularity ranks of the first {s['popularity_users']:,} test users (exact, on this CPU) | "
      f"{s['popularity_s']} | {s['cpu_s']} (all of stream) | {s['peak_rss_gib']} GiB |", "",
      f"Prepared dataset: {p['users']:,} users and {p['items']:,} items, {gib(p['array_record_bytes'])} on disk. "
      f"Steps per epoch at batch {r['batch_size']}: {l['steps_per_epoch']:,} (memory input), "
      f"{s['steps_per_epoch']:,} (streamed). Streamed batches identical after a "
      f"restart: {s['same_batches_after_restart']}.", ""])


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--work", required=True, help="scratch folder: the synthetic files and the TFDS cache")
  p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "books_tfds"))
  p.add_argument("--ratings", type=int, default=22_500_000)
  p.add_argument("--users", type=int, default=8_000_000)
  p.add_argument("--items", type=int, default=2_300_000)
  p.add_argument("--popularity_users", type=int, default=4096,
                 help="test users the stream step ranks by popularity (exact; a full pass is long on CPU)")
  p.add_argument("--keep", action="store_true", help="keep the synthetic files and the prepared dataset")
  a = p.parse_args()
  from jaxrec import evaluate
  from jaxrec.data import books_synthetic
  work = pathlib.Path(a.work).resolve()
  files, cache = work / "files", work / "cache"
  files.mkdir(parents=True, exist_ok=True)
  config = str(ROOT / "configs" / "amazon_books.py")
  import importlib.util
  spec = importlib.util.spec_from_file_location("c", config)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  result = {"shape": {"ratings": a.ratings, "users": a.users, "items": a.items},
            "batch_size": module.get_config().train.batch_size, "host_users": evaluate.HOST_USERS,
            "machine": f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start"}
  try:
    if not all((files / f).is_file() for f in (books_synthetic.RATINGS_FILE, books_synthetic.META_FILE)):
      t = time.perf_counter()
      books_synthetic.write_ratings(files / books_synthetic.RATINGS_FILE, a.ratings, a.users, a.items)
      books_synthetic.write_meta(files / books_synthetic.META_FILE, a.items)
      result["write_files_s"] = round(time.perf_counter() - t, 1)
    result["file_bytes"] = {f.name: f.stat().st_size for f in files.iterdir() if f.is_file()}
    print("files", result, flush=True)
    data_dir = cache / "tfds"
    result["prepare"] = run_child(PREPARE, str(files), str(data_dir), cache=cache)
    print("prepare", result["prepare"], flush=True)
    result["load"] = run_child(LOAD, config, str(files), cache=cache)
    print("load", result["load"], flush=True)
    result["stream"] = run_child(STREAM, config, str(files), str(a.popularity_users), cache=cache)
    print("stream", result["stream"], flush=True)
  finally:
    if not a.keep:
      shutil.rmtree(files, ignore_errors=True)
      shutil.rmtree(cache, ignore_errors=True)
  command = "python " + " ".join(["experiments/bench_books_tfds.py"] + sys.argv[1:])
  result["command"] = command
  out = pathlib.Path(a.out)
  atomic_write_json(out.with_suffix(".json"), result)
  out.with_suffix(".md").write_text(markdown(result, command))
  print(markdown(result, command))


if __name__ == "__main__":
  main()
