"""Caps glibc's malloc arenas for runs that stream their input (data.input=grain|stream).

array_record's bulk reads run on a thread pool, and glibc gives each thread a
malloc arena of its own (up to 8 per core) that keeps the buffers it freed, so
a process reading array_record grows by arenas, not by what it holds: 70 MB
against 20 MB for a grain input over an array_record users split at 200k users
(experiments/results/grain_input_mallopt.json). jaxrec's own streamed runs now
read array_record only while loading or copying it (data/stream_split.py), but
a GrainInput over an array_record source of your own reads it all along: call
`cap()` first. MALLOC_ARENA_MAX=2 in the environment does the same but must be
set before Python starts; `mallopt(M_ARENA_MAX, n)` works from inside the
process if it runs before the process has used more than 8 arenas (glibc then
fixes its limit), so the entry points call it before importing anything else.
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
