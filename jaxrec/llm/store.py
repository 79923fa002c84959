"""The CEG store: content embeddings on disk in fixed-size chunks of items.

Layout of one store (a folder, named by everything the embeddings depend on)::

  <cache>/<label>-<model>-<key>-<store dtype>/
    manifest.json        model, texts sha256, pooling, max_tokens, compute dtype,
                         store dtype, shape [N, H], chunk size, number of chunks
    chunks/00000.npy     items [0, chunk) as [rows, H] in the store dtype
    chunks/00000.json    that chunk's sidecar: start, rows, shape, dtype, sha256
    chunks/00001.npy ...

Chunk c holds items [c * chunk, min(N, (c + 1) * chunk)). Each chunk file is
written atomically (a temporary file, then a rename) and its sidecar after it,
so a process killed at any point leaves every chunk either absent, complete
without a sidecar, or complete with one; leftover temporaries are ignored and
removed. A chunk is done when it is present and verified (sidecar checksum,
shape, dtype, finite values); a chunk that fails a check is reported with one
warning line and recomputed; a complete chunk without a sidecar (killed
between the two writes) is checked for shape, dtype and finiteness and adopted.

Each chunk is its own pair of files and nothing is shared but the manifest
(identical for every writer), so several processes can fill one store: process
p of n takes chunks p, p + n, ... (`assigned_chunks`). Readers get each chunk
memory-mapped (`open_chunks`), or the whole table assembled (`read_table`).
Independent runs on one host that want the same store (two sweeps started
together on a fresh cache) take turns through `host_lock`: the second finds
the store complete instead of writing the same chunks under the same names.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pathlib
import shutil

import numpy as np

from jaxrec.files import atomic_save, atomic_write_json, sha256_file

log = logging.getLogger(__name__)

FORMAT = "jaxrec-ceg-store-1"
STORE_DTYPES = ("float32", "float16")


# ----------------------------------------------------------------------------
# Chunk assignment.
# ----------------------------------------------------------------------------

def num_chunks(num_items: int, chunk: int) -> int:
  return -(-num_items // chunk)


def chunk_range(index: int, num_items: int, chunk: int) -> tuple[int, int]:
  """[start, stop) of the items in chunk `index`."""
  return index * chunk, min(num_items, (index + 1) * chunk)


def assigned_chunks(total_chunks: int, process_index: int = 0, process_count: int = 1) -> list[int]:
  """Chunks process p of n computes: p, p + n, p + 2n, ... (every chunk exactly once)."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  return list(range(process_index, total_chunks, process_count))


# ----------------------------------------------------------------------------
# Files.
# ----------------------------------------------------------------------------

@contextlib.contextmanager
def host_lock(path: str | os.PathLike):
  """Holds an exclusive `flock` on `<parent>/.<name>.lock` while filling the store at `path`.

  Runs without the lock where the cache folder is read-only (a complete store there is
  only read) or the file system refuses locks.
  """
  path = pathlib.Path(path)
  with contextlib.ExitStack() as stack:
    try:
      path.parent.mkdir(parents=True, exist_ok=True)
      f = stack.enter_context(open(path.parent / f".{path.name}.lock", "a"))
      fcntl.flock(f, fcntl.LOCK_EX)    # released when the file is closed
    except OSError:
      pass
    yield


def texts_sha256(texts: list[str]) -> str:
  h = hashlib.sha256()
  for t in texts:
    h.update(t.encode())
    h.update(b"\x00")
  return h.hexdigest()


def check_array(array_or_path, shape: tuple[int, ...], dtype: str,
                mmap: bool = False) -> tuple[np.ndarray | None, str]:
  """(array, "") if it is a finite array of that shape and dtype, else (None, why not)."""
  path = pathlib.Path(array_or_path)
  if path.stat().st_size == 0:
    return None, "the file is empty"
  try:
    array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
  except Exception as e:  # noqa: BLE001  numpy raises ValueError, OSError, EOFError, ... on bad files
    return None, f"it cannot be read ({type(e).__name__})"
  if array.dtype != np.dtype(dtype):
    return None, f"dtype {array.dtype}, want {np.dtype(dtype)}"
  if array.shape != tuple(shape):
    return None, f"shape {array.shape}, want {tuple(shape)}"
  for i in range(0, array.shape[0], 65536):   # bounded memory on a memory-mapped chunk
    if not np.all(np.isfinite(array[i:i + 65536])):
      return None, "it holds NaN or inf"
  return array, ""


