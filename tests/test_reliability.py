"""Reliability through the command line, where a user meets it (issue 6): bad
input and damaged files give one line and exit 2 and leave the workdir and cache
as they were; NaN never scores; SIGTERM/Ctrl-C save at the current step and a
resumed run equals an uninterrupted one; nothing is overwritten or repeated."""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The paper-faithful demo recipe: a fixed step count (no early stopping) for these tests.
DEMO = str(ROOT / "configs" / "demo.py") + ":paper"
# The ID model on a small synthetic demo: no CEG, seconds per run.
TINY = ["--config.model.item_input=id", "--config.data.demo_users=200",
        "--config.data.demo_items=100"]
# 120 steps, validated at 50, 100, 120, a log line per step: room to signal mid-run.
LONG = [*TINY, "--config.train.batch_size=16", "--config.train.num_epochs=10",
        "--config.train.eval_every=50", "--config.train.eval_every_epochs=0",
        "--config.train.log_every=1"]


def _env(tmp_path, **extra):
  return {**os.environ, "JAXREC_CACHE": str(tmp_path / "cache"), "XLA_FLAGS": "", **extra}


def cli(tmp_path, workdir, *args, config=DEMO, env=None):
  argv = [sys.executable, "-m", "jaxrec.main", f"--workdir={workdir}", *args]
  if config is not None:
    argv.insert(3, f"--config={config}")
  return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                        env=env or _env(tmp_path), timeout=300)


def one_line_error(proc, *needles) -> str:
  """Exit 2 and exactly one line on stderr ("error: ..."), no traceback."""
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
  for n in needles:
    assert n in lines[0], lines[0]
  return lines[0]


def last_line_error(proc, *needles) -> str:
  """Exit 2 after the run started (progress on stderr): the last line is the error."""
  assert proc.returncode == 2, proc.stderr
  assert "Traceback" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), proc.stderr
  for n in needles:
    assert n in last, last
  return last


def digest(folder: pathlib.Path) -> dict:
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def metrics_log(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------
# Config: keys, values, files, --help.
# ----------------------------------------------------------------------------

def test_config_key_typo_is_one_line_with_the_hint(tmp_path):
  proc = cli(tmp_path, tmp_path / "wd", "--config.model.num_head=4")
  one_line_error(proc, "--config.model.num_head", 'did you mean "num_heads"')
  assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("override,needle", [
    ("--config.model.num_heads=0", "config.model.num_heads=0 must be an integer >= 1"),
    ("--config.seed=-1", "config.seed=-1 must be an integer in [0, 4294967295]"),
    ("--config.eval.user_chunk=0", "config.eval.user_chunk=0 must be an integer >= 1"),
    ("--config.model.dropout=1.5", "config.model.dropout=1.5 must be a number in [0.0, 1.0)"),
    ("--config.eval.ks=(10,abc)", "config.eval.ks=('(10,abc)',) must be a non-empty tuple"),
    ("--config.ceg.max_tokens=0", "config.ceg.max_tokens=0 must be an integer >= 2"),
    ("--config.train.num_epochs=2.5", "--config.train.num_epochs=2.5"),
])
def test_bad_config_value_is_one_line_before_any_work(tmp_path, override, needle):
  one_line_error(cli(tmp_path, tmp_path / "wd", override), needle)
  assert not (tmp_path / "wd").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("content,needle", [
    (None, "file not found"),
    ("x = 1\n", "has no get_config() function"),
    ("def get_config(:\n", "could not be loaded (line 1): SyntaxError"),
    ("def get_config():\n  return None\n", "returned NoneType"),
    ("def get_config():\n  raise RuntimeError('boom')\n", "get_config() failed: RuntimeError: boom"),
])
def test_bad_config_file_is_one_line(tmp_path, content, needle):
  path = tmp_path / "my_config.py"
  if content is not None:
    path.write_text(content)
  one_line_error(cli(tmp_path, tmp_path / "wd", config=str(path)), needle)
  assert not (tmp_path / "wd").exists()


def test_missing_flags_and_stray_arguments_are_one_line(tmp_path):
  one_line_error(cli(tmp_path, tmp_path / "wd", config=None), "--config")
  one_line_error(cli(tmp_path, tmp_path / "wd", "stray"), "unexpected arguments: stray")
  one_line_error(cli(tmp_path, tmp_path / "wd", "--nosuchflag=1"), "nosuchflag")


def test_help_explains_overrides_and_lists_sections(tmp_path):
  proc = cli(tmp_path, tmp_path / "wd", "--help")
  assert proc.returncode == 0, proc.stderr
  assert "--config.SECTION.KEY=VALUE" in proc.stdout and "--overwrite" in proc.stdout
  for section in ("data", "ceg", "model", "loss", "train", "eval", "mesh"):
    assert f"\n  {section} " in proc.stdout
  assert "learning_rate" in proc.stdout and "143" in proc.stdout


# ----------------------------------------------------------------------------
# Workdir and cache: checked before any work.
# ----------------------------------------------------------------------------

@pytest.fixture
def read_only(tmp_path):
  """Makes folders read-only for this process, also as root (chattr +i)."""
  made = []
  def make(folder: pathlib.Path):
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    made.append(folder)
    probe = folder / "probe"
    try:
      probe.touch()
    except OSError:
      return folder
    probe.unlink()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
      pytest.skip("cannot make a read-only folder here (root without chattr)")
    return folder
  yield make
  for folder in made:
    subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)


