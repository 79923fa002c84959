"""LC-Rec json reader: fixture folders for errors, real Office for counts."""

import json

import numpy as np
import pytest

from jaxrec.data import lcrec_json
from jaxrec.errors import JaxrecError

_ITEMS = {
    "0": {"title": "Pen", "description": "", "brand": "Bic",
          "categories": "Office, Pens"},
    "2": {"title": "Ink", "description": "Blue ink", "brand": "",
          "categories": "Office, Ink"},
    "10": {"title": "Desk", "description": "", "brand": "",
           "categories": "Furniture"},
    "1": {"title": "", "description": "Never bought", "brand": "",
          "categories": "Office"},
}
_INTER = {"1": [10, 0], "0": [0, 2, 10]}


def _write(folder, name="Toy", items=None, inter=None):
  folder.mkdir(exist_ok=True)
  (folder / f"{name}.item.json").write_text(
      json.dumps(items if items is not None else _ITEMS, indent=4))
  (folder / f"{name}.inter.json").write_text(
      json.dumps(inter if inter is not None else _INTER, indent=4))
  return folder


def test_loads_fixture_with_numeric_id_order(tmp_path):
  data = lcrec_json.load(_write(tmp_path / "toy"))
  assert data.name == "Toy"
  assert data.item_ids == ("0", "1", "2", "10")  # numeric, not string, order
  assert data.user_ids == ("0", "1")
  # Item "1" is never interacted with but stays in the catalogue.
  assert data.num_items == 4 and data.item_fields[1]["title"] == ""
  np.testing.assert_array_equal(data.sequences[0], [0, 2, 3])
  np.testing.assert_array_equal(data.sequences[1], [3, 0])
  assert data.sequences[0].dtype == np.int32


def test_name_picks_one_of_several_pairs(tmp_path):
  folder = _write(tmp_path, "A")
  _write(folder, "B", inter={"7": [2]})
  with pytest.raises(JaxrecError, match="several .*inter.json.*pass name="):
    lcrec_json.load(folder)
  assert lcrec_json.load(folder, name="B").user_ids == ("7",)


def test_malformed_json_names_file_and_line(tmp_path):
  folder = _write(tmp_path)
  (folder / "Toy.inter.json").write_text('{\n  "0": [1, 2],\n  "1": [3,,]\n}')
  with pytest.raises(JaxrecError,
                     match=r"Toy\.inter\.json: malformed JSON at line 3"):
    lcrec_json.load(folder)


def test_unknown_item_id_is_an_error(tmp_path):
  folder = _write(tmp_path, inter={"0": [0, 99]})
  with pytest.raises(JaxrecError,
                     match=r"user '0': item id '99' is not in Toy\.item\.json"):
    lcrec_json.load(folder)


@pytest.mark.parametrize("inter, fragment", [
    ({"0": 5}, "expected a list of item ids, got int"),
    ({"0": []}, "empty item list"),
    ({"0": [0, None]}, "item ids must be integers or strings"),
    ([[0, 1]], "top level must be a JSON object"),
])
def test_bad_sequences(tmp_path, inter, fragment):
  with pytest.raises(JaxrecError, match=fragment):
    lcrec_json.load(_write(tmp_path, inter=inter))


def test_bad_item_field(tmp_path):
  items = {"0": {"title": ["not", "text"]}}
  with pytest.raises(JaxrecError,
                     match="item '0' field 'title' must be a string"):
    lcrec_json.load(_write(tmp_path, items=items, inter={"0": [0]}))


def test_missing_folder_and_files(tmp_path):
  with pytest.raises(JaxrecError,
                     match="does not exist; expected .*inter.json"):
    lcrec_json.load(tmp_path / "nope")
  with pytest.raises(JaxrecError, match=r"no \*\.inter\.json file in"):
    lcrec_json.load(tmp_path)
  (tmp_path / "Toy.inter.json").write_text("{}")
  with pytest.raises(JaxrecError, match=r"Toy\.item\.json' not found"):
    lcrec_json.load(tmp_path, name="Toy")


@pytest.fixture(scope="module")
def office(shared_data):
  return lcrec_json.load(shared_data / "amazon-office")


def test_real_office_counts(office):
  assert office.name == "Office"
  assert (office.num_users, office.num_items, office.num_interactions) == (
      4905, 2420, 53258)
  assert office.item_ids[:3] == ("0", "1", "2")
  np.testing.assert_array_equal(office.sequences[0], [0, 1, 2, 3, 4])
  assert office.field_names == ("brand", "categories", "description", "title")
  assert sum(not f["title"] for f in office.item_fields) == 3
  assert sum(not f["description"] for f in office.item_fields) == 639
