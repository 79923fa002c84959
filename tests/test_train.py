"""End-to-end training on tiny configs: results, 8 devices vs 1, resume, NaN."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import evaluate, objectives, sharding, train
from jaxrec.config import base_config
from jaxrec.data import batching
from jaxrec.errors import JaxrecError
from jaxrec.model.towers import LearnTowers


def tiny_config(**sections):
  c = base_config()
  c.data.kind = "synthetic_demo"
  c.data.demo_users = 240
  c.data.demo_items = 120
  c.data.max_history = 8
  c.data.target_len = 3
  c.model.item_input = "id"
  c.model.d_model = 16
  c.model.num_layers = 1
  c.model.num_heads = 2
  c.model.mlp_dim = 32
  c.model.d_out = 16
  c.train.batch_size = 16
  c.train.num_epochs = 4
  c.train.learning_rate = 5e-3
  c.train.eval_every = 20
  c.train.log_every = 5
  c.mesh.num_devices = 1
  for section, values in sections.items():
    for k, v in values.items():
      c[section][k] = v
  return c


def test_results_file_and_learning(tmp_path):
  # The library's recommended objective (next item, full softmax, tied item side).
  config = tiny_config(train={"num_epochs": 24, "eval_every": 120},
                       loss={"objective": "next_item", "negatives": "full"}, model={"item_tower": "input"})
  results = train.train_and_evaluate(config, tmp_path)
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk["test"] == results["test"]
  for split in ("valid", "test"):
    for k in (10, 50, 200):
      assert 0.0 <= on_disk[split][f"NDCG@{k}"] <= on_disk[split][f"HR@{k}"] <= 1.0
  assert on_disk["best_step"] in [h["step"] for h in on_disk["valid_history"]]
  assert on_disk["config"]["model"]["item_input"] == "id"
  assert on_disk["wall_seconds"] > 0
  assert (tmp_path / "config.json").exists() and (tmp_path / "metrics.jsonl").exists()
  # Chance HR@10 is about 10/110 here; a trained ID model must beat chance and
  # the popularity ranking of the same split.
  assert results["test"]["HR@10"] > 2 * 10 / 110
  assert results["test"]["NDCG@10"] > results["popularity_test"]["NDCG@10"]


def test_eight_devices_match_one():
  config = tiny_config()
  dataset, split, _ = train.load_data(config)
  model = LearnTowers(train.tower_config(config, dataset.num_items))
  loss_fn = objectives.make_loss_fn(config, model, None)
  tx = train.make_optimizer(config.train, 100)
  params = train.init_params(model, config, None)
  finals = []
  for n in (1, 8):
    mesh = sharding.make_mesh(n)
    state = sharding.put_replicated(train.TrainState(jnp.asarray(0), params, tx.init(params)), mesh)
    step = jax.jit(lambda s, b, c: train.train_step(s, b, c, loss_fn=loss_fn, tx=tx, seed=0))
    losses = []
    for i in range(4):
      batch = batching.train_batch(split.train, i, batch_size=16, seed=0, max_history=8,
                                   target_len=3, mode="random")
      state, m = step(state, sharding.put_batch(batch, mesh), None)
      losses.append(float(m["loss"]))
    finals.append((losses, jax.device_get(state.params)))
  np.testing.assert_allclose(finals[0][0], finals[1][0], rtol=1e-5)
  # The attention key bias has an identically-zero gradient (it shifts every
  # key's logit for a query by the same amount); Adam turns its float noise
  # into steps that differ with the reduction order, and it never changes an
  # output. Every other parameter, and the towers' outputs, must agree.
  for path, a in jax.tree_util.tree_leaves_with_path(finals[0][1]):
    if "['key']['bias']" not in jax.tree_util.keystr(path):
      b = dict(jax.tree_util.tree_leaves_with_path(finals[1][1]))[path]
      np.testing.assert_allclose(a, b, atol=1e-5, err_msg=jax.tree_util.keystr(path))
  tokens = batching.to_tokens(split.valid.histories[:32], 8)
  outs = [model.apply({"params": p["towers"]}, tokens, tokens, None) for _, p in finals]
  np.testing.assert_allclose(outs[0][0], outs[1][0], atol=1e-5)
  np.testing.assert_allclose(outs[0][1], outs[1][1], atol=1e-5)


def test_resumed_run_equals_uninterrupted(tmp_path):
  config = tiny_config(train={"num_epochs": 3, "eval_every": 10})
  full = train.train_and_evaluate(config, tmp_path / "full")
  assert train.train_and_evaluate(config, tmp_path / "resumed", stop_after_steps=14) is None
  assert not (tmp_path / "resumed" / "results.json").exists()
  resumed = train.train_and_evaluate(config, tmp_path / "resumed")
  assert resumed["test"] == full["test"]
  assert resumed["best_step"] == full["best_step"]
  assert resumed["valid_history"] == full["valid_history"]


def test_resume_refuses_a_different_config(tmp_path):
  config = tiny_config(train={"num_epochs": 2})
  train.train_and_evaluate(config, tmp_path, stop_after_steps=5)
  with pytest.raises(JaxrecError, match="different config") as err:
    train.train_and_evaluate(tiny_config(train={"num_epochs": 2, "learning_rate": 1e-4}), tmp_path)
  # The message names the flag that resumes it as it was (e.g. after a default changed).
  assert "to resume it as it was, pass --config.train.learning_rate=0.005" in str(err.value)


def test_nan_loss_is_a_clear_error(tmp_path):
  config = tiny_config(train={"learning_rate": 1e38, "grad_clip": 0.0, "checkpoint": False})
  with pytest.raises(JaxrecError, match="loss became nan"):
    train.train_and_evaluate(config, tmp_path)


def test_batch_larger_than_users_is_a_clear_error(tmp_path):
  with pytest.raises(JaxrecError, match="larger than the"):
    train.train_and_evaluate(tiny_config(train={"batch_size": 4096}), tmp_path)
  assert not (tmp_path / "results.json").exists()


def _log(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_nan_parameters_stop_the_run_before_anything_is_best_or_saved(tmp_path):
  """A diverged model used to score HR = NDCG = 1.0 (NaN scores ranked as hits),
  become the best step and be checkpointed."""
  config = tiny_config(train={"learning_rate": 1e12, "eval_every": 1, "log_every": 1000})
  with pytest.raises(JaxrecError) as e:
    train.train_and_evaluate(config, tmp_path)
  message = str(e.value)
  assert "parameters became NaN/inf" in message, message
  assert "nothing from this step was checkpointed or selected as best" in message
  assert "--overwrite" in message and "The ID model reads no content" in message
  nan_step = int(re.search(r"at step (\d+)", message)[1])
  valid = [r for r in _log(tmp_path) if "valid" in r]
  assert [r["step"] for r in valid] == list(range(1, nan_step))  # none for the NaN step
  assert all(r["valid"]["HR@10"] < 1.0 and r["valid"]["NDCG@10"] < 1.0 for r in valid)
  saved = [int(p.name) for p in (tmp_path / "checkpoints").glob("[0-9]*")]
  assert all(s < nan_step for s in saved)
  assert not (tmp_path / "results.json").exists()
  # The rerun the message suggests works: a lower learning rate with --overwrite.
  lower = tiny_config(train={"num_epochs": 1, "eval_every": 5})
  with pytest.raises(JaxrecError, match="different config"):
    train.train_and_evaluate(lower, tmp_path)
  results = train.train_and_evaluate(lower, tmp_path, overwrite=True)
  assert 0.0 < results["test"]["HR@10"] < 1.0


def test_nan_parameters_are_caught_after_validation():
  config = tiny_config()
  params = {"towers": {"w": np.ones((2, 2), np.float32)}, "log_scale": np.float32(np.nan)}
  with pytest.raises(JaxrecError, match=r"params\['log_scale'\]\) at step 3"):
    train.nonfinite.check_validation(params, {"HR@10": 0.0}, 3, config, None)
  with pytest.raises(JaxrecError, match="validation NDCG@10 not finite at step 3"):
    train.nonfinite.check_validation({"w": np.ones(2)}, {"NDCG@10": float("nan")}, 3, config, None)
  train.nonfinite.check_validation({"w": np.ones(2)}, {"NDCG@10": 0.5}, 3, config, None)


def test_nan_content_embeddings_are_named_not_the_learning_rate():
  config = tiny_config()
  content = np.full((5, 4), np.nan, np.float32)
  message = str(train.nonfinite.diverged("training loss became nan", 7, config, content))
  assert "content embeddings hold NaN" in message and "learning_rate" not in message
  finite = str(train.nonfinite.diverged("training loss became nan", 7, config, np.ones((5, 4))))
  assert "content embeddings are finite" in finite and "learning_rate" in finite


def test_resume_after_a_crash_repeats_no_step_in_metrics(tmp_path):
  config = tiny_config(train={"num_epochs": 2, "eval_every": 5, "log_every": 1})
  train.train_and_evaluate(config, tmp_path / "full")
  assert train.train_and_evaluate(config, tmp_path / "crashed", stop_after_steps=7) is None
  # What a crash after step 9 leaves: lines of steps 8-9 (and a torn last line)
  # that the checkpoint (step 7) does not cover.
  log = tmp_path / "crashed" / "metrics.jsonl"
  full = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
  lines = [l for l in full if json.loads(l)["step"] <= 9]
  log.write_text("\n".join(lines) + '\n{"step": 10, "lo')
  train.train_and_evaluate(config, tmp_path / "crashed")
  resumed = _log(tmp_path / "crashed")
  keys = [(r["step"], "valid" in r) for r in resumed]
  assert len(keys) == len(set(keys))
  assert resumed == [json.loads(l) for l in full]


def test_checkpoint_off_does_not_overwrite_another_configs_results(tmp_path):
  off = {"checkpoint": False, "num_epochs": 1}
  first = train.train_and_evaluate(tiny_config(train=off), tmp_path)
  saved = (tmp_path / "results.json").read_text()
  with pytest.raises(JaxrecError, match=r"different config \(config.json: train.learning_rate"):
    train.train_and_evaluate(tiny_config(train={**off, "learning_rate": 1e-4}), tmp_path)
  assert (tmp_path / "results.json").read_text() == saved
  # The same config again starts over (nothing to resume) and logs each step once.
  again = train.train_and_evaluate(tiny_config(train=off), tmp_path)
  assert again["test"] == first["test"]
  steps = [(r["step"], "valid" in r) for r in _log(tmp_path)]
  assert len(steps) == len(set(steps))
  other = train.train_and_evaluate(tiny_config(train={**off, "learning_rate": 1e-4}), tmp_path,
                                   overwrite=True)
  assert json.loads((tmp_path / "results.json").read_text())["test"] == other["test"]


def test_streamed_data_ranks_and_reports_exactly_as_the_data_in_memory(tmp_path, monkeypatch, demo_as_lcrec):
  """data.input='stream' keeps the users' sequences on disk (an ItemCatalogue and a streamed split),
  yet evaluation, the popularity baseline, the target-count groups and logQ see the same data."""
  monkeypatch.setenv("JAXREC_CACHE", str(tmp_path / "cache"))
  folder = demo_as_lcrec
  configs = [tiny_config(data={"kind": "lcrec_json", "path": str(folder), "input": kind, "template": "{title}"},
                         loss={"objective": "next_item"}) for kind in ("grain", "stream")]
  (d_mem, s_mem, cold_mem), (d_str, s_str, cold_str) = map(train.load_data, configs)
  assert not hasattr(d_str, "sequences") and d_str.stats() == d_mem.stats()
  assert train.item_texts(configs[1], d_str) == train.item_texts(configs[0], d_mem)
  assert train.load_items(configs[1]).item_ids == d_mem.item_ids      # CEG's, with no pass over users
  assert train.num_train_sequences(s_str) == train.num_train_sequences(s_mem)
  n = d_mem.num_items
  np.testing.assert_array_equal(objectives.log_q(train.train_counts(s_str, n).targets),
                                objectives.item_log_q(s_mem.train, n))
  model = LearnTowers(train.tower_config(configs[0], n))
  params = train.init_params(model, configs[0], None)["towers"]
  mesh = sharding.make_mesh(1)
  ranks = [evaluate.rank(model, params, None, s.test.histories, s.test.targets, max_history=8, mesh=mesh)
           for s in (s_mem, s_str)]
  np.testing.assert_array_equal(ranks[0], ranks[1])
  reports = [train.test_report(c, d, s, cold, r, mesh)
             for c, d, s, cold, r in zip(configs, (d_mem, d_str), (s_mem, s_str), (cold_mem, cold_str), ranks)]
  assert reports[0] == reports[1]
  assert reports[0]["popularity_test"]["HR@200"] > 0 and len(reports[0]["test_by_target_train_count"]) == 4


def test_partial_validation_periodically_full_validation_at_the_end(tmp_path):
  # Validation only at the last step, so both runs pick the same (last) step: the partial
  # run's periodic validation saw 20 users, its reported validation (at the end) all of them.
  kw = dict(train={"num_epochs": 1, "eval_every": 10_000})
  full = train.train_and_evaluate(tiny_config(**kw), tmp_path / "full")
  part = train.train_and_evaluate(tiny_config(**kw, eval={"partial_users": 20, "partial_seed": 3}),
                                  tmp_path / "part")
  assert part["valid_users_periodic"] == 20 < full["valid_users_periodic"]
  assert part["best_step"] == full["best_step"] == part["total_steps"]
  assert part["valid"] == full["valid"] and part["test"] == full["test"]
  periodic = part["valid_history"][-1]
  assert periodic != full["valid_history"][-1]
  for k in (10, 50, 200):  # a mean over 20 users
    assert periodic[f"HR@{k}"] * 20 == pytest.approx(round(periodic[f"HR@{k}"] * 20))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_warmup_epochs_is_independent_of_the_epoch_budget(schedule):
  """warmup_epochs=2 reaches the peak at step 2 * steps_per_epoch whatever num_epochs is;
  warmup_frac (the default) scales with num_epochs."""
  per_epoch = 10
  for num_epochs in (20, 200):
    tc = tiny_config(train=dict(schedule=schedule, num_epochs=num_epochs, learning_rate=1e-3,
                                warmup_epochs=2.0)).train
    lr = train.lr_schedule(tc, per_epoch * num_epochs, per_epoch)
    assert float(lr(10)) == pytest.approx(5e-4)
    assert float(lr(20)) == pytest.approx(1e-3, rel=1e-2)
    tc.warmup_epochs = 0.0
    lr = train.lr_schedule(tc, per_epoch * num_epochs, per_epoch)
    assert float(lr(per_epoch * num_epochs // 20)) == pytest.approx(5e-4, rel=1e-2)


def test_restore_best_reads_back_the_validation_best_parameters(tmp_path):
  config = tiny_config(train={"num_epochs": 2})
  train.train_and_evaluate(config, tmp_path / "early", stop_after_steps=5)    # before validating
  config_json = json.loads((tmp_path / "early" / "config.json").read_text())
  dataset, _, _ = train.load_data(config)
  model = LearnTowers(train.tower_config(config, dataset.num_items))
  with pytest.raises(JaxrecError, match="before its first validation"):
    train.restore_best(tmp_path / "early", config, config_json, model, None)
  with pytest.raises(JaxrecError, match="no checkpoints/"):
    train.restore_best(tmp_path / "none", config, config_json, model, None)
  results = train.train_and_evaluate(config, tmp_path / "done")
  towers, record, last = train.restore_best(tmp_path / "done", config, config_json, model, None)
  assert record["best"]["step"] == results["best_step"] and last == results["total_steps"]
  mesh = sharding.make_mesh(1)
  _, split, _ = train.load_data(config)
  ranks = evaluate.rank(model, towers, None, split.valid.histories, split.valid.targets,
                        max_history=config.data.max_history, mesh=mesh)
  assert float(np.mean(ranks < 10)) == pytest.approx(results["valid"]["HR@10"])
