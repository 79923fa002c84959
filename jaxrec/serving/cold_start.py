"""Items and users the model never saw, encoded without retraining.

A brand-new item (no ID row) is represented exactly as the model scores an
item that never appeared in training: its text goes through the run's CEG
(same LLM, pooling, token cap; the same `ceg.normalize`), and its ID part is
what training gave every such item, its initial ID row:
  model.id_init=pca     the projection of its content on the catalogue's
                        principal components (`pca_project`, the basis saved at
                        build time); an item held out of training keeps exactly
                        this row, because it never gets a gradient;
  model.id_init=normal  a zero row (the mean of the random initial rows);
  item_input=content    no ID part at all.
An item already in the catalogue, updated by text, keeps its trained ID row
and takes the new content. An ID-only model without PCA init cannot place an
item from text; that is refused.

The user tower runs on input vectors (gathered on the host), so new items and
texts in a history need no new table shapes: it is compiled once per
(batch, length) bucket.
"""

import dataclasses
import functools
import pathlib
import threading

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxrec.errors import JaxrecError
from jaxrec.model.item_input import pca_project
from jaxrec.model.towers import LearnTowers, TowerConfig


def _pow2(n: int) -> int:
  return 1 << max(0, (n - 1).bit_length())


def buckets_for(limit: int, sizes: tuple[int, ...]) -> tuple[int, ...]:
  return tuple(sorted({min(s, limit) for s in sizes} | {limit}))


