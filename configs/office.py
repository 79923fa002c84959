"""Amazon Office (2014, 5-core, LC-Rec json) from ../shared/data, leave-one-out,
full ranking over all 2,420 items; content = all-MiniLM-L6-v2 (real weights).
The ID baseline is the same run with --config.model.item_input=id.
CPU (2 cores): CEG about 1.5 minutes once (then cached), training minutes.
Results and commands are in the README.

  python -m jaxrec.main --config=configs/office.py --workdir=/tmp/office
"""

import pathlib

from jaxrec.config import base_config

# ../shared/data beside the checkout; override with --config.data.path=...
_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-office"


def get_config():
  c = base_config()
  c.data.kind = "lcrec_json"
  c.data.path = str(_DATA)
  c.data.name = "Office"
  c.data.max_history = 50          # as the RecBole baselines
  c.data.target_len = 10
  c.train.batch_size = 128
  c.train.num_epochs = 30
  c.train.eval_every = 190         # 5 epochs of 38 steps
  return c
