"""The HTTP API (FastAPI) over a `Service`.

Contract (item ids are the dataset's own ids, as strings):
  GET    /health            -> {"status": "ok", "items": N}
  GET    /stats             -> index settings, measured recall/QPS, counts, model step
  POST   /recommend         {"history": ["id" | {"text": ...}, ...], "k": 10}
                            -> {"items": [{"id", "score", "title"}, ...]} (history excluded)
  POST   /items             {"items": [{"id": ..., "text": ... | "title": ..., ...}]}
                            -> {"items": [{"id", "status": "added" | "updated"}]}
  GET    /items/{id}        -> {"id", "title", "in_index", "added_by_text"}
  DELETE /items/{id}        -> {"id": ..., "status": "removed"}
Errors are 4xx with {"detail": "<what is wrong>"}: 413 body too large, 411 no
length, 422 invalid or unknown input, 404 unknown item to delete.

Concurrent /recommend requests are batched: a worker thread takes every
request waiting (up to the largest user-tower bucket), runs the user tower
once for all of them and searches the index; handlers await the result.
"""

import asyncio
import concurrent.futures
import logging
import queue
import threading
from typing import Annotated, Union

import fastapi
import pydantic
from fastapi import responses

from jaxrec.serving.service import RequestError, Service

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_HISTORY = 1000
MAX_ITEMS_PER_POST = 1000
MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 20_000

ItemId = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]


class TextItem(pydantic.BaseModel):
  model_config = pydantic.ConfigDict(extra="forbid")
  text: Annotated[str, pydantic.StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]


class RecommendRequest(pydantic.BaseModel):
  model_config = pydantic.ConfigDict(extra="forbid")
  history: Annotated[list[Union[ItemId, TextItem]], pydantic.Field(min_length=1, max_length=MAX_HISTORY)]
  k: Annotated[int, pydantic.Field(ge=1)] = 10


class NewItem(pydantic.BaseModel):
  """An item by `text` (used as is) or by fields the run's template names (title, brand, ...)."""
  model_config = pydantic.ConfigDict(extra="allow")
  id: ItemId
  text: Annotated[str, pydantic.StringConstraints(max_length=MAX_TEXT_CHARS)] | None = None
  title: Annotated[str, pydantic.StringConstraints(max_length=MAX_TEXT_CHARS)] | None = None

  @pydantic.model_validator(mode="after")
  def _fields_are_text(self):
    for k, v in (self.model_extra or {}).items():
      if not isinstance(v, str) or len(v) > MAX_TEXT_CHARS:
        raise ValueError(f"field {k!r} must be a string of at most {MAX_TEXT_CHARS} characters")
    return self


class ItemsRequest(pydantic.BaseModel):
  model_config = pydantic.ConfigDict(extra="forbid")
  items: Annotated[list[NewItem], pydantic.Field(min_length=1, max_length=MAX_ITEMS_PER_POST)]


class Batcher:
  """Runs queued recommendation requests together (one user-tower call per batch)."""

  def __init__(self, service: Service, max_batch: int):
    self.service, self.max_batch = service, max_batch
    self._queue: queue.Queue = queue.Queue()
    self._thread = threading.Thread(target=self._run, name="recommend-batcher", daemon=True)
    self._thread.start()

  def submit(self, prepared) -> concurrent.futures.Future:
    fut = concurrent.futures.Future()
    self._queue.put((prepared, fut))
    return fut

  def _run(self) -> None:
    while True:
      batch = [self._queue.get()]
      while len(batch) < self.max_batch:
        try:
          batch.append(self._queue.get_nowait())
        except queue.Empty:
          break
      try:
        results = self.service.recommend_many([p for p, _ in batch])
      except Exception as e:  # noqa: BLE001  each waiting request gets the error, the thread lives
        for _, fut in batch:
          fut.set_exception(e)
        continue
      for (_, fut), r in zip(batch, results):
        fut.set_result(r)


def _message(err: pydantic.ValidationError | fastapi.exceptions.RequestValidationError) -> str:
  parts = []
  for e in err.errors():
    if e.get("type") == "json_invalid":
      parts.append(f"body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')} "
                   f"at character {e.get('loc', ('', '?'))[-1]})")
      continue
    where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
    parts.append(f"{where or 'body'}: {e.get('msg', 'invalid')}")
  return "; ".join(parts[:5]) or "invalid request"


def create_app(service: Service) -> fastapi.FastAPI:
  app = fastapi.FastAPI(title="jaxrec recommender", version="1")
  batcher = Batcher(service, service.encoder.batch_buckets[-1])

  @app.middleware("http")
  async def limit_body(request: fastapi.Request, call_next):
    if request.method in ("POST", "PUT", "PATCH"):
      length = request.headers.get("content-length")
      if length is None:
        return responses.JSONResponse({"detail": "a Content-Length header is required"}, 411)
      if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        return responses.JSONResponse(
            {"detail": f"request body of {length} bytes is over the {MAX_BODY_BYTES} byte limit"}, 413)
    return await call_next(request)

  @app.exception_handler(fastapi.exceptions.RequestValidationError)
  async def invalid(request, exc):
    return responses.JSONResponse({"detail": _message(exc)}, 422)

  @app.exception_handler(RequestError)
  async def refused(request, exc: RequestError):
    return responses.JSONResponse({"detail": str(exc)}, exc.status)

  @app.get("/health")
  def health():
    return {"status": "ok", "items": service.num_items()}

  @app.get("/stats")
  def stats():
    return service.stats()

  @app.post("/recommend")
  async def recommend(req: RecommendRequest):
    service.check_k(req.k)
    history = [h.model_dump() if isinstance(h, TextItem) else h for h in req.history]
    vecs, exclude = await asyncio.to_thread(service.history_vectors, history)
    items = await asyncio.wrap_future(batcher.submit((vecs, exclude, req.k)))
    return {"items": items}

  @app.post("/items")
  async def add_items(req: ItemsRequest):
    items = [{k: v for k, v in it.model_dump().items() if v is not None} for it in req.items]
    return {"items": await asyncio.to_thread(service.add_items, items)}

  @app.get("/items/{item_id}")
  def get_item(item_id: str):
    return service.item_info(item_id)

  @app.delete("/items/{item_id}")
  async def delete_item(item_id: str):
    await asyncio.to_thread(service.remove_items, [item_id])
    return {"id": item_id, "status": "removed"}

  return app