class Encoder:
  """Content, item and user vectors of the frozen model."""

  def __init__(self, config: ml_collections.ConfigDict, params: dict, tower_config: TowerConfig,
               stats: dict[str, np.ndarray], *, batch_buckets=(1, 4, 16, 64),
               length_buckets=(8, 16, 32)):
    self.config, self.params, self.tower_config, self.stats = config, params, tower_config, stats
    self.max_history = config.data.max_history
    self.batch_buckets = tuple(sorted(batch_buckets))
    self.length_buckets = buckets_for(self.max_history, length_buckets)
    self._model = LearnTowers(tower_config)
    self._llm = None
    self._llm_lock = threading.Lock()
    m = config.model
    self.uses_content = m.item_input != "id" or m.item_tower == "content"
    self.has_id = m.item_input in ("id", "fusion")
    if self.has_id and not self.uses_content and "pca_components" not in stats:
      self.cold_start_error = ("this model reads item IDs only (model.item_input='id' without "
                               "model.id_init='pca'), so it cannot place an item from its text")
    else:
      self.cold_start_error = ""

  # --------------------------------------------------------------- content
  def _load_llm(self):
    with self._llm_lock:   # one load: transformers' lazy imports are not thread-safe
      if self._llm is None:
        self._llm = self._open_llm()
    return self._llm

  def _open_llm(self):
    from jaxrec import sharding  # noqa: PLC0415
    from jaxrec.llm import embed  # noqa: PLC0415
    from jaxrec.llm.checkpoint import load_hf_model  # noqa: PLC0415
    c = self.config.ceg
    model_dir = embed.resolve_model_dir(c.model)
    dtype = embed.jnp_dtype(c.dtype)
    module, params, _ = load_hf_model(model_dir, dtype=dtype, param_dtype=dtype,
                                      attention=c.attention, attention_impl=c.attention_impl)
    embed.tokenize(model_dir, ["warm-up"], c.max_tokens)   # loads the tokenizer now
    return embed, model_dir, module, params, sharding.make_mesh(1)

  def content(self, texts: list[str]) -> np.ndarray:
    """[n, H] prepared content vectors (CEG + ceg.normalize, as training's table)."""
    embed, model_dir, module, params, mesh = self._load_llm()
    c = self.config.ceg
    raw = embed.embed_texts(module, params, embed.tokenize(model_dir, texts, c.max_tokens),
                            pooling=c.pooling, token_budget=c.token_budget, mesh=mesh,
                            bar=_NoBar())
    if not np.all(np.isfinite(raw)):
      raise JaxrecError("CEG produced non-finite embeddings for the given texts")
    if c.normalize == "l2":
      return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
    if c.normalize == "standardize":
      return (raw - self.stats["content_mean"]) / (self.stats["content_std"] + 1e-6)
    return raw

  def new_id_rows(self, content: np.ndarray) -> np.ndarray:
    """[n, d_model] ID rows of items without one (see the module docstring)."""
    if "pca_components" in self.stats:
      basis = (self.stats["pca_mean"], self.stats["pca_components"], float(self.stats["pca_scale"]))
      return pca_project(content, basis, self.tower_config.d_model)
    return np.zeros((len(content), self.tower_config.d_model), np.float32)

  def trained_id_rows(self, rows: np.ndarray) -> np.ndarray:
    """The trained ID rows of catalogue items (table row = item index + 1)."""
    if not self.has_id:
      return np.zeros((len(rows), self.tower_config.d_model), np.float32)
    table = self.params["item_input"]["item_id_embedding"]["embedding"]
    return np.asarray(table)[np.asarray(rows)]

  # ----------------------------------------------------------------- items
  @functools.lru_cache(maxsize=16)
  def _item_fn(self, n: int):
    model = LearnTowers(dataclasses.replace(self.tower_config, num_items=n))
    def fn(params, content):
      tokens = jnp.arange(1, n + 1, dtype=jnp.int32)
      inputs = model.apply({"params": params}, tokens, content,
                           method=lambda m, t, c: m.item_input(t, c))
      return inputs, model.apply({"params": params}, tokens, content, method=LearnTowers.items)
    return jax.jit(fn)

  def item_vectors(self, content: np.ndarray | None, id_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """([n, d_model] input vectors, [n, d_out] item embeddings) of items given their
    content and ID rows: the model's own item path, on a table of just these items."""
    if self.cold_start_error:
      raise JaxrecError(self.cold_start_error)
    n = len(id_rows)
    size = _pow2(n)
    params = self.params
    if self.has_id:
      table = np.zeros((size + 1, id_rows.shape[1]), np.float32)
      table[1:n + 1] = id_rows
      params = {**params, "item_input": {**params["item_input"],
                                         "item_id_embedding": {"embedding": jnp.asarray(table)}}}
    table = None
    if content is not None and self.uses_content:
      table = np.zeros((size + 1, content.shape[1]), np.float32)
      table[1:n + 1] = content
      table = jnp.asarray(table)
    inputs, emb = self._item_fn(size)(params, table)
    return np.asarray(inputs)[:n], np.asarray(emb)[:n]

  # ----------------------------------------------------------------- users
  @functools.lru_cache(maxsize=64)
  def _user_fn(self, batch: int, length: int):
    model = self._model
    def fn(params, x, valid):
      out = model.apply({"params": params}, x, valid,
                        method=lambda m, x, v: m.pch(x, v, "causal", True))
      last = jnp.maximum(jnp.sum(valid, axis=1) - 1, 0)
      return jnp.take_along_axis(out, last[:, None, None], axis=1)[:, 0]
    return jax.jit(fn).lower(
        self.params, jax.ShapeDtypeStruct((batch, length, self.tower_config.d_model), jnp.float32),
        jax.ShapeDtypeStruct((batch, length), jnp.bool_)).compile()

  def _bucket(self, n: int, buckets: tuple[int, ...]) -> int:
    return next((b for b in buckets if b >= n), buckets[-1])

  def user_vectors(self, histories: list[np.ndarray]) -> np.ndarray:
    """[B, d_out] user embeddings of histories given as [len_i, d_model] input vectors
    (oldest first; the last max_history are used), in bucketed batches and lengths."""
    out = []
    step = self.batch_buckets[-1]
    for start in range(0, len(histories), step):
      part = [h[-self.max_history:] for h in histories[start:start + step]]
      batch = self._bucket(len(part), self.batch_buckets)
      length = self._bucket(max(len(h) for h in part), self.length_buckets)
      x = np.zeros((batch, length, self.tower_config.d_model), np.float32)
      valid = np.zeros((batch, length), bool)
      for r, h in enumerate(part):
        x[r, :len(h)] = h
        valid[r, :len(h)] = True
      out.append(np.asarray(self._user_fn(batch, length)(self.params, x, valid))[:len(part)])
    return np.concatenate(out)

  def warm_up(self) -> None:
    """Loads the content LLM and compiles the user tower for every (batch, length)
    bucket now, not on a request."""
    if not self.cold_start_error:
      self.content(["warm-up"])
    for b in self.batch_buckets:
      for length in self.length_buckets:
        self._user_fn(b, length)


class _NoBar:
  """A silent stand-in for embed_texts' progress bar (a server logs no bars per request)."""

  def update(self, n: int) -> None:
    del n


def tower_config_of(config: ml_collections.ConfigDict) -> TowerConfig:
  from jaxrec import train  # noqa: PLC0415  (the one place the tower config is derived)
  return train.tower_config(config, 1)


def load_encoder(folder: pathlib.Path, config, params: dict, base: dict, **kwargs) -> Encoder:
  keys = ("content_mean", "content_std", "pca_mean", "pca_components", "pca_scale")
  return Encoder(config, params, tower_config_of(config), {k: base[k] for k in keys if k in base},
                 **kwargs)
