"""experiments/tpu_vm/: every script's --dry-run prints real gcloud commands (the
syntax of `gcloud compute tpus queued-resources create` / `tpu-vm ssh` / delete) for a
one-host slice (v5e-8) and multi-host slices (v5e-32, v4-32)."""

import os
import pathlib
import shlex
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "experiments" / "tpu_vm"
SLICES = {  # accelerator type -> TPU software version, zone
    "v5litepod-8": ("v2-alpha-tpuv5-lite", "us-west4-a"),
    "v5litepod-32": ("v2-alpha-tpuv5-lite", "us-west4-a"),
    "v4-32": ("tpu-ubuntu2204-base", "us-central2-b"),
}
FLAGS = ["--config=configs/office.py", "--workdir=gs://my-bucket/office", "--config.eval.ks=(10, 50)"]


def dry_run(script: str, *args: str, **env: str) -> list[list[str]]:
  clean = {k: v for k, v in os.environ.items()
           if k not in ("TPU_NAME", "ZONE", "ACCELERATOR_TYPE", "RUNTIME_VERSION", "PROJECT",
                        "PROVISIONING", "QUEUED_RESOURCE", "WORKDIR_BUCKET", "DRY_RUN")}
  proc = subprocess.run(["bash", str(SCRIPTS / script), "--dry-run", *args], capture_output=True,
                        text=True, timeout=60, env={**clean, **env}, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr
  return [shlex.split(line) for line in proc.stdout.splitlines() if line.strip()]


def gcloud(commands, *verb):
  found = [c for c in commands if c[:len(verb)] == list(verb)]
  assert len(found) == 1, (verb, commands)
  return found[0]


def flag(command, name):
  values = [a.split("=", 1)[1] for a in command if a.startswith(f"{name}=")]
  assert len(values) == 1, (name, command)
  return values[0]


@pytest.mark.parametrize("accelerator", SLICES)
def test_run_prints_create_install_launch_and_delete(accelerator):
  runtime, zone = SLICES[accelerator]
  cmds = dry_run("run.sh", "--", *FLAGS, ACCELERATOR_TYPE=accelerator, WORKDIR_BUCKET="my-bucket",
                 TPU_NAME="rec", PROJECT="proj")
  create = gcloud(cmds, "gcloud", "compute", "tpus", "queued-resources", "create")
  assert create[5] == "rec-qr" and flag(create, "--node-id") == "rec"
  assert flag(create, "--accelerator-type") == accelerator
  assert flag(create, "--runtime-version") == runtime and flag(create, "--zone") == zone
  assert flag(create, "--project") == "proj" and "--spot" in create
  ssh = [c for c in cmds if c[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]]
  assert len(ssh) == 2   # install, launch
  for c in ssh:
    assert c[5] == "rec" and flag(c, "--worker") == "all" and flag(c, "--zone") == zone
  install, launch = (flag(c, "--command") for c in ssh)
  assert "pip install" in install and "'jax[tpu]'" in install and "gcsfuse --implicit-dirs my-bucket" in install
  assert "JAXREC_COORDINATOR=auto python3 -m jaxrec.main --config=configs/office.py" in launch
  assert "--workdir=$HOME/gcs/my-bucket/office" in launch and "'--config.eval.ks=(10, 50)'" in launch
  assert shlex.split(launch.split("python3 -m jaxrec.main", 1)[1].split("2>&1")[0])[1:] == [
      "--workdir=$HOME/gcs/my-bucket/office", "--config.eval.ks=(10, 50)"]
  scp = gcloud(cmds, "gcloud", "compute", "tpus", "tpu-vm", "scp")
  assert scp[6] == "rec:" and flag(scp, "--worker") == "all"
  delete = gcloud(cmds, "gcloud", "compute", "tpus", "queued-resources", "delete")
  assert delete[5] == "rec-qr" and "--force" in delete and flag(delete, "--zone") == zone


def test_best_effort_uses_the_alpha_command():
  cmds = dry_run("create.sh", PROVISIONING="best-effort", ACCELERATOR_TYPE="v5litepod-32")
  create = gcloud(cmds, "gcloud", "alpha", "compute", "tpus", "queued-resources", "create")
  assert "--best-effort" in create and "--spot" not in create


def test_local_dry_run_starts_n_processes_with_one_coordinator():
  cmds = dry_run("launch.sh", "--local", "3", "--", "--config=configs/demo.py", "--workdir=/tmp/w",
                 JAXREC_PORT="12345")
  assert len(cmds) == 3
  for i, c in enumerate(cmds):
    env = dict(a.split("=", 1) for a in c[1:] if "=" in a and not a.startswith("-"))
    assert env["JAXREC_COORDINATOR"] == "localhost:12345" and env["JAXREC_PROCESS_ID"] == str(i)
    assert env["JAXREC_NUM_PROCESSES"] == "3"
    assert c[-4:] == ["-m", "jaxrec.main", "--config=configs/demo.py", "--workdir=/tmp/w"]


def test_unknown_accelerator_is_one_clear_error():
  proc = subprocess.run(["bash", str(SCRIPTS / "create.sh"), "--dry-run"], capture_output=True, text=True,
                        env={**os.environ, "ACCELERATOR_TYPE": "tpu9"}, timeout=60)
  assert proc.returncode == 2 and "unknown accelerator type tpu9" in proc.stderr
