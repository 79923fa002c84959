"""Amazon Books 2014 (`ratings_Books.csv`, `meta_Books.json.gz`) under HSTU's preprocessing.

HSTU's filter (generative-recommenders, `AmazonDataProcessor`), exactly:
  1. count every user's and every item's ratings in the raw file;
  2. keep the ratings whose item has >= 5 and whose user has >= 5 of them
     (one pass on the raw counts, not iterated to a fixed point);
  3. remap item and user ids to dense codes in sorted id order (pandas'
     `Categorical`): the catalogue is every item left after step 2 (695,762
     on the real file), even if step 4 removes all its ratings;
  4. order each user's ratings by timestamp and drop users left with < 5.
One deliberate difference: HSTU sorts with pandas' default (unstable)
quicksort, so ratings with equal timestamps come out in an arbitrary order;
here ties keep file order, which makes the sequences reproducible.

Bounded memory: the ratings file is streamed in blocks (pyarrow's CSV
reader); only three compact columns (user code, item code, timestamp: 16
bytes a rating) and the id -> code tables are held, never the text. The
metadata file is streamed line by line through gzip and only the lines of
catalogue items are parsed. Its lines are Python literals (`{'asin': ...}`),
not JSON: they are parsed with `ast.literal_eval` (a literal parser that
cannot run code), never `eval`; strict-JSON lines go through `json`.
Malformed rows in either file are skipped and counted, never fatal; the
counts are in `BooksReport` and logged.
"""

import ast
import dataclasses
import gzip
import json
import logging
import os
import pathlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from jaxrec.data import dataset as ds
from jaxrec.errors import JaxrecError

log = logging.getLogger(__name__)

RATINGS_FILE = "ratings_Books.csv"
META_FILE = "meta_Books.json.gz"
# Where HSTU's preprocessing downloads them from (the 2014 "product graph" release).
URLS = {
    RATINGS_FILE: "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/ratings_Books.csv",
    META_FILE: "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/meta_Books.json.gz",
}
NAME = "amazon-books"        # the RecDataset's name
MIN_COUNT = 5                # HSTU: users and items with >= 5 ratings, users left with >= 5
ITEM_FIELDS = ("title", "categories", "brand", "price", "description", "sales_rank")
_MAX_FIELD_CHARS = 2000      # bounds memory: prompts cut texts far shorter (data.max_text_chars)
_BLOCK_BYTES = 32 << 20      # CSV block streamed at a time
_TIMESTAMP = re.compile(r"^[0-9]+$")
_RATING = re.compile(r"^[0-9]+(\.[0-9]*)?$")
_ASIN = re.compile(rb"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")


def missing_files_message(folder: str | os.PathLike, missing: list[str]) -> str:
  """The one message that says which files to put where (also TFDS's manual instructions)."""
  folder = os.path.abspath(folder)
  where = "; ".join(f"{os.path.join(folder, f)} (download {URLS[f]})" for f in missing)
  return (f"Amazon Books 2014 files missing: put {where}. The machine is offline, so copy them there "
          f"by hand; then run the same command again")


@dataclasses.dataclass
class BooksReport:
  """What preprocessing saw: counts before/after HSTU's filter and every skipped row."""
  raw_ratings: int = 0
  raw_users: int = 0
  raw_items: int = 0
  malformed_ratings: int = 0          # wrong column count, non-numeric rating/timestamp, non-UTF-8 id
  kept_ratings: int = 0               # after the >= 5 filter on raw counts
  items: int = 0                      # the catalogue
  users: int = 0                      # users left with >= 5 ratings
  interactions: int = 0
  meta_lines: int = 0
  meta_non_utf8: int = 0              # lines with bytes that are not UTF-8 (replaced, then parsed)
  meta_malformed: int = 0             # catalogue lines that do not parse as a literal dict with an asin
  meta_no_asin: int = 0               # lines with no 'asin' at all
  meta_duplicates: int = 0            # a second line for the same catalogue item (the first wins)
  items_without_meta: int = 0
  malformed_examples: list[str] = dataclasses.field(default_factory=list)  # the first few, for the log


@dataclasses.dataclass(frozen=True)
class Ratings:
  """Streamed ratings: one row per well-formed line, in file order."""
  user_codes: np.ndarray      # int32 index into user_ids
  item_codes: np.ndarray      # int32 index into item_ids
  timestamps: np.ndarray      # int64 unix seconds
  user_ids: list[bytes]       # first-seen order
  item_ids: list[bytes]


class _Codes:
  """Id bytes -> dense first-seen code; ids that are not UTF-8 (or empty) get -1."""

  def __init__(self):
    self.index: dict[bytes, int] = {}
    self.ids: list[bytes] = []

  def encode(self, column: pa.Array) -> np.ndarray:
    uniques = pc.unique(column)
    codes = np.empty(len(uniques), np.int32)
    for n, key in enumerate(uniques.to_pylist()):
      code = self.index.get(key)
      if code is None:
        code = -1 if not _valid_id(key) else len(self.ids)
        if code >= 0:
          self.index[key] = code
          self.ids.append(key)
      codes[n] = code
    return codes[pc.index_in(column, value_set=uniques).to_numpy(zero_copy_only=False)]


