"""The generated demo dataset: deterministic, well-formed, and text-driven."""

import collections
import time

import numpy as np
import pytest

from jaxrec.data import synthetic
from jaxrec.errors import JaxrecError


@pytest.fixture(scope="module")
def demo():
  return synthetic.make_demo()


def test_deterministic_for_a_seed(demo):
  again = synthetic.make_demo()
  assert again.item_fields == demo.item_fields
  assert all(np.array_equal(a, b)
             for a, b in zip(again.sequences, demo.sequences))
  other = synthetic.make_demo(seed=1)
  assert not all(np.array_equal(a, b)
                 for a, b in zip(other.sequences, demo.sequences))


def test_shapes_and_ranges(demo):
  assert (demo.num_users, demo.num_items) == (1000, 400)
  lengths = [len(s) for s in demo.sequences]
  assert min(lengths) >= 5 and max(lengths) <= 30
  for seq in demo.sequences:
    assert seq.dtype == np.int32
    assert len(set(seq.tolist())) == len(seq)  # no repeats within a user
  assert demo.field_names == ("brand", "category", "description", "title")
  assert all(all(f.values()) for f in demo.item_fields)
  assert len({f["title"] for f in demo.item_fields}) == demo.num_items
  small = synthetic.make_demo(num_users=7, num_items=50, seed=3)
  assert (small.num_users, small.num_items) == (7, 50)


def test_sequences_follow_text(demo):
  category = [f["category"] for f in demo.item_fields]
  pairs = [(a, b) for s in demo.sequences for a, b in zip(s[:-1], s[1:])]
  same = np.mean([category[a] == category[b] for a, b in pairs])
  share = np.array(list(collections.Counter(category).values())) / len(category)
  chance = float((share ** 2).sum())
  assert same > 3 * chance, (same, chance)


def test_popularity_is_skewed(demo):
  counts = np.bincount(np.concatenate(demo.sequences), minlength=400)
  top_decile = np.sort(counts)[::-1][:40].sum() / counts.sum()
  assert top_decile > 0.2  # uniform would be 0.1


def test_fast():
  start = time.perf_counter()
  synthetic.make_demo(seed=5)
  assert time.perf_counter() - start < 1.0


def test_bad_arguments():
  with pytest.raises(JaxrecError, match="num_items must be >= 30"):
    synthetic.make_demo(num_items=10)
  with pytest.raises(JaxrecError, match="num_users must be >= 1"):
    synthetic.make_demo(num_users=0)
