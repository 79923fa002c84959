"""Readers for the original GroupLens MovieLens files (100K and latest-small).

Ratings become implicit interactions: each user's rated movies sorted by
timestamp (ties keep file order), whatever the rating. Every movie in the item
file is kept, rated or not, because it still has to be ranked.
"""

import collections
import csv
import os
import pathlib
from collections.abc import Iterator

import numpy as np

from jaxrec.data import dataset as ds
from jaxrec.errors import JaxrecError

# u.genre's names, used when u.genre itself is absent.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
    "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")

# ml-latest-small writes this where a movie has no genres; we want "" instead,
# so the prompt drops the segment.
_NO_GENRES = "(no genres listed)"
_MAX_TAGS = 10

# (user id, item id, timestamp) in file order.
_Rating = tuple[str, str, int]


def load_100k(path: str | os.PathLike) -> ds.RecDataset:
  """Loads MovieLens 100K from its folder (u.data, u.item, optional u.genre)."""
  data_file, item_file, *genre_file = files_100k(path)
  genres = _read_100k_genres(genre_file[0]) if genre_file else ML100K_GENRES
  items = _read_100k_items(item_file, genres)
  ratings = list(_read_100k_ratings(data_file))
  return _build("ml-100k", items, ratings, data_file.name)


def load_latest_small(path: str | os.PathLike) -> ds.RecDataset:
  """Loads MovieLens latest-small (ratings.csv, movies.csv, tags.csv)."""
  ratings_file, movies_file, tags_file = files_latest_small(path)
  items = _read_movies(movies_file)
  tags = _read_tags(tags_file, items)
  for movie_id, fields in items.items():
    fields["tags"] = tags.get(movie_id, "")
  ratings = list(_read_latest_ratings(ratings_file))
  return _build("ml-latest-small", items, ratings, ratings_file.name)


def files_100k(path: str | os.PathLike) -> list[pathlib.Path]:
  """The files load_100k reads: u.data, u.item and u.genre when present."""
  folder = ds.require_dir(path, "MovieLens 100K's u.data and u.item")
  out = [ds.require_file(folder, "u.data", "MovieLens 100K ratings"),
         ds.require_file(folder, "u.item", "MovieLens 100K movies")]
  return out + [folder / "u.genre"] if (folder / "u.genre").is_file() else out


def files_latest_small(path: str | os.PathLike) -> list[pathlib.Path]:
  """The files load_latest_small reads: ratings.csv, movies.csv, tags.csv."""
  folder = ds.require_dir(
      path, "MovieLens latest-small's ratings.csv, movies.csv and tags.csv")
  return [ds.require_file(folder, "ratings.csv", "MovieLens ratings"),
          ds.require_file(folder, "movies.csv", "MovieLens movies"),
          ds.require_file(folder, "tags.csv", "MovieLens tags")]


def _build(name: str, items: dict[str, dict[str, str]], ratings: list[_Rating],
           ratings_name: str) -> ds.RecDataset:
  """Maps ids to indices and sorts each user's ratings by time."""
  item_ids = ds.sort_ids(items)
  index = {item_id: i for i, item_id in enumerate(item_ids)}
  by_user: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
  for user_id, item_id, timestamp in ratings:
    if item_id not in index:
      raise JaxrecError(
          f"{ratings_name}: user {user_id!r} rates item id {item_id!r}, which "
          f"is not in the item file")
    by_user[user_id].append((timestamp, index[item_id]))
  user_ids = ds.sort_ids(by_user)
  # sorted() is stable, so equal timestamps keep file order.
  ordered = [sorted(by_user[u], key=lambda r: r[0]) for u in user_ids]
  return ds.RecDataset(
      name=name,
      item_ids=tuple(item_ids),
      item_fields=tuple(items[i] for i in item_ids),
      user_ids=tuple(user_ids),
      sequences=tuple(ds.to_sequence([i for _, i in rows]) for rows in ordered),
      timestamps=tuple(np.asarray([t for t, _ in rows], np.int64) for rows in ordered),
  ).validate()


def _lines(file: pathlib.Path, encoding: str) -> Iterator[tuple[int, str]]:
  """(1-based line number, line) for the non-blank lines of a text file."""
  try:
    with open(file, encoding=encoding) as f:
      for lineno, line in enumerate(f, start=1):
        if line.strip():
          yield lineno, line.rstrip("\r\n")
  except UnicodeDecodeError as e:
    raise JaxrecError(
        f"{file}: not valid {encoding} at byte {e.start}") from None


def _row_error(file: pathlib.Path, lineno: int, line: str, why: str):
  return JaxrecError(f"{file}: line {lineno}: {why}: {ds.snippet(line)}")


def _read_100k_genres(file: pathlib.Path) -> tuple[str, ...]:
  """Genre names in flag order, from `name|index` lines."""
  names = {}
  for lineno, line in _lines(file, "latin-1"):
    name, sep, idx = line.rpartition("|")
    if not sep or not idx.strip().isdigit():
      raise _row_error(file, lineno, line, "expected 'genre|index'")
    names[int(idx)] = name
  if sorted(names) != list(range(len(names))):
    raise JaxrecError(f"{file}: genre indices must be 0..{len(names) - 1}")
  return tuple(names[i] for i in range(len(names)))


