"""Offline demo: the project's synthetic catalogue (400 items with product text,
1,000 users whose sequences follow the text), content from the real
all-MiniLM-L6-v2. Finishes in about a minute on 2 CPU cores; a content model
should beat popularity and chance by a wide margin (see README).

  python -m jaxrec.main --config=configs/demo.py --workdir=/tmp/jaxrec-demo
"""

from jaxrec.config import base_config


def get_config():
  c = base_config()
  c.data.kind = "synthetic_demo"
  c.data.max_history = 30
  c.data.target_len = 5
  c.train.batch_size = 64
  c.train.num_epochs = 10
  c.train.eval_every = 50
  return c
