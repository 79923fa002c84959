"""The chunked CEG store: chunk assignment, kill-and-resume (byte-identical, no chunk
recomputed), float16 storage, memory-mapped reading, and `python -m jaxrec.embed`.

A tiny random BERT with MiniLM's real tokenizer (built offline) makes the
embeddings real, so byte identity means something."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxrec import sharding
from jaxrec.llm import embed, store
import llm_parity

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEXTS = [f"item {i}: " + " ".join(["red mug", "blue pen", "green lamp", "desk"][: 1 + i % 4]) * (1 + i % 3)
         for i in range(45)]
CHUNK = 8   # 45 items -> 6 chunks (the last one of 5 items)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> pathlib.Path:
  """A 2-layer BERT of width 32 with MiniLM's tokenizer files."""
  return llm_parity.tiny_minilm(tmp_path_factory.mktemp("tiny_minilm"))


def _build(model, cache, **kw):
  return embed.build_store(TEXTS, model=str(model), max_tokens=32, token_budget=64,
                           chunk_items=CHUNK, cache_dir=cache, mesh=sharding.make_mesh(1),
                           label="t", **kw)


def _files(st):
  """Bytes of the manifest and every chunk and checksum file."""
  return {p.relative_to(st.path).as_posix(): p.read_bytes()
          for p in sorted(st.path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
  """The uninterrupted run."""
  return _build(tiny_model, tmp_path_factory.mktemp("reference"))


def test_assigned_chunks_cover_every_chunk_once():
  for total in (0, 1, 5, 6, 17):
    for count in (1, 2, 3, 8):
      parts = [store.assigned_chunks(total, p, count) for p in range(count)]
      assert sorted(c for part in parts for c in part) == list(range(total))
      assert all(part == list(range(p, total, count)) for p, part in enumerate(parts))
  with pytest.raises(ValueError):
    store.assigned_chunks(4, 2, 2)
  assert [store.chunk_range(c, 45, 8) for c in (0, 5)] == [(0, 8), (40, 45)]
  assert store.num_chunks(45, 8) == 6 and store.num_chunks(48, 8) == 6


def test_store_layout_and_values(tiny_model, reference):
  st = reference
  assert st.num_chunks == 6 and (st.num_items, st.hidden) == (45, 32)
  manifest = json.loads(st.manifest_path.read_text())
  assert manifest["shape"] == [45, 32] and manifest["chunk_size"] == CHUNK
  assert manifest["store_dtype"] == "float32" and manifest["pooling"] == "mean"
  assert manifest["texts_sha256"] == store.texts_sha256(TEXTS) and manifest["model"] == tiny_model.name
  chunks = st.open_chunks()
  assert all(isinstance(c, np.memmap) for c in chunks)          # memory-mappable for training
  assert [len(c) for c in chunks] == [8, 8, 8, 8, 8, 5]
  table = st.read_table()
  # Chunking does not change the values: one pass over all texts gives the same vectors.
  from jaxrec.llm.checkpoint import load_hf_model  # noqa: PLC0415
  module, params, _ = load_hf_model(tiny_model)
  whole = embed.embed_texts(module, params, embed.tokenize(tiny_model, TEXTS, 32),
                            pooling="mean", token_budget=64, mesh=sharding.make_mesh(1))
  np.testing.assert_allclose(table, whole, atol=1e-5)


def test_interrupted_run_resumes_byte_identical_without_recomputing(tiny_model, reference,
                                                                     tmp_path, monkeypatch):
  """An exception after 2 chunks (in-process), then a rerun: the rerun computes only the
  4 missing chunks, leaves the first 2 untouched, and every file equals the reference."""
  real_write = store.Store.write_chunk
  written = []

  def failing_write(self, index, vectors):
    if len(written) == 2:
      raise RuntimeError("killed")
    real_write(self, index, vectors)
    written.append(index)

  monkeypatch.setattr(store.Store, "write_chunk", failing_write)
  with pytest.raises(RuntimeError, match="killed"):
    _build(tiny_model, tmp_path)
  assert written == [0, 1]
  folder = reference.path.name
  before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / folder / "chunks").glob("*")}
  assert sorted(before) == ["00000.json", "00000.npy", "00001.json", "00001.npy"]

  written.clear()
  monkeypatch.setattr(store.Store, "write_chunk",
                      lambda self, i, v: (written.append(i), real_write(self, i, v)))
  resumed = _build(tiny_model, tmp_path)
  assert written == [2, 3, 4, 5]                                   # only the missing chunks
  for name, mtime in before.items():
    assert (resumed.path / "chunks" / name).stat().st_mtime_ns == mtime
  assert _files(resumed) == _files(reference)                      # byte-identical
  written.clear()
  _build(tiny_model, tmp_path)
  assert written == []                                             # complete: a cache hit


