"""The recommender behind the HTTP API and the CLI: catalogue, index, encoder, persistence.

State = the catalogue (every item the service knows: id, title, input vector,
item embedding, whether it is searchable, and the text of items added by
text) + the ScaNN index. Each mutation (add/update by text, delete) is
applied to both under one lock and then persisted as a new state folder
(`state-<version>/{catalog.npz, index/}`) that `state.json` is switched to
atomically, so a restart (or a crash at any point) finds either the old or
the new state, whole. Items added by text therefore survive a restart.

Removed catalogue items leave the index (never recommended) but stay known to
the model, so a history may still name them.
"""

import json
import logging
import pathlib
import shutil
import threading
from typing import Any

import numpy as np

from jaxrec.errors import JaxrecError
from jaxrec.files import atomic_write_json
from jaxrec.serving import catalog, cold_start
from jaxrec.serving.index import IndexSettings, ItemIndex, exact_top_k

log = logging.getLogger(__name__)

STATE = "state.json"
MAX_TEXT_CHARS = 20_000


class RequestError(JaxrecError):
  """A request the service refuses; `status` is the HTTP status it maps to."""

  def __init__(self, message: str, status: int = 422):
    super().__init__(message)
    self.status = status


def item_text(item: dict, template: str, max_chars: int) -> str:
  """The CEG text of an item given by `text` (used as is) or by fields (`title`, ...)
  rendered with the run's template, as training rendered the catalogue."""
  from jaxrec.data import prompts  # noqa: PLC0415
  if item.get("text"):
    return prompts.cap_text(str(item["text"]), max_chars)
  fields = {k: str(v) for k, v in item.items() if k not in ("id", "text") and v is not None}
  names = prompts.template_fields(template)
  filled = prompts.fill_template({n: fields.get(n, "") for n in names}, template)
  if not filled:
    raise RequestError(f"item {item.get('id', '')!r} has no text: give 'text' or any of the "
                       f"fields {list(names)}")
  return prompts.cap_text(filled, max_chars)


