"""The prefetcher returns exactly the wrapped function's batches, computed ahead on one thread."""

import threading
import time

import numpy as np
import pytest

from jaxrec.data import prefetch


class Recorder:
  """batch_at(step) = step's array; records (step, thread) of every call and never runs twice at once."""

  def __init__(self, delay: float = 0.0):
    self.calls, self.delay, self._busy = [], delay, threading.Lock()

  def __call__(self, step: int):
    assert self._busy.acquire(blocking=False), "called concurrently"
    try:
      time.sleep(self.delay)
      self.calls.append((step, threading.current_thread().name))
      if step == 13:
        raise ValueError("bad step 13")
      return np.full(3, step)
    finally:
      self._busy.release()


def test_same_batches_as_direct_calls_across_a_resume_jump():
  rec = Recorder()
  p = prefetch.Prefetched(rec, depth=2)
  for step in [0, 1, 2, 3, 7, 8, 9, 2, 3]:          # a jump ahead and one back (a resumed run)
    np.testing.assert_array_equal(p(step), np.full(3, step))
  p.close()
  assert all(name.startswith("jaxrec-input") for _, name in rec.calls)


def test_next_steps_are_computed_before_they_are_asked_for():
  rec = Recorder(delay=0.05)
  p = prefetch.Prefetched(rec, depth=2)
  p(0)
  deadline = time.monotonic() + 30                 # the worker runs ahead while "the device steps"
  while len(rec.calls) < 3 and time.monotonic() < deadline:
    time.sleep(0.01)
  assert [s for s, _ in rec.calls] == [0, 1, 2]    # 1 and 2 done before anyone asked for them
  p(1)
  assert [s for s, _ in rec.calls][:3] == [0, 1, 2]   # step 1 was not computed again
  p.close()


def test_an_error_is_raised_by_the_call_that_asks_for_that_step():
  p = prefetch.Prefetched(Recorder(), depth=3)
  p(11)                                            # 12, 13, 14 submitted; 13 fails on the thread
  p(12)
  with pytest.raises(ValueError, match="bad step 13"):
    p(13)
  np.testing.assert_array_equal(p(14), np.full(3, 14))
  p.close()
  with pytest.raises(ValueError, match="depth"):
    prefetch.Prefetched(Recorder(), depth=0)
