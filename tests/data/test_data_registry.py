"""load_dataset: dispatch by kind and clear errors for bad configs."""

import json

import pytest

from jaxrec.data import prompts
from jaxrec.data import registry
from jaxrec.errors import JaxrecError


def test_kinds_have_templates():
  assert set(registry.KINDS) == set(prompts.DEFAULT_TEMPLATES)


def test_unknown_kind_lists_valid_ones():
  with pytest.raises(
      JaxrecError, match="kind 'imdb'; valid kinds: amazon_books, lcrec_json, movielens"):
    registry.load_dataset("imdb", "/x")


def test_synthetic_with_options():
  data = registry.load_dataset("synthetic_demo", num_users=10, num_items=40)
  assert (data.num_users, data.num_items) == (10, 40)
  with pytest.raises(JaxrecError, match="valid options: num_users, num_items"):
    registry.load_dataset("synthetic_demo", users=10)
  with pytest.raises(JaxrecError, match="is generated, not read"):
    registry.load_dataset("synthetic_demo", "/x")


def test_folder_kinds_need_a_path(tmp_path):
  with pytest.raises(JaxrecError, match="needs a path"):
    registry.load_dataset("movielens_100k")
  (tmp_path / "T.item.json").write_text(json.dumps({"0": {"title": "a"}}))
  (tmp_path / "T.inter.json").write_text(json.dumps({"0": [0]}))
  data = registry.load_dataset("lcrec_json", str(tmp_path), name="T")
  assert data.num_interactions == 1


def test_streaming_a_kind_without_a_tfds_dataset_is_one_clear_error():
  with pytest.raises(JaxrecError, match="synthetic_demo.* has no TFDS dataset to stream from; kinds that do: "
                                        "amazon_books, lcrec_json"):
    registry.load_streamed("synthetic_demo", "/nowhere")
