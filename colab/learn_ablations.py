# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # LEARN ablations from `results.json` files
#
# The paper's comparisons, drawn from finished runs' `results.json` (test
# metrics at the best validation step, every run's full config inside):
# 1. item representation: ID embeddings vs a BERT-family text encoder
#    (all-MiniLM-L6-v2) vs a decoder LLM (e.g. SmolLM2), and content + ID;
# 2. the item-tower variants of the paper's Table 4 (dense all-action loss);
# 3. the cold-item protocol: test users whose next item was never trained on.
#
# By default it reads the real Amazon Office runs committed in
# `experiments/results/quality_runs/` (written by
# `experiments/quality_queue_*.sh`); set `RESULTS_GLOB` to your own runs
# (`workdirs/*/results.json`). Needs no accelerator and trains nothing.

# %%
import glob
import importlib.util
import os
import pathlib
import subprocess
import sys

if importlib.util.find_spec("jaxrec") is None:   # Colab: install it (CI and reruns already have it)
  JAXREC_REPO = os.environ.get("JAXREC_REPO", "https://github.com/jaxrec/jaxrec.git")
  subprocess.check_call(["git", "clone", "--depth", "1", JAXREC_REPO, "jaxrec"])
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "./jaxrec", "matplotlib"])
  os.chdir("jaxrec")

# %% tags=["parameters"]
RESULTS_GLOB = os.environ.get("JAXREC_RESULTS_GLOB", "experiments/results/quality_runs/office-*__results.json")
OUT = pathlib.Path(os.environ.get("JAXREC_ABLATIONS_OUT", "ablations"))
METRICS = ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "HR@200", "NDCG@200")

# %%
from IPython.display import Image, Markdown, display

from jaxrec import report


def find(pattern: str) -> list[str]:
  """Files matching the pattern from here or the repository root above (notebooks run in colab/)."""
  if os.path.isabs(pattern):
    return sorted(glob.glob(pattern))
  for root in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents):
    hits = sorted(glob.glob(str(root / pattern)))
    if hits:
      return hits
  return []


runs = [report.load_run(f) for f in find(RESULTS_GLOB)]
runs = [r for r in runs if r.results.get("config", {}).get("data", {}).get("kind")]   # jaxrec runs only
print(f"{len(runs)} runs:", ", ".join(r.name[:40] for r in runs))
OUT.mkdir(parents=True, exist_ok=True)


def cfg(r: report.Run, section: str, key: str):
  return r.results["config"].get(section, {}).get(key)


def show(fig, name: str) -> None:
  fig.savefig(OUT / name, dpi=80)
  display(Image(filename=str(OUT / name)))

# %% [markdown]
# ## 1. ID vs BERT vs LLM (and content + ID)
# Runs without cold items, grouped by item input and content model; the
# content model's family says "BERT" (encoder) or "LLM" (decoder).

# %%
ENCODERS = {"minilm": "BERT encoder (all-MiniLM-L6-v2)", "smollm2": "LLM (SmolLM2-135M)"}


def representation(r: report.Run) -> str:
  item, model = cfg(r, "model", "item_input"), cfg(r, "ceg", "model")
  if item == "id":
    return "ID embeddings"
  family = ENCODERS.get(model, f"LLM ({model})" if str(model).endswith(".gguf") else str(model))
  return family + (" + ID" if item == "fusion" else "")


plain = [r for r in runs if not cfg(r, "data", "cold_items") and cfg(r, "loss", "objective") != "dense_all_action"
         and r.results["config"].get("method") != "baseline_v1"]
best: dict[str, report.Run] = {}
for r in plain:   # per representation, the run with the best validation metric (never test)
  key = representation(r)
  if key not in best or r.results["valid"][r.select] > best[key].results["valid"][best[key].select]:
    best[key] = r
compared = [report.Run(f"{k} [{r.name}]", r.results, r.train, r.valid) for k, r in sorted(best.items())]
if not any("LLM" in k for k in best):
  print("no decoder-LLM run among these results (run e.g. --config.ceg.model=smollm2 to add one)")
display(Markdown(report.markdown_table(compared, METRICS)))
show(report.plot_metrics(compared, METRICS), "content_vs_id.png")

# %% [markdown]
# ## 2. Item-tower variants (Table 4), the paper's dense all-action loss
# Variant 1: the item tower shares the causal PCH; 2: each item attends only
# to itself; 3: the content embedding itself. A variant with no results file
# is listed as missing (in the committed Office runs Variant 3 diverged, as
# the paper reports it does not converge).

# %%
VARIANTS = {"causal": "Variant 1 (causal)", "diagonal": "Variant 2 (diagonal)", "content": "Variant 3 (content)"}
dense = [r for r in runs if cfg(r, "loss", "objective") == "dense_all_action" and not cfg(r, "data", "cold_items")]
variants = [report.Run(f"{VARIANTS.get(cfg(r, 'model', 'item_tower'), cfg(r, 'model', 'item_tower'))} [{r.name}]",
                       r.results, r.train, r.valid) for r in dense]
missing = [v for k, v in VARIANTS.items() if k not in {cfg(r, "model", "item_tower") for r in dense}]
print("missing:", ", ".join(missing) or "none")
if variants:
  display(Markdown(report.markdown_table(variants, METRICS)))
  show(report.plot_metrics(variants, METRICS), "variants.png")

# %% [markdown]
# ## 3. Cold start
# A seeded share of items is held out of training (`data.cold_items`); test
# users are split by whether their next item is one of them.

# %%
cold_runs = [r for r in runs if "test_cold_protocol" in r.results]
groups = []
for r in cold_runs:
  for group in ("cold_target", "warm_target"):
    m = r.results["test_cold_protocol"][group]
    pop = r.results["popularity_cold_protocol"][group]
    groups.append(report.Run(f"{representation(r)}, {group} ({m['users']} users) [{r.name}]",
                             {"test": m}, [], []))
    if r is cold_runs[0]:   # the same split in every cold run (data.cold_seed): popularity once
      groups.append(report.Run(f"popularity, {group}", {"test": pop}, [], []))
if groups:
  show(report.plot_metrics(groups, METRICS, popularity=False), "cold_start.png")
  for r in groups:
    print(f"{r.name}: NDCG@10 {r.results['test']['NDCG@10']:.4f}, HR@50 {r.results['test']['HR@50']:.4f}")
else:
  print("no cold-item runs among these results (train with --config.data.cold_items=0.1)")