def test_workdir_that_is_a_file(tmp_path):
  (tmp_path / "wd").write_text("my notes")
  one_line_error(cli(tmp_path, tmp_path / "wd", *TINY), "workdir", "is a file, not a folder")
  assert (tmp_path / "wd").read_text() == "my notes"


def test_read_only_workdir(tmp_path, read_only):
  wd = read_only(tmp_path / "wd")
  one_line_error(cli(tmp_path, wd, *TINY), f"workdir {wd} is not writable")
  one_line_error(cli(tmp_path, wd / "sub", *TINY), "cannot be created", "is not writable")
  assert list(wd.iterdir()) == []


def test_unwritable_cache_is_found_before_data_loading(tmp_path, read_only):
  cache = read_only(tmp_path / "ro")
  proc = cli(tmp_path, tmp_path / "wd", env=_env(tmp_path, JAXREC_CACHE=str(cache)))
  one_line_error(proc, "embedding cache folder", "JAXREC_CACHE")
  assert not (tmp_path / "wd").exists()
  (tmp_path / "cachefile").write_text("")
  proc = cli(tmp_path, tmp_path / "wd", "--config.ceg.cache_dir=" + str(tmp_path / "cachefile"))
  one_line_error(proc, "is a file, not a folder")


# ----------------------------------------------------------------------------
# NaN, overwriting, damaged files.
# ----------------------------------------------------------------------------

def test_nan_model_never_scores_and_the_suggested_rerun_works(tmp_path):
  wd = tmp_path / "wd"
  proc = cli(tmp_path, wd, *TINY, "--config.train.learning_rate=1e12", "--config.train.eval_every=2")
  last = last_line_error(proc, "parameters became NaN/inf", "nothing from this step was "
                         "checkpointed or selected as best", "--overwrite")
  assert "valid NDCG@10=1.0000" not in proc.stdout
  assert not any(r.get("valid", {}).get("NDCG@10") == 1.0 for r in metrics_log(wd))
  assert not (wd / "results.json").exists()
  # The message's advice: a lower learning rate, on the same workdir with --overwrite.
  one_line_error(cli(tmp_path, wd, *TINY, "--config.train.num_epochs=1"), "different config",
                 "train.learning_rate", "--overwrite")
  proc = cli(tmp_path, wd, *TINY, "--config.train.num_epochs=1", "--overwrite")
  assert proc.returncode == 0, proc.stderr
  results = json.loads((wd / "results.json").read_text())
  assert results["config"]["train"]["learning_rate"] == 1e-3 and results["test"]["NDCG@10"] < 1.0
  del last


