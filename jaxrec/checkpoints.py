"""Orbax checkpoints of the training run, so a crash or pre-emption loses little.

One checkpoint (the latest) holds the train state, the best-validation
parameters so far and a JSON record (best step, validation history, config).
A run restarted with the same workdir and config resumes from it and, because
batches and dropout are functions of the step, ends exactly where an
uninterrupted run would.

Every finished checkpoint gets a manifest (`jaxrec-manifest.json` in its step
folder: size and sha256 of every file), written once Orbax has finished the
(asynchronous) save. `verify` checks it before anything is restored, so a
truncated, missing or altered file is one line naming it; a checkpoint
without a manifest (a crash between Orbax's commit and the manifest) is
restored unverified, and any failure there is one line too. Restored values
must be finite (a checkpoint from before NaN checking could hold a diverged
model selected as best). A damaged
checkpoint is never replaced by a fresh run on its own: the user deletes it or
passes --overwrite.
"""

import contextlib
import json
import logging
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxrec import nonfinite
from jaxrec.config import changed_fields
from jaxrec.errors import JaxrecError
from jaxrec.files import atomic_write_json, sha256_file

log = logging.getLogger(__name__)

MANIFEST = "jaxrec-manifest.json"


def _files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(step_dir: pathlib.Path) -> None:
  files = {str(p.relative_to(step_dir)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
           for p in _files(step_dir)}
  atomic_write_json(step_dir / MANIFEST, {"files": files}, indent=1)


def _hint(directory: pathlib.Path) -> str:
  return f"delete {directory} to start over, or rerun with --overwrite (or use a new --workdir)"


def _step_dirs(directory: pathlib.Path) -> list[pathlib.Path]:
  return sorted((p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()),
                key=lambda p: int(p.name)) if directory.is_dir() else []


def verify_step(step_dir: pathlib.Path) -> bool:
  """Checks the files against the manifest; False if there is no manifest to check."""
  directory = step_dir.parent
  manifest = step_dir / MANIFEST
  if not manifest.exists():
    return False
  try:
    files = json.loads(manifest.read_text())["files"]
  except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
    raise JaxrecError(f"checkpoint manifest {manifest} is damaged ({type(e).__name__}); "
                      f"{_hint(directory)}") from e
  for rel, want in files.items():
    p = step_dir / rel
    if not p.is_file():
      raise JaxrecError(f"checkpoint file {p} is missing; {_hint(directory)}")
    size = p.stat().st_size
    if size != want["size"]:
      raise JaxrecError(f"checkpoint file {p} is damaged ({size} bytes, {want['size']} written); "
                        f"{_hint(directory)}")
    if sha256_file(p) != want["sha256"]:
      raise JaxrecError(f"checkpoint file {p} is damaged (checksum differs from its manifest); "
                        f"{_hint(directory)}")
  return True


def _check_record(record: Any, where: pathlib.Path, directory: pathlib.Path) -> dict:
  if not (isinstance(record, dict) and isinstance(record.get("best"), dict)
          and {"step", "valid", "history"} <= set(record["best"]) and "config" in record):
    raise JaxrecError(f"checkpoint file {where} is damaged (not a jaxrec record); "
                      f"{_hint(directory)}")
  return record


def _record_file(step_dir: pathlib.Path) -> pathlib.Path | None:
  """The file Orbax's JsonSave wrote for the record (None if the layout is not the known one)."""
  folder = step_dir / "record"
  found = [p for p in folder.iterdir() if p.is_file() and p.name != "commit_success.txt"] \
      if folder.is_dir() else []
  return found[0] if len(found) == 1 else None


def _check_config(record: dict, config_json: dict, step_dir: pathlib.Path) -> None:
  if changed_fields(record["config"], config_json):
    raise JaxrecError(
        f"the workdir holds a checkpoint (step {step_dir.name}) of a different config; "
        f"use --overwrite to replace that run, or a new --workdir")


def verify(directory: str | pathlib.Path, config_json: dict) -> None:
  """Up-front check of the latest checkpoint in `directory` (if any): files, record, config."""
  steps = _step_dirs(pathlib.Path(directory))
  if not steps:
    return
  verify_step(steps[-1])
  path = _record_file(steps[-1])
  if path is None:
    if not (steps[-1] / "record").is_dir():
      raise JaxrecError(f"checkpoint folder {steps[-1] / 'record'} is missing; "
                        f"{_hint(steps[-1].parent)}")
    return  # an Orbax layout this check does not know: restore() checks the record
  try:
    record = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise JaxrecError(f"checkpoint file {path} is damaged ({type(e).__name__}); "
                      f"{_hint(steps[-1].parent)}") from e
  _check_config(_check_record(record, path, steps[-1].parent), config_json, steps[-1])


class RunCheckpoints:
  def __init__(self, directory: str | pathlib.Path, keep: int = 1):
    self._dir = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self._dir, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               cleanup_tmp_directories=True))
    self._pending: int | None = None   # saved step whose manifest is not written yet
    self._closed = False

  def _finish_pending(self) -> None:
    """Waits for Orbax's save in flight, then writes its manifest."""
    self._manager.wait_until_finished()
    # Several processes: all write their shards through Orbax, process 0 the manifest.
    if self._pending is not None and (self._dir / str(self._pending)).is_dir() \
        and jax.process_index() == 0:
      write_manifest(self._dir / str(self._pending))
    self._pending = None

  def latest_step(self) -> int | None:
    """The latest saved step, counting a save still in flight (close() finishes it)."""
    return self._pending if self._pending is not None else self._manager.latest_step()

  def save(self, step: int, tree: Any, record: dict) -> None:
    self._finish_pending()
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree), record=ocp.args.JsonSave(record)))
    self._pending = step

  def restore(self, like: Any, config_json: dict) -> tuple[Any, dict] | None:
    """(tree, record) of the latest checkpoint, or None; `like` gives structure and shardings."""
    step = self._manager.latest_step()
    steps = _step_dirs(self._dir)
    if step is None:
      if steps:
        raise JaxrecError(f"checkpoint {steps[-1]} is incomplete (Orbax does not list it as "
                          f"finished); {_hint(self._dir)}")
      return None
    step_dir = self._dir / str(step)
    verified = verify_step(step_dir)
    with self._damaged_as_error(step_dir / "record"):
      record = self._manager.restore(step, args=ocp.args.Composite(
          record=ocp.args.JsonRestore()))["record"]
    _check_config(_check_record(record, _record_file(step_dir) or step_dir / "record", self._dir),
                  config_json, step_dir)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    with self._damaged_as_error(step_dir / "state"):
      tree = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))["state"]
    bad = nonfinite.first_non_finite(tree)
    if bad is not None:
      raise JaxrecError(f"checkpoint {step_dir} holds NaN/inf values (at {bad}); {_hint(self._dir)}")
    if not verified:
      log.warning("checkpoint %s has no manifest (the run stopped before writing it); "
                  "restored without checksum verification", step_dir)
    return tree, record

  @contextlib.contextmanager
  def _damaged_as_error(self, item: pathlib.Path):
    """Orbax/TensorStore raise many types for a damaged file; each becomes one line."""
    try:
      yield
    except JaxrecError:
      raise
    except Exception as e:  # noqa: BLE001
      what = getattr(e, "filename", None) or item
      first = (str(e).splitlines() or [""])[0][:200]
      raise JaxrecError(f"checkpoint {what} cannot be restored ({type(e).__name__}: {first}); "
                        f"{_hint(self._dir)}") from e

  def close(self) -> None:
    """Waits for the save in flight, writes its manifest; safe to call twice."""
    if self._closed:
      return
    self._closed = True
    self._finish_pending()
    self._manager.close()


@contextlib.contextmanager
def closing(ckpt: RunCheckpoints | None):
  """Closes `ckpt` (if any) however the block ends, so the last save is finished and
  has its manifest even when training stops with an error."""
  try:
    yield ckpt
  finally:
    if ckpt is not None:
      ckpt.close()
