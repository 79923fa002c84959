"""Multi-host runs (issue 10): 2 processes x 4 fake CPU devices through the launcher's
local mode give the results of 1 device; SIGTERM reaches every process, all save the
same step and the rerun equals an uninterrupted run; a damaged checkpoint is one
clear error and stays untouched. Two processes share this machine's 2 cores, so the
runs are the tiny ID model (no CEG) for a few dozen steps."""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import ml_collections
import pytest

from jaxrec import config as config_lib
from jaxrec import distributed
from jaxrec.errors import JaxrecError

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "experiments" / "tpu_vm" / "launch.sh"
DEMO = str(ROOT / "configs" / "demo.py") + ":paper"
# 12 steps per epoch x 3 epochs = 36 steps, validated at 15, 30, 36, a log line per step.
FAST = ["--config.model.item_input=id", "--config.data.demo_users=200", "--config.data.demo_items=100",
        "--config.train.batch_size=16", "--config.train.num_epochs=3", "--config.train.eval_every=15",
        "--config.train.eval_every_epochs=0", "--config.train.log_every=1"]


def _env(tmp_path, **extra):
  return {**os.environ, "JAXREC_CACHE": str(tmp_path / "cache"), "PYTHON": sys.executable,
          "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", **extra}


def one_device(tmp_path, workdir, *flags):
  return subprocess.run([sys.executable, "-m", "jaxrec.main", f"--config={DEMO}", f"--workdir={workdir}",
                         *FAST, *flags], capture_output=True, text=True, cwd=ROOT, timeout=600,
                        env=_env(tmp_path, XLA_FLAGS=""))


def launch_argv(workdir, *flags):
  return ["bash", str(LAUNCH), "--local", "2", "--", f"--config={DEMO}", f"--workdir={workdir}", *FAST, *flags]


def two_processes(tmp_path, workdir, *flags):
  return subprocess.run(launch_argv(workdir, *flags), capture_output=True, text=True, cwd=ROOT,
                        timeout=600, env=_env(tmp_path))


def results(workdir):
  return json.loads((workdir / "results.json").read_text())


