"""The generic TFDS builder: every kind read back from array_record equals its direct reader."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from jaxrec.data import registry, tfds_builder
from jaxrec.errors import JaxrecError
from test_amazon_books import _write as write_books        # the small files the reader tests write
from test_lcrec_json import _write as write_lcrec
from test_movielens import _write_100k, _write_latest


def assert_same(a, b):
  assert (a.name, a.user_ids, a.item_ids) == (b.name, b.user_ids, b.item_ids)
  assert a.item_fields == b.item_fields
  assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
  assert (a.timestamps is None) == (b.timestamps is None)
  if a.timestamps is not None:
    assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a.timestamps, b.timestamps))


@pytest.fixture
def prepares(monkeypatch, tmp_path):
  """Counts how often a builder generates its splits (prepares); the TFDS cache goes to tmp_path."""
  monkeypatch.setenv("JAXREC_CACHE", str(tmp_path / "cache"))
  calls = []
  original = tfds_builder.RecBuilder._split_generators

  def counting(self, dl_manager):
    calls.append(self.name)
    return original(self, dl_manager)
  monkeypatch.setattr(tfds_builder.RecBuilder, "_split_generators", counting)
  return calls


@pytest.mark.parametrize("kind,write", [
    ("lcrec_json", write_lcrec), ("movielens_100k", _write_100k),
    ("movielens_latest_small", _write_latest), ("amazon_books", write_books)])
def test_read_back_equals_direct_reader_and_prepares_once(kind, write, tmp_path, prepares):
  folder = tmp_path / "raw"
  write(folder)
  direct = registry.load_dataset(kind, str(folder), via_tfds=False)
  back = registry.load_dataset(kind, str(folder))
  assert_same(back, direct)
  assert prepares == [kind]
  assert any((tmp_path / "cache" / "tfds" / kind).rglob("*users.array_record*"))
  assert_same(registry.load_dataset(kind, str(folder)), direct)
  assert prepares == [kind]                        # the second load read the cache
  assert "tensorflow" not in sys.modules


def test_replaced_file_prepares_again_and_options_key_the_cache(tmp_path, prepares):
  folder = write_lcrec(tmp_path / "raw", "A")
  write_lcrec(folder, "B", inter={"7": [2, 0]})
  a = registry.load_dataset("lcrec_json", str(folder), name="A")
  b = registry.load_dataset("lcrec_json", str(folder), name="B")
  assert (a.name, b.name, b.user_ids) == ("A", "B", ("7",)) and len(prepares) == 2
  (folder / "B.inter.json").write_text('{"8": [1, 2, 0]}')
  os.utime(folder / "B.inter.json", ns=(1, 1))       # a different mtime even on coarse clocks
  b = registry.load_dataset("lcrec_json", str(folder), name="B")
  assert b.user_ids == ("8",) and len(prepares) == 3


def test_reader_errors_pass_through_unchanged(tmp_path, prepares):
  with pytest.raises(JaxrecError, match="u.data' not found"):
    registry.load_dataset("movielens_100k", str(_write_latest(tmp_path / "wrong")))
  folder = write_lcrec(tmp_path / "raw")
  (folder / "Toy.inter.json").write_text('{\n  "0": [1, 2],\n  "1": [3,,]\n}')
  with pytest.raises(JaxrecError, match=r"Toy\.inter\.json: malformed JSON at line 3"):
    registry.load_dataset("lcrec_json", str(folder))
  assert not list((tmp_path / "cache").rglob("*.array_record*"))


def test_real_office_through_tfds(shared_data, tmp_path, prepares):
  folder = shared_data / "amazon-office"
  assert_same(registry.load_dataset("lcrec_json", str(folder)),
              registry.load_dataset("lcrec_json", str(folder), via_tfds=False))


_PREPARE_SLOWLY = """
import sys, time
from jaxrec.data import registry, tfds_builder
original = tfds_builder.RecBuilder._split_generators
def slow(self, dl_manager):
  time.sleep(3)                      # both processes are inside preparing at once
  return original(self, dl_manager)
tfds_builder.RecBuilder._split_generators = slow
d = registry.load_dataset("movielens_100k", sys.argv[1])
print(len(d.user_ids), sum(len(s) for s in d.sequences))
"""


def test_two_processes_preparing_one_cache_at_once_both_succeed(tmp_path):
  """Two runs started together on a fresh cache: without `prepare_lock` the second
  one's rename of its finished dataset fails; with it, it waits and reads the first's."""
  folder = _write_100k(tmp_path / "raw")
  env = {**os.environ, "JAXREC_CACHE": str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[2])}
  logs = [tmp_path / f"child{i}.log" for i in range(2)]
  procs = [subprocess.Popen([sys.executable, "-c", _PREPARE_SLOWLY, str(folder)], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT) for log in logs]
  codes = [p.wait(timeout=300) for p in procs]
  outs = [log.read_text() for log in logs]
  assert codes == [0, 0], outs
  direct = registry.load_dataset("movielens_100k", str(folder), via_tfds=False)
  want = f"{len(direct.user_ids)} {sum(len(s) for s in direct.sequences)}"
  assert [o.strip().splitlines()[-1] for o in outs] == [want, want]
  assert len(list((tmp_path / "cache" / "tfds" / "movielens_100k").glob("*/1.0.0"))) == 1
