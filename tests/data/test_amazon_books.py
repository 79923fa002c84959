"""Amazon Books reader: small files in the real formats, checked against a naive HSTU filter."""

import ast
import collections
import gzip
import os

import numpy as np
import pytest

from jaxrec.data import amazon_books, books_synthetic, registry
from jaxrec.errors import JaxrecError

# Rows a real-format reader must survive; each counts once as malformed.
_BAD_RATINGS = [
    b"only,three,fields\n",
    b"A0000000000001,0000000001,5.0,100,extra\n",
    b"A0000000000001,0000000001,x,100\n",             # non-numeric rating
    b"A0000000000001,0000000001,5.0,12a\n",           # non-numeric timestamp
    b"A00000000\xff0001,0000000001,5.0,100\n",        # non-UTF-8 user id
    b"A0000000000001,00000\xfe0001,5.0,100\n",        # non-UTF-8 item id
]


def _write(folder, seed=0):
  """Real-format files with malformed rows, non-UTF-8 bytes and hostile meta lines; returns the canary path."""
  folder.mkdir(exist_ok=True)
  ratings = folder / amazon_books.RATINGS_FILE
  books_synthetic.write_ratings(ratings, 4000, 400, 150, seed=seed, chunk=1500)
  with open(ratings, "ab") as f:
    f.write(b"\n")                                    # blank line: ignored, not malformed
    f.writelines(_BAD_RATINGS)
  # Ties: user 1 rates three items at the same time; file order must decide.
  with open(ratings, "ab") as f:
    for item in ("0000000002", "0000000001", "0000000000"):
      f.write(f"A0000000000001,{item},5.0,1000\n".encode())
  canary = folder / "eval-ran"
  rng = np.random.default_rng(seed)
  lines = [books_synthetic.meta_line(k, rng, 150).encode() for k in range(150)]
  lines[3] = lines[3][:40]                                                       # cut short
  lines[4] = f"{{'asin': '{books_synthetic.item_id(4)}', 'title': __import__('os').system('touch {canary}')}}".encode()
  lines[5] = lines[5].replace(b"'title': '", b"'title': 'Caf\xe9 \xff ", 1)    # latin-1 / junk bytes
  lines[6] = b"{'title': 'no id at all'}"
  lines.append(lines[7])                                                          # duplicate
  lines[8] = b'{"asin": "0000000008", "title": "strict JSON line", "price": 3}'     # JSON beside literals
  del lines[9]                                                                    # an item with no metadata
  with gzip.open(folder / amazon_books.META_FILE, "wb") as f:
    f.write(b"\n".join(lines) + b"\n")
  return canary


def _naive_hstu(folder):
  """HSTU's preprocessing written plainly: (item ids, user ids, sequences, times, malformed, fields)."""
  rows, malformed = [], 0
  with open(folder / amazon_books.RATINGS_FILE, "rb") as f:
    for raw in f:
      if not raw.strip():
        continue
      parts = raw.rstrip(b"\r\n").split(b",")
      try:
        user, item = parts[0].decode(), parts[1].decode()
        ok = len(parts) == 4 and parts[3].isdigit() and float(parts[2]) >= 0
      except (UnicodeDecodeError, ValueError, IndexError):
        ok = False
      if not ok:
        malformed += 1
        continue
      rows.append((user, item, int(parts[3])))
  users = collections.Counter(r[0] for r in rows)
  items = collections.Counter(r[1] for r in rows)
  kept = [r for r in rows if items[r[1]] >= 5 and users[r[0]] >= 5]
  item_ids = sorted({r[1] for r in kept})
  index = {k: n for n, k in enumerate(item_ids)}
  by_user = collections.defaultdict(list)
  for user, item, t in kept:
    by_user[user].append((t, index[item]))
  user_ids = sorted(u for u in by_user if len(by_user[u]) >= 5)
  seqs = [[i for _, i in sorted(by_user[u], key=lambda x: x[0])] for u in user_ids]
  times = [sorted(t for t, _ in by_user[u]) for u in user_ids]
  fields, bad = {}, 0
  with gzip.open(folder / amazon_books.META_FILE, "rb") as f:
    for raw in f:
      text = raw.decode("utf-8", errors="replace")
      try:
        entry = ast.literal_eval(text.strip())
      except (ValueError, SyntaxError):
        entry = None
      asin = entry.get("asin") if isinstance(entry, dict) else None
      if asin is None and "asin" in text:
        bad += 1
      elif asin in index and asin not in fields:
        fields[asin] = amazon_books.item_text_fields(entry)
  return item_ids, user_ids, seqs, times, malformed, fields, bad