def _valid_id(key: bytes | None) -> bool:
  if not key or key.strip() != key:
    return False
  try:
    key.decode("utf-8")
  except UnicodeDecodeError:
    return False
  return True


def _note(report: BooksReport, what: str) -> None:
  if len(report.malformed_examples) < 5:
    report.malformed_examples.append(what[:120])


def read_ratings(file: str | os.PathLike, report: BooksReport) -> Ratings:
  """Streams `user,item,rating,timestamp` lines (no header) into compact columns."""
  def on_invalid(row) -> str:           # wrong number of columns
    report.malformed_ratings += 1
    _note(report, f"{RATINGS_FILE}: wrong number of fields: {row.text!r}")
    return "skip"
  names = ["user", "item", "rating", "timestamp"]
  reader = pcsv.open_csv(
      file, read_options=pcsv.ReadOptions(column_names=names, block_size=_BLOCK_BYTES),
      parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
      convert_options=pcsv.ConvertOptions(column_types={n: pa.binary() for n in names}))
  users, items = _Codes(), _Codes()
  parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
  for batch in reader:
    ok = pc.and_(pc.fill_null(pc.match_substring_regex(batch.column("timestamp"), _TIMESTAMP.pattern), False),
                 pc.fill_null(pc.match_substring_regex(batch.column("rating"), _RATING.pattern), False))
    ok = ok.to_numpy(zero_copy_only=False)
    u = users.encode(batch.column("user"))
    i = items.encode(batch.column("item"))
    ok &= (u >= 0) & (i >= 0)
    report.malformed_ratings += int((~ok).sum())
    if not ok.all():
      _note(report, f"{RATINGS_FILE}: {int((~ok).sum())} rows with a bad id, rating or timestamp")
    ts = batch.column("timestamp").filter(pa.array(ok))
    ts = pc.cast(pc.cast(ts, pa.string(), safe=False), pa.int64()).to_numpy(zero_copy_only=False)
    parts.append((u[ok], i[ok], ts))
  cat = lambda k, dtype: (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, dtype)).astype(dtype)
  ratings = Ratings(cat(0, np.int32), cat(1, np.int32), cat(2, np.int64), users.ids, items.ids)
  report.raw_ratings = len(ratings.timestamps) + report.malformed_ratings
  report.raw_users, report.raw_items = len(users.ids), len(items.ids)
  return ratings


def hstu_filter(ratings: Ratings, report: BooksReport
                ) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
  """HSTU's steps 2-4: (item ids, user ids, per-user offsets, item indices, timestamps).

  User u's sequence is items[offsets[u]:offsets[u + 1]], oldest first.
  """
  user_count = np.bincount(ratings.user_codes, minlength=len(ratings.user_ids))
  item_count = np.bincount(ratings.item_codes, minlength=len(ratings.item_ids))
  keep = (item_count[ratings.item_codes] >= MIN_COUNT) & (user_count[ratings.user_codes] >= MIN_COUNT)
  report.kept_ratings = int(keep.sum())
  u, i, t = ratings.user_codes[keep], ratings.item_codes[keep], ratings.timestamps[keep]
  del keep
  item_ids, item_new = _sorted_codes(ratings.item_ids, i)
  user_ids, user_new = _sorted_codes(ratings.user_ids, u)
  i, u = item_new[i], user_new[u]
  order = np.lexsort((t, u))            # by user, then time; stable, so ties keep file order
  u, i, t = u[order], i[order], t[order]
  del order
  counts = np.bincount(u, minlength=len(user_ids))
  long_enough = counts >= MIN_COUNT
  row_ok = long_enough[u]
  i, t = i[row_ok], t[row_ok]
  offsets = np.concatenate([[0], np.cumsum(counts[long_enough])]).astype(np.int64)
  user_ids = [uid for uid, ok in zip(user_ids, long_enough) if ok]
  report.items, report.users, report.interactions = len(item_ids), len(user_ids), len(i)
  return item_ids, user_ids, offsets, i.astype(np.int32), t


def _sorted_codes(ids: list[bytes], used: np.ndarray) -> tuple[list[str], np.ndarray]:
  """The used ids in sorted order (as pandas' Categorical) and old code -> new code."""
  present = np.flatnonzero(np.bincount(used, minlength=len(ids)))
  names = [ids[k] for k in present]
  order = sorted(range(len(names)), key=names.__getitem__)   # bytes order == code-point order of UTF-8
  new = np.full(len(ids), -1, np.int32)
  new[present[order]] = np.arange(len(order), dtype=np.int32)
  return [names[k].decode("utf-8") for k in order], new


