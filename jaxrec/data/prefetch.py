"""Computes training batches a few steps ahead on a background thread.

The batch of step s is a pure function of (seed, s) in every jaxrec input, so
computing it early changes nothing a run sees: the same batches, the same
resume. It only moves the host's input work (grain's block reads and packing)
off the training loop's thread, where it overlaps the device step that JAX
dispatches asynchronously. One worker thread: the wrapped function is never
called concurrently, so it need not be thread-safe.
"""

from collections.abc import Callable
from concurrent import futures
from typing import Any


class Prefetched:
  """`batch_at(step)` with steps step+1 .. step+depth already submitted to a worker thread.

  Any step may be asked for (a resume jumps); batches computed ahead for steps
  that are then skipped are dropped. An error in `batch_at` is raised by the
  call that asks for that step, not by the thread.
  """

  def __init__(self, batch_at: Callable[[int], Any], depth: int = 2):
    if depth < 1:
      raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    self._batch_at, self._depth = batch_at, depth
    self._pool = futures.ThreadPoolExecutor(1, thread_name_prefix="jaxrec-input")
    self._pending: dict[int, futures.Future] = {}

  def __call__(self, step: int) -> Any:
    future = self._pending.pop(step, None) or self._pool.submit(self._batch_at, step)
    for s in [s for s in self._pending if not step < s <= step + self._depth]:
      self._pending.pop(s).cancel()
    for s in range(step + 1, step + 1 + self._depth):
      if s not in self._pending:
        self._pending[s] = self._pool.submit(self._batch_at, s)
    return future.result()

  def close(self) -> None:
    """Stops the worker; pending batches are dropped."""
    self._pool.shutdown(wait=False, cancel_futures=True)
    self._pending.clear()
