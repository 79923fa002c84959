"""Real data (../shared/data): on Amazon Office the SASRec-equivalent learns what
RecBole's SASRec learns, and frozen MiniLM content + IDs beats IDs alone, at
the same short training budget (validation only; test is for reports).

Each run is the command line a user types, in its own process (1 device),
so it also checks the named recipes end to end."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory):
  cache = tmp_path_factory.mktemp("office-ceg-cache")
  env = {**os.environ, "JAXREC_CACHE": str(cache), "XLA_FLAGS": ""}
  out = {}
  for variant in ("sasrec", "learn"):
    wd = tmp_path_factory.mktemp(variant) / "wd"
    proc = subprocess.run(
        [sys.executable, "-m", "jaxrec.main", f"--config={ROOT / 'configs' / 'office.py'}:{variant}",
         f"--workdir={wd}", f"--config.data.path={shared_data / 'amazon-office'}",
         "--config.train.num_epochs=12", "--config.train.eval_every_epochs=12",
         "--config.train.checkpoint=False"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out[variant] = json.loads((wd / "results.json").read_text())
  return out


def test_sasrec_equivalent_learns_office(runs):
  # RecBole's SASRec reaches valid NDCG@10 0.057 after 6 of its epochs (0.069 after 8);
  # ours logged 0.063 after 12 epochs. Popularity is at 0.0004.
  assert runs["sasrec"]["valid"]["NDCG@10"] > 0.05
  assert runs["sasrec"]["valid"]["NDCG@10"] > 20 * runs["sasrec"]["popularity_test"]["NDCG@10"]


def test_content_plus_id_beats_id_alone_on_validation(runs):
  assert runs["learn"]["valid"]["NDCG@10"] > 1.05 * runs["sasrec"]["valid"]["NDCG@10"]
