"""The HTTP contract, request validation and concurrent use, through FastAPI's TestClient."""

import concurrent.futures
import json
import shutil

import pytest
from fastapi.testclient import TestClient

from jaxrec.serving import app as app_lib
from jaxrec.serving.service import Service


@pytest.fixture(scope="module")
def client(serving_folder, tmp_path_factory):
  folder = tmp_path_factory.mktemp("app") / "serving"
  shutil.copytree(serving_folder, folder)
  svc = Service(folder, warm_up=False)
  with TestClient(app_lib.create_app(svc)) as c:
    c.service = svc
    yield c


def test_contract(client):
  svc = client.service
  health = client.get("/health").json()
  assert health == {"status": "ok", "items": svc.num_items()}
  hist = svc.ids[:3]
  r = client.post("/recommend", json={"history": hist, "k": 5})
  assert r.status_code == 200
  items = r.json()["items"]
  assert len(items) == 5 and set(items[0]) >= {"id", "score", "title"}
  assert not {i["id"] for i in items} & set(hist)
  assert [i["id"] for i in items] == svc.exact_recommend(hist, 5)
  # A history item the catalogue lacks, by its text:
  r = client.post("/recommend", json={"history": [hist[0], {"text": "Title: Spiral notebook"}], "k": 3})
  assert r.status_code == 200 and len(r.json()["items"]) == 3
  r = client.post("/items", json={"items": [{"id": "api-new", "title": "Ergonomic stapler"}]})
  assert r.json() == {"items": [{"id": "api-new", "status": "added"}]}
  assert client.get("/health").json()["items"] == health["items"] + 1
  r = client.post("/items", json={"items": [{"id": "api-new", "text": "Heavy stapler"}]})
  assert r.json()["items"][0]["status"] == "updated"
  assert client.get("/items/api-new").json() == {"id": "api-new", "title": "Heavy stapler",
                                                 "in_index": True, "added_by_text": True}
  assert client.get("/health").json()["items"] == health["items"] + 1
  assert client.delete("/items/api-new").json() == {"id": "api-new", "status": "removed"}
  assert client.get("/health").json()["items"] == health["items"]
  assert client.get("/items/api-new").json()["in_index"] is False
  assert client.get("/items/never-seen").status_code == 404
  stats = client.get("/stats").json()
  assert stats["index"]["params"]["mode"] == "brute_force" and stats["index"]["build_report"]["recall"] == 1.0


@pytest.mark.parametrize("body, status, message", [
    ({"history": [], "k": 5}, 422, "history"),
    ({"history": ["no-such-id"], "k": 5}, 422, "unknown item ids"),
    ({"history": ["ID0"], "k": 0}, 422, "k"),
    ({"history": ["ID0"], "k": 10_000}, 422, "k=10000"),
    ({"history": "ID0", "k": 5}, 422, "history"),
    ({"history": [{"txt": "x"}], "k": 5}, 422, "history"),
    ({"histroy": ["ID0"]}, 422, "histroy"),
    ({"history": ["ID0"], "k": "many"}, 422, "k"),
])
def test_bad_recommend_requests_get_4xx_with_a_message(client, body, status, message):
  body = json.loads(json.dumps(body).replace("ID0", client.service.ids[0]))
  r = client.post("/recommend", json=body)
  assert r.status_code == status, r.text
  assert message in r.json()["detail"]


def test_bad_bodies_and_items(client):
  r = client.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
  assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
  big = {"history": ["x" * 100] * 20_000, "k": 5}
  r = client.post("/recommend", json=big)
  assert r.status_code == 413 and "limit" in r.json()["detail"]
  assert client.post("/items", json={"items": []}).status_code == 422
  r = client.post("/items", json={"items": [{"id": "x"}]})
  assert r.status_code == 422 and "no text" in r.json()["detail"]
  r = client.post("/items", json={"items": [{"id": "x", "brand": 3}]})
  assert r.status_code == 422 and "brand" in r.json()["detail"]
  r = client.delete("/items/no-such-item")
  assert r.status_code == 404 and "no-such-item" in r.json()["detail"]
  assert client.get("/health").status_code == 200     # still serving


def test_concurrent_queries_and_upserts_lose_nothing(client):
  svc = client.service
  before = svc.num_items()
  hist = [svc.ids[5]]
  def query(_):
    return client.post("/recommend", json={"history": hist, "k": 10}).status_code
  def add(i):
    return client.post("/items", json={"items": [{"id": f"conc-{i}", "text": f"Desk lamp model {i}"}]}).status_code
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    futures = [pool.submit(query, i) for i in range(40)] + [pool.submit(add, i) for i in range(6)]
    codes = [f.result() for f in futures]
  assert codes == [200] * 46
  assert svc.num_items() == before + 6
  assert all(f"conc-{i}" in svc.index for i in range(6))
  restarted = Service(svc.folder, warm_up=False)
  assert restarted.num_items() == before + 6
