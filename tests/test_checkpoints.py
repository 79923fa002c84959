"""Checkpoints: a manifest per save; a damaged checkpoint is one line naming the
file, found before any work, and is never overwritten by a fresh run."""

import hashlib
import json
import shutil

import pytest

from jaxrec import checkpoints, train
from jaxrec.errors import JaxrecError

from test_train import tiny_config

CONFIG = dict(train={"num_epochs": 2, "eval_every": 4})


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
  """A workdir stopped at step 5: checkpoint 5 (with its manifest)."""
  workdir = tmp_path_factory.mktemp("saved") / "wd"
  assert train.train_and_evaluate(tiny_config(**CONFIG), workdir, stop_after_steps=5) is None
  return workdir


@pytest.fixture
def workdir(saved_run, tmp_path):
  copy = tmp_path / "wd"
  shutil.copytree(saved_run, copy)
  return copy


def _config_json():
  return json.loads(tiny_config(**CONFIG).to_json_best_effort())


def _digest(folder):
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_file_of_a_save_is_in_its_manifest(workdir):
  step_dir = workdir / "checkpoints" / "5"
  manifest = json.loads((step_dir / checkpoints.MANIFEST).read_text())["files"]
  on_disk = {str(p.relative_to(step_dir)) for p in step_dir.rglob("*")
             if p.is_file() and p.name != checkpoints.MANIFEST}
  assert set(manifest) == on_disk and any(f.startswith("state/") for f in on_disk)
  assert checkpoints.verify_step(step_dir)
  checkpoints.verify(workdir / "checkpoints", _config_json())


def _truncate(path):
  path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def _largest_data_file(step_dir):
  """The array data restore reads (OCDBT's merged data files, state/d/)."""
  return max((p for p in (step_dir / "state" / "d").iterdir() if p.is_file()),
             key=lambda p: p.stat().st_size)


DAMAGE = {  # name -> (how, the file the message must name)
    "state metadata truncated": (lambda d: _truncate(d / "state" / "_METADATA"), "state/_METADATA"),
    "state metadata missing": (lambda d: (d / "state" / "_METADATA").unlink(), "state/_METADATA"),
    "array data truncated": (lambda d: _truncate(_largest_data_file(d)), "/d/"),
    "array data zeroed": (lambda d: _largest_data_file(d).write_bytes(
        b"\0" * _largest_data_file(d).stat().st_size), "/d/"),
    "record truncated": (lambda d: _truncate(d / "record" / "metadata"), "record/metadata"),
    "record missing": (lambda d: (d / "record" / "metadata").unlink(), "record/metadata"),
    "manifest garbage": (lambda d: (d / checkpoints.MANIFEST).write_text("{"), checkpoints.MANIFEST),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_is_one_line_before_any_work(workdir, damage, monkeypatch):
  how, named = DAMAGE[damage]
  how(workdir / "checkpoints" / "5")
  before = _digest(workdir)
  monkeypatch.setattr(train, "load_data", lambda c: pytest.fail("data loaded before the check"))
  with pytest.raises(JaxrecError) as e:
    train.train_and_evaluate(tiny_config(**CONFIG), workdir)
  message = str(e.value)
  assert "\n" not in message and named in message, message
  assert "--overwrite" in message and str(workdir / "checkpoints") in message
  assert _digest(workdir) == before          # nothing written, nothing replaced


@pytest.mark.parametrize("damage", ["state metadata truncated", "array data truncated",
                                    "record truncated"])
def test_damaged_checkpoint_without_manifest_is_one_line_at_restore(workdir, damage):
  """A checkpoint whose manifest was never written (a crash right after Orbax's
  commit) is restored unverified, and a failure there is still one line."""
  step_dir = workdir / "checkpoints" / "5"
  (step_dir / checkpoints.MANIFEST).unlink()
  DAMAGE[damage][0](step_dir)
  before = _digest(workdir)
  with pytest.raises(JaxrecError) as e:
    train.train_and_evaluate(tiny_config(**CONFIG), workdir)
  message = str(e.value)
  assert "\n" not in message and ("cannot be restored" in message or "damaged" in message), message
  assert "--overwrite" in message and str(step_dir) in message
  assert _digest(workdir) == before


def test_checkpoint_without_manifest_still_resumes(workdir, caplog):
  (workdir / "checkpoints" / "5" / checkpoints.MANIFEST).unlink()
  with caplog.at_level("WARNING", logger="jaxrec"):
    results = train.train_and_evaluate(tiny_config(**CONFIG), workdir)
  assert results is not None and any("no manifest" in r.getMessage() for r in caplog.records)


def test_overwrite_replaces_a_damaged_checkpoint(workdir):
  _truncate(workdir / "checkpoints" / "5" / "state" / "_METADATA")
  results = train.train_and_evaluate(tiny_config(**CONFIG), workdir, overwrite=True)
  assert results["total_steps"] == 30 and (workdir / "results.json").exists()
  checkpoints.verify(workdir / "checkpoints", _config_json())


def test_checkpoint_holding_nan_is_refused(workdir, monkeypatch):
  """E.g. a workdir from before NaN checking, where a diverged model became best."""
  real = checkpoints.ocp.CheckpointManager.restore
  def nan_restore(self, step, args=None):
    out = real(self, step, args=args)
    if "state" in out:
      tree = out["state"]
      tree["best_params"]["log_scale"] = tree["best_params"]["log_scale"] * float("nan")
    return out
  monkeypatch.setattr(checkpoints.ocp.CheckpointManager, "restore", nan_restore)
  with pytest.raises(JaxrecError, match=r"holds NaN/inf values \(at \['best_params'\]\['log_scale'\]\)"):
    train.train_and_evaluate(tiny_config(**CONFIG), workdir)
