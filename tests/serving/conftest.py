"""A tiny trained LEARN run (content + PCA-initialised IDs, cold-item protocol) and its serving folder, once per session."""

import pytest

from jaxrec import recipes, train
from jaxrec.serving import catalog


def tiny_learn_config():
  c = recipes.get("learn")
  c.data.kind = "synthetic_demo"          # 400 items with product text (MiniLM CEG is cached)
  c.data.max_history = 12
  c.data.target_len = 3
  c.data.cold_items = 0.1
  c.model.d_model = c.model.d_out = 32
  c.model.mlp_dim = 64
  c.model.num_layers = 1
  c.train.batch_size = 32
  c.train.num_epochs = 1
  c.train.eval_every_epochs = 1.0
  c.mesh.num_devices = 1
  return c


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  train.train_and_evaluate(tiny_learn_config(), workdir)
  return workdir


@pytest.fixture(scope="session")
def serving_folder(trained_run, tmp_path_factory):
  out = tmp_path_factory.mktemp("serving") / "serving"
  catalog.build_artifact(trained_run, out)
  return out