def _read_100k_items(
    file: pathlib.Path, genres: tuple[str, ...]) -> dict[str, dict[str, str]]:
  """u.item rows: id|title|release date|video date|url|genre flags."""
  items = {}
  num_fields = 5 + len(genres)
  for lineno, line in _lines(file, "latin-1"):
    parts = line.split("|")
    if len(parts) != num_fields:
      raise _row_error(file, lineno, line,
                       f"expected {num_fields} '|'-separated fields, got "
                       f"{len(parts)}")
    item_id, title, release_date = parts[0].strip(), parts[1], parts[2]
    flags = parts[5:]
    if not item_id.isdigit() or any(f not in ("0", "1") for f in flags):
      raise _row_error(file, lineno, line,
                       "expected a numeric item id and 0/1 genre flags")
    item_id = str(int(item_id))
    if item_id in items:
      raise _row_error(file, lineno, line, f"item id {item_id} repeated")
    items[item_id] = {
        "title": title.strip(),
        "release_date": release_date.strip(),
        "year": _year_of(release_date),
        "genres": ", ".join(g for g, f in zip(genres, flags) if f == "1"),
    }
  return items


def _year_of(release_date: str) -> str:
  """"01-Jan-1995" -> "1995"; "" when the date is missing or odd."""
  year = release_date.strip()[-4:]
  return year if year.isdigit() else ""


def _read_100k_ratings(file: pathlib.Path) -> Iterator[_Rating]:
  """u.data rows: user\\titem\\trating\\ttimestamp."""
  for lineno, line in _lines(file, "utf-8"):
    parts = line.split("\t")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
      raise _row_error(file, lineno, line,
                       "expected 4 tab-separated integers user, item, rating, "
                       "timestamp")
    yield str(int(parts[0])), str(int(parts[1])), int(parts[3])


def _csv_rows(file: pathlib.Path,
              header: list[str]) -> Iterator[tuple[int, list[str]]]:
  """(line number, row) after checking the header; rows must match its width."""
  try:
    with open(file, encoding="utf-8", newline="") as f:
      reader = csv.reader(f)
      first = next(reader, None)
      if first != header:
        raise JaxrecError(
            f"{file}: line 1: expected header {','.join(header)!r}, got "
            f"{','.join(first or [])!r}")
      for row in reader:
        if not row:
          continue
        if len(row) != len(header):
          raise _row_error(file, reader.line_num, ",".join(row),
                           f"expected {len(header)} fields, got {len(row)}")
        yield reader.line_num, row
  except csv.Error as e:
    raise JaxrecError(f"{file}: malformed CSV: {e}") from None
  except UnicodeDecodeError as e:
    raise JaxrecError(f"{file}: not valid utf-8 at byte {e.start}") from None


def _read_movies(file: pathlib.Path) -> dict[str, dict[str, str]]:
  """movies.csv: movieId,title,genres with genres '|'-separated."""
  items = {}
  for lineno, (movie_id, title, genres) in _csv_rows(
      file, ["movieId", "title", "genres"]):
    if not movie_id.strip().isdigit():
      raise _row_error(file, lineno, movie_id, "movieId must be an integer")
    movie_id = str(int(movie_id))
    if movie_id in items:
      raise _row_error(file, lineno, movie_id, "movieId repeated")
    genres = "" if genres.strip() == _NO_GENRES else genres
    items[movie_id] = {
        "title": title.strip(),
        "genres": ", ".join(g.strip() for g in genres.split("|") if g.strip()),
    }
  return items


def _read_tags(file: pathlib.Path,
               items: dict[str, dict[str, str]]) -> dict[str, str]:
  """Per movie, its most frequent distinct lowercased tags, joined by ", "."""
  counts: dict[str, collections.Counter] = collections.defaultdict(
      collections.Counter)
  for lineno, (_, movie_id, tag, _) in _csv_rows(
      file, ["userId", "movieId", "tag", "timestamp"]):
    movie_id = movie_id.strip()
    movie_id = str(int(movie_id)) if movie_id.isdigit() else movie_id
    if movie_id not in items:
      raise _row_error(file, lineno, ",".join((movie_id, tag)),
                       f"movieId {movie_id!r} is not in movies.csv")
    tag = " ".join(tag.lower().split())
    if tag:
      counts[movie_id][tag] += 1
  return {m: _top_tags(c) for m, c in counts.items()}


def _top_tags(counts: collections.Counter) -> str:
  """Most frequent first; ties alphabetical, so the text is reproducible."""
  ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
  return ", ".join(tag for tag, _ in ranked[:_MAX_TAGS])


def _read_latest_ratings(file: pathlib.Path) -> Iterator[_Rating]:
  """ratings.csv: userId,movieId,rating,timestamp."""
  for lineno, (user_id, movie_id, rating, timestamp) in _csv_rows(
      file, ["userId", "movieId", "rating", "timestamp"]):
    row = (user_id, movie_id, rating, timestamp)
    if not (all(p.strip().isdigit() for p in (user_id, movie_id, timestamp))
            and _is_float(rating)):
      raise _row_error(file, lineno, ",".join(row),
                       "expected integer userId, movieId, timestamp and a "
                       "numeric rating")
    yield str(int(user_id)), str(int(movie_id)), int(timestamp)


def _is_float(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True
