"""The service on real data, over real HTTP: cold-start items, restart, load test.

Against a serving folder built from the Office cold-item run (items held out
of training are not in its catalogue), with `python -m jaxrec.serve` started
as a subprocess on a free loopback port:

 1. cold start: every held-out item is added by text (POST /items, its dataset
    fields rendered with the run's template); the test users whose target is
    one of them are then sent their history (POST /recommend, k=200): HR@10/50/200,
    beside popularity and the training run's own (offline) numbers;
 2. restart: the server is stopped (SIGTERM) and started again; the added items
    must still be there and answer the same;
 3. load: `--requests` requests from `--clients` concurrent clients (bounded by
    `--max_seconds`): valid recommendations, a mix of malformed requests (must be
    4xx with a message) and item upserts during the queries (none may be lost);
    p50/p99 latency, throughput, status counts.

Prints a table and writes experiments/results/serve_office.json.

  nice -n 5 python experiments/serve_office.py --workdir=/path/to/office-cold-learn-copy
"""

import argparse
import asyncio
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np

try:
  import httpx2 as httpx   # what Starlette's TestClient uses; httpx has the same API
except ImportError:
  import httpx

from jaxrec import train
from jaxrec.serving import catalog

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_server(workdir: pathlib.Path, serving: pathlib.Path, port: int, log) -> subprocess.Popen:
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.Popen([sys.executable, "-m", "jaxrec.serve", f"--workdir={workdir}",
                           f"--serving_dir={serving}", f"--port={port}"], env=env,
                          stdout=log, stderr=subprocess.STDOUT)
  t = time.time()
  while time.time() - t < 600:
    if proc.poll() is not None:
      raise RuntimeError(f"server exited with {proc.returncode}; see its log")
    try:
      if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
        print(f"server up on port {port} in {time.time() - t:.0f} s")
        return proc
    except httpx.HTTPError:
      pass
    time.sleep(1)
  proc.kill()
  raise RuntimeError("server did not come up in 600 s")


def stop_server(proc: subprocess.Popen) -> None:
  proc.send_signal(signal.SIGTERM)
  try:
    proc.wait(60)
  except subprocess.TimeoutExpired:
    proc.kill()


def hit_rates(ranked: list[list[str]], targets: list[str], ks=(10, 50, 200)) -> dict:
  return {f"HR@{k}": float(np.mean([t in r[:k] for r, t in zip(ranked, targets)])) for k in ks}


def recommend_all(base: str, histories: list[list[str]], k: int) -> list[list[str]]:
  async def go():
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
      sem = asyncio.Semaphore(8)
      async def one(h):
        async with sem:
          r = await c.post("/recommend", json={"history": h, "k": k})
          r.raise_for_status()
          return [i["id"] for i in r.json()["items"]]
      return await asyncio.gather(*(one(h) for h in histories))
  return asyncio.run(go())


