"""Amazon Office (2014, 5-core, LC-Rec json) from ../shared/data, leave-one-out,
full ranking over all 2,420 items; content = all-MiniLM-L6-v2 (real weights).

  python -m jaxrec.main --config=configs/office.py --workdir=/tmp/office
  python -m jaxrec.main --config=configs/office.py:sasrec --workdir=/tmp/office-sasrec

Variants (`configs/office.py:<name>`, see `jaxrec/recipes.py`): the default is the
best validated LEARN recipe; `paper` is LEARN as published (dense all-action
InfoNCE, Variant 1); `sasrec` is the SASRec-equivalent (RecBole's sizes);
`id` the same towers on learned IDs; `content` / `fusion` the content-only
and content + ID inputs of the default recipe; `smollm2` the default recipe
with SmolLM2-135M-Instruct (a decoder LLM, GGUF) content instead of MiniLM. CPU (2 cores): CEG about 1.5
minutes once (then cached), training minutes. Results: experiments/results/quality.md.
"""

import pathlib

from jaxrec import recipes

# ../shared/data beside the checkout; override with --config.data.path=...
_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-office"


def get_config(variant: str = ""):
  c = recipes.get(variant)
  c.data.kind = "lcrec_json"
  c.data.path = str(_DATA)
  c.data.name = "Office"
  c.data.max_history = 50          # as the RecBole baselines
  return c