class Service:
  """Loads a serving folder (built by catalog.build_artifact) and answers requests."""

  def __init__(self, folder: str | pathlib.Path, *, settings: IndexSettings | None = None,
               max_k: int = 1000, warm_up: bool = True):
    self.folder = pathlib.Path(folder)
    if not (self.folder / catalog.BASE).is_file():
      raise JaxrecError(f"{self.folder} is not a serving folder (no {catalog.BASE}); build it "
                        "with `python -m jaxrec.serve build --workdir=DIR`")
    self.config = catalog.config_from_json(json.loads((self.folder / catalog.CONFIG).read_text()))
    self.build_info = json.loads((self.folder / "build.json").read_text())
    params = catalog.load_params(self.folder / catalog.PARAMS)
    base = catalog.load_npz(self.folder / catalog.BASE)
    self.encoder = cold_start.load_encoder(self.folder, self.config, params, base)
    self.max_k = max_k
    self._lock = threading.RLock()
    self._template = self._item_template()
    self._load_state(base, settings)
    if warm_up:
      self.encoder.warm_up()

  def _item_template(self) -> str:
    from jaxrec.data import prompts  # noqa: PLC0415
    return self.config.data.template or prompts.DEFAULT_TEMPLATES[self.config.data.kind]

  # ------------------------------------------------------------ state
  def _set_catalog(self, c: dict[str, np.ndarray]) -> None:
    self.ids = [str(i) for i in c["ids"]]
    self.titles = [str(t) for t in c["titles"]]
    self.texts = [str(t) for t in c["texts"]]
    self.input_vec = np.asarray(c["input_vec"], np.float32)
    self.item_emb = np.asarray(c["item_emb"], np.float32)
    self.active = np.asarray(c["active"], bool)
    self.trained_row = np.asarray(c["trained_row"], np.int32)   # ID table row; 0 = added by text
    self.row_of = {item_id: r for r, item_id in enumerate(self.ids)}

  def _catalog_arrays(self) -> dict[str, np.ndarray]:
    return {"ids": np.asarray(self.ids, str), "titles": np.asarray(self.titles, str),
            "texts": np.asarray(self.texts, str), "input_vec": self.input_vec,
            "item_emb": self.item_emb, "active": self.active, "trained_row": self.trained_row}

  def _load_state(self, base: dict, settings: IndexSettings | None) -> None:
    pointer = self.folder / STATE
    if pointer.is_file() and settings is None:
      version = json.loads(pointer.read_text())["version"]
      state = self.folder / f"state-{version}"
      self._set_catalog(catalog.load_npz(state / "catalog.npz"))
      self.index = ItemIndex.load(state / "index")
      self.version = version
      return
    n = len(base["ids"])
    self._set_catalog({"ids": base["ids"], "titles": base["titles"], "texts": np.full(n, "", str),
                       "input_vec": base["input_vec"], "item_emb": base["item_emb"],
                       "active": np.ones(n, bool), "trained_row": base["rows"]})
    queries = np.load(self.folder / catalog.QUERIES, allow_pickle=False)
    self.index = ItemIndex.build(self.item_emb, self.ids, queries, settings or IndexSettings())
    # A rebuild over an existing state continues its numbering: the folder state.json
    # points to is never the one being written.
    self.version = json.loads(pointer.read_text())["version"] if pointer.is_file() else 0
    self._persist()

  def _persist(self) -> None:
    """Writes the state as a new folder, switches state.json to it, drops the old one."""
    version = self.version + 1
    state = self.folder / f"state-{version}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    catalog.save_npz(state / "catalog.npz", **self._catalog_arrays())
    self.index.save(state / "index")
    atomic_write_json(self.folder / STATE, {"version": version})
    shutil.rmtree(self.folder / f"state-{self.version}", ignore_errors=True)
    self.version = version

  # ------------------------------------------------------------ queries
  def history_vectors(self, history: list) -> tuple[np.ndarray, list[str]]:
    """([len, d_model] input vectors, ids to exclude) of a history of ids and {"text": ...}."""
    if not history:
      raise RequestError("history is empty: give at least one item id (or {'text': ...})")
    texts = [(i, h) for i, h in enumerate(history) if isinstance(h, dict)]
    ids = [str(h) for h in history if not isinstance(h, dict)]
    with self._lock:
      unknown = [i for i in ids if i not in self.row_of]
      if unknown:
        raise RequestError(f"unknown item ids in history: {unknown[:10]}"
                           f"{' ...' if len(unknown) > 10 else ''}; add them with POST /items "
                           "or send their text as {\"text\": ...}")
      rows = [self.row_of[str(h)] if not isinstance(h, dict) else -1 for h in history]
      vecs = np.stack([self.input_vec[r] if r >= 0 else np.zeros_like(self.input_vec[0])
                       for r in rows])
    if texts:
      content = self.encoder.content([item_text(h, self._template, MAX_TEXT_CHARS) for _, h in texts])
      inputs, _ = self.encoder.item_vectors(content, self.encoder.new_id_rows(content))
      for (i, _), v in zip(texts, inputs):
        vecs[i] = v
    return vecs, ids

  def check_k(self, k: int) -> None:
    limit = min(self.max_k, self.index.size())
    if not 1 <= k <= limit:
      raise RequestError(f"k={k} must be in [1, {limit}] (max_k={self.max_k}, "
                         f"{self.index.size()} items in the index)")

  def recommend_many(self, prepared: list[tuple[np.ndarray, list[str], int]]) -> list[list[dict]]:
    """Top-k of each (history vectors, excluded ids, k): one batched tower call and search."""
    users = self.encoder.user_vectors([p[0] for p in prepared])
    ids, scores = self.index.search(users, max(k + len(set(ex)) for _, ex, k in prepared))
    out = []
    with self._lock:
      for found, found_scores, (_, exclude, k) in zip(ids, scores, prepared):
        skip = set(exclude)
        items = [{"id": i, "score": s, "title": self.titles[self.row_of[i]]}
                 for i, s in zip(found, found_scores) if i not in skip and i in self.row_of]
        out.append(items[:k])
    return out

  def recommend(self, history: list, k: int = 10) -> list[dict]:
    self.check_k(k)
    vecs, exclude = self.history_vectors(history)
    return self.recommend_many([(vecs, exclude, k)])[0]

  def exact_recommend(self, history: list, k: int = 10) -> list[str]:
    """The same, by exact search over the active items (a reference for tests)."""
    vecs, exclude = self.history_vectors(history)
    u = self.encoder.user_vectors([vecs])
    with self._lock:
      rows = np.flatnonzero(self.active)
      top, _ = exact_top_k(u, self.item_emb[rows], k + len(set(exclude)))
      ids = [self.ids[rows[j]] for j in top[0]]
    return [i for i in ids if i not in set(exclude)][:k]

  # ---------------------------------------------------------- mutations
  def add_items(self, items: list[dict]) -> list[dict]:
    """Adds or updates items by text (CEG -> item vector -> upsert); persisted before returning."""
    if not items:
      raise RequestError("no items given")
    ids = [str(it.get("id", "")).strip() for it in items]
    if any(not i for i in ids):
      raise RequestError("every item needs a non-empty 'id'")
    if len(set(ids)) != len(ids):
      raise RequestError("the same item id appears twice in one request")
    texts = [item_text(it, self._template, MAX_TEXT_CHARS) for it in items]
    if self.encoder.cold_start_error:
      raise RequestError(self.encoder.cold_start_error, 409)
    content = self.encoder.content(texts)
    with self._lock:
      known = [self.row_of.get(i) for i in ids]
      trained = np.array([self.trained_row[r] if r is not None else 0 for r in known], np.int32)
      id_rows = np.where((trained > 0)[:, None], self.encoder.trained_id_rows(trained),
                         self.encoder.new_id_rows(content))
      inputs, emb = self.encoder.item_vectors(content, id_rows)
      status = []
      for j, (item_id, r) in enumerate(zip(ids, known)):
        title = str(items[j].get("title") or texts[j][:120])
        if r is None:
          r = len(self.ids)
          self.ids.append(item_id)
          self.titles.append(title)
          self.texts.append(texts[j])
          self.row_of[item_id] = r
          self.input_vec = np.concatenate([self.input_vec, inputs[j:j + 1]])
          self.item_emb = np.concatenate([self.item_emb, emb[j:j + 1]])
          self.active = np.concatenate([self.active, [True]])
          self.trained_row = np.concatenate([self.trained_row, [0]]).astype(np.int32)
          status.append({"id": item_id, "status": "added"})
        else:
          self.titles[r], self.texts[r] = title, texts[j]
          self.input_vec[r], self.item_emb[r], self.active[r] = inputs[j], emb[j], True
          status.append({"id": item_id, "status": "updated"})
      self.index.upsert(ids, emb)
      self._persist()
    return status

  def remove_items(self, ids: list[str]) -> None:
    with self._lock:
      missing = [i for i in ids if i not in self.row_of or not self.active[self.row_of[i]]]
      if missing:
        raise RequestError(f"item ids not in the index: {missing[:10]}", 404)
      self.index.delete(ids)
      for i in ids:
        self.active[self.row_of[i]] = False
      self._persist()

  # -------------------------------------------------------------- views
  def item_info(self, item_id: str) -> dict:
    with self._lock:
      r = self.row_of.get(item_id)
      if r is None:
        raise RequestError(f"unknown item id {item_id!r}", 404)
      return {"id": item_id, "title": self.titles[r], "in_index": bool(self.active[r]),
              "added_by_text": bool(self.trained_row[r] == 0)}

  def num_items(self) -> int:
    return self.index.size()

  def stats(self) -> dict[str, Any]:
    with self._lock:
      added = int(np.sum(self.trained_row == 0))
      return {"items": self.index.size(), "known_items": len(self.ids), "added_by_text": added,
              "removed": int(np.sum(~self.active)), "state_version": self.version,
              "model_step": self.build_info.get("model_step"), "dataset": self.build_info.get("dataset"),
              "index": {"params": self.index.params, "settings": vars(self.index.settings),
                        "build_report": {k: v for k, v in self.index.report.items() if k != "grid"}},
              "user_tower_buckets": {"batch": list(self.encoder.batch_buckets),
                                     "length": list(self.encoder.length_buckets)}}

  def export(self, out: str | pathlib.Path) -> dict:
    """Item embeddings + ids + titles of the searchable items, for a managed vector database:
    items.parquet (id, title, embedding) and embeddings.npy + items.json (same order)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with self._lock:
      rows = np.flatnonzero(self.active)
      ids = [self.ids[r] for r in rows]
      titles = [self.titles[r] for r in rows]
      emb = self.item_emb[rows].copy()
    d = emb.shape[1]
    table = pa.table({"id": pa.array(ids, pa.string()), "title": pa.array(titles, pa.string()),
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), d)})
    tmp = out / "items.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(out / "items.parquet")
    from jaxrec.files import atomic_save  # noqa: PLC0415
    atomic_save(out / "embeddings.npy", emb)
    info = {"items": len(ids), "dim": d, "metric": "dot_product",
            "normalized": bool(self.config.model.normalize), "model_step": self.build_info.get("model_step"),
            "state_version": self.version}
    atomic_write_json(out / "items.json", {**info, "ids": ids, "titles": titles})
    return info
