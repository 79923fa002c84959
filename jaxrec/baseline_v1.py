"""The paper's Baseline-v1: the frozen LLM reads the user's history as text; no training.

A user's text is the texts of their most recent history items (oldest first,
each cut to `ceg.history_item_chars`), as many as fit in about
`ceg.history_max_tokens` tokens; the LLM's pooled output (the same CEG as for
items, cached the same way) is the user embedding, scored by cosine against
every item's content embedding, with the same full-ranking protocol, history
exclusion and breakdowns as a trained model. It shows what the LLM's text
similarity alone knows about next purchases.
"""

import json
import logging
import os
import pathlib
import time

import ml_collections
import numpy as np

from jaxrec import config as config_lib
from jaxrec import evaluate, sharding, train
from jaxrec import workdir as workdir_lib
from jaxrec.files import atomic_write_json
from jaxrec.data import prompts
from jaxrec.llm import embed

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4   # a rough English average; the tokenizer's cap is exact


def history_text(item_texts: list[str], history: np.ndarray, item_chars: int, max_chars: int) -> str:
  """The most recent items' texts, oldest first, within max_chars."""
  parts, used = [], 0
  for i in history[::-1]:
    t = prompts.cap_text(item_texts[i], item_chars)
    if parts and used + 3 + len(t) > max_chars:
      break
    used += len(t) + (3 if parts else 0)        # the joined text's length
    parts.append(t)
  return " ; ".join(reversed(parts))


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, overwrite: bool = False) -> dict:
  """Test metrics of Baseline-v1 (no validation: nothing is trained or selected)."""
  start = time.time()
  config_lib.validate(config)
  workdir = pathlib.Path(workdir)
  config_json = json.loads(config.to_json_best_effort())
  run_dir = workdir_lib.check(workdir, config, config_json, overwrite=overwrite)  # before any work
  mesh = sharding.make_mesh(config.mesh.num_devices)
  dataset, split, cold = train.load_data(config)
  c, d = config.ceg, config.data
  template = d.template or prompts.DEFAULT_TEMPLATES[d.kind]
  item_texts, _ = prompts.render_all(dataset, template, d.max_text_chars)
  embed_kw = dict(model=c.model, pooling=c.pooling, token_budget=c.token_budget, dtype=c.dtype,
                  store_dtype=c.store_dtype, chunk_items=c.chunk_items,
                  cache_dir=c.cache_dir or None, mesh=mesh, mesh_model=c.mesh_model, fsdp=c.fsdp,
                  attention=c.attention, attention_impl=c.attention_impl)
  items = _unit(embed.content_embeddings(item_texts, max_tokens=c.max_tokens, label=dataset.name, **embed_kw))
  user_texts = [history_text(item_texts, h, c.history_item_chars, c.history_max_tokens * CHARS_PER_TOKEN)
                for h in split.test.histories]
  users = _unit(embed.content_embeddings(user_texts, max_tokens=c.history_max_tokens,
                                         label=f"{dataset.name}-histories", **embed_kw))
  ranks = evaluate.rank_targets(users, items, split.test.targets, tuple(split.test.histories), mesh,
                                chunk=config.eval.user_chunk, **evaluate.eval_options(config.eval))
  results = {"method": "baseline_v1", "valid": None,
             **train.test_report(config, dataset, split, cold, ranks, mesh),
             "config": config_json, "dataset": dataset.stats(),
             "wall_seconds": round(time.time() - start, 1)}
  run_dir.create()
  atomic_write_json(workdir / "config.json", config_json, indent=2)
  atomic_write_json(workdir / "results.json", results, indent=2)
  return results
