"""Recommender: a finished run's best model ranks the catalogue as evaluation does."""

import numpy as np
import pytest

from jaxrec import evaluate, train
from jaxrec.errors import JaxrecError
from jaxrec.recommend import Recommender
from test_train import tiny_config


def test_recommendations_agree_with_evaluation_ranks(tmp_path):
  train.train_and_evaluate(tiny_config(train={"num_epochs": 1, "eval_every": 10}), tmp_path)
  rec = Recommender.from_workdir(tmp_path)
  for user in (0, 1, 2):
    history = rec.split.test.histories[user]
    top = rec.recommend(history, k=5)
    assert len(set(top)) == 5 and not set(top) & set(int(i) for i in history)
    # Evaluation's rank of each recommended item, as if it were the target: 0, 1, 2, ...
    ranks = evaluate.rank(rec.model, rec.towers, rec.content, [history] * 5, np.asarray(top),
                          max_history=rec.config.data.max_history, mesh=rec.mesh)
    assert ranks.ravel().tolist() == [0, 1, 2, 3, 4]
  assert rec.title(top[0])


def test_workdir_without_a_run_is_a_clear_error(tmp_path):
  with pytest.raises(JaxrecError, match="no config.json and checkpoints"):
    Recommender.from_workdir(tmp_path)
