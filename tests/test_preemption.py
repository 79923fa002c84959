"""Signals during training: a flag, a save at the current step, a second signal stops at once."""

import os
import pathlib
import signal
import subprocess
import sys

import jax.numpy as jnp
import pytest

from jaxrec import preemption
from jaxrec.checkpoints import RunCheckpoints


def test_signal_sets_the_flag_and_handlers_come_back():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.StopOnSignal() as stop:
    assert not stop.requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested and stop.signum == signal.SIGTERM
    with pytest.raises(preemption.Interrupted) as e:   # a second signal: stop now
      os.kill(os.getpid(), signal.SIGINT)
    assert e.value.exit_code == 130
  assert signal.getsignal(signal.SIGTERM) is before


def test_stop_saves_the_current_step_once(tmp_path):
  ckpt = RunCheckpoints(tmp_path / "checkpoints")
  tree, record = {"w": jnp.ones(3)}, {"config": {}, "best": {"step": 0, "valid": None, "history": []}}
  ckpt.save(5, tree, record)            # a validation step: its save may still be in flight
  stop = preemption.StopOnSignal()
  stop.signum = signal.SIGTERM
  stopped = preemption.stop(stop, 5, 30, ckpt, tree, record, tmp_path / "checkpoints")
  assert stopped.exit_code == 143 and stopped.step == 5
  assert str(stopped) == (f"stopped by SIGTERM after step 5 of 30; checkpoint saved in "
                          f"{tmp_path / 'checkpoints'}; run the same command again to resume")
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["5"]
  ckpt = RunCheckpoints(tmp_path / "checkpoints")
  stop.signum = signal.SIGINT
  preemption.stop(stop, 7, 30, ckpt, tree, record, tmp_path / "checkpoints")
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["7"]


def test_stop_without_checkpointing_says_nothing_was_saved():
  stop = preemption.StopOnSignal()
  stop.signum = signal.SIGINT
  stopped = preemption.stop(stop, 3, 30, None, None, None, None)
  assert "nothing was saved (config.train.checkpoint=False)" in str(stopped)
  assert stopped.exit_code == 130


SWALLOWED = """
import os, signal, time
from jaxrec import preemption
preemption.interrupt_on_signals()
class Collected:
  def __del__(self):   # as JAX's gc callback: Python swallows what is raised here
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)    # the handler runs (and raises) inside this method
Collected()
print("carried on", flush=True)
try:
  with preemption.StopOnSignal():
    print("trained", flush=True)
except preemption.Interrupted as e:
  print("interrupted by", e.signum, flush=True)
"""


def test_a_signal_python_swallows_is_raised_at_the_next_stage():
  """SIGTERM raised inside a __del__ (Python ignores it there) is not lost: the
  training loop's start raises it, and nothing is printed for the swallowed one."""
  proc = subprocess.run([sys.executable, "-c", SWALLOWED], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1])})
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == ["carried on", f"interrupted by {int(signal.SIGTERM)}"]
  assert "Exception ignored" not in proc.stderr
