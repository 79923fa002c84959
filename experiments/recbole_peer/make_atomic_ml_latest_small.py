"""RecBole atomic files for MovieLens latest-small, for the peer SASRec row jaxrec lacked.

../shared/baselines/recbole/make_atomic.py writes Office, Beauty and ML-100K; this adds
ML-latest-small in the same layout ($PEER_ROOT/data/mlls/mlls.inter and mlls.seqs.json),
from jaxrec's own reader, so RecBole's time-ordered leave-one-out split is ours by
construction (timestamp := position in the user's sequence, as make_atomic.py does).
Then run the shared script unchanged:

  PEER_ROOT=/tmp/peer python experiments/recbole_peer/make_atomic_ml_latest_small.py
  PEER_ROOT=/tmp/peer /path/to/recbole-venv/bin/python \
      ../shared/baselines/recbole/run_recbole.py SASRec mlls --epochs 40 --threads 1 --dropout 0.2

RecBole knows only items that occur in the ratings (9,724 of movies.csv's 9,742): its
ranking is over those; jaxrec ranks over every movie, so its task is very slightly harder.
"""

import json
import os
import pathlib

from jaxrec.data import movielens

_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-latest-small"


def main() -> None:
  dataset = movielens.load_latest_small(os.environ.get("MLLS_PATH", _DATA))
  out = pathlib.Path(os.environ.get("PEER_ROOT", "peer-work")) / "data" / "mlls"
  out.mkdir(parents=True, exist_ok=True)
  seqs = {u: [dataset.item_ids[i] for i in s] for u, s in zip(dataset.user_ids, dataset.sequences)}
  with open(out / "mlls.inter", "w") as f:
    f.write("user_id:token\titem_id:token\ttimestamp:float\n")
    for u, s in seqs.items():
      f.writelines(f"{u}\t{it}\t{t}\n" for t, it in enumerate(s))
  (out / "mlls.seqs.json").write_text(json.dumps(seqs))
  rated = {it for s in seqs.values() for it in s}
  print(f"mlls: users={len(seqs)} items={len(rated)} (catalogue {dataset.num_items}) "
        f"interactions={sum(map(len, seqs.values()))} -> {out}")


if __name__ == "__main__":
  main()
