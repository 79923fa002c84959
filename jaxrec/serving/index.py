"""The item index: ScaNN (`scann_ops_pybind`, no TensorFlow), tuned to a target recall.

Below `brute_force_below` items (20k, as the ScaNN docs advise) the index is
ScaNN's exact brute force: partitioning and quantisation buy nothing there.
Above it, a tree (k-means leaves) + asymmetric hashing + exact reordering is
trained once, and the search-time knobs (leaves to search, candidates to
reorder) are tuned on held-out real queries: the cheapest setting whose
recall@K against exact search reaches the target is kept. Fixed defaults are
not safe (on unclustered vectors recall falls far below any target), so when
no setting reaches it the tuner says so and the index falls back to brute
force, with the shortfall in the report.

Built with `docids` so items can be upserted and deleted later (ScaNN >= 1.3);
a lock guards the searcher (ScaNN's mutations are not safe under concurrent
searches). `save`/`load` never touch ScaNN's pickled docid file: ids are kept
as JSON, and ScaNN's own files are .npy/.pb assets, so nothing loaded can run
code.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import threading
import time
from typing import Sequence

import numpy as np
import scann
from scann.scann_ops.py import scann_ops_pybind

from jaxrec.errors import JaxrecError
from jaxrec.files import atomic_write_json, sha256_file

INDEX_FILE = "index.json"   # ids, settings and search parameters beside ScaNN's assets


@dataclasses.dataclass(frozen=True)
class IndexSettings:
  """How the index is built and tuned (stored in the manifest)."""
  target_recall: float = 0.95       # recall@recall_k against exact search the tuner must reach
  recall_k: int = 100               # K of that recall
  brute_force_below: int = 20_000   # fewer items: exact brute force (ScaNN's advice)
  num_leaves: int = 0               # tree leaves (0 = about sqrt(N))
  training_sample: int = 100_000    # items the tree and quantiser are trained on (build time bound)
  dims_per_block: int = 2           # asymmetric hashing: dimensions per 16-centre codebook
  aq_threshold: float = 0.2         # anisotropic quantisation threshold (ScaNN's default for MIPS)
  tune_queries: int = 1000          # held-out queries the recall is measured on
  threads: int = 0                  # ScaNN build/search threads (0 = all cores)

  def check(self) -> None:
    if not 0.0 < self.target_recall <= 1.0:
      raise JaxrecError(f"index target_recall={self.target_recall} must be in (0, 1]")
    for name in ("recall_k", "training_sample", "dims_per_block", "tune_queries"):
      if getattr(self, name) < 1:
        raise JaxrecError(f"index {name}={getattr(self, name)} must be >= 1")
    if self.brute_force_below < 0 or self.num_leaves < 0 or self.threads < 0:
      raise JaxrecError("index brute_force_below, num_leaves and threads must be >= 0")


def exact_top_k(queries: np.ndarray, items: np.ndarray, k: int,
                chunk: int = 32_768) -> tuple[np.ndarray, np.ndarray]:
  """([Q, k] row indices, [Q, k] scores) of the largest dot products, exact.

  Items are scanned in chunks (memory bounded for millions of items); ties go
  to the lower index. The reference every recall here is measured against.
  """
  queries = np.asarray(queries, np.float32)
  k = min(k, len(items))
  best_i = np.zeros((len(queries), 0), np.int64)
  best_s = np.zeros((len(queries), 0), np.float32)
  for start in range(0, len(items), chunk):
    scores = queries @ np.asarray(items[start:start + chunk], np.float32).T
    kk = min(k, scores.shape[1])
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    best_i = np.concatenate([best_i, part + start], 1)
    best_s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], 1)
    if best_i.shape[1] > k:
      keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
      best_i, best_s = np.take_along_axis(best_i, keep, 1), np.take_along_axis(best_s, keep, 1)
  order = np.lexsort((best_i, -best_s), axis=1)
  return np.take_along_axis(best_i, order, 1), np.take_along_axis(best_s, order, 1)


def recall_at_k(found: Sequence[Sequence], exact: Sequence[Sequence]) -> float:
  """Mean fraction of each exact top-K list found (any order)."""
  hits = [len(set(f) & set(e)) / max(len(e), 1) for f, e in zip(found, exact)]
  return float(np.mean(hits)) if hits else 0.0


def _qps(fn, n: int, repeats: int = 2) -> float:
  """Queries per second of fn() answering n queries (best of `repeats`)."""
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return n / max(best, 1e-9)


class ItemIndex:
  """A ScaNN searcher keyed by string item ids, safe to search and mutate from many threads."""

  def __init__(self, searcher, dim: int, settings: IndexSettings, params: dict, report: dict):
    self._searcher = searcher
    self._lock = threading.Lock()
    self.dim = dim
    self.settings = settings
    self.params = params      # {"mode": "brute_force"|"tree_ah", "leaves_to_search", "reorder"}
    self.report = report      # measured recall, QPS and the tuning grid

  # --------------------------------------------------------------- building
  @classmethod
  def build(cls, vectors: np.ndarray, ids: Sequence[str], queries: np.ndarray,
            settings: IndexSettings = IndexSettings(),
            exact: tuple[np.ndarray, float] | None = None) -> "ItemIndex":
    """Builds (and for large catalogues tunes) the index on `vectors` [N, d].

    `queries` [Q, d] are held-out real queries (user embeddings), never items:
    recall is measured on them against `exact_top_k`. `exact`: (its [Q, K] result,
    seconds it took), when the caller has computed it already.
    """
    settings.check()
    vectors = np.ascontiguousarray(vectors, np.float32)
    ids = [str(i) for i in ids]
    if vectors.ndim != 2 or len(vectors) != len(ids) or not len(ids):
      raise JaxrecError(f"index: {len(ids)} ids for vectors of shape {vectors.shape}")
    if len(set(ids)) != len(ids):
      raise JaxrecError("index: item ids are not unique")
    queries = np.ascontiguousarray(queries[:settings.tune_queries], np.float32)
    if not len(queries):
      raise JaxrecError("index: no held-out queries to measure recall on")
    k = min(settings.recall_k, len(ids))
    t = time.perf_counter()
    if exact is None or exact[0].shape != (len(queries), k):
      exact = (exact_top_k(queries, vectors, k)[0], time.perf_counter() - t)
    exact, exact_seconds = exact
    exact_qps = len(queries) / max(exact_seconds, 1e-9)
    exact_ids = [[ids[j] for j in row] for row in exact]
    report = {"items": len(ids), "dim": vectors.shape[1], "queries": len(queries), "k": k,
              "target_recall": settings.target_recall, "exact_qps": round(exact_qps, 1)}
    if len(ids) < settings.brute_force_below:
      index = cls._brute_force(vectors, ids, settings, report)
      report["why"] = f"{len(ids)} items < brute_force_below={settings.brute_force_below}"
    else:
      index = cls._tuned(vectors, ids, queries, exact_ids, k, settings, report)
    found = index.search_ids(queries, k)
    report["recall"] = round(recall_at_k(found, exact_ids), 4)
    report["qps"] = round(_qps(lambda: index.search_ids(queries, k), len(queries)), 1)
    report["build_seconds"] = round(time.perf_counter() - t, 2)
    return index

  @classmethod
  def _brute_force(cls, vectors, ids, settings, report) -> "ItemIndex":
    b = scann_ops_pybind.builder(vectors, settings.recall_k, "dot_product").score_brute_force()
    b.set_n_training_threads(settings.threads)
    return cls(b.build(docids=list(ids)), vectors.shape[1], settings,
               {"mode": "brute_force", "leaves_to_search": -1, "reorder": -1}, report)

  @classmethod
  def _tuned(cls, vectors, ids, queries, exact_ids, k, settings, report) -> "ItemIndex":
    n = len(ids)
    leaves = settings.num_leaves or int(max(16, round(np.sqrt(n))))
    leaves = min(leaves, n // 2)
    t = time.perf_counter()
    b = (scann_ops_pybind.builder(vectors, k, "dot_product")
         .tree(num_leaves=leaves, num_leaves_to_search=max(1, leaves // 20),
               training_sample_size=min(n, settings.training_sample))
         .score_ah(settings.dims_per_block, anisotropic_quantization_threshold=settings.aq_threshold)
         .reorder(4 * k))
    b.set_n_training_threads(settings.threads)
    searcher = b.build(docids=list(ids))
    report["train_seconds"] = round(time.perf_counter() - t, 2)
    report["num_leaves"] = leaves
    index = cls(searcher, vectors.shape[1], settings, {}, report)
    # From cheap to expensive; the first setting that reaches the target is the fastest one
    # of its leaves count, and more leaves are tried only when fewer cannot reach it.
    fractions = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0)
    grid = []
    for leaves_to_search in sorted({max(1, round(f * leaves)) for f in fractions}):
      for reorder in (k, 2 * k, 4 * k, 8 * k):
        index.params = {"mode": "tree_ah", "leaves_to_search": leaves_to_search, "reorder": reorder}
        recall = recall_at_k(index.search_ids(queries, k), exact_ids)
        qps = _qps(lambda: index.search_ids(queries, k), len(queries), 1)
        grid.append({**index.params, "recall": round(recall, 4), "qps": round(qps, 1)})
        if recall >= settings.target_recall:
          break
      if grid[-1]["recall"] >= settings.target_recall:
        break
    report["grid"] = grid
    ok = [g for g in grid if g["recall"] >= settings.target_recall]
    if ok:
      best = max(ok, key=lambda g: g["qps"])
      index.params = {key: best[key] for key in ("mode", "leaves_to_search", "reorder")}
      report["target_reached"] = True
      return index
    report["target_reached"] = False
    report["why"] = (f"no tree/AH setting reached recall@{k} >= {settings.target_recall} "
                     f"(best {max(g['recall'] for g in grid):.3f}); serving exact brute force")
    return cls._brute_force(vectors, ids, settings, report)

  # -------------------------------------------------------------- searching
  def size(self) -> int:
    with self._lock:
      return self._searcher.size()

  def _search_args(self, k: int) -> dict:
    if self.params["mode"] == "brute_force":
      return {"final_num_neighbors": k}
    return {"final_num_neighbors": k, "leaves_to_search": self.params["leaves_to_search"],
            "pre_reorder_num_neighbors": max(k, self.params["reorder"])}

  def search(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], list[list[float]]]:
    """Top-k (ids, scores) per query, best first; k is capped at the index size."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
    with self._lock:
      k = max(1, min(k, self._searcher.size()))
      ids, scores = self._searcher.search_batched_parallel(queries, **self._search_args(k))
    return [list(r) for r in ids], [[float(s) for s in row] for row in np.asarray(scores)]

  def search_ids(self, queries: np.ndarray, k: int) -> list[list[str]]:
    return self.search(queries, k)[0]

  # --------------------------------------------------------------- mutating
  def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
    """Adds new ids, replaces the vectors of ids already present (never duplicates)."""
    ids = [str(i) for i in ids]
    vectors = np.ascontiguousarray(np.atleast_2d(vectors), np.float32)
    if len(set(ids)) != len(ids):
      raise JaxrecError("upsert: the same item id twice in one call")
    if vectors.shape != (len(ids), self.dim):
      raise JaxrecError(f"upsert: vectors of shape {vectors.shape}, want ({len(ids)}, {self.dim})")
    with self._lock:
      self._searcher.upsert(ids, vectors)

  def delete(self, ids: Sequence[str]) -> None:
    ids = [str(i) for i in ids]
    with self._lock:
      missing = [i for i in ids if i not in self._searcher.docid_to_id]
      if missing:
        raise JaxrecError(f"delete: item ids not in the index: {missing[:5]}")
      self._searcher.delete(ids)

  def __contains__(self, item_id: str) -> bool:
    with self._lock:
      return str(item_id) in self._searcher.docid_to_id

  # ------------------------------------------------------------ persistence
  def save(self, directory: str | os.PathLike) -> None:
    """Writes the index to `directory` (replaced as a whole: a crash leaves the old one).

    ScaNN writes its assets (.npy, .pb); the ids go to index.json with the
    settings, search parameters, report and a sha256 of every asset.
    """
    directory = pathlib.Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with self._lock:
      self._searcher.searcher.serialize(str(tmp), True)   # the C++ searcher: no pickled docids
      ids = list(self._searcher.docids)
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    atomic_write_json(tmp / INDEX_FILE, {
        "scann_version": getattr(scann, "__version__", "?"), "dim": self.dim, "ids": ids,
        "settings": dataclasses.asdict(self.settings), "params": self.params,
        "report": self.report, "files": files})
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
      os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)

  @classmethod
  def load(cls, directory: str | os.PathLike) -> "ItemIndex":
    """The index `save` wrote; files are checked against their checksums first."""
    directory = pathlib.Path(directory)
    if not directory.is_dir() and directory.with_name(directory.name + ".old").is_dir():
      directory = directory.with_name(directory.name + ".old")   # a crash between the two renames
    try:
      meta = json.loads((directory / INDEX_FILE).read_text())
      ids, files = [str(i) for i in meta["ids"]], dict(meta["files"])
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise JaxrecError(f"index {directory} is missing or damaged ({type(e).__name__}); "
                        "rebuild it with `python -m jaxrec.serve build`") from e
    for name, sha in files.items():
      if not (directory / name).is_file() or sha256_file(directory / name) != sha:
        raise JaxrecError(f"index file {directory / name} is missing or damaged; rebuild the "
                          "index with `python -m jaxrec.serve build`")
    from scann.scann_ops.py import scann_ops_pybind as ops  # noqa: PLC0415
    pybind = ops.scann_pybind.ScannNumpy(str(directory), (directory / "scann_assets.pbtxt").read_text())
    searcher = ops.ScannSearcher(pybind, docids=ids)
    if searcher.size() != len(ids):
      raise JaxrecError(f"index {directory}: {searcher.size()} vectors but {len(ids)} ids; rebuild it")
    return cls(searcher, int(meta["dim"]), IndexSettings(**meta["settings"]), meta["params"],
               meta["report"])
