"""Amazon Beauty (2014, 5-core, LC-Rec json; 22,363 users, 12,101 items) from ../shared/data, leave-one-out, full ranking over all items;
content = all-MiniLM-L6-v2 (real weights). Same recipes as configs/office.py.

  python -m jaxrec.main --config=configs/beauty.py --workdir=/tmp/beauty
  python -m jaxrec.main --config=configs/beauty.py:sasrec --workdir=/tmp/beauty-sasrec

Results: experiments/results/quality.md.
"""

import pathlib

from jaxrec import recipes

# ../shared/data beside the checkout; override with --config.data.path=...
_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-beauty"


def get_config(variant: str = ""):
  c = recipes.get(variant)
  c.data.kind = "lcrec_json"
  c.data.path = str(_DATA)
  c.data.name = "Beauty"
  c.data.max_history = 50          # as the RecBole baselines
  return c
