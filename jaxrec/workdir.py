"""The run's folder: checked before any work, never mixed between configs.

`check` runs first in `train_and_evaluate`, before data loading and CEG: the
workdir and the embedding cache must be folders (or creatable) and writable,
a workdir holding a run of another config is refused (whether checkpointing
is on or off), and what the workdir holds is verified (config.json,
results.json, the checkpoint's manifest), so a damaged file is one line
naming it, not a traceback an hour later. `RunDir.create` is called where the
run first writes; with `overwrite` it removes the previous run's files there.

`open_metrics` opens metrics.jsonl for appending after dropping the lines of
steps after the resumed step (written after the last checkpoint by a run that
then crashed), so a resumed run never repeats a step in the log.
"""

import json
import logging
import os
import pathlib
import shutil
import tempfile
from typing import Any

import ml_collections

from jaxrec import checkpoints
from jaxrec.config import changed_fields, flat_fields
from jaxrec.errors import JaxrecError

log = logging.getLogger(__name__)

# What a run writes in its workdir; --overwrite removes exactly these.
RUN_FILES = ("results.json", "config.json", "metrics.jsonl", "checkpoints", "tensorboard",
             "results.json.tmp", "config.json.tmp", "metrics.jsonl.tmp")
REPLACE_HINT = "use --overwrite to replace that run, or a new --workdir"


def _writable(folder: pathlib.Path) -> bool:
  """Whether a file can be created in `folder` (a real probe: root ignores mode bits)."""
  try:
    fd, name = tempfile.mkstemp(dir=folder, prefix=".jaxrec-write-test-")
  except OSError:
    return False
  os.close(fd)
  os.unlink(name)
  return True


def check_folder(path: pathlib.Path, what: str, hint: str = "") -> None:
  """`path` is a writable folder, or can be created as one; else one clear error."""
  hint = f"; {hint}" if hint else ""
  if path.exists() and not path.is_dir():
    raise JaxrecError(f"{what} {path} is a file, not a folder{hint}")
  if path.is_dir():
    if not _writable(path):
      raise JaxrecError(f"{what} {path} is not writable{hint}")
    return
  parent = path.absolute().parent
  while not parent.exists():
    parent = parent.parent
  if not parent.is_dir():
    raise JaxrecError(f"{what} {path} cannot be created: {parent} is a file{hint}")
  if not _writable(parent):
    raise JaxrecError(f"{what} {path} cannot be created: {parent} is not writable{hint}")


def _read_json(path: pathlib.Path) -> Any:
  try:
    return json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise JaxrecError(f"{path} is damaged ({type(e).__name__}: {str(e).splitlines()[0]}); "
                      f"{REPLACE_HINT}") from e


def config_diff(old: dict, new: dict, limit: int = 3) -> str:
  """'train.learning_rate: 1e12 -> 0.001, ...' for the fields that differ (config.changed_fields)."""
  a = flat_fields(ml_collections.ConfigDict(old)) if isinstance(old, dict) else {}
  b = flat_fields(ml_collections.ConfigDict(new))
  changed = changed_fields(old, new) if isinstance(old, dict) else sorted(b)
  diffs = [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in changed]
  more = f", and {len(diffs) - limit} more" if len(diffs) > limit else ""
  return ", ".join(diffs[:limit]) + more


def resume_flags(old: dict, new: dict) -> str:
  """'--config.ceg.dtype=float32 ...': the flags that give the stored run's values back, so
  a run made before a default changed resumes as it was; '' if some change has no flag."""
  a = flat_fields(ml_collections.ConfigDict(old))
  changed = changed_fields(old, new)
  if not changed or any(k not in a or isinstance(a[k], (dict, list, tuple)) for k in changed):
    return ""
  return " ".join(f"--config.{k}={a[k]}" for k in changed)


def stored_config(workdir: pathlib.Path) -> tuple[dict | None, pathlib.Path | None]:
  """The config of the run the workdir holds (config.json, else results.json), if any."""
  for name in ("config.json", "results.json"):
    path = workdir / name
    if path.exists():
      data = _read_json(path)
      stored = data if name == "config.json" else (data.get("config") if isinstance(data, dict) else None)
      if not isinstance(stored, dict):
        raise JaxrecError(f"{path} is damaged (no config in it); {REPLACE_HINT}")
      return stored, path
  return None, None