def steps_logged(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines() if (workdir / "metrics.jsonl").exists() else []
  return [r["step"] for r in map(_json_or_none, lines) if r and "loss" in r]


def _json_or_none(line):
  try:
    return json.loads(line)
  except json.JSONDecodeError:   # a line being written
    return None


def digest(folder: pathlib.Path) -> dict:
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_metrics(a: dict, b: dict, tol=1e-4):
  assert a.keys() == b.keys()
  for k in a:
    assert abs(a[k] - b[k]) <= tol, (k, a[k], b[k])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The same run on 1 device, and as 2 processes x 4 devices, uninterrupted."""
  tmp = tmp_path_factory.mktemp("reference")
  single = one_device(tmp, tmp / "one")
  assert single.returncode == 0, single.stderr[-3000:]
  multi = two_processes(tmp, tmp / "two")
  assert multi.returncode == 0, multi.stderr[-3000:]
  return tmp / "one", tmp / "two", multi


def test_two_processes_give_the_single_device_results(reference):
  one, two, proc = reference
  a, b = results(one), results(two)
  assert_same_metrics(a["test"], b["test"])
  assert_same_metrics(a["popularity_test"], b["popularity_test"], tol=0)
  assert a["best_step"] == b["best_step"] and b["total_steps"] == 36
  for h1, h2 in zip(a["valid_history"], b["valid_history"], strict=True):
    assert_same_metrics(h1, h2)
  # Only process 0 wrote: each step logged once, one summary, one manifest per checkpoint.
  assert steps_logged(two) == list(range(1, 37))
  assert proc.stdout.count("test metrics at that step") == 1
  assert "[process 1]" in proc.stderr and "[process 1] best step" not in proc.stderr
  step_dirs = [p for p in (two / "checkpoints").iterdir() if p.name.isdigit()]
  assert [p.name for p in step_dirs] == ["36"] and (step_dirs[0] / "jaxrec-manifest.json").exists()


def test_sigterm_reaches_every_process_and_the_rerun_equals_uninterrupted(tmp_path, reference):
  _, two, _ = reference
  workdir = tmp_path / "wd"
  proc = subprocess.Popen(launch_argv(workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT, env=_env(tmp_path))
  deadline = time.monotonic() + 900   # start-up alone can take minutes on a busy machine
  while len(steps_logged(workdir)) < 18:
    assert proc.poll() is None and time.monotonic() < deadline, "the run ended or hung before step 18"
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)   # the launcher passes it to both processes
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 143, err[-3000:]
  lines = [l for l in err.splitlines() if "stopped by SIGTERM" in l]
  assert len(lines) == 2, err[-3000:]   # both processes, the same step
  stopped = {l.split("after step ")[1].split()[0] for l in lines}
  assert len(stopped) == 1 and 18 <= int(stopped.pop()) < 36
  assert "run the same command again to resume" in lines[0]
  rerun = two_processes(tmp_path, workdir)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert_same_metrics(results(workdir)["test"], results(two)["test"], tol=0)
  assert steps_logged(workdir) == list(range(1, 37))


def test_damaged_checkpoint_is_a_clear_error_and_stays_untouched(tmp_path, reference):
  _, two, _ = reference
  workdir = tmp_path / "wd"
  shutil.copytree(two, workdir)
  (workdir / "results.json").unlink()   # as if killed before the test stage
  target = workdir / "checkpoints" / "36" / "state" / "_METADATA"
  target.write_bytes(target.read_bytes()[:50])
  before = digest(workdir)
  proc = two_processes(tmp_path, workdir)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if "error: checkpoint file" in l]
  assert errors and "is damaged (50 bytes" in errors[0] and "Traceback" not in proc.stderr
  assert digest(workdir) == before


# ----------------------------------------------------------------------------
# Settings: config.dist, the launcher's variables, and their errors.
# ----------------------------------------------------------------------------

def _config(**dist) -> ml_collections.ConfigDict:
  c = config_lib.base_config()
  c.dist.update(dist)
  return c


def test_settings_come_from_config_then_environment(monkeypatch):
  monkeypatch.delenv(distributed.ENV_COORDINATOR, raising=False)
  assert distributed.settings(_config()).coordinator in ("", "auto")   # "auto" only on a TPU VM
  monkeypatch.setenv(distributed.ENV_COORDINATOR, "localhost:1234")
  monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "2")
  monkeypatch.setenv(distributed.ENV_PROCESS_ID, "1")
  assert distributed.settings(_config()) == distributed.Settings("localhost:1234", 2, 1)
  assert distributed.settings(_config(coordinator="h:9", num_processes=4, process_id=3)) == \
      distributed.Settings("h:9", 4, 3)


@pytest.mark.parametrize("env,needle", [
    ({"JAXREC_COORDINATOR": "localhost:1234"}, "needs the number of processes"),
    ({"JAXREC_COORDINATOR": "localhost:1234", "JAXREC_NUM_PROCESSES": "2", "JAXREC_PROCESS_ID": "2"},
     "got 2 and 2"),
    ({"JAXREC_COORDINATOR": "localhost:1234", "JAXREC_NUM_PROCESSES": "two"}, "must be an integer"),
])
def test_incomplete_settings_are_one_clear_error(monkeypatch, env, needle):
  for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
    monkeypatch.delenv(name, raising=False)
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  with pytest.raises(JaxrecError, match=needle):
    distributed.settings(_config())


def test_process_id_must_be_below_the_process_count():
  with pytest.raises(JaxrecError, match="process_id=2 must be below"):
    config_lib.validate(_config(num_processes=2, process_id=2))


def test_dist_is_not_part_of_the_run_identity():
  c = json.loads(_config(coordinator="h:1", num_processes=2, process_id=1).to_json_best_effort())
  d = json.loads(_config().to_json_best_effort())
  assert c != d and config_lib.run_identity(c) == config_lib.run_identity(d)


def test_a_coordinator_nobody_answers_is_one_clear_error(tmp_path):
  """Process 1 of 2 with no process 0: a one-line error after the timeout, exit 2."""
  proc = subprocess.run(
      [sys.executable, "-m", "jaxrec.main", f"--config={DEMO}", f"--workdir={tmp_path / 'wd'}", *FAST,
       "--config.dist.coordinator=localhost:1", "--config.dist.num_processes=2",
       "--config.dist.process_id=1", "--config.dist.timeout_seconds=2"],
      capture_output=True, text=True, cwd=ROOT, timeout=120, env=_env(tmp_path, XLA_FLAGS=""))
  assert proc.returncode == 2, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: jax.distributed.initialize(localhost:1) failed as process 1 of 2")
  assert not (tmp_path / "wd").exists()
