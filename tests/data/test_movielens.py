"""MovieLens readers: fixture folders for parsing, real data for counts."""

import numpy as np
import pytest

from jaxrec.data import movielens
from jaxrec.errors import JaxrecError

_GENRES = "unknown|0\nAction|1\nComedy|2\n\n"
_ITEMS_100K = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n"
    "2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|1\n"
    "3|Caf\xe9 (1996)|||http://x|1|0|0\n")
# User 7's ratings are out of time order; items 2 and 1 tie at time 50.
_DATA_100K = "7\t3\t4\t90\n7\t2\t5\t50\n5\t1\t3\t10\n7\t1\t1\t50\n"


def _write_100k(folder, data=_DATA_100K, items=_ITEMS_100K):
  folder.mkdir(exist_ok=True)
  (folder / "u.genre").write_text(_GENRES, encoding="latin-1")
  (folder / "u.item").write_text(items, encoding="latin-1")
  (folder / "u.data").write_text(data)
  return folder


def test_100k_fixture(tmp_path):
  data = movielens.load_100k(_write_100k(tmp_path))
  assert data.item_ids == ("1", "2", "3") and data.user_ids == ("5", "7")
  np.testing.assert_array_equal(data.sequences[0], [0])
  np.testing.assert_array_equal(data.sequences[1], [1, 0, 2])  # time, then file
  assert data.item_fields[1] == {
      "title": "GoldenEye (1995)", "release_date": "01-Jan-1995",
      "year": "1995", "genres": "Action, Comedy"}
  assert data.item_fields[2]["title"] == "Caf\xe9 (1996)"  # latin-1
  assert data.item_fields[2]["year"] == ""


def test_100k_malformed_row_names_line(tmp_path):
  folder = _write_100k(tmp_path, data="7\t3\t4\t90\n7\t2\t5\t50\n7 1 1 50\n")
  with pytest.raises(JaxrecError, match=r"u\.data: line 3: .*'7 1 1 50'"):
    movielens.load_100k(folder)


def test_100k_bad_item_row(tmp_path):
  folder = _write_100k(tmp_path, items="1|Toy Story|01-Jan-1995||x|0|0\n")
  with pytest.raises(JaxrecError, match=r"u\.item: line 1: expected 8"):
    movielens.load_100k(folder)


def test_100k_unknown_item(tmp_path):
  folder = _write_100k(tmp_path, data="7\t42\t4\t90\n")
  with pytest.raises(JaxrecError, match="item id '42', which is not in"):
    movielens.load_100k(folder)


def test_100k_missing_files(tmp_path):
  with pytest.raises(JaxrecError, match="does not exist; expected .*u.data"):
    movielens.load_100k(tmp_path / "missing")
  (tmp_path / "u.data").write_text(_DATA_100K)
  with pytest.raises(JaxrecError, match=r"u\.item' not found; expected"):
    movielens.load_100k(tmp_path)


_MOVIES = ('movieId,title,genres\n'
           '1,Toy Story (1995),Adventure|Animation\n'
           '2,"American President, The (1995)",Comedy|Drama|Romance\n'
           '5,Unrated (2001),(no genres listed)\n')
_RATINGS = ('userId,movieId,rating,timestamp\n'
            '3,2,4.0,20\n3,1,3.5,10\n1,2,5.0,7\n')
_TAGS = ('userId,movieId,tag,timestamp\n'
         '1,1,Pixar,1\n2,1,pixar,2\n3,1,Fun ,3\n1,1,toys,4\n2,1,Fun,5\n'
         '3,1,PIXAR,6\n')


def _write_latest(folder, ratings=_RATINGS, movies=_MOVIES, tags=_TAGS):
  folder.mkdir(exist_ok=True)
  (folder / "movies.csv").write_text(movies)
  (folder / "ratings.csv").write_text(ratings)
  (folder / "tags.csv").write_text(tags)
  return folder


def test_latest_small_fixture(tmp_path):
  data = movielens.load_latest_small(_write_latest(tmp_path))
  assert data.item_ids == ("1", "2", "5")  # movie 5 unrated, still ranked
  assert data.user_ids == ("1", "3")
  np.testing.assert_array_equal(data.sequences[1], [0, 1])
  assert data.item_fields[0] == {"title": "Toy Story (1995)",
                                 "genres": "Adventure, Animation",
                                 "tags": "pixar, fun, toys"}
  assert data.item_fields[1]["title"] == "American President, The (1995)"
  assert data.item_fields[1]["tags"] == ""
  assert data.item_fields[2]["genres"] == ""


def test_latest_small_top_ten_tags(tmp_path):
  rows = "".join(f"1,1,tag{i:02d},0\n" * (i + 1) for i in range(12))
  folder = _write_latest(tmp_path, tags="userId,movieId,tag,timestamp\n" + rows)
  tags = movielens.load_latest_small(folder).item_fields[0]["tags"]
  assert tags.split(", ") == [f"tag{i:02d}" for i in range(11, 1, -1)]


def test_latest_small_errors(tmp_path):
  bad_row = _RATINGS + "3,oops,4.0,30\n"
  with pytest.raises(JaxrecError, match=r"ratings\.csv: line 5: .*oops"):
    movielens.load_latest_small(_write_latest(tmp_path, ratings=bad_row))
  with pytest.raises(JaxrecError, match="line 1: expected header"):
    movielens.load_latest_small(_write_latest(tmp_path, ratings="a,b\n1,2\n"))
  unknown = _RATINGS + "3,99,4.0,30\n"
  with pytest.raises(JaxrecError, match="item id '99'"):
    movielens.load_latest_small(_write_latest(tmp_path, ratings=unknown))
  (tmp_path / "tags.csv").unlink()
  with pytest.raises(JaxrecError, match=r"tags\.csv' not found"):
    movielens.load_latest_small(tmp_path)


def test_real_100k(shared_data):
  folder = shared_data / "ml-100k"
  data = movielens.load_100k(folder)
  assert (data.num_users, data.num_items, data.num_interactions) == (
      943, 1682, 100000)
  assert data.item_fields[0]["genres"] == "Animation, Children's, Comedy"
  raw = np.loadtxt(folder / "u.data", dtype=np.int64)
  when = {(u, i): t for u, i, _, t in raw}
  for user_id, seq in zip(data.user_ids, data.sequences):
    times = [when[int(user_id), int(data.item_ids[i])] for i in seq]
    assert times == sorted(times), user_id


def test_real_latest_small(shared_data):
  data = movielens.load_latest_small(shared_data / "ml-latest-small")
  assert (data.num_users, data.num_items, data.num_interactions) == (
      610, 9742, 100836)
  rated = np.unique(np.concatenate(data.sequences))
  assert rated.size == 9724
  assert data.item_fields[0]["tags"] == "pixar, fun"
