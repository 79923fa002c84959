"""Synthetic Amazon Books 2014 files in the real formats, written streaming.

The real files cannot be fetched on an offline machine, so tests, the
`configs/amazon_books.py:small` recipe and the full-shape preprocessing
benchmark use these: `ratings_Books.csv` (`user,item,rating,timestamp`, no
header) and `meta_Books.json.gz` (one Python-literal dict per line, as the
2014 release). Users' activity and items' popularity follow power laws, so
HSTU's >= 5 filter removes most users and items, as on the real data. Rows are
generated and written in chunks: memory stays small at the real shape
(22.5M ratings, 8M users, 2.3M items).

  python -m jaxrec.data.books_synthetic --out=/tmp/books-sample            # the :small sample
  python -m jaxrec.data.books_synthetic --out=DIR --ratings=22500000 --users=8000000 --items=2300000
"""

import argparse
import gzip
import os
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

RATINGS_FILE = "ratings_Books.csv"     # the names amazon_books reads (not imported: tools stay standalone)
META_FILE = "meta_Books.json.gz"
_T0, _T1 = 852076800, 1406073600       # 1997-01-01 .. 2014-07-23, the real file's span
_WORDS = ("the", "night", "river", "secret", "garden", "history", "of", "war", "love", "king", "dark",
          "house", "guide", "cooking", "science", "life", "a", "novel", "stories", "world", "little")
_CATEGORIES = (["Books", "Literature & Fiction", "Mystery"], ["Books", "History", "Europe"],
               ["Books", "Cookbooks, Food & Wine"], ["Books", "Science & Math", "Physics"],
               ["Books", "Children's Books"], ["Kindle Store", "Kindle eBooks", "Romance"])


def user_id(k: int) -> str:
  """Reviewer-id-like strings (14 characters, as 'A1Z54EM24Y40LL')."""
  return f"A{k:013d}"


def item_id(k: int) -> str:
  """ASIN-like strings (10 characters; books' ASINs are their ISBN-10)."""
  return f"{k:010d}"


def _power_law_cdf(n: int, exponent: float) -> np.ndarray:
  w = np.arange(1, n + 1, dtype=np.float64) ** -exponent
  return np.cumsum(w / w.sum())


def write_ratings(file: str | os.PathLike, num_ratings: int, num_users: int, num_items: int,
                  seed: int = 0, chunk: int = 1 << 20, user_exponent: float = 0.75,
                  item_exponent: float = 0.95) -> None:
  """`num_ratings` lines; user k and item k have popularity ~ (k + 1) ** -exponent."""
  rng = np.random.default_rng(seed)
  user_cdf = _power_law_cdf(num_users, user_exponent)
  item_cdf = _power_law_cdf(num_items, item_exponent)
  # Shuffle ranks -> ids, so popularity is not sorted by id (HSTU's remap must not depend on it).
  user_perm = rng.permutation(num_users)
  item_perm = rng.permutation(num_items)
  options = pcsv.WriteOptions(include_header=False, quoting_style="none")
  with pcsv.CSVWriter(file, pa.schema([("u", pa.string()), ("i", pa.string()), ("r", pa.string()),
                                       ("t", pa.string())]), write_options=options) as writer:
    for start in range(0, num_ratings, chunk):
      n = min(chunk, num_ratings - start)
      users = user_perm[np.minimum(np.searchsorted(user_cdf, rng.random(n)), num_users - 1)]
      items = item_perm[np.minimum(np.searchsorted(item_cdf, rng.random(n)), num_items - 1)]
      writer.write_table(pa.table({
          "u": _ids("A", users, 13), "i": _ids("", items, 10),
          "r": pc.binary_join_element_wise(pc.cast(pa.array(rng.integers(1, 6, n)), pa.string()), ".0", ""),
          "t": pc.cast(pa.array(rng.integers(_T0, _T1, n)), pa.string())}))


def _ids(prefix: str, codes: np.ndarray, width: int) -> pa.Array:
  digits = pc.utf8_lpad(pc.cast(pa.array(codes), pa.string()), width, "0")
  return pc.binary_join_element_wise(prefix, digits, "") if prefix else digits


def meta_line(k: int, rng: np.random.Generator, num_items: int) -> str:
  """One metadata line as the 2014 release writes it: repr() of a dict, fields as present."""
  return _meta_lines(np.array([k]), rng, num_items)[0]


def _meta_lines(ks: np.ndarray, rng: np.random.Generator, num_items: int) -> list[str]:
  """Lines for items `ks`, random draws made in bulk (the full shape has 2.3M lines)."""
  n = len(ks)
  flags = rng.random((n, 5))
  lengths = rng.integers(2, 8, n), rng.integers(1, 3, n), rng.integers(10, 60, n)
  words = rng.integers(0, len(_WORDS), (n, 8 + 3 + 60))
  cats = rng.integers(0, len(_CATEGORIES), n)
  prices = np.round(rng.uniform(0.99, 60, n), 2)
  ranks = rng.integers(1, 3_000_000, n)
  related = rng.integers(0, num_items, (n, 4))
  text = lambda row, lo, m: " ".join(_WORDS[w] for w in row[lo:lo + m])
  out = []
  for r, k in enumerate(ks.tolist()):
    entry = {"asin": item_id(k), "title": text(words[r], 0, lengths[0][r]).title()}
    if flags[r, 0] < 0.9:
      entry["categories"] = [list(_CATEGORIES[cats[r]])]
    if flags[r, 1] < 0.6:
      entry["price"] = float(prices[r])
    if flags[r, 2] < 0.7:
      entry["salesRank"] = {"Books": int(ranks[r])}
    if flags[r, 3] < 0.2:
      entry["brand"] = text(words[r], 8, lengths[1][r]).title()
    entry["imUrl"] = f"http://ecx.images-amazon.com/images/I/{k:010d}.jpg"
    entry["related"] = {"also_bought": [item_id(j) for j in related[r].tolist()]}
    if flags[r, 4] < 0.7:
      entry["description"] = text(words[r], 11, lengths[2][r]).capitalize() + ". It's \"great\"."
    out.append(repr(entry))
  return out


def write_meta(file: str | os.PathLike, num_items: int, seed: int = 0, coverage: float = 0.98,
               compresslevel: int = 1, chunk: int = 50_000) -> None:
  """One line per item for a `coverage` fraction of the items (the real file misses some)."""
  rng = np.random.default_rng([seed, 1])
  with gzip.open(file, "wt", encoding="utf-8", compresslevel=compresslevel) as f:
    for start in range(0, num_items, chunk):
      ks = np.arange(start, min(start + chunk, num_items))
      ks = ks[rng.random(len(ks)) < coverage]
      f.write("\n".join(_meta_lines(ks, rng, num_items)) + "\n")


def write_sample(folder: str | os.PathLike, num_ratings: int = 60_000, num_users: int = 12_000,
                 num_items: int = 4_000, seed: int = 0) -> pathlib.Path:
  """Both files in `folder` (created); the defaults make the `:small` recipe's sample."""
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  write_ratings(folder / RATINGS_FILE, num_ratings, num_users, num_items, seed)
  write_meta(folder / META_FILE, num_items, seed)
  return folder


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="folder to write the two files into")
  parser.add_argument("--ratings", type=int, default=60_000)
  parser.add_argument("--users", type=int, default=12_000)
  parser.add_argument("--items", type=int, default=4_000)
  parser.add_argument("--seed", type=int, default=0)
  a = parser.parse_args()
  print(write_sample(a.out, a.ratings, a.users, a.items, a.seed))


if __name__ == "__main__":
  main()
