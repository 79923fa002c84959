"""Index benchmark: tuned ScaNN vs exact brute force (numpy) vs faiss, side by side.

Two catalogues:
  office     the item embeddings of a serving folder (`python -m jaxrec.serve build`),
             queried by its held-out test users; below 20k items the index is
             brute force by design (reported as such).
  synthetic  N (default 1M) clustered 64-d unit vectors (2,000 Gaussian clusters),
             queried by 1,000 held-out points of the same mixture.

For each: recall@100 against exact search and QPS (batched queries, all cores),
plus build time. Prints a table and writes experiments/results/bench_index.json.

  nice -n 5 python experiments/bench_index.py --serving=/path/to/serving --n=1000000
"""

import argparse
import json
import os
import pathlib
import time

import numpy as np

from jaxrec.serving.index import IndexSettings, ItemIndex, exact_top_k, recall_at_k

K = 100


def clustered(n: int, d: int, clusters: int, queries: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(clusters, d)).astype(np.float32)
  def draw(m):
    x = centres[rng.integers(0, clusters, m)] + 0.35 * rng.normal(size=(m, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
  return draw(n), draw(queries)


def timed(fn):
  t = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t


def faiss_row(items, queries, exact):
  try:
    import faiss  # noqa: PLC0415
  except ImportError:
    return None
  d = items.shape[1]
  nlist = int(np.sqrt(len(items)))
  (index, build) = timed(lambda: _faiss_ivf(faiss, items, nlist))
  rows = []
  for nprobe in (8, 16, 32, 64, 128):
    index.nprobe = nprobe
    (res, secs) = timed(lambda: index.search(queries, K))
    rows.append({"nprobe": nprobe, "recall": recall_at_k(res[1], exact), "qps": len(queries) / secs})
    if rows[-1]["recall"] >= 0.95:
      break
  best = rows[-1]
  return {"method": f"faiss IVF{nlist},Flat nprobe={best['nprobe']}", "recall": best["recall"],
          "qps": best["qps"], "build_s": build, "d": d}


def _faiss_ivf(faiss, items, nlist):
  quant = faiss.IndexFlatIP(items.shape[1])
  index = faiss.IndexIVFFlat(quant, items.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
  index.train(items[np.random.default_rng(0).choice(len(items), min(len(items), 50 * nlist), replace=False)])
  index.add(items)
  return index


def bench(name: str, items: np.ndarray, queries: np.ndarray, settings: IndexSettings) -> list[dict]:
  ids = [str(i) for i in range(len(items))]
  (exact, _), exact_s = timed(lambda: exact_top_k(queries, items, K))
  exact_ids = [[str(j) for j in row] for row in exact]
  index, build_s = timed(lambda: ItemIndex.build(items, ids, queries, settings, exact=(exact, exact_s)))
  rows = [{"catalogue": name, "method": "exact brute force (numpy, chunked)", "recall": 1.0,
           "qps": len(queries) / exact_s, "build_s": 0.0}]
  (found, secs) = timed(lambda: index.search_ids(queries, K))
  p = index.params
  method = ("scann brute force" if p["mode"] == "brute_force" else
            f"scann tree+AH leaves={index.report.get('num_leaves')} search={p['leaves_to_search']} "
            f"reorder={p['reorder']}")
  rows.append({"catalogue": name, "method": method, "recall": recall_at_k(found, exact_ids),
               "qps": len(queries) / secs, "build_s": build_s, "train_s": index.report.get("train_seconds"),
               "tuner": {k: v for k, v in index.report.items()}})
  f = faiss_row(items, queries, exact)
  if f is not None:
    rows.append({"catalogue": name, **f})
  base = rows[0]["qps"]
  for r in rows:
    r["speedup_vs_exact"] = r["qps"] / base
  return rows


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--serving", default="", help="serving folder of a real run (office row)")
  ap.add_argument("--n", type=int, default=1_000_000, help="synthetic catalogue size (0 = skip)")
  ap.add_argument("--clusters", type=int, default=2000)
  ap.add_argument("--queries", type=int, default=1000)
  ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "bench_index.json"))
  args = ap.parse_args()
  settings = IndexSettings(target_recall=0.95, recall_k=K, tune_queries=args.queries)
  rows = []
  if args.serving:
    base = np.load(pathlib.Path(args.serving) / "base.npz", allow_pickle=False)
    queries = np.load(pathlib.Path(args.serving) / "queries.npy", allow_pickle=False)[:args.queries]
    rows += bench("office", base["item_emb"], queries, settings)
  if args.n:
    items, queries = clustered(args.n, 64, args.clusters, args.queries)
    rows += bench(f"synthetic {args.n // 1000}k x 64 clustered", items, queries, settings)
  print("build s: the whole build (tuning included); train s: ScaNN's tree + quantiser training alone")
  print(f"{'catalogue':34} {'method':58} {'recall@100':>10} {'QPS':>10} {'x exact':>8} {'build s':>8} "
        f"{'train s':>8}")
  for r in rows:
    train = r.get("train_s")
    print(f"{r['catalogue']:34} {r['method'][:58]:58} {r['recall']:10.4f} {r['qps']:10.0f} "
          f"{r['speedup_vs_exact']:8.1f} {r['build_s']:8.1f} {'' if train is None else f'{train:8.1f}':>8}")
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.out).write_text(json.dumps({"cpu_count": os.cpu_count(), "k": K, "rows": rows},
                                               indent=1, default=float) + "\n")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
