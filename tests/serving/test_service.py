"""The service on a tiny trained run: cold-start parity with the model, persistence, export."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from jaxrec import train
from jaxrec.serving import catalog, service
from jaxrec.serving.service import RequestError, Service


@pytest.fixture(scope="module")
def run_data(trained_run):
  config = catalog.config_from_json(json.loads((trained_run / "config.json").read_text()))
  dataset, split, cold = train.load_data(config)
  return config, dataset, split, cold


@pytest.fixture(scope="module")
def full_folder(trained_run, tmp_path_factory):
  """The same run with the cold items in the catalogue, as the model itself embeds them."""
  out = tmp_path_factory.mktemp("full") / "serving"
  catalog.build_artifact(trained_run, out, include_cold=True)
  return out


def _cold_items(dataset, cold):
  return [{"id": dataset.item_ids[i], **dataset.item_fields[i]} for i in cold]


def test_cold_items_added_by_text_get_the_models_own_embedding(serving_folder, full_folder, run_data,
                                                               tmp_path):
  config, dataset, _, cold = run_data
  svc = Service(serving_folder, warm_up=False)
  assert svc.num_items() == dataset.num_items - len(cold)
  assert all(dataset.item_ids[i] not in svc.row_of for i in cold)
  status = svc.add_items(_cold_items(dataset, cold))
  assert {s["status"] for s in status} == {"added"} and svc.num_items() == dataset.num_items
  # The checkpoint's own embedding of each never-trained item (its PCA-initialised ID row
  # got no gradient), computed by the model over the full catalogue:
  full = np.load(full_folder / "base.npz", allow_pickle=False)
  want = full["item_emb"][np.isin(full["ids"], [dataset.item_ids[i] for i in cold])]
  got = svc.item_emb[[svc.row_of[dataset.item_ids[i]] for i in cold]]
  np.testing.assert_allclose(got, want, atol=2e-4)


def test_user_tower_on_input_vectors_matches_the_evaluation_path(full_folder, run_data):
  _, dataset, split, _ = run_data
  svc = Service(full_folder, warm_up=False)
  queries = np.load(full_folder / "queries.npy")
  hist = [[dataset.item_ids[i] for i in h] for h in split.test.histories[:20]]
  users = svc.encoder.user_vectors([svc.history_vectors(h)[0] for h in hist])
  np.testing.assert_allclose(users, queries[:20], atol=2e-4)


def test_recommend_excludes_history_and_matches_exact_search(serving_folder, run_data):
  _, dataset, split, _ = run_data
  svc = Service(serving_folder, warm_up=False)
  hist = [i for i in (dataset.item_ids[j] for j in split.test.histories[0]) if i in svc.row_of]
  items = svc.recommend(hist, 10)
  assert len(items) == 10 and not {i["id"] for i in items} & set(hist)
  assert [i["id"] for i in items] == svc.exact_recommend(hist, 10)
  assert all(isinstance(i["title"], str) and i["title"] for i in items)
  scores = [i["score"] for i in items]
  assert scores == sorted(scores, reverse=True)


def test_add_update_remove_survive_a_restart(serving_folder, tmp_path):
  import shutil
  folder = tmp_path / "serving"
  shutil.copytree(serving_folder, folder)
  svc = Service(folder, warm_up=False)
  n = svc.num_items()
  assert svc.add_items([{"id": "new-1", "title": "Titanium fountain pen",
                         "description": "A heavy pen for signing contracts"}])[0]["status"] == "added"
  assert svc.add_items([{"id": "new-1", "text": "Recycled paper notebook"}])[0]["status"] == "updated"
  first = svc.ids[0]
  assert svc.add_items([{"id": first, "text": "Blue gel pens, pack of 12"}])[0]["status"] == "updated"
  svc.remove_items([svc.ids[1]])
  removed = svc.ids[1]
  with pytest.raises(RequestError, match="not in the index"):
    svc.remove_items(["no-such-item"])
  assert svc.num_items() == n
  emb = svc.item_emb[svc.row_of["new-1"]].copy()
  again = Service(folder, warm_up=False)          # a restart
  assert again.num_items() == n and "new-1" in again.index and removed not in again.index
  np.testing.assert_array_equal(again.item_emb[again.row_of["new-1"]], emb)
  assert again.texts[again.row_of["new-1"]] == "Recycled paper notebook"
  assert again.recommend(["new-1"], 5)            # an added item works as history
  assert again.recommend([removed], 5)            # a removed item is still known to the model
  assert removed not in {i["id"] for i in again.recommend([first], 50)}
  assert len(list(folder.glob("state-*"))) == 1   # old states are dropped
  info = again.export(tmp_path / "export")
  table = pq.read_table(tmp_path / "export" / "items.parquet")
  assert table.num_rows == info["items"] == n
  emb_npy = np.load(tmp_path / "export" / "embeddings.npy")
  meta = json.loads((tmp_path / "export" / "items.json").read_text())
  row = meta["ids"].index("new-1")
  np.testing.assert_allclose(emb_npy[row], emb)
  assert table.column("id").to_pylist() == meta["ids"]


def test_bad_requests_are_refused_with_a_message(serving_folder):
  svc = Service(serving_folder, warm_up=False)
  with pytest.raises(RequestError, match="history is empty"):
    svc.recommend([], 5)
  with pytest.raises(RequestError, match="unknown item ids"):
    svc.recommend(["nope", svc.ids[0]], 5)
  with pytest.raises(RequestError, match="k=0"):
    svc.recommend([svc.ids[0]], 0)
  with pytest.raises(RequestError, match="no text"):
    svc.add_items([{"id": "x"}])
  with pytest.raises(RequestError, match="twice"):
    svc.add_items([{"id": "x", "text": "a"}, {"id": "x", "text": "b"}])


def test_item_text_uses_the_runs_template():
  t = "Title: {title}. Brand: {brand}"
  assert service.item_text({"id": "1", "title": "Pen", "brand": "Acme"}, t, 100) == \
      "Title: Pen. Brand: Acme"
  assert service.item_text({"id": "1", "text": "raw text"}, t, 100) == "raw text"
