"""configs/amazon_books.py through `python -m jaxrec.main`: the offline message, and `:small`
end to end on a sample in the real formats (written here)."""

import json
import os
import pathlib
import subprocess
import sys

from jaxrec.data import amazon_books, books_synthetic

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_main(tmp_path, variant, *overrides):
  workdir = tmp_path / "wd"
  env = {**os.environ, "JAXREC_CACHE": str(tmp_path / "cache"), "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)}
  proc = subprocess.run(
      [sys.executable, "-m", "jaxrec.main", f"--config={ROOT / 'configs' / 'amazon_books.py'}{variant}",
       f"--workdir={workdir}", *overrides], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
  return proc, workdir


def test_offline_without_files_one_message_with_exact_paths(tmp_path):
  proc, workdir = run_main(tmp_path, "", f"--config.data.path={tmp_path / 'books'}", "--config.ceg.model=minilm")
  assert proc.returncode == 2, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  for name in (amazon_books.RATINGS_FILE, amazon_books.META_FILE):
    assert str(tmp_path / "books" / name) in last and amazon_books.URLS[name] in last
  assert "Traceback" not in proc.stderr and not workdir.exists()


def test_offline_without_files_or_the_llm_names_both_data_first(tmp_path):
  """The default config's LLM folder (absent here) is named after the data files, in the same
  message, so a new user is not sent to fetch 14 GB of weights before learning the data is missing."""
  model = tmp_path / "no-llm"
  proc, workdir = run_main(tmp_path, "", f"--config.data.path={tmp_path / 'books'}", f"--config.ceg.model={model}")
  assert proc.returncode == 2, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.index(amazon_books.RATINGS_FILE) < last.index(str(model)), last
  assert "Also: content model folder not found" in last and not workdir.exists()


def test_small_variant_end_to_end(tmp_path):
  data = books_synthetic.write_sample(tmp_path / "books", num_ratings=2500, num_users=150, num_items=60)
  proc, workdir = run_main(tmp_path, ":small", f"--config.data.path={data}", "--config.train.num_epochs=1",
                           "--config.data.max_text_chars=64", "--config.ceg.max_tokens=24")
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["config"]["data"]["kind"] == "amazon_books"
  assert results["config"]["loss"]["negatives"] == "mixed"
  assert 0.0 <= results["test"]["HR@10"] <= 1.0 and results["dataset"]["items"] > 10