def load_test(base: str, histories: list[list[str]], requests: int, clients: int,
              max_seconds: float, upserts: int) -> dict:
  bad = [({"history": [], "k": 5}, "empty history"),
         ({"history": ["no-such-item-id"], "k": 5}, "unknown id"),
         ({"history": histories[0], "k": 100_000}, "k too large"),
         ({"history": histories[0], "k": -1}, "negative k"),
         ({"histroy": histories[0]}, "misspelt field"),
         (b"{not json", "malformed JSON"),
         ({"history": ["x" * 200] * 8000, "k": 5}, "oversize body")]
  rng = random.Random(0)
  plan = []
  for i in range(requests):
    if i % 20 == 7:
      plan.append(("bad", bad[(i // 20) % len(bad)]))
    elif upserts and i % max(1, requests // upserts) == 3 and len([p for p in plan if p[0] == "add"]) < upserts:
      plan.append(("add", f"load-item-{i}"))
    else:
      plan.append(("rec", histories[rng.randrange(len(histories))]))
  lat, codes, bad_ok, messages = [], {}, 0, set()
  added = []
  deadline = time.time() + max_seconds

  async def go():
    nonlocal bad_ok
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as c:
      it = iter(plan)
      async def worker():
        nonlocal bad_ok
        for kind, payload in it:
          if time.time() > deadline:
            return
          t = time.perf_counter()
          try:
            r = await send(kind, payload)
          except httpx.TransportError as e:
            codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
            continue
          if kind == "rec":
            lat.append(time.perf_counter() - t)
          codes[r.status_code] = codes.get(r.status_code, 0) + 1
      async def send(kind, payload):
        nonlocal bad_ok
        if kind == "rec":
          r = await c.post("/recommend", json={"history": payload, "k": 10})
        elif kind == "add":
          r = await c.post("/items", json={"items": [{"id": payload, "text": f"Load test item {payload}: "
                                                                               "a refillable desk pen"}]})
          if r.status_code == 200:
            added.append(payload)
        else:
          body, _ = payload
          r = await (c.post("/recommend", content=body, headers={"content-type": "application/json"})
                     if isinstance(body, bytes) else c.post("/recommend", json=body))
          if 400 <= r.status_code < 500 and r.json().get("detail"):
            bad_ok += 1
            messages.add(r.json()["detail"][:90])
        return r
      t0 = time.perf_counter()
      await asyncio.gather(*(worker() for _ in range(clients)))
      return time.perf_counter() - t0
  seconds = asyncio.run(go())
  done = sum(codes.values())
  health = httpx.get(f"{base}/health").json()
  lost = [i for i in added if httpx.get(f"{base}/items/{i}").json().get("in_index") is not True]
  return {"requests": done, "clients": clients, "seconds": round(seconds, 1),
          "throughput_rps": round(done / seconds, 1),
          "p50_ms": round(1000 * float(np.percentile(lat, 50)), 1),
          "p99_ms": round(1000 * float(np.percentile(lat, 99)), 1),
          "status_counts": {str(k): v for k, v in sorted(codes.items(), key=str)},
          "errors_5xx": sum(v for k, v in codes.items() if isinstance(k, int) and k >= 500),
          "transport_errors": sum(v for k, v in codes.items() if not isinstance(k, int)),
          "malformed_sent": sum(1 for k, _ in plan[:done] if k == "bad"), "malformed_4xx_with_message": bad_ok,
          "example_messages": sorted(messages)[:8], "upserts_ok": len(added),
          "items_after": health["items"], "lost_upserts": lost}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="copy of the Office cold-item run (with serving/ built)")
  ap.add_argument("--requests", type=int, default=20_000)
  ap.add_argument("--clients", type=int, default=16)
  ap.add_argument("--max_seconds", type=float, default=600)
  ap.add_argument("--upserts", type=int, default=100)
  ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "serve_office.json"))
  args = ap.parse_args()
  workdir = pathlib.Path(args.workdir)
  serving = workdir / "serving-experiment"          # a fresh copy: the experiment mutates it
  shutil.rmtree(serving, ignore_errors=True)
  shutil.copytree(workdir / "serving", serving)
  config = catalog.config_from_json(json.loads((workdir / "config.json").read_text()))
  dataset, split, cold = train.load_data(config)
  results = json.loads((workdir / "results.json").read_text())
  ids = dataset.item_ids
  port = free_port()
  base = f"http://127.0.0.1:{port}"
  log = open(workdir / "serve_experiment.log", "w")
  out = {"dataset": dataset.name, "cold_items": len(cold)}

  proc = start_server(workdir, serving, port, log)
  try:
    n0 = httpx.get(f"{base}/health").json()["items"]
    items = [{"id": ids[i], **dataset.item_fields[i]} for i in cold]
    t = time.time()
    for start in range(0, len(items), 50):
      r = httpx.post(f"{base}/items", json={"items": items[start:start + 50]}, timeout=300)
      r.raise_for_status()
    out["add_seconds"] = round(time.time() - t, 1)
    n1 = httpx.get(f"{base}/health").json()["items"]
    is_cold = np.isin(split.test.targets, cold)
    users = np.flatnonzero(is_cold)
    histories = [[ids[i] for i in split.test.histories[u]] for u in users]
    targets = [ids[split.test.targets[u]] for u in users]
    ranked = recommend_all(base, histories, 200)
    out["cold_start"] = {
        "items_before": n0, "items_after_add": n1, "cold_target_users": len(users),
        "service": hit_rates(ranked, targets),
        "offline_eval_same_run": {k: results["test_cold_protocol"]["cold_target"][k]
                                  for k in ("HR@10", "HR@50", "HR@200")},
        "popularity": {k: results["popularity_cold_protocol"]["cold_target"][k]
                       for k in ("HR@10", "HR@50", "HR@200")}}
  finally:
    stop_server(proc)
  save(args.out, out)   # kept if a later phase fails

  proc = start_server(workdir, serving, port, log)
  try:
    n2 = httpx.get(f"{base}/health").json()["items"]
    again = recommend_all(base, histories[:100], 200)
    out["restart"] = {
        "items_after_restart": n2,
        "identical_top200_lists": sum(a == b for a, b in zip(again, ranked)) / len(again),
        "identical_top10_lists": sum(a[:10] == b[:10] for a, b in zip(again, ranked)) / len(again),
        "top200_set_overlap": float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(again, ranked)])),
        "hit_rates_first_100_before_after": [hit_rates(ranked[:100], targets[:100]),
                                             hit_rates(again, targets[:100])]}
    all_hist = [[ids[i] for i in h] for h in split.test.histories]
    out["load"] = load_test(base, all_hist, args.requests, args.clients, args.max_seconds, args.upserts)
  finally:
    stop_server(proc)
  shutil.rmtree(serving, ignore_errors=True)

  c = out["cold_start"]
  print(f"\ncold start ({c['cold_target_users']} users whose test target is one of {len(cold)} items added by text)")
  print(f"{'':28} {'HR@10':>8} {'HR@50':>8} {'HR@200':>8}")
  for name in ("service", "offline_eval_same_run", "popularity"):
    print(f"{name:28} " + " ".join(f"{c[name][k]:8.4f}" for k in ("HR@10", "HR@50", "HR@200")))
  r = out["restart"]
  print(f"items: {c['items_before']} -> {c['items_after_add']} after adding, "
        f"{r['items_after_restart']} after restart; first 100 users after restart: identical top-200 "
        f"{r['identical_top200_lists']:.0%}, top-10 {r['identical_top10_lists']:.0%}, top-200 overlap "
        f"{r['top200_set_overlap']:.4f}")
  l = out["load"]
  print(f"\nload: {l['requests']} requests, {l['clients']} clients, {l['seconds']} s, "
        f"{l['throughput_rps']} req/s, p50 {l['p50_ms']} ms, p99 {l['p99_ms']} ms, "
        f"5xx {l['errors_5xx']}, statuses {l['status_counts']}")
  print(f"malformed {l['malformed_sent']} -> 4xx with message {l['malformed_4xx_with_message']}; "
        f"upserts {l['upserts_ok']} ok, {len(l['lost_upserts'])} lost; items after {l['items_after']}")
  save(args.out, out)
  print(f"wrote {args.out}")


def save(path: str, out: dict) -> None:
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(path).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
  main()