KILL_SCRIPT = """
import os, signal, sys
from jaxrec import sharding
from jaxrec.llm import embed, store
kill_at = int(sys.argv[3])
real_save = store.atomic_save
count = [0]
def save(path, array):
  # SIGKILL in the worst place: chunk `kill_at` half written (its temporary file only).
  if path.suffix == ".npy" and count[0] == kill_at:
    tmp = path.with_name(path.name + ".tmp.npy")
    tmp.write_bytes(b"\\x93NUMPY partial")
    os.kill(os.getpid(), signal.SIGKILL)
  real_save(path, array)
  count[0] += 1
store.atomic_save = save
texts = [line for line in open(sys.argv[2]).read().split("\\n") if line]
embed.build_store(texts, model=sys.argv[1], max_tokens=32, token_budget=64, chunk_items=%d,
                  cache_dir=sys.argv[4], mesh=sharding.make_mesh(1), label="t")
""" % CHUNK


def test_sigkill_mid_chunk_resumes_byte_identical(tiny_model, reference, tmp_path):
  """kill -9 of a real process while chunk 3 is being written, then a rerun."""
  (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
  proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tiny_model), str(tmp_path / "texts.txt"),
                         "3", str(tmp_path / "cache")],
                        capture_output=True, text=True, cwd=ROOT, timeout=300,
                        env={**os.environ, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)})
  assert proc.returncode == -9, proc.stderr
  chunks = tmp_path / "cache" / reference.path.name / "chunks"
  assert sorted(p.name for p in chunks.glob("*.npy")) == ["00000.npy", "00001.npy", "00002.npy",
                                                          "00003.npy.tmp.npy"]
  before = {p.name: p.stat().st_mtime_ns for p in chunks.glob("0000[012].*")}
  written = []
  real_write = store.Store.write_chunk
  try:
    store.Store.write_chunk = lambda self, i, v: (written.append(i), real_write(self, i, v))
    resumed = _build(tiny_model, tmp_path / "cache")
  finally:
    store.Store.write_chunk = real_write
  assert written == [3, 4, 5]
  assert {p.name: p.stat().st_mtime_ns for p in chunks.glob("0000[012].*")} == before
  assert _files(resumed) == _files(reference)


def test_float16_store(tiny_model, reference, tmp_path):
  st = _build(tiny_model, tmp_path, store_dtype="float16")
  assert st.path != reference.path and st.open_chunks()[0].dtype == np.float16
  table = st.read_table()
  assert table.dtype == np.float32
  np.testing.assert_array_equal(table, reference.read_table().astype(np.float16).astype(np.float32))


def test_content_embeddings_reads_the_store(tiny_model, reference):
  table = embed.content_embeddings(TEXTS, model=str(tiny_model), max_tokens=32, token_budget=64,
                                   chunk_items=CHUNK, cache_dir=reference.path.parent,
                                   mesh=sharding.make_mesh(1), label="t")
  np.testing.assert_array_equal(table, reference.read_table())


# ----------------------------------------------------------------------------
# python -m jaxrec.embed, then training finds the store.
# ----------------------------------------------------------------------------