def missing_data(config: ml_collections.ConfigDict) -> str | None:
  """What is missing of the dataset's input files (checked before anything slow), or None."""
  d = config.data
  if d.kind == "synthetic_demo" or not d.path:
    return None
  if d.kind == "amazon_books":
    from jaxrec.data import amazon_books  # noqa: PLC0415
    try:
      amazon_books.find_files(d.path)
    except JaxrecError as e:
      return str(e)
    return None
  return None if pathlib.Path(d.path).is_dir() else f"data folder not found: {d.path} (config.data.path)"


def needs_content(config: ml_collections.ConfigDict) -> bool:
  """Whether the run computes CEG embeddings: train.content_table's condition (any input
  but IDs; model.id_init='pca', on the main branch, initialises IDs from the content)."""
  m = config.model
  return m.item_input != "id" or m.item_tower == "content" or m.get("id_init", "normal") == "pca"


def cache_folder(config: ml_collections.ConfigDict) -> pathlib.Path:
  from jaxrec.llm import embed  # noqa: PLC0415
  return pathlib.Path(config.ceg.cache_dir).expanduser() if config.ceg.cache_dir else embed.default_cache_dir()


class RunDir:
  """A checked workdir; `create` makes it (and, with overwrite, clears the old run)."""

  def __init__(self, path: pathlib.Path, overwrite: bool):
    self.path = path
    self.overwrite = overwrite

  def create(self) -> None:
    self.path.mkdir(parents=True, exist_ok=True)
    if not self.overwrite:
      return
    removed = []
    for name in RUN_FILES:
      p = self.path / name
      if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
      elif p.exists() or p.is_symlink():
        p.unlink()
      else:
        continue
      removed.append(name)
    if removed:
      log.info("--overwrite: removed the previous run's %s from %s", ", ".join(removed), self.path)


def check(workdir: str | os.PathLike, config: ml_collections.ConfigDict, config_json: dict, *,
          overwrite: bool = False) -> RunDir:
  """Every check on the workdir and the cache that can be made before any work."""
  workdir = pathlib.Path(workdir)
  check_folder(workdir, "workdir")
  data_problem = missing_data(config)
  problems = [data_problem] if data_problem else []
  content = needs_content(config)
  if content:
    from jaxrec.llm import embed  # noqa: PLC0415
    try:
      embed.check_max_tokens(embed.resolve_model_dir(config.ceg.model), config.ceg.max_tokens,
                             config.ceg.model)
    except JaxrecError as e:
      problems.append(str(e))
  if problems:            # data first: a user without either learns about both at once
    raise JaxrecError(" Also: ".join(problems))
  if content:
    check_folder(cache_folder(config), "embedding cache folder",
                 "set $JAXREC_CACHE or config.ceg.cache_dir to a writable folder")
  if workdir.is_dir() and not overwrite:
    stored, source = stored_config(workdir)
    if stored is not None and changed_fields(stored, config_json):
      flags = resume_flags(stored, config_json)
      again = f"; to resume it as it was, pass {flags}" if flags else ""
      raise JaxrecError(f"workdir {workdir} holds a run of a different config ({source.name}: "
                        f"{config_diff(stored, config_json)}); {REPLACE_HINT}{again}")
    if (workdir / "results.json").exists():
      _read_json(workdir / "results.json")
    if config.train.checkpoint:
      checkpoints.verify(workdir / "checkpoints", config_json)
  return RunDir(workdir, overwrite)


def _step_of(line: str) -> int | None:
  try:
    record = json.loads(line)
  except json.JSONDecodeError:
    return None
  step = record.get("step") if isinstance(record, dict) else None
  return step if isinstance(step, int) else None


def open_metrics(path: pathlib.Path, resume_step: int):
  """metrics.jsonl for appending, without the lines of steps > resume_step (or unreadable)."""
  if path.exists():
    lines = path.read_text().splitlines()
    kept = [l for l in lines if (s := _step_of(l)) is not None and s <= resume_step]
    if len(kept) != len(lines):
      tmp = path.with_name(path.name + ".tmp")
      tmp.write_text("".join(l + "\n" for l in kept))
      os.replace(tmp, path)
      log.info("%s: dropped %d lines after step %d (written after the last checkpoint, or "
               "unreadable), so no step appears twice", path, len(lines) - len(kept), resume_step)
  return open(path, "a")