def test_checkpointing_off_never_overwrites_another_configs_results(tmp_path):
  wd = tmp_path / "wd"
  off = [*TINY, "--config.train.checkpoint=False", "--config.train.num_epochs=1"]
  assert cli(tmp_path, wd, *off).returncode == 0
  before = digest(wd)
  one_line_error(cli(tmp_path, wd, *off, "--config.train.learning_rate=1e-2"),
                 "holds a run of a different config", "train.learning_rate: 0.001 -> 0.01",
                 "--overwrite")
  assert digest(wd) == before
  proc = cli(tmp_path, wd, *off, "--config.train.learning_rate=1e-2", "--overwrite")
  assert proc.returncode == 0, proc.stderr
  assert json.loads((wd / "results.json").read_text())["config"]["train"]["learning_rate"] == 1e-2
  assert not (wd / "checkpoints").exists()


def test_damaged_embedding_cache_is_recomputed_with_a_warning(tmp_path):
  """A truncated entry (zero-byte, garbage and the rest: tests/llm/test_embed.py). The
  rerun resumes the finished checkpoint, so it only redoes CEG and the test."""
  small = ["--config.data.demo_users=100", "--config.data.demo_items=40",
           "--config.train.num_epochs=1"]
  wd = tmp_path / "wd"
  assert cli(tmp_path, wd, *small).returncode == 0
  (entry,) = (tmp_path / "cache" / "embeddings").glob("*/chunks/*.npy")  # 40 items: one chunk
  good, test = entry.read_bytes(), json.loads((wd / "results.json").read_text())["test"]
  entry.write_bytes(good[:len(good) // 3])
  proc = cli(tmp_path, wd, *small)
  assert proc.returncode == 0, proc.stderr
  warnings = [l for l in proc.stderr.splitlines() if "are damaged" in l]
  assert len(warnings) == 1 and "recomputing" in warnings[0] and str(entry) in warnings[0]
  assert entry.read_bytes() == good                 # recomputed, bit for bit
  assert json.loads((wd / "results.json").read_text())["test"] == test


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The reference: LONG run start to finish."""
  tmp = tmp_path_factory.mktemp("reference")
  proc = cli(tmp, tmp / "wd", *LONG)
  assert proc.returncode == 0, proc.stderr
  return tmp / "wd", proc


@pytest.mark.parametrize("damage,named", [
    ("truncate state/_METADATA", "state/_METADATA"),
    ("remove state/_METADATA", "state/_METADATA"),
    ("truncate record/metadata", "record/metadata"),
    ("remove record/metadata", "record/metadata"),
])
def test_damaged_checkpoint_is_one_line_and_kept(tmp_path, uninterrupted, damage, named):
  wd = tmp_path / "wd"
  shutil.copytree(uninterrupted[0], wd)
  how, rel = damage.split(" ")
  path = wd / "checkpoints" / "120" / rel
  if how == "truncate":
    path.write_bytes(path.read_bytes()[:50])
  else:
    path.unlink()
  before = digest(wd)
  one_line_error(cli(tmp_path, wd, *LONG), f"checkpoints/120/{named}", "--overwrite",
                 f"delete {wd / 'checkpoints'}")
  assert digest(wd) == before


def test_results_end_with_metrics_in_k_order_best_step_and_popularity(uninterrupted):
  wd, proc = uninterrupted
  results = json.loads((wd / "results.json").read_text())
  lines = proc.stdout.strip().splitlines()[-5:]
  assert lines[0].startswith(f"best step {results['best_step']} of 120")
  assert lines[1].split() == ["HR@10", "HR@50", "HR@200", "NDCG@10", "NDCG@50", "NDCG@200"]
  test = [f"{results['test'][k]:.4f}" for k in lines[1].split()]
  pop = [f"{results['popularity_test'][k]:.4f}" for k in lines[1].split()]
  assert lines[2].split() == ["test", *test] and lines[3].split() == ["popularity", *pop]
  assert lines[4] == f"results: {wd}/results.json"


# ----------------------------------------------------------------------------
# Signals and crashes.
# ----------------------------------------------------------------------------

def _start(tmp_path, wd):
  return subprocess.Popen([sys.executable, "-m", "jaxrec.main", f"--config={DEMO}",
                           f"--workdir={wd}", *LONG], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env(tmp_path))


def _wait_for_step(proc, wd, step, timeout=120.0):
  """Polls metrics.jsonl until it logs `step` (training is running)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      pytest.fail(f"the run ended before step {step}: {proc.stderr.read()[-2000:]}")
    log = wd / "metrics.jsonl"
    if log.exists() and any(json.loads(l)["step"] >= step
                            for l in log.read_text().splitlines() if l.endswith("}")):
      return
    time.sleep(0.01)
  pytest.fail(f"no step {step} within {timeout} s")


def _stop_with(proc, wd, sig) -> int:
  """Sends `sig` once training runs; checks the one-line exit; returns the saved step."""
  _wait_for_step(proc, wd, 3)
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 128 + sig, err
  assert "Traceback" not in err and "KeyboardInterrupt" not in err
  last = err.strip().splitlines()[-1]
  assert last.startswith(f"stopped by {signal.Signals(sig).name} after step "), last
  assert last.endswith("run the same command again to resume"), last
  step = int(last.split("after step ")[1].split()[0])
  assert 3 <= step < 50                                    # the current step, not a validation step
  assert [p.name for p in (wd / "checkpoints").iterdir()] == [str(step)]
  assert max(r["step"] for r in metrics_log(wd)) == step
  return step


def test_ctrl_c_saves_at_the_current_step(tmp_path):
  _stop_with(_start(tmp_path, tmp_path / "wd"), tmp_path / "wd", signal.SIGINT)


def test_sigterm_then_a_crash_then_resume_equals_uninterrupted(tmp_path, uninterrupted):
  """SIGTERM saves at the current step and exits 143; the resumed run is then
  killed (SIGKILL: a crash, no handler runs) after its step-50 checkpoint, so the
  log holds steps no checkpoint covers; the next resume finishes. Results and the
  metrics log equal the uninterrupted run's: every step once, the same values."""
  wd = tmp_path / "wd"
  _stop_with(_start(tmp_path, wd), wd, signal.SIGTERM)
  proc = _start(tmp_path, wd)
  _wait_for_step(proc, wd, 55)
  proc.kill()
  proc.communicate(timeout=60)
  resumed = cli(tmp_path, wd, *LONG)
  assert resumed.returncode == 0, resumed.stderr
  ref = json.loads((uninterrupted[0] / "results.json").read_text())
  got = json.loads((wd / "results.json").read_text())
  for key in ("test", "valid", "best_step", "valid_history", "popularity_test"):
    assert got[key] == ref[key], key
  assert metrics_log(wd) == metrics_log(uninterrupted[0])


def test_max_tokens_beyond_the_model_is_one_line_before_any_work(tmp_path):
  proc = cli(tmp_path, tmp_path / "wd", "--config.ceg.max_tokens=600")
  one_line_error(proc, "config.ceg.max_tokens=600 is more than minilm's max_position_embeddings=512")
  assert not (tmp_path / "wd").exists()


def test_damaged_config_json_in_workdir_is_one_line(tmp_path):
  wd = tmp_path / "wd"
  wd.mkdir()
  (wd / "config.json").write_text("{")
  one_line_error(cli(tmp_path, wd, *TINY), f"{wd / 'config.json'} is damaged", "--overwrite")
  assert (wd / "config.json").read_text() == "{"


def test_sigterm_outside_training_is_one_line(tmp_path):
  """During CEG (before the training loop) SIGTERM interrupts at once, with one line."""
  proc = subprocess.Popen([sys.executable, "-m", "jaxrec.main", f"--config={DEMO}",
                           f"--workdir={tmp_path / 'wd'}", "--config.data.demo_users=100",
                           "--config.data.demo_items=40"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env(tmp_path))
  for line in proc.stderr:
    if "==== CEG" in line:
      break
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err
  assert "Traceback" not in err
  assert err.strip().splitlines()[-1] == ("interrupted by SIGTERM; run the same command again to "
                                          "continue from the last checkpoint (and the CEG cache)")
