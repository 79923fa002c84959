"""A finished run's recommendations: a user's history -> the top-K items, exactly.

`Recommender.from_workdir(workdir)` rebuilds the run from its `config.json`
(data, cached content embeddings, towers), restores the best-validation
parameters from its checkpoint and embeds the catalogue once; `recommend`
scores every item for a history, its items excluded, as evaluation does. For
notebooks and demos; it needs the run's checkpoint (config.train.checkpoint).
"""

import dataclasses
import json
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxrec import config as config_lib, evaluate, sharding, train
from jaxrec.data import batching
from jaxrec.data.dataset import RecDataset
from jaxrec.errors import JaxrecError
from jaxrec.model.towers import LearnTowers


@dataclasses.dataclass
class Recommender:
  config: ml_collections.ConfigDict
  dataset: RecDataset
  split: object                 # the run's leave-one-out split (splits.Split)
  model: LearnTowers
  towers: dict                  # best-validation tower parameters
  content: jnp.ndarray | None
  items: jnp.ndarray            # [N, d] every item's embedding
  mesh: jax.sharding.Mesh

  @classmethod
  def from_workdir(cls, workdir: str | pathlib.Path) -> "Recommender":
    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").is_file() or not (workdir / "checkpoints").is_dir():
      raise JaxrecError(f"{workdir}: no config.json and checkpoints/ (train with "
                        "config.train.checkpoint=True first)")
    config_json = json.loads((workdir / "config.json").read_text())
    config = config_lib.from_json(config_json)
    mesh = sharding.make_mesh(1)
    dataset, split, _ = train.load_data(config)
    table = train.content_table(config, dataset, mesh)         # the run's cached embeddings
    content = None if table is None else jnp.asarray(table)
    model = LearnTowers(train.tower_config(config, dataset.num_items))
    towers, _, _ = train.restore_best(workdir, config, config_json, model, content, mesh)
    items = evaluate.item_embeddings(model, towers, content, dataset.num_items, mesh)
    return cls(config, dataset, split, model, towers, content, items, mesh)

  def recommend(self, history: Sequence[int], k: int = 10) -> list[int]:
    """The top-k item indices for a history of item indices (oldest first), history excluded."""
    tokens = batching.to_tokens([np.asarray(history, np.int32)], self.config.data.max_history)
    user = evaluate.user_embeddings(self.model, self.towers, self.content, tokens, self.mesh, chunk=1)
    scores = np.array(user @ self.items.T)[0]
    scores[np.asarray(history, np.int64)] = -np.inf
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]

  def title(self, item: int) -> str:
    """An item's title (or its first text field, or its id)."""
    fields = self.dataset.item_fields[item]
    return fields.get("title") or next(iter(fields.values()), "") or self.dataset.item_ids[item]
