"""Caps glibc's malloc arenas for runs that stream their input (data.input=grain|stream).

array_record's bulk reads run on a thread pool, and glibc gives each thread a
malloc arena of its own (up to 8 per core) that keeps the buffers it freed, so
a run reading the users split grows by arenas, not by what it holds
(experiments/results/grain_input_mallopt.json). MALLOC_ARENA_MAX=2 in the
environment avoids that but must be set before Python starts;
`mallopt(M_ARENA_MAX, n)` does the same from inside the process for the
threads that start after it, which is when the reader's threads start.
"""

import ctypes
import ctypes.util
import logging
import os

M_ARENA_MAX = -8     # glibc's malloc.h
DEFAULT_ARENAS = 2


def cap(arenas: int = DEFAULT_ARENAS) -> bool:
  """Caps malloc arenas at `arenas` from now on; False, changing nothing, where MALLOC_ARENA_MAX is
  set (the user's choice stands) or the C library is not glibc (no mallopt: macOS, musl)."""
  if os.environ.get("MALLOC_ARENA_MAX"):
    return False
  try:
    mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  return mallopt(M_ARENA_MAX, arenas) == 1


def cap_for(data_input: str) -> None:
  """What the entry points call first: caps the arenas (and logs it) when config.data.input streams."""
  if data_input != "memory" and cap():
    logging.getLogger(__name__).info("malloc arenas capped at %d for the streamed input (set "
                                     "MALLOC_ARENA_MAX to choose)", DEFAULT_ARENAS)
