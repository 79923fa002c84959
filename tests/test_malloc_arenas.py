"""malloc_arenas.cap: glibc's mallopt from inside the process, and jaxrec.main calling it for streamed
inputs only, never over the user's MALLOC_ARENA_MAX. In subprocesses: the cap is process-wide."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CAPPED = "malloc arenas capped at 2"


def _python(code: str, **env) -> str:
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                        env={**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}, **env},
                        timeout=120)
  assert proc.returncode == 0, proc.stderr
  return proc.stdout.strip()


def test_cap_calls_mallopt_unless_the_environment_chose():
  code = "from jaxrec import malloc_arenas; print(malloc_arenas.cap())"
  assert _python(code) == "True"                          # glibc (this Linux)
  assert _python(code, MALLOC_ARENA_MAX="4") == "False"   # the user's setting stands


def _main(tmp_path, *overrides, **env):
  """jaxrec.main up to the data stage: a missing data folder stops it there (exit 2)."""
  proc = subprocess.run(
      [sys.executable, "-m", "jaxrec.main", f"--config={ROOT / 'configs' / 'demo.py'}",
       f"--workdir={tmp_path / 'wd'}", "--config.data.kind=lcrec_json",
       f"--config.data.path={tmp_path / 'nowhere'}", *overrides],
      capture_output=True, text=True, cwd=ROOT, timeout=300,
      env={**{k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"},
           "JAXREC_CACHE": str(tmp_path / "cache"), "XLA_FLAGS": "", **env})
  assert proc.returncode == 2 and "data folder not found" in proc.stderr, proc.stderr
  return proc.stderr


def test_main_caps_arenas_for_streamed_inputs_only(tmp_path):
  assert CAPPED in _main(tmp_path, "--config.data.input=grain")
  assert CAPPED not in _main(tmp_path)                                        # data.input=memory
  assert CAPPED not in _main(tmp_path, "--config.data.input=grain", MALLOC_ARENA_MAX="8")
