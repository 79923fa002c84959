"""The command line on bad input: one clear line, exit 2, nothing in the workdir."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_main(tmp_path, *overrides):
  workdir = tmp_path / "wd"
  env = {**os.environ, "JAXREC_CACHE": str(tmp_path / "cache"), "XLA_FLAGS": ""}
  proc = subprocess.run(
      [sys.executable, "-m", "jaxrec.main", f"--config={ROOT / 'configs' / 'demo.py'}",
       f"--workdir={workdir}", *overrides],
      capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
  return proc, workdir


def test_missing_data_folder(tmp_path):
  proc, workdir = run_main(tmp_path, "--config.data.kind=lcrec_json",
                           f"--config.data.path={tmp_path / 'nope'}")
  assert proc.returncode == 2, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "nope" in last
  assert "Traceback" not in proc.stderr
  assert not workdir.exists()


def test_malformed_json_line(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  (data / "Toy.item.json").write_text(json.dumps({"0": {"title": "a"}, "1": {"title": "b"}}))
  (data / "Toy.inter.json").write_text('{\n  "0": [0, 1, 0],\n  "1": [1, 0 1]\n}\n')
  proc, workdir = run_main(tmp_path, "--config.data.kind=lcrec_json", f"--config.data.path={data}")
  assert proc.returncode == 2, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and "Toy.inter.json" in last and "line 3" in last
  assert not workdir.exists()


def test_unknown_config_key(tmp_path):
  proc, workdir = run_main(tmp_path, "--config.model.nonsense=3")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "error: --config.model.nonsense: unknown config key 'nonsense' "
      "(every key is in jaxrec/config.py; see --help)"]
  assert not workdir.exists()


def test_bad_config_value(tmp_path):
  proc, workdir = run_main(tmp_path, "--config.model.item_input=words")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: config.model.item_input='words' is not one of ('content', 'id', 'fusion')")
  assert not workdir.exists()