def _cli(module, tmp_path, model, *extra):
  tiny = ["--config.data.demo_users=60", "--config.data.demo_items=30",
          f"--config.ceg.model={model}", "--config.ceg.max_tokens=32", "--config.ceg.token_budget=64",
          "--config.ceg.chunk_items=8"]
  env = {**os.environ, "JAXREC_CACHE": str(tmp_path / "cache"), "XLA_FLAGS": "",
         "PYTHONPATH": str(ROOT)}
  return subprocess.run([sys.executable, "-m", module, f"--config={ROOT / 'configs' / 'demo.py'}",
                         *tiny, *extra], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_embed_command_line_then_training_uses_the_store(tiny_model, tmp_path):
  proc = _cli("jaxrec.embed", tmp_path, tiny_model)
  assert proc.returncode == 0, proc.stderr
  path = pathlib.Path(next(l for l in proc.stdout.splitlines() if l.startswith("store: "))[7:])
  assert "shape: 30 x 32 float32 (4 chunks of 8 items)" in proc.stdout and "items/s" in proc.stdout
  st = store.load_store(path)
  assert st.missing_chunks() == []
  mtimes = {p: p.stat().st_mtime_ns for p in path.rglob("*")}

  again = _cli("jaxrec.embed", tmp_path, tiny_model)               # a cache hit
  assert again.returncode == 0, again.stderr
  assert f"store: {path}" in again.stdout and "cached embeddings" in again.stderr
  train = _cli("jaxrec.main", tmp_path, tiny_model, f"--workdir={tmp_path / 'wd'}",
               "--config.train.num_epochs=1")
  assert train.returncode == 0, train.stderr
  assert "cached embeddings" in train.stderr and "CEG synthetic_demo" not in train.stderr
  assert {p: p.stat().st_mtime_ns for p in path.rglob("*")} == mtimes  # nothing recomputed


@pytest.mark.parametrize("bad,named", [
    (["--config.ceg.store_dtype=bfloat16"], "store_dtype"),
    (["--config.ceg.max_tokens=600", "--config.ceg.token_budget=1000"], "max_position_embeddings"),
    (["--config.ceg.cache_dir=/proc/nope"], "embedding cache folder"),
])
def test_embed_command_line_bad_input_is_one_line(tmp_path, tiny_model, bad, named):
  proc = _cli("jaxrec.embed", tmp_path, tiny_model, *bad)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and named in last
  assert not (tmp_path / "cache").exists()


def test_embed_command_line_help():
  proc = subprocess.run([sys.executable, "-m", "jaxrec.embed", "--help"], capture_output=True,
                        text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
  assert proc.returncode == 0 and "python -m jaxrec.embed" in proc.stdout
  assert "store_dtype" in proc.stdout and "--workdir" not in proc.stdout


def test_one_damaged_chunk_is_reported_and_only_it_recomputed(tiny_model, reference, tmp_path,
                                                              caplog, monkeypatch):
  shutil.copytree(reference.path, tmp_path / reference.path.name)
  damaged = tmp_path / reference.path.name / "chunks" / "00002.npy"
  damaged.write_bytes(damaged.read_bytes()[:200])
  written = []
  real_write = store.Store.write_chunk
  monkeypatch.setattr(store.Store, "write_chunk",
                      lambda self, i, v: (written.append(i), real_write(self, i, v)))
  with caplog.at_level("WARNING", logger="jaxrec"):
    st = _build(tiny_model, tmp_path)
  assert written == [2]
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "00002.npy are damaged" in warnings[0] and "recomputing" in warnings[0]
  assert _files(st) == _files(reference)


def test_two_writers_of_their_own_chunks_make_the_one_store(tiny_model, reference, tmp_path,
                                                            monkeypatch):
  """Process p of 2 computes chunks p, p + 2, ... into the same folder (run here one after
  the other in one process; the 2-process jax.distributed test is issue 7 item 6)."""
  written = []
  real_write = store.Store.write_chunk
  monkeypatch.setattr(store.Store, "write_chunk",
                      lambda self, i, v: (written.append(i), real_write(self, i, v)))
  first = _build(tiny_model, tmp_path, process_index=1, process_count=2)
  assert written == [1, 3, 5] and first.missing_chunks() == [0, 2, 4]
  _build(tiny_model, tmp_path, process_index=0, process_count=2)
  assert written == [1, 3, 5, 0, 2, 4]
  assert _files(first) == _files(reference)


RACE_SCRIPT = """
import pathlib, sys, time
from jaxrec import sharding
from jaxrec.llm import embed, store
real_write, real_embed = store.Store.write_chunk, embed.embed_texts
def write(self, i, v):
  print("wrote", i, flush=True)
  real_write(self, i, v)
def slow_embed(*args, **kwargs):
  time.sleep(0.3)         # the other run reaches the store while this one is filling it
  return real_embed(*args, **kwargs)
store.Store.write_chunk, embed.embed_texts = write, slow_embed
here = pathlib.Path(sys.argv[3])
(here / f"started-{sys.argv[4]}").touch()
while len(list(here.glob("started-*"))) < 2:   # both processes are up, then both build
  time.sleep(0.01)
texts = [line for line in open(sys.argv[2]).read().split("\\n") if line]
embed.build_store(texts, model=sys.argv[1], max_tokens=32, token_budget=64, chunk_items=%d,
                  cache_dir=here / "cache", mesh=sharding.make_mesh(1), label="t")
""" % CHUNK


def test_two_runs_wanting_one_store_take_turns(tiny_model, reference, tmp_path):
  """Two independent runs on a fresh cache (two sweeps started together): one computes
  each chunk once, the other waits and reads the finished store; nothing is written twice."""
  (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
  procs = [subprocess.Popen([sys.executable, "-c", RACE_SCRIPT, str(tiny_model), str(tmp_path / "texts.txt"),
                             str(tmp_path), str(k)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)})
           for k in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
  writes = sorted(int(l.split()[1]) for out, _ in outs for l in out.splitlines() if l.startswith("wrote "))
  assert writes == list(range(6))
  assert _files(store.load_store(tmp_path / "cache" / reference.path.name)) == _files(reference)


EXTERNAL_KILL_SCRIPT = """
import sys, time
from jaxrec import sharding
from jaxrec.llm import embed
real_embed = embed.embed_texts
def slow_embed(*args, **kwargs):
  time.sleep(0.02)        # keeps the run alive long enough to be killed part way
  return real_embed(*args, **kwargs)
embed.embed_texts = slow_embed
texts = [line for line in open(sys.argv[2]).read().split("\\n") if line]
embed.build_store(texts, model=sys.argv[1], max_tokens=32, token_budget=64, chunk_items=1,
                  cache_dir=sys.argv[3], mesh=sharding.make_mesh(1), label="t")
"""


def test_kill_9_from_outside_at_an_arbitrary_moment(tiny_model, tmp_path):
  """`kill -9` of a live run once some chunks exist (wherever it happens to be), then a
  rerun: byte-identical to an uninterrupted run, and no chunk written twice."""
  (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
  reference = embed.build_store(TEXTS, model=str(tiny_model), max_tokens=32, token_budget=64,
                                chunk_items=1, cache_dir=tmp_path / "reference",
                                mesh=sharding.make_mesh(1), label="t")
  proc = subprocess.Popen([sys.executable, "-c", EXTERNAL_KILL_SCRIPT, str(tiny_model),
                           str(tmp_path / "texts.txt"), str(tmp_path / "cache")],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env={**os.environ, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT)})
  chunks = tmp_path / "cache" / reference.path.name / "chunks"
  deadline = time.monotonic() + 240
  while len(list(chunks.glob("*.json"))) < 5 and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -9
  before = {p.name: p.stat().st_mtime_ns for p in chunks.glob("*.npy")}
  assert 5 <= len(before) < 45
  written = []
  real_write = store.Store.write_chunk
  try:
    store.Store.write_chunk = lambda self, i, v: (written.append(i), real_write(self, i, v))
    resumed = _build_with(tiny_model, tmp_path / "cache", chunk_items=1)
  finally:
    store.Store.write_chunk = real_write
  assert sorted(written + [int(n[:5]) for n in before]) == list(range(45))
  assert {n: (chunks / n).stat().st_mtime_ns for n in before} == before
  assert _files(resumed) == _files(reference)


def _build_with(model, cache, **kw):
  return embed.build_store(TEXTS, model=str(model), max_tokens=32, token_budget=64, cache_dir=cache,
                           mesh=sharding.make_mesh(1), label="t", **kw)


def test_same_model_by_another_path_is_the_same_store(tiny_model, reference, monkeypatch, tmp_path):
  monkeypatch.chdir(tiny_model.parent)
  written = []
  real_write = store.Store.write_chunk
  monkeypatch.setattr(store.Store, "write_chunk",
                      lambda self, i, v: (written.append(i), real_write(self, i, v)))
  st = _build(pathlib.Path(tiny_model.name), reference.path.parent)   # a relative path
  assert st.path == reference.path and written == []


def test_float16_overflow_is_an_error_not_a_damaged_store(tiny_model, tmp_path, monkeypatch):
  real_embed = embed.embed_texts
  monkeypatch.setattr(embed, "embed_texts", lambda *a, **k: real_embed(*a, **k) * 1e6)
  with pytest.raises(embed.JaxrecError, match="store_dtype=float32"):
    _build(tiny_model, tmp_path, store_dtype="float16")


TWO_PROCESS_SCRIPT = """
import sys
from jaxrec import config as config_lib, distributed, sharding
from jaxrec.llm import embed, store
coordinator, pid, model, texts_file, cache = sys.argv[1:]
c = config_lib.base_config()
c.dist.coordinator, c.dist.num_processes, c.dist.process_id = coordinator, 2, int(pid)
distributed.initialize(c)
real_write = store.Store.write_chunk
store.Store.write_chunk = lambda self, i, v: (print("wrote", i, flush=True), real_write(self, i, v))
texts = [line for line in open(texts_file).read().split("\\n") if line]
st = embed.build_store(texts, model=model, max_tokens=32, token_budget=64, chunk_items=%d,
                       cache_dir=cache, label="t", **distributed.ceg_share(sharding.make_mesh()))
print("store", st.path, st.num_chunks, flush=True)
""" % CHUNK


def test_two_processes_fill_one_store_equal_to_one_process(tiny_model, reference, tmp_path):
  """Issue 7 item 6: 2 processes (jax.distributed on localhost, 1 device each) each embed
  and write their share of the chunks; the result is the 1-process store, byte for byte."""
  import socket  # noqa: PLC0415
  (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
  with socket.socket() as free:   # a free port for the coordinator
    free.bind(("localhost", 0))
    coordinator = f"localhost:{free.getsockname()[1]}"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
         "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
  # Output goes to files, not pipes: a process blocked on a full pipe that nobody reads yet
  # would never reach the barrier the other one waits at.
  logs = [(tmp_path / f"out{pid}.txt", tmp_path / f"err{pid}.txt") for pid in (0, 1)]
  procs = []
  for pid, (out_path, err_path) in zip((0, 1), logs):
    with open(out_path, "w") as out_file, open(err_path, "w") as err_file:
      procs.append(subprocess.Popen(
          [sys.executable, "-c", TWO_PROCESS_SCRIPT, coordinator, str(pid), str(tiny_model),
           str(tmp_path / "texts.txt"), str(tmp_path / "cache")],
          cwd=ROOT, stdout=out_file, stderr=err_file, text=True, env=env))
  for p in procs:
    p.wait(timeout=300)
  outs = [(o.read_text(), e.read_text()) for o, e in logs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  wrote = [sorted(int(l.split()[1]) for l in out.splitlines() if l.startswith("wrote")) for out, _ in outs]
  assert wrote == [[0, 2, 4], [1, 3, 5]]
  for out, _ in outs:   # both return the whole store
    assert f"store {tmp_path / 'cache' / reference.path.name} 6" in out
  assert _files(store.load_store(tmp_path / "cache" / reference.path.name)) == _files(reference)
