"""MovieLens latest-small (610 users, 9,742 movies) from ../shared/data, leave-one-out, full ranking over all items;
content = all-MiniLM-L6-v2 (real weights). Same recipes as configs/office.py.

  python -m jaxrec.main --config=configs/ml_latest_small.py --workdir=/tmp/ml_latest_small
  python -m jaxrec.main --config=configs/ml_latest_small.py:sasrec --workdir=/tmp/ml_latest_small-sasrec

Results: experiments/results/quality.md.
"""

import pathlib

from jaxrec import recipes

# ../shared/data beside the checkout; override with --config.data.path=...
_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


def get_config(variant: str = ""):
  c = recipes.get(variant)
  c.data.kind = "movielens_latest_small"
  c.data.path = str(_DATA)
  c.data.max_history = 50          # as the RecBole baselines
  if c.method == "learn" and c.loss.objective != "dense_all_action":
    c.model.dropout = 0.2        # RecBole's MovieLens setting (dense data), as in ../shared/baselines
  return c
