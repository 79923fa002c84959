r"""Load time of each real dataset: the direct reader vs through its TFDS dataset (first load, later loads).

A fresh TFDS cache (a temporary $JAXREC_CACHE) per run, so the first TFDS
load prepares (reader + array_record write + read back) and the second only
reads back with grain.

  python experiments/bench_tfds_load.py --data=../shared/data --out=experiments/results/tfds_load.md
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

DATASETS = (("lcrec_json", "amazon-office"), ("lcrec_json", "amazon-beauty"),
            ("movielens_100k", "ml-100k"), ("movielens_latest_small", "ml-latest-small"))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
  p.add_argument("--out", default="")
  a = p.parse_args()
  os.environ["JAXREC_CACHE"] = tempfile.mkdtemp(prefix="bench-tfds-load-")
  from jaxrec.data import registry
  table = ["| dataset | users | direct reader (s) | TFDS, first load: prepare + read (s) | TFDS, later load (s) |",
           "|---|---|---|---|---|"]
  for kind, folder in DATASETS:
    path = str(pathlib.Path(a.data) / folder)
    t = [time.perf_counter()]
    data = registry.load_dataset(kind, path, via_tfds=False)
    for _ in range(2):
      t.append(time.perf_counter())
      registry.load_dataset(kind, path)
    t.append(time.perf_counter())
    table.append(f"| {folder} | {data.num_users:,} | {t[1] - t[0]:.2f} | {t[2] - t[1]:.2f} | {t[3] - t[2]:.2f} |")
    print(table[-1], flush=True)
  print("\n".join(table))
  if a.out:
    pathlib.Path(a.out).write_text("\n".join(table) + "\n")


if __name__ == "__main__":
  main()
