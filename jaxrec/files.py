"""Crash-safe writes and checksums for every file jaxrec reads back.

A file is written beside its destination and renamed over it, so a crash
leaves either the old file or the new one, never half of one; the sha256 of
a file goes into the manifests that verify caches, stores and checkpoints.
"""

import hashlib
import json
import os
import pathlib
from typing import Any

import numpy as np


def sha256_file(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def atomic_save(path: pathlib.Path, array: np.ndarray) -> None:
  """np.save, atomically (the temporary name keeps the .npy suffix np.save wants)."""
  tmp = path.with_name(path.name + ".tmp.npy")
  np.save(tmp, array)
  os.replace(tmp, path)


def atomic_write_json(path: pathlib.Path, obj: Any, *, indent: int | None = None,
                      sort_keys: bool = False) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")
  os.replace(tmp, path)
