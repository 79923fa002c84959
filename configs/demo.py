"""Offline demo: the project's synthetic catalogue (400 items with product text,
1,000 users whose sequences follow the text), content from the real
all-MiniLM-L6-v2, trained with the default LEARN recipe (content + ID,
next-item at every position, full softmax; see jaxrec/recipes.py). Finishes
in about a minute on 2 CPU cores; a content model should beat popularity and
chance by a wide margin (see README). `configs/demo.py:paper` runs the
paper-faithful setting, `:sasrec` the ID-only SASRec-equivalent.

  python -m jaxrec.main --config=configs/demo.py --workdir=/tmp/jaxrec-demo
"""

from jaxrec import recipes


def get_config(variant: str = ""):
  c = recipes.get(variant)
  c.data.kind = "synthetic_demo"
  c.data.max_history = 30
  c.data.target_len = 5
  if c.loss.objective == "dense_all_action":
    c.train.batch_size = 64
    c.train.num_epochs = 10
    c.train.eval_every = 50
  else:
    c.train.num_epochs = 40         # early stopping ends it sooner
  return c
