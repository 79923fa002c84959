"""Orbax checkpoints of the training run, so a crash or pre-emption loses little.

One checkpoint (the latest) holds the train state, the best-validation
parameters so far and a JSON record (best step, validation history, config).
A run restarted with the same workdir and config resumes from it and, because
batches and dropout are functions of the step, ends exactly where an
uninterrupted run would.
"""

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxrec.errors import JaxrecError


class RunCheckpoints:
  def __init__(self, directory: str | pathlib.Path):
    self._manager = ocp.CheckpointManager(
        pathlib.Path(directory).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, tree: Any, record: dict) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree), record=ocp.args.JsonSave(record)))

  def restore(self, like: Any, config_json: dict) -> tuple[Any, dict] | None:
    """(tree, record) of the latest checkpoint, or None; `like` gives structure and shardings."""
    step = self._manager.latest_step()
    if step is None:
      return None
    record = self._manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]
    if record.get("config") != config_json:
      raise JaxrecError(
          f"the workdir holds a checkpoint (step {step}) of a different config; "
          "use a new --workdir or delete its checkpoints/ folder")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    tree = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))["state"]
    return tree, record

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