class Store:
  """One store folder; `manifest` is what the embeddings depend on plus the layout."""

  def __init__(self, path: str | os.PathLike, manifest: dict):
    self.path = pathlib.Path(path)
    self.manifest = dict(manifest, format=FORMAT)
    self.num_items, self.hidden = self.manifest["shape"]
    self.chunk = self.manifest["chunk_size"]
    self.dtype = self.manifest["store_dtype"]
    if self.dtype not in STORE_DTYPES:
      raise ValueError(f"store dtype {self.dtype!r}, want one of {STORE_DTYPES}")
    self.manifest["num_chunks"] = num_chunks(self.num_items, self.chunk)
    self.num_chunks = self.manifest["num_chunks"]

  # -- layout ----------------------------------------------------------------
  @property
  def manifest_path(self) -> pathlib.Path:
    return self.path / "manifest.json"

  def chunk_path(self, index: int) -> pathlib.Path:
    return self.path / "chunks" / f"{index:05d}.npy"

  def sidecar_path(self, index: int) -> pathlib.Path:
    return self.chunk_path(index).with_suffix(".json")

  def chunk_shape(self, index: int) -> tuple[int, int]:
    start, stop = chunk_range(index, self.num_items, self.chunk)
    return stop - start, self.hidden

  # -- opening -----------------------------------------------------------------
  def open(self, write_manifest: bool = True, clean: bool = True) -> None:
    """Creates the folder and manifest; an existing store of another manifest (damaged,
    or an older layout) is reported and its chunks discarded. With several writers, only
    one writes the manifest and none removes temporaries (they may be another's)."""
    if not write_manifest:
      (self.path / "chunks").mkdir(parents=True, exist_ok=True)
      return
    if self.manifest_path.exists():
      try:
        stored = json.loads(self.manifest_path.read_text())
      except (OSError, UnicodeDecodeError, ValueError):
        stored = None
      if stored == self.manifest:
        if clean:
          self._clean_temporaries()
        return
      log.warning("CEG: store %s has a %s manifest; recomputing its chunks", self.path,
                  "damaged" if stored is None else "different")
      shutil.rmtree(self.path / "chunks", ignore_errors=True)
    (self.path / "chunks").mkdir(parents=True, exist_ok=True)
    atomic_write_json(self.manifest_path, self.manifest, sort_keys=True)

  def _clean_temporaries(self) -> None:
    """Half-written files of a killed run (never read: only renamed files count)."""
    for tmp in list((self.path / "chunks").glob("*.tmp*")) + list(self.path.glob("*.tmp*")):
      tmp.unlink(missing_ok=True)
    (self.path / "chunks").mkdir(parents=True, exist_ok=True)

  # -- chunks ------------------------------------------------------------------
  def write_chunk(self, index: int, vectors: np.ndarray) -> None:
    """The chunk's rows (float32 in), stored in the store dtype, then its sidecar."""
    shape = self.chunk_shape(index)
    if vectors.shape != shape:
      raise ValueError(f"chunk {index}: shape {vectors.shape}, want {shape}")
    path = self.chunk_path(index)
    atomic_save(path, vectors.astype(self.dtype))
    start, _ = chunk_range(index, self.num_items, self.chunk)
    atomic_write_json(self.sidecar_path(index), {
        "start": start, "shape": list(shape), "dtype": self.dtype, "sha256": sha256_file(path)},
        sort_keys=True)

  def check_chunk(self, index: int, warn: bool = True) -> bool:
    """Whether chunk `index` is done: present and verified. A damaged chunk is reported
    (one warning) and deleted; one without a sidecar is checked and adopted."""
    path, sidecar = self.chunk_path(index), self.sidecar_path(index)
    if not path.exists():
      sidecar.unlink(missing_ok=True)
      return False
    shape = self.chunk_shape(index)
    try:
      meta = json.loads(sidecar.read_text())
      want_sha = meta["sha256"]
      if meta["shape"] != list(shape) or meta["dtype"] != self.dtype:
        raise ValueError("layout")
    except FileNotFoundError:
      array, problem = check_array(path, shape, self.dtype, mmap=True)
      if array is None:
        return self._damaged(path, f"{problem} (and it has no checksum file)", warn)
      log.warning("CEG: chunk %s has no checksum file (killed between the two writes); "
                  "shape, dtype and values checked, checksum written", path)
      start, _ = chunk_range(index, self.num_items, self.chunk)
      atomic_write_json(sidecar, {"start": start, "shape": list(shape), "dtype": self.dtype,
                                  "sha256": sha256_file(path)}, sort_keys=True)
      return True
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
      return self._damaged(path, f"its checksum file {sidecar.name} is damaged", warn)
    if sha256_file(path) != want_sha:
      return self._damaged(path, "its checksum differs (truncated or overwritten)", warn)
    array, problem = check_array(path, shape, self.dtype, mmap=True)
    if array is None:
      return self._damaged(path, problem, warn)
    return True

  def _damaged(self, path: pathlib.Path, problem: str, warn: bool) -> bool:
    if warn:
      log.warning("CEG: cached embeddings %s are damaged: %s; recomputing them", path, problem)
    path.unlink(missing_ok=True)
    self.sidecar_path(int(path.stem)).unlink(missing_ok=True)
    return False

  def missing_chunks(self, chunks: list[int] | None = None) -> list[int]:
    """Of `chunks` (default all), those not done; damaged ones are reported."""
    return [c for c in (range(self.num_chunks) if chunks is None else chunks)
            if not self.check_chunk(c)]

  # -- reading -----------------------------------------------------------------
  def open_chunks(self) -> list[np.ndarray]:
    """Every chunk memory-mapped read-only (in the store dtype), in item order."""
    return [np.load(self.chunk_path(c), mmap_mode="r") for c in range(self.num_chunks)]

  def read_table(self) -> np.ndarray:
    """The [N, H] float32 table, assembled chunk by chunk."""
    out = np.empty((self.num_items, self.hidden), np.float32)
    for c, part in enumerate(self.open_chunks()):
      start, stop = chunk_range(c, self.num_items, self.chunk)
      out[start:stop] = part
    return out


def load_store(path: str | os.PathLike) -> Store:
  """An existing store from its manifest (e.g. for a reader that did not compute it)."""
  path = pathlib.Path(path)
  return Store(path, json.loads((path / "manifest.json").read_text()))


def read_manifest(path: str | os.PathLike) -> dict | None:
  """The store manifest at `path`, or None when absent or unreadable."""
  try:
    data = json.loads((pathlib.Path(path) / "manifest.json").read_text())
  except (OSError, UnicodeDecodeError, ValueError):
    return None
  return data if isinstance(data, dict) else None