def test_matches_naive_hstu_filter(tmp_path):
  canary = _write(tmp_path)
  data, report = amazon_books.preprocess(tmp_path)
  item_ids, user_ids, seqs, times, malformed, fields, bad = _naive_hstu(tmp_path)
  assert data.item_ids == tuple(item_ids)
  assert data.user_ids == tuple(user_ids)
  assert [s.tolist() for s in data.sequences] == seqs
  assert [t.tolist() for t in data.timestamps] == times
  assert report.malformed_ratings == malformed == len(_BAD_RATINGS)
  assert report.raw_ratings == 4000 + 3 + len(_BAD_RATINGS)
  assert (report.users, report.items, report.interactions) == (len(user_ids), len(item_ids), sum(map(len, seqs)))
  assert report.meta_malformed == bad == 2            # the cut line and the __import__ line
  assert report.meta_no_asin == 1 and report.meta_duplicates == 1 and report.meta_non_utf8 == 1
  assert not canary.exists()                          # nothing in the file was executed
  for n, k in enumerate(data.item_ids):
    assert data.item_fields[n] == fields.get(k, dict.fromkeys(amazon_books.ITEM_FIELDS, ""))
  assert report.items_without_meta == len(item_ids) - len(fields)
  u1 = data.user_ids.index("A0000000000001")
  tied = data.sequences[u1][data.timestamps[u1] == 1000]
  assert [data.item_ids[i] for i in tied][-3:] == ["0000000002", "0000000001", "0000000000"]


def test_item_text_fields():
  entry = {"asin": "1", "title": " A  Title ", "categories": [["Books", "History"], ["Books", "Europe"]],
           "price": 5, "salesRank": {"Books": 12}, "description": "x" * 5000}
  f = amazon_books.item_text_fields(entry)
  assert f["title"] == "A Title" and f["categories"] == "Books, History, Europe"
  assert f["price"] == "$5.00" and f["sales_rank"] == "#12 in Books" and f["brand"] == ""
  assert len(f["description"]) == amazon_books._MAX_FIELD_CHARS


def test_missing_files_one_message_with_exact_paths(tmp_path):
  (tmp_path / amazon_books.RATINGS_FILE).write_text("")
  with pytest.raises(JaxrecError) as e:
    registry.load_dataset("amazon_books", str(tmp_path))
  msg = str(e.value)
  assert "\n" not in msg
  assert os.path.join(str(tmp_path), amazon_books.META_FILE) in msg and amazon_books.URLS[amazon_books.META_FILE] in msg
  assert amazon_books.RATINGS_FILE not in msg          # present: not asked for
  with pytest.raises(JaxrecError, match=r"ratings_Books\.csv .*meta_Books\.json\.gz"):
    registry.load_dataset("amazon_books", str(tmp_path / "nowhere"))


def test_registry_kind_and_streaming_blocks(tmp_path, monkeypatch):
  _write(tmp_path)
  whole = registry.load_dataset("amazon_books", str(tmp_path))
  monkeypatch.setattr(amazon_books, "_BLOCK_BYTES", 4096)       # many blocks: ids span block borders
  blocks = registry.load_dataset("amazon_books", str(tmp_path))
  assert whole.user_ids == blocks.user_ids and whole.item_ids == blocks.item_ids
  assert all(np.array_equal(a, b) for a, b in zip(whole.sequences, blocks.sequences))


def test_tfds_builder_array_record_read_back_with_grain(tmp_path):
  import sys
  from jaxrec.data import tfds_books
  _write(tmp_path / "raw")
  direct, _ = amazon_books.preprocess(tmp_path / "raw")
  builder = tfds_books.prepare(tmp_path / "raw", tmp_path / "tfds")
  files = sorted(p.name for p in (tmp_path / "tfds").rglob("*.array_record*"))
  assert any("users" in f for f in files) and any("items" in f for f in files), files
  back = tfds_books.read(builder)
  assert back.user_ids == direct.user_ids and back.item_ids == direct.item_ids
  assert back.item_fields == direct.item_fields
  assert all(np.array_equal(a, b) for a, b in zip(back.sequences, direct.sequences))
  assert all(np.array_equal(a, b) for a, b in zip(back.timestamps, direct.timestamps))
  assert "tensorflow" not in sys.modules
  with pytest.raises(JaxrecError, match="meta_Books.json.gz"):
    tfds_books.prepare(tmp_path / "empty", tmp_path / "tfds")
