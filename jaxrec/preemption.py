"""SIGTERM and Ctrl-C: save a checkpoint at the current step, then stop with one line.

SIGTERM is how TPU VMs and most schedulers pre-empt a job, and Ctrl-C
(SIGINT) is how a person stops one. During training (`StopOnSignal`, around
the training loop) either signal only sets a flag; the loop finishes the step
it is in, saves a checkpoint at that step and raises `Stopped`, which the
command line prints as one line saying how to resume, exiting with
128 + the signal number (143 for SIGTERM, 130 for SIGINT: the shell's
convention for "ended by that signal", so a job script can tell "stopped,
resumable" from "finished" (0) and from bad input (2)). A second signal while
the checkpoint is written stops at once (`Interrupted`).

Outside the loop (data loading, CEG, the final test), `interrupt_on_signals`
makes both signals raise `Interrupted` (a KeyboardInterrupt), which the
command line prints as one line too; CEG keeps the store chunks it has written.
Python swallows an exception raised while it runs a garbage-collection callback
or a `__del__` (JAX registers one), printing "Exception ignored in ..." and
carrying on; `interrupt_on_signals` therefore also catches a swallowed
`Interrupted` in `sys.unraisablehook` and keeps its signal pending, and
`raise_pending` (before each CEG batch, at every stage boundary and when the
training loop starts) raises it, so a signal is never lost.
"""

import pathlib
import signal
import sys
import threading
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_code(signum: int) -> int:
  return 128 + int(signum)


class Interrupted(KeyboardInterrupt):
  """A signal outside the training loop (or a second one inside it)."""

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum
    self.exit_code = exit_code(signum)


class Stopped(Exception):
  """Training stopped on a signal after saving; str() is the one-line message."""

  def __init__(self, message: str, signum: int, step: int):
    super().__init__(message)
    self.signum = signum
    self.step = step
    self.exit_code = exit_code(signum)


def _raise_interrupted(signum, frame):  # noqa: ARG001
  raise Interrupted(signum)


def _in_main_thread() -> bool:
  return threading.current_thread() is threading.main_thread()


_pending: list[int] = []   # signals whose Interrupted Python swallowed (see the module docstring)


def _keep_swallowed(previous_hook):
  def hook(unraisable) -> None:
    if isinstance(unraisable.exc_value, Interrupted):
      _pending.append(unraisable.exc_value.signum)
    else:
      previous_hook(unraisable)
  hook.keeps_interrupted = True
  return hook


def interrupt_on_signals() -> None:
  """SIGTERM and SIGINT raise Interrupted (call once, from the main thread)."""
  if _in_main_thread():
    _pending.clear()
    if not getattr(sys.unraisablehook, "keeps_interrupted", False):
      sys.unraisablehook = _keep_swallowed(sys.unraisablehook)
    for s in SIGNALS:
      signal.signal(s, _raise_interrupted)


def raise_pending() -> None:
  """Raises Interrupted for a signal whose first Interrupted was swallowed, if any."""
  if _pending:
    signum = _pending[0]
    _pending.clear()
    raise Interrupted(signum)


class StopOnSignal:
  """Within `with StopOnSignal() as stop:`, a SIGTERM/SIGINT sets `stop.signum`
  instead of interrupting; the previous handlers come back on exit. Outside the
  main thread (where Python cannot install handlers) it never triggers."""

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  @property
  def requested(self) -> bool:
    return self.signum is not None

  def _handle(self, signum, frame):  # noqa: ARG002
    if self.signum is not None:   # a second signal: stop now, without saving
      raise Interrupted(signum)
    self.signum = signum

  def __enter__(self) -> "StopOnSignal":
    raise_pending()
    if _in_main_thread():
      for s in SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, signal.SIG_DFL if handler is None else handler)
    self._previous.clear()


def stop(stop_signal: StopOnSignal, step: int, total_steps: int, ckpt, tree: Any, record: dict,
         checkpoint_dir: pathlib.Path) -> Stopped:
  """Saves a checkpoint at `step` (unless one is there) and returns the Stopped to raise."""
  name = signal.Signals(stop_signal.signum).name
  if ckpt is None:
    return Stopped(f"stopped by {name} after step {step} of {total_steps}; nothing was saved "
                   "(config.train.checkpoint=False), so running again starts over",
                   stop_signal.signum, step)
  if ckpt.latest_step() != step:
    ckpt.save(step, tree, record)
  ckpt.close()
  return Stopped(f"stopped by {name} after step {step} of {total_steps}; checkpoint saved in "
                 f"{checkpoint_dir}; run the same command again to resume",
                 stop_signal.signum, step)
