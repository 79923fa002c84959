"""Reader for the LC-Rec / LETTER json format (e.g. Amazon `Office`).

A folder holds `<Name>.inter.json`, `{"<user>": [item, ...]}` oldest first, and
`<Name>.item.json`, `{"<item>": {"title": ..., ...}}`. Every item in the item
table is kept, interacted with or not, because it still has to be ranked.
"""

import json
import os
import pathlib
from typing import Any

from jaxrec.data import dataset as ds
from jaxrec.errors import JaxrecError

_EXPECTED = "one <Name>.inter.json and one <Name>.item.json (LC-Rec format)"


def load(path: str | os.PathLike, name: str | None = None) -> ds.RecDataset:
  """Loads the dataset in folder `path`; `name` picks `<name>.inter.json`."""
  inter_file, item_file = files(path, name)
  items = _read_json_object(item_file)
  inter = _read_json_object(inter_file)
  item_ids = ds.sort_ids(items)
  item_fields = tuple(
      _parse_item(item_file.name, k, items[k]) for k in item_ids)
  item_fields = _fill_missing_fields(item_fields)
  index = {item_id: i for i, item_id in enumerate(item_ids)}
  user_ids = ds.sort_ids(inter)
  sequences = tuple(
      _parse_sequence(inter_file.name, item_file.name, u, inter[u], index)
      for u in user_ids)
  dataset_name = inter_file.name[:-len(".inter.json")]
  return ds.RecDataset(
      name=dataset_name,
      item_ids=tuple(item_ids),
      item_fields=item_fields,
      user_ids=tuple(user_ids),
      sequences=sequences,
  ).validate()


def files(path: str | os.PathLike, name: str | None = None) -> tuple[pathlib.Path, pathlib.Path]:
  """The (inter, item) file pair `load` reads, by name or as the folder's only pair."""
  folder = ds.require_dir(path, _EXPECTED)
  if name is not None:
    return (ds.require_file(folder, f"{name}.inter.json", "the interactions"),
            ds.require_file(folder, f"{name}.item.json", "the item table"))
  return (_only_match(folder, "*.inter.json"),
          _only_match(folder, "*.item.json"))


def _only_match(folder: pathlib.Path, pattern: str) -> pathlib.Path:
  matches = sorted(p for p in folder.glob(pattern) if p.is_file())
  if not matches:
    raise JaxrecError(
        f"no {pattern} file in {str(folder)!r}; expected {_EXPECTED}")
  if len(matches) > 1:
    names = ", ".join(p.name for p in matches)
    raise JaxrecError(
        f"several {pattern} files in {str(folder)!r} ({names}); pass name= "
        f"to pick one")
  return matches[0]


def _read_json_object(file: pathlib.Path) -> dict[str, Any]:
  """Parses a json file whose top level must be an object."""
  try:
    with open(file, encoding="utf-8") as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise JaxrecError(
        f"{file}: malformed JSON at line {e.lineno}, column {e.colno}: "
        f"{e.msg}") from None
  except UnicodeDecodeError as e:
    raise JaxrecError(
        f"{file}: not valid UTF-8 at byte {e.start}") from None
  if not isinstance(data, dict):
    raise JaxrecError(
        f"{file}: top level must be a JSON object keyed by id, got "
        f"{type(data).__name__}")
  return data


def _parse_item(filename: str, item_id: str, entry: Any) -> dict[str, str]:
  """One item's text fields; null values become empty strings."""
  if not isinstance(entry, dict):
    raise JaxrecError(
        f"{filename}: item {item_id!r} must be an object of text fields, got "
        f"{type(entry).__name__}")
  fields = {}
  for key, value in entry.items():
    if value is None:
      value = ""
    if not isinstance(value, str):
      raise JaxrecError(
          f"{filename}: item {item_id!r} field {key!r} must be a string, got "
          f"{type(value).__name__}")
    fields[key] = value
  return fields


def _fill_missing_fields(
    item_fields: tuple[dict[str, str], ...]) -> tuple[dict[str, str], ...]:
  """Gives every item every field (empty when absent), so templates apply."""
  names = sorted({k for fields in item_fields for k in fields})
  return tuple({k: fields.get(k, "") for k in names} for fields in item_fields)


def _parse_sequence(inter_name: str, item_name: str, user_id: str, raw: Any,
                    index: dict[str, int]):
  """One user's item list mapped to internal indices."""
  where = f"{inter_name}: user {user_id!r}"
  if not isinstance(raw, list):
    raise JaxrecError(
        f"{where}: expected a list of item ids, got {type(raw).__name__}")
  if not raw:
    raise JaxrecError(f"{where}: has an empty item list")
  indices = []
  for item in raw:
    if isinstance(item, bool) or not isinstance(item, (int, str)):
      raise JaxrecError(
          f"{where}: item ids must be integers or strings, got {item!r}")
    key = str(item)
    if key not in index:
      raise JaxrecError(
          f"{where}: item id {key!r} is not in {item_name}")
    indices.append(index[key])
  return ds.to_sequence(indices)
