"""Books on Apache Beam (DirectRunner): the same TFDS dataset, array_record files and counts as one host."""

import dataclasses
import gzip
import sys

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam")

from jaxrec.data import amazon_books, books_beam, tfds_books  # noqa: E402
from jaxrec.errors import JaxrecError  # noqa: E402
from test_amazon_books import _write as write_books  # noqa: E402  (real formats, malformed rows, ties)
from test_tfds_builder import assert_same  # noqa: E402


def _extra_rows(folder):
  """Rows only a careful line reader gets right: quotes, CRLF, a lone CR, padding, a tie spanning chunks."""
  with open(folder / amazon_books.RATINGS_FILE, "ab") as f:
    f.write(b'"A0000000000002","0000000007",4.0,2000\r\n')     # quoted fields, CRLF: well-formed
    f.write(b"A0000000000002,0000000005,4.0,2000\rA0000000000002,0000000004,3.0,2000\n")  # CR ends a row
    f.write(b" A0000000000002,0000000006,4.0,2000\n")          # padded id: malformed
    f.write(b"   \n")                                           # whitespace only: one field, malformed
    f.write(b"A0000000000002,0000000003,4.,2000")                # last line, no newline


def test_beam_dataset_equals_single_host(tmp_path):
  raw = tmp_path / "raw"
  write_books(raw)
  _extra_rows(raw)
  direct, expected = amazon_books.preprocess(raw)
  # 997-byte ranges: lines (and the tied rows) straddle range borders.
  builder = books_beam.prepare(raw, tmp_path / "tfds", beam_runner="DirectRunner", chunk_bytes=997)
  files = sorted(p.name for p in (tmp_path / "tfds").rglob("*.array_record*"))
  assert any("users" in f for f in files) and any("items" in f for f in files), files
  back = tfds_books.read(builder)
  assert_same(back, direct)
  got = dataclasses.asdict(builder.report)
  want = dataclasses.asdict(expected)
  del got["malformed_examples"], want["malformed_examples"]       # Beam counts; it keeps no examples
  assert got == want
  assert expected.malformed_ratings == 6 + 2 and expected.meta_malformed == 2 and expected.meta_duplicates == 1
  u2 = direct.user_ids.index("A0000000000002")
  tied = direct.sequences[u2][direct.timestamps[u2] == 2000]
  assert [direct.item_ids[i] for i in tied] == [f"000000000{k}" for k in (7, 5, 4, 3)]    # file order
  assert "tensorflow" not in sys.modules


def test_shares_the_single_host_cache(tmp_path, monkeypatch):
  raw = tmp_path / "raw"
  write_books(raw)
  single = tfds_books.prepare(raw, tmp_path / "tfds")
  monkeypatch.setattr(books_beam, "hstu_books", lambda *a, **k: pytest.fail("prepared twice"))
  again = tfds_books.prepare(raw, tmp_path / "tfds", beam_runner="DirectRunner")
  assert isinstance(again, books_beam.AmazonBooksBeam)
  assert again.data_dir == single.data_dir
  assert_same(tfds_books.read(again), tfds_books.read(single))


def test_missing_files_and_missing_beam(tmp_path, monkeypatch):
  with pytest.raises(JaxrecError, match="meta_Books.json.gz"):
    books_beam.prepare(tmp_path, tmp_path / "tfds")
  with pytest.raises(JaxrecError, match="meta_Books.json.gz"):
    books_beam.main([f"--path={tmp_path}", f"--data_dir={tmp_path / 'tfds'}", "--runner=DirectRunner"])
  (tmp_path / amazon_books.RATINGS_FILE).write_bytes(b"A1,B1,5.0,100\nA2,B1,x,100\n")
  with gzip.open(tmp_path / amazon_books.META_FILE, "wb") as f:
    f.write(b"{'asin': 'B1'}\n")
  with pytest.raises(JaxrecError, match="no user keeps 5"):
    books_beam.prepare(tmp_path, tmp_path / "tfds")
  monkeypatch.setattr(books_beam, "beam", None)
  with pytest.raises(JaxrecError, match="pip install apache-beam"):
    books_beam.prepare(tmp_path, tmp_path / "tfds")


def test_byte_ranges_read_every_line_once(tmp_path):
  f = tmp_path / "lines"
  lines = [b"a\n", b"\n", b"bb\n", b"ccc\r\n", b"d" * 10 + b"\n", b"e"]
  f.write_bytes(b"".join(lines))
  for chunk in (1, 2, 3, 7, 100):
    got = [x for task in books_beam.byte_ranges(str(f), chunk) for x in books_beam.read_range(task)]
    assert [line for _, line in got] == lines
    assert [pos for pos, _ in got] == list(np.cumsum([0] + [len(x) for x in lines[:-1]]))
