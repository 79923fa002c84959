r"""Peak RSS of CEG into the chunked store against the number of items.

Each item count runs in a fresh subprocess: a tiny random BERT (2 layers,
width 32, MiniLM's real tokenizer) embeds that many synthetic item texts into
a store with `--chunk` items per chunk. The child reports its peak RSS
(getrusage maxrss) just before the store is built (Python + JAX + the model +
the text list, which the caller holds anyway) and at the end; the difference
is what CEG itself costs, and it must not grow with the item count.

  python experiments/bench_ceg_memory.py --items=20000,100000 \
      --out=experiments/results/ceg_memory.json
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHILD = r"""
import json, pathlib, resource, shutil, sys, time
import torch, transformers
from jaxrec import sharding
from jaxrec.llm import embed, sources
n, chunk, work = int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3])
model = work / "tiny"
if not model.exists():
  torch.manual_seed(0)
  cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=37, max_position_embeddings=128)
  transformers.BertModel(cfg).eval().save_pretrained(model)
  for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(sources.resolve_model("minilm") / f, model / f)
words = ["red", "blue", "mug", "pen", "lamp", "desk", "paper", "stapler", "ink", "chair"]
texts = [f"item {i} " + " ".join(words[(i * k) % 10] for k in range(1, 2 + i % 7)) for i in range(n)]
mb = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
mesh = sharding.make_mesh(1)
# Warm-up on a few texts (compiles, loads the model) so the baseline includes JAX and the model.
embed.build_store(texts[:64], model=str(model), max_tokens=32, token_budget=2048, chunk_items=chunk,
                  cache_dir=work / f"warm-{n}", mesh=mesh, label="warm")
before = mb()
start = time.perf_counter()
st = embed.build_store(texts, model=str(model), max_tokens=32, token_budget=2048, chunk_items=chunk,
                       cache_dir=work / f"cache-{n}", mesh=mesh, label="bench")
seconds = time.perf_counter() - start
print(json.dumps({"items": n, "chunk_items": chunk, "peak_rss_before_mb": round(before, 1),
                  "peak_rss_after_mb": round(mb(), 1), "ceg_growth_mb": round(mb() - before, 1),
                  "store_mb": round(sum(p.stat().st_size for p in st.path.rglob('*.npy')) / 2**20, 1),
                  "seconds": round(seconds, 1), "items_per_s": round(n / seconds, 1)}))
"""


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--items", default="20000,100000")
  p.add_argument("--chunk", type=int, default=4096)
  p.add_argument("--out", default="")
  args = p.parse_args()
  rows = []
  with tempfile.TemporaryDirectory() as work:
    for n in [int(x) for x in args.items.split(",")]:
      env = {**os.environ, "XLA_FLAGS": "", "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
      proc = subprocess.run([sys.executable, "-c", CHILD, str(n), str(args.chunk), work],
                            capture_output=True, text=True, env=env, cwd=ROOT)
      if proc.returncode:
        sys.exit(proc.stderr[-3000:])
      rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  head = ["items", "chunk_items", "peak_rss_before_mb", "peak_rss_after_mb", "ceg_growth_mb",
          "store_mb", "seconds", "items_per_s"]
  print(" | ".join(head))
  for r in rows:
    print(" | ".join(str(r[h]) for h in head))
  if args.out:
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
  main()
