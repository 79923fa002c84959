"""CEG: content embeddings of item texts from a frozen LLM, computed once and cached.

The texts are tokenised, sorted by length and grouped into length buckets
(multiples of 16 tokens) with a fixed token budget per batch, so the jitted
forward pass sees a handful of shapes and never recompiles per batch. The
batch is split over the mesh's `data` axis. The pooled vectors (mean over real
tokens of the last hidden layer, or the last real token) land in a .npy file
keyed by model, texts (hence dataset and template), pooling, length cap and
dtype; the store (jaxrec/llm/store.py) holds them in chunks of items written as they
are produced, so memory does not grow with the catalogue and a killed run
resumes where it stopped, recomputing only the chunks it had not written.

Every chunk has a checksum file beside it (shape, dtype, sha256). A chunk is
used only if its checksum, shape, dtype and finiteness check out; a truncated,
empty or overwritten chunk is reported as one warning line and recomputed,
never used silently and never a crash. A chunk without a checksum file (a kill
between the two writes) is checked for shape, dtype and finiteness and, if it
passes, given one, with a warning line. A single-file cache entry of an older
jaxrec (`<label>-<model>-<key>.npy` with its manifest) is verified the same way
and moved into the store instead of being recomputed.
"""

import functools
import hashlib
import json
import logging
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from jaxrec import preemption, sharding
from jaxrec.errors import JaxrecError
from jaxrec.files import atomic_save, sha256_file
from jaxrec.llm import partitioning
from jaxrec.llm import sources
from jaxrec.llm import store as store_lib

log = logging.getLogger(__name__)

BUCKET = 16
CHUNK_ITEMS = 4096   # items per store chunk (computed, written and dropped together)


def resolve_model_dir(model: str) -> pathlib.Path:
  """"minilm" / "smollm2" (PyPI-shipped models), a local HF folder or a .gguf file (see sources.py)."""
  return sources.resolve_model(model)


def default_cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("JAXREC_CACHE", "~/.cache/jaxrec")).expanduser() / "embeddings"


def cache_key(model_dir: pathlib.Path, texts: list[str], pooling: str, max_tokens: int,
              dtype: str) -> str:
  """Hash of everything the embeddings depend on (weights by name and size)."""
  h = hashlib.sha256()
  h.update((model_dir / "config.json").read_bytes() if (model_dir / "config.json").exists() else b"")
  for f in sorted(model_dir.glob("*.safetensors")) + ([model_dir] if model_dir.is_file() else []):  # or the .gguf
    h.update(f"{f.name}:{f.stat().st_size}".encode())
  h.update(json.dumps([pooling, max_tokens, dtype]).encode())
  for t in texts:
    h.update(t.encode())
    h.update(b"\x00")
  return h.hexdigest()[:20]


def check_max_tokens(model_dir: pathlib.Path, max_tokens: int, name: str = "") -> None:
  """max_tokens within the model's positions (beyond them, a gather would clamp silently)."""
  try:
    limit = json.loads((model_dir / "config.json").read_text()).get("max_position_embeddings")
  except (OSError, ValueError):
    return  # load_hf_model reports a missing or bad config.json
  if isinstance(limit, int) and max_tokens > limit:
    raise JaxrecError(f"config.ceg.max_tokens={max_tokens} is more than {name or model_dir.name}'s "
                      f"max_position_embeddings={limit}")


@functools.lru_cache(maxsize=2)
def _tokenizer(model_dir: pathlib.Path):
  """Loaded once per model, not once per chunk (building a GGUF's tokenizer takes seconds)."""
  return sources.load_tokenizer(model_dir)


def tokenize(model_dir: pathlib.Path, texts: list[str], max_tokens: int) -> list[list[int]]:
  """Token ids with the model's own special tokens, truncated to max_tokens (as sources.tokenize)."""
  return _tokenizer(pathlib.Path(model_dir))(texts, truncation=True, max_length=max_tokens)["input_ids"]