def read_meta(file: str | os.PathLike, item_ids: list[str], report: BooksReport) -> list[dict[str, str]]:
  """Text fields of every catalogue item ("" where absent), streamed from the gzip'd literal lines."""
  index = {k.encode("utf-8"): n for n, k in enumerate(item_ids)}
  fields: list[dict[str, str] | None] = [None] * len(item_ids)
  with gzip.open(file, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      if not raw.strip():
        continue
      report.meta_lines += 1
      m = _ASIN.search(raw)
      if m is None:
        report.meta_no_asin += 1
        _note(report, f"{META_FILE} line {lineno}: no asin: {raw[:60]!r}")
        continue
      n = index.get(m.group(1))
      if n is None:
        continue                          # not in the catalogue: never parsed
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError:
        report.meta_non_utf8 += 1
        line = raw.decode("utf-8", errors="replace")
      entry = _parse_literal(line)
      if not isinstance(entry, dict) or entry.get("asin") != item_ids[n]:
        report.meta_malformed += 1
        _note(report, f"{META_FILE} line {lineno}: malformed: {raw[:60]!r}")
        continue
      if fields[n] is not None:
        report.meta_duplicates += 1
        continue
      fields[n] = item_text_fields(entry)
  report.items_without_meta = sum(1 for x in fields if x is None)
  empty = dict.fromkeys(ITEM_FIELDS, "")
  return [dict(empty) if x is None else x for x in fields]


def _parse_literal(line: str):
  """A dict from a Python-literal (or JSON) line, or None; never runs code."""
  line = line.strip()
  try:
    if line.startswith('{"'):
      return json.loads(line)
    return ast.literal_eval(line)
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    return None


def item_text_fields(entry: dict) -> dict[str, str]:
  """The metadata's text, as present: title, categories, brand, price, description, sales rank."""
  cats: list[str] = []
  for path in entry.get("categories") or []:
    for c in path if isinstance(path, (list, tuple)) else [path]:
      if isinstance(c, str) and c and c not in cats:
        cats.append(c)
  price = entry.get("price")
  rank = entry.get("salesRank")
  out = {
      "title": _text(entry.get("title")),
      "categories": ", ".join(cats),
      "brand": _text(entry.get("brand")),
      "price": f"${price:.2f}" if isinstance(price, (int, float)) and not isinstance(price, bool) else _text(price),
      "description": _text(entry.get("description")),
      "sales_rank": (", ".join(f"#{v} in {k}" for k, v in rank.items()) if isinstance(rank, dict)
                     else _text(rank)),
  }
  return {k: v[:_MAX_FIELD_CHARS] for k, v in out.items()}


def _text(value) -> str:
  if value is None:
    return ""
  return " ".join(str(value).split())


def find_files(path: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
  """(ratings, meta) in folder `path`, or one JaxrecError naming exactly what to put where."""
  folder = pathlib.Path(path)
  missing = [f for f in (RATINGS_FILE, META_FILE) if not (folder / f).is_file()]
  if missing:
    raise JaxrecError(missing_files_message(folder, missing))
  return folder / RATINGS_FILE, folder / META_FILE


def preprocess(path: str | os.PathLike) -> tuple[ds.RecDataset, BooksReport]:
  """HSTU's Books preprocessing of the two files in folder `path`, streamed."""
  return preprocess_files(*find_files(path))


def preprocess_files(ratings_file: str | os.PathLike, meta_file: str | os.PathLike
                     ) -> tuple[ds.RecDataset, BooksReport]:
  """HSTU's Books preprocessing of the two files (wherever they are, e.g. TFDS's download folder)."""
  report = BooksReport()
  ratings = read_ratings(ratings_file, report)
  if not len(ratings.timestamps):
    raise JaxrecError(f"{ratings_file}: no well-formed 'user,item,rating,timestamp' line")
  item_ids, user_ids, offsets, items, times = hstu_filter(ratings, report)
  del ratings
  if not user_ids:
    raise JaxrecError(f"{ratings_file}: no user keeps {MIN_COUNT} ratings after HSTU's filter")
  fields = read_meta(meta_file, item_ids, report)
  dataset = ds.RecDataset(
      name=NAME, item_ids=tuple(item_ids), item_fields=tuple(fields), user_ids=tuple(user_ids),
      sequences=tuple(np.split(items, offsets[1:-1])), timestamps=tuple(np.split(times, offsets[1:-1]))).validate()
  return dataset, report


def load(path: str | os.PathLike) -> ds.RecDataset:
  """The registry's loader: preprocesses, logs what was skipped, returns the dataset."""
  dataset, report = preprocess(path)
  log_report(report)
  return dataset


def log_report(report: BooksReport) -> None:
  log.info("amazon books: %d ratings (%d malformed, skipped), %d users, %d items -> HSTU filter: "
           "%d users, %d items, %d interactions", report.raw_ratings, report.malformed_ratings,
           report.raw_users, report.raw_items, report.users, report.items, report.interactions)
  log.info("amazon books metadata: %d lines, %d malformed, %d without asin, %d non-UTF-8 (replaced), "
           "%d duplicates; %d catalogue items have no metadata", report.meta_lines, report.meta_malformed,
           report.meta_no_asin, report.meta_non_utf8, report.meta_duplicates, report.items_without_meta)
  for example in report.malformed_examples:
    log.info("  skipped: %s", example)