def plan_batches(lengths: np.ndarray, token_budget: int,
                 multiple: int) -> list[tuple[int, int, np.ndarray]]:
  """[(bucket_len, rows, item indices)]: length-bucketed batches within the token budget.

  Full batches of a bucket have rows = budget // bucket_len; a bucket's last,
  partial batch gets the smallest power-of-two rows that hold it, so padding
  stays small while the number of distinct shapes stays logarithmic. Rows are
  multiples of the device count.
  """
  buckets = np.maximum(BUCKET, -(-lengths // BUCKET) * BUCKET)
  plan = []
  for blen in np.unique(buckets):
    idx = np.flatnonzero(buckets == blen)
    rows = max(multiple, (token_budget // int(blen)) // multiple * multiple)
    for i in range(0, len(idx), rows):
      part = idx[i:i + rows]
      fit = rows if len(part) == rows else min(rows, multiple * pow2_at_least(-(-len(part) // multiple)))
      plan.append((int(blen), fit, part))
  return plan


def pow2_at_least(n: int) -> int:
  return 1 << max(0, (n - 1).bit_length())


def padding_fraction(lengths: np.ndarray, plan: list[tuple[int, int, np.ndarray]]) -> float:
  """Share of the computed token slots that are padding (bucket rounding, filler rows)."""
  slots = sum(blen * rows for blen, rows, _ in plan)
  return 1.0 - float(sum(int(lengths[idx].sum()) for _, _, idx in plan)) / max(slots, 1)


# ceg.token_budget = 0 ("auto"): tokens a CEG batch holds on this backend. On CPU small batches
# are faster for both jaxrec and PyTorch (SmolLM2 over the Office catalogue: 1,303 against 858 tok/s
# at 1,024 against 8,192 tokens, experiments/results/ceg_throughput_catalogue.md; presumably the
# activations stay in cache, not profiled); accelerators want large batches to fill their matrix
# units (not measured here).
CPU_TOKEN_BUDGET = 1024
ACCELERATOR_TOKEN_BUDGET = 8192


def resolve_token_budget(token_budget: int) -> int:
  """0 ("auto"): CPU_TOKEN_BUDGET on CPU, ACCELERATOR_TOKEN_BUDGET elsewhere; else unchanged."""
  if token_budget:
    return token_budget
  return CPU_TOKEN_BUDGET if jax.default_backend() == "cpu" else ACCELERATOR_TOKEN_BUDGET


def resolve_dtype(dtype: str) -> str:
  """"auto": bfloat16 on accelerators, float32 on CPU (where bf16 matmuls are slow)."""
  if dtype == "auto":
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"
  return dtype


def jnp_dtype(dtype: str):
  """The jnp dtype of a `ceg.dtype` name ("auto" resolved for this backend)."""
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[resolve_dtype(dtype)]


def _on_mesh(params, mesh: Mesh):
  """Params as placed by the loader (sharded by `partitioning`), else replicated."""
  leaves = jax.tree_util.tree_leaves(params)
  if all(isinstance(x, jax.Array) and getattr(x.sharding, "mesh", None) == mesh for x in leaves):
    return params
  return sharding.put_replicated(params, mesh)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _pooled(module, params, ids, mask, pooling: str):
  hidden = module.apply({"params": params}, ids, mask).astype(jnp.float32)
  m = mask.astype(jnp.float32)[..., None]
  if pooling == "mean":
    return jnp.sum(hidden * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
  last = jnp.maximum(jnp.sum(mask, axis=1) - 1, 0)
  return jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]


def padded_batch(token_ids: list[list[int]], idx: np.ndarray, rows: int,
                 length: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids, mask) [rows, length] int32 of the texts `idx`, zero-padded (one planned batch)."""
  ids = np.zeros((rows, length), np.int32)
  mask = np.zeros((rows, length), np.int32)
  for r, i in enumerate(idx):
    ids[r, :len(token_ids[i])] = token_ids[i]
    mask[r, :len(token_ids[i])] = 1
  return ids, mask


def embed_batch(module, params, ids: np.ndarray, mask: np.ndarray, *, pooling: str,
                mesh: Mesh) -> np.ndarray:
  """Pooled float32 embeddings [rows, H] of one padded batch (params already on `mesh`)."""
  return np.asarray(_pooled(module, params, sharding.put_batch(ids, mesh),
                            sharding.put_batch(mask, mesh), pooling))


def embed_texts(module, params, token_ids: list[list[int]], *, pooling: str, token_budget: int,
                mesh: Mesh, out: np.ndarray | None = None, done: np.ndarray | None = None,
                on_progress=None, desc: str = "CEG", bar=None) -> np.ndarray:
  """Pooled embeddings [N, H] (float32); rows with done[i] are skipped. `bar`: an
  outer progress bar to advance instead of a bar of its own."""
  n = len(token_ids)
  lengths = np.array([len(t) for t in token_ids])
  if done is None:
    done = np.zeros(n, bool)
  todo = np.flatnonzero(~done)
  budget = resolve_token_budget(token_budget)
  plan = plan_batches(lengths[todo], budget, mesh.shape["data"])
  log.info("CEG: %d items in %d batches of %d shapes (%d tokens a batch), %.1f%% padding", len(todo),
           len(plan), len({(blen, rows) for blen, rows, _ in plan}), budget,
           100 * padding_fraction(lengths[todo], plan))
  params = _on_mesh(params, mesh)
  own_bar = bar is None
  if own_bar:
    bar = tqdm(total=n, initial=n - len(todo), desc=desc, unit="item")
  try:
    for blen, rows, local in plan:
      preemption.raise_pending()   # a signal Python swallowed (JAX's gc callback) stops CEG here
      idx = todo[local]
      vec = embed_batch(module, params, *padded_batch(token_ids, idx, rows, blen), pooling=pooling,
                        mesh=mesh)
      if out is None:
        out = np.zeros((n, vec.shape[1]), np.float32)
      out[idx] = vec[:len(idx)]
      done[idx] = True
      bar.update(len(idx))
      if on_progress is not None:
        on_progress(out, done)
  finally:
    if own_bar:
      bar.close()
  return out


def manifest_path(path: pathlib.Path) -> pathlib.Path:
  return path.with_suffix(".json")


def save_cached(path: pathlib.Path, table: np.ndarray) -> None:
  """Writes a cache entry and its manifest (shape, dtype, sha256), each atomically."""
  atomic_save(path, table)
  manifest = {"shape": list(table.shape), "dtype": str(table.dtype), "sha256": sha256_file(path)}
  tmp = manifest_path(path).with_name(manifest_path(path).name + ".tmp")
  tmp.write_text(json.dumps(manifest) + "\n")
  os.replace(tmp, manifest_path(path))


def _load_checked(path: pathlib.Path, shape: tuple[int, ...] | None, dtype) -> tuple[np.ndarray | None, str]:
  """(array, "") if `path` holds a finite array of that dtype (and shape), else (None, why not)."""
  if path.stat().st_size == 0:
    return None, "the file is empty"
  try:
    array = np.load(path, allow_pickle=False)
  except Exception as e:  # noqa: BLE001  numpy raises ValueError, OSError, EOFError, ... on bad files
    return None, f"it cannot be read ({type(e).__name__})"
  if array.dtype != dtype:
    return None, f"dtype {array.dtype}, want {np.dtype(dtype)}"
  if shape is not None and array.shape != tuple(shape):
    return None, f"shape {array.shape}, want {tuple(shape)}"
  if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
    return None, "it holds NaN or inf"
  return array, ""


def _adopt(path: pathlib.Path, num_texts: int) -> np.ndarray | None:
  """An entry without a manifest (written before manifests existed, or a crash between
  the two writes): used if shape, dtype and finiteness check out, and given a manifest,
  so existing caches (hours of CEG for a large LLM) are not recomputed."""
  table, problem = _load_checked(path, None, np.float32)
  if table is not None and (table.ndim != 2 or table.shape[0] != num_texts):
    table, problem = None, f"shape {table.shape}, want ({num_texts}, H)"
  if table is None:
    log.warning("CEG: cached embeddings %s (no manifest) are damaged: %s; recomputing them",
                path, problem)
    return None
  log.warning("CEG: cached embeddings %s have no manifest (an older jaxrec, or an interrupted "
              "write); shape, dtype and values checked, manifest written", path)
  save_cached(path, table)
  return table


def load_cached(path: pathlib.Path, num_texts: int) -> np.ndarray | None:
  """The verified cache entry, or None (with a warning when one exists but is damaged)."""
  if not path.exists():
    return None
  table, problem = None, ""
  try:
    manifest = json.loads(manifest_path(path).read_text())
    shape, want_sha = tuple(manifest["shape"]), manifest["sha256"]
    if manifest["dtype"] != "float32":
      raise ValueError(manifest["dtype"])
  except FileNotFoundError:
    return _adopt(path, num_texts)
  except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
    problem = f"its manifest {manifest_path(path).name} is damaged"
  else:
    if len(shape) != 2 or shape[0] != num_texts:
      problem = f"its manifest says shape {shape}, want ({num_texts}, H)"
    elif sha256_file(path) != want_sha:
      problem = "its checksum differs from the manifest (truncated or overwritten)"
    else:
      table, problem = _load_checked(path, shape, np.float32)
  if table is None:
    log.warning("CEG: cached embeddings %s are damaged: %s; recomputing them", path, problem)
  return table


def model_name(model: str, model_dir: pathlib.Path) -> str:
  return model_dir.name if model != "minilm" else "minilm"


def store_folder(cache: pathlib.Path, label: str, model: str, model_dir: pathlib.Path, key: str,
                 store_dtype: str) -> pathlib.Path:
  return cache / f"{label}-{model_name(model, model_dir)}-{key}-{store_dtype}"


def _legacy_entry(folder: pathlib.Path) -> pathlib.Path:
  """The single-file cache entry older jaxrec wrote for the same key (`<label>-<model>-<key>.npy`)."""
  return folder.with_name(folder.name.rsplit("-", 1)[0] + ".npy")


def build_store(texts: list[str], *, model: str, pooling: str = "mean", max_tokens: int = 128,
                token_budget: int = 0, dtype: str = "float32", store_dtype: str = "float32",
                chunk_items: int = CHUNK_ITEMS, cache_dir: str | os.PathLike | None = None,
                mesh: Mesh, label: str = "items", process_index: int = 0,
                process_count: int = 1, barrier=None, mesh_model: int = 1, fsdp: bool = False,
                attention: str = "dot_product_attention",
                attention_impl: str = "auto") -> store_lib.Store:
  """Fills the chunked store of these texts' embeddings (see jaxrec/llm/store.py) and returns it.

  Only this process's chunks (`store.assigned_chunks`) that are not already done
  are computed, one chunk of items at a time (tokenised, batched, embedded,
  written, dropped), so memory does not grow with the number of items. A
  killed run, rerun, recomputes only the chunks it had not finished.

  Several processes (`process_count` > 1, each with its own `mesh` of local
  devices) fill one store together: process 0 first discards a store of
  another manifest, then each computes and writes its own chunks, only
  process 0 writes the manifest, and after `barrier()` (called by every process
  at the same points) each returns the whole store, every chunk verified.
  Without a barrier, writers that run one after another each add their chunks.

  The mesh's devices are arranged as (data, mesh_model): the model is split
  over 'model' (and over 'data' too with fsdp), loaded shard by shard onto
  its devices, and batches are split over 'data' (jaxrec/llm/partitioning.py).
  The mesh and the attention path change rounding only, so they are not part
  of the store's key.
  """
  if not texts:
    raise JaxrecError("no item texts to embed")
  dtype = resolve_dtype(dtype)
  mesh = partitioning.make_mesh(mesh.devices, mesh_model)
  model_dir = resolve_model_dir(model)
  check_max_tokens(model_dir, max_tokens, model)
  cache = pathlib.Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
  key = cache_key(model_dir, texts, pooling, max_tokens, dtype)
  folder = store_folder(cache, label, model, model_dir, key, store_dtype)
  n = len(texts)
  # The model by name (as in the folder name), not by the path given, so the same
  # folder reached by another path is the same store.
  identity = {"model": model_name(model, model_dir), "key": key,
              "texts_sha256": store_lib.texts_sha256(texts), "pooling": pooling,
              "max_tokens": max_tokens, "dtype": dtype, "store_dtype": store_dtype,
              "chunk_size": chunk_items}
  manifest = lambda hidden: {**identity, "shape": [n, int(hidden)]}
  mine = store_lib.assigned_chunks(store_lib.num_chunks(n, chunk_items), process_index, process_count)
  load_options = dict(fsdp=fsdp, attention=attention, attention_impl=attention_impl)
  if process_count > 1 and barrier is not None:
    if process_index == 0:
      _discard_other_store(folder, identity)
    barrier("ceg store checked")
    st = _fill_store(texts, folder, identity, manifest, mine, n, chunk_items, model_dir, dtype,
                     store_dtype, pooling, token_budget, max_tokens, mesh, label, load_options,
                     writes_manifest=process_index == 0)
    barrier("ceg store filled")
    st = store_lib.load_store(folder)
    missing = st.missing_chunks()
    if missing:
      raise JaxrecError(f"CEG store {folder} misses chunks {missing[:5]} after every process "
                        "finished; run the same command again to compute them")
    return st

  with store_lib.host_lock(folder):   # another run filling the same store: wait, then read it
    return _fill_store(texts, folder, identity, manifest, mine, n, chunk_items, model_dir, dtype,
                       store_dtype, pooling, token_budget, max_tokens, mesh, label, load_options)


def _discard_other_store(folder: pathlib.Path, identity: dict) -> None:
  """Before several processes write into `folder`: a store there of another manifest
  (or a damaged one) is removed, with one warning, so none of them reads it."""
  stored = store_lib.read_manifest(folder)
  if (folder / "manifest.json").exists() and (
      stored is None or {k: stored.get(k) for k in identity} != identity):
    log.warning("CEG: store %s has a %s manifest; recomputing its chunks", folder,
                "damaged" if stored is None else "different")
    shutil.rmtree(folder / "chunks", ignore_errors=True)
    (folder / "manifest.json").unlink()


def _fill_store(texts, folder, identity, manifest, mine, n, chunk_items, model_dir, dtype,
                store_dtype, pooling, token_budget, max_tokens, mesh, label, load_options: dict,
                writes_manifest: bool | None = None) -> store_lib.Store | None:
  """Computes the chunks of `mine` that are not done; None if it had none to compute and
  no store exists yet. `writes_manifest`: None = one process (opens the store as usual)."""
  shared = writes_manifest is not None
  st = None
  stored = store_lib.read_manifest(folder)
  if stored is not None and isinstance(stored.get("shape"), list) and len(stored["shape"]) == 2 \
      and stored == store_lib.Store(folder, manifest(stored["shape"][1])).manifest:
    st = store_lib.Store(folder, stored)
    st.open(write_manifest=not shared or writes_manifest, clean=not shared)
    todo = st.missing_chunks(mine)
    if not todo:
      log.info("CEG: cached embeddings %s %s", folder, (n, st.hidden))
      return st
  else:
    todo = mine
    legacy = _legacy_entry(folder)
    if store_dtype == "float32" and not shared and legacy.exists():
      table = load_cached(legacy, n)
      if table is not None:
        st = store_lib.Store(folder, manifest(table.shape[1]))
        st.open()
        for c in mine:
          st.write_chunk(c, table[slice(*store_lib.chunk_range(c, n, chunk_items))])
        legacy.unlink()
        manifest_path(legacy).unlink(missing_ok=True)
        log.info("CEG: cached embeddings %s moved into the chunked store %s", legacy, folder)
        return st
  if not todo:
    return st
  folder.parent.mkdir(parents=True, exist_ok=True)

  from jaxrec.llm.checkpoint import load_hf_model  # noqa: PLC0415 (keeps jaxrec import light)
  jdtype = jnp_dtype(dtype)
  module, params, _ = load_hf_model(model_dir, dtype=jdtype, param_dtype=jdtype, mesh=mesh,
                                    **load_options)   # placed once, not per chunk
  rows = lambda c: (lambda start, stop: stop - start)(*store_lib.chunk_range(c, n, chunk_items))
  my_items, todo_items = sum(rows(c) for c in mine), sum(rows(c) for c in todo)
  if todo != mine:
    log.info("CEG: resuming %s, %d of %d chunks to compute", folder, len(todo), len(mine))
  with tqdm(total=my_items, initial=my_items - todo_items, desc=f"CEG {label}", unit="item") as bar:
    for c in todo:
      start, stop = store_lib.chunk_range(c, n, chunk_items)
      token_ids = tokenize(model_dir, texts[start:stop], max_tokens)
      vectors = embed_texts(module, params, token_ids, pooling=pooling, token_budget=token_budget,
                            mesh=mesh, bar=bar)
      if not np.all(np.isfinite(vectors)):
        raise JaxrecError(f"CEG produced non-finite embeddings with {model_dir} ({dtype})")
      if store_dtype == "float16" and np.abs(vectors).max() > np.finfo(np.float16).max:
        raise JaxrecError(f"CEG embeddings of {model_dir} reach {np.abs(vectors).max():.3g}, beyond "
                          "float16; set config.ceg.store_dtype=float32")
      if st is None:
        st = store_lib.Store(folder, manifest(vectors.shape[1]))
        st.open(write_manifest=not shared or writes_manifest, clean=not shared)
      st.write_chunk(c, vectors)
      del token_ids, vectors
  return st


def content_embeddings(texts: list[str], *, mesh: Mesh, **options) -> np.ndarray:
  """[len(texts), H] float32 content embeddings, from the store when present
  (`options`: build_store's keyword arguments)."""
  st = build_store(texts, mesh=mesh, **options)
  return st.read_table()
