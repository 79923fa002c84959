"""LEARN training and evaluation: data -> CEG -> train -> eval, in one call.

`train_and_evaluate(config, workdir)` is what `jaxrec.main` runs and what a
notebook imports. The train step is data-parallel over the mesh: the global
batch is split over devices, parameters are replicated, and the in-batch
logits of the whole global batch are formed inside jit (XLA all-gathers the
item embeddings), so 8 devices compute exactly what 1 device does.
"""

import functools
import json
import logging
import math
import os
import pathlib
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxrec import checkpoints
from jaxrec import config as config_lib
from jaxrec import evaluate
from jaxrec import nonfinite
from jaxrec import preemption
from jaxrec import sharding
from jaxrec import workdir as workdir_lib
from jaxrec.checkpoints import RunCheckpoints
from jaxrec.data import batching, prompts, registry, splits
from jaxrec.errors import JaxrecError
from jaxrec.llm import embed
from jaxrec.model.losses import dense_all_action_infonce
from jaxrec.model.towers import LearnTowers, TowerConfig

log = logging.getLogger(__name__)


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any          # {"towers": ..., "log_scale": scalar}
  opt_state: Any


# ----------------------------------------------------------------------------
# Pieces: each small and pure.
# ----------------------------------------------------------------------------

def tower_config(config: ml_collections.ConfigDict, num_items: int) -> TowerConfig:
  m = config.model
  return TowerConfig(
      num_items=num_items, item_input=m.item_input, item_tower=m.item_tower,
      d_model=m.d_model, num_layers=m.num_layers, num_heads=m.num_heads, mlp_dim=m.mlp_dim,
      d_out=m.d_out, max_len=max(config.data.max_history, config.data.target_len),
      dropout=m.dropout)


def prepare_content(table: np.ndarray, normalize: str) -> np.ndarray:
  """[N, H] CEG output -> [N + 1, H] lookup table with a zero row 0 for padding."""
  table = table.astype(np.float32)
  if normalize == "l2":
    table = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
  elif normalize == "standardize":
    table = (table - table.mean(0)) / (table.std(0) + 1e-6)
  return np.concatenate([np.zeros((1, table.shape[1]), np.float32), table])


def make_optimizer(tc: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """AdamW with linear warm-up and cosine decay; no decay on biases, norms, temperature."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, tc.learning_rate, warmup_steps=max(1, int(tc.warmup_frac * total_steps)),
      decay_steps=max(total_steps, 2), end_value=0.0)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  adam = optax.adamw(schedule, weight_decay=tc.weight_decay, mask=decay_mask)
  return optax.chain(optax.clip_by_global_norm(tc.grad_clip), adam) if tc.grad_clip > 0 else adam


def logit_scale(params, lc: ml_collections.ConfigDict) -> jnp.ndarray:
  log_scale = params["log_scale"] if lc.learn_temperature else jax.lax.stop_gradient(params["log_scale"])
  return jnp.minimum(jnp.exp(log_scale), lc.max_logit_scale)


def init_params(model: LearnTowers, config: ml_collections.ConfigDict, content) -> dict:
  h = jnp.ones((2, config.data.max_history), jnp.int32)
  t = jnp.ones((2, config.data.target_len), jnp.int32)
  towers = model.init(jax.random.key(config.seed), h, t, content)["params"]
  return {"towers": towers, "log_scale": jnp.asarray(-math.log(config.loss.temperature), jnp.float32)}


def loss_fn(params, batch, content, rng, *, model: LearnTowers, lc):
  u, v = model.apply({"params": params["towers"]}, batch["history"], batch["target"], content,
                     deterministic=False, rngs={"dropout": rng})
  scale = logit_scale(params, lc)
  loss, aux = dense_all_action_infonce(u, v, batch["history"], batch["target"], scale,
                                       lc.mask_duplicates)
  return loss, {**aux, "logit_scale": scale}


def train_step(state: TrainState, batch, content, *, model: LearnTowers, tx, lc, seed: int):
  """One optimiser step on the global batch; dropout keyed by (seed, step)."""
  rng = jax.random.fold_in(jax.random.key(seed), state.step)
  grad_fn = jax.value_and_grad(functools.partial(loss_fn, model=model, lc=lc), has_aux=True)
  (loss, aux), grads = grad_fn(state.params, batch, content, rng)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, "grad_norm": optax.tree_utils.tree_norm(grads), **aux}
  return TrainState(state.step + 1, params, opt_state), metrics


def _atomic_write_json(path: pathlib.Path, obj: Any) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
  os.replace(tmp, path)


def _ckpt_tree(state: TrainState, best: dict) -> dict:
  """What a checkpoint holds; before the first validation, best_params is a placeholder."""
  return {"state": state, "best_params": state.params if best["params"] is None else best["params"]}


def _record(config_json: dict, best: dict) -> dict:
  return {"config": config_json, "best": {k: best[k] for k in ("step", "valid", "history")}}


def _banner(title: str) -> None:
  log.info("%s %s %s", "=" * 20, title, "=" * 20)


# ----------------------------------------------------------------------------
# The stages.
# ----------------------------------------------------------------------------

def load_data(config: ml_collections.ConfigDict):
  """The dataset and its leave-one-out split."""
  d = config.data
  kwargs = {"num_users": d.demo_users, "num_items": d.demo_items, "seed": config.seed} \
      if d.kind == "synthetic_demo" else ({"name": d.name} if d.kind == "lcrec_json" and d.name else {})
  dataset = registry.load_dataset(d.kind, d.path or None, **kwargs)
  split = splits.leave_one_out(dataset.sequences)
  if not split.train:
    raise JaxrecError(f"{dataset.name}: no user has enough interactions to train on")
  return dataset, split


def content_table(config: ml_collections.ConfigDict, dataset, mesh) -> np.ndarray | None:
  """CEG: frozen-LLM embeddings of every item's text (cached), or None for the ID model."""
  if config.model.item_input != "content" and config.model.item_tower != "content":
    return None
  template = config.data.template or prompts.DEFAULT_TEMPLATES[config.data.kind]
  texts, n_fallback = prompts.render_all(dataset, template, config.data.max_text_chars)
  if n_fallback:
    log.warning("%d of %d items have no text; they get the fallback text 'Item <id>'",
                    n_fallback, len(texts))
  c = config.ceg
  table = embed.content_embeddings(
      texts, model=c.model, pooling=c.pooling, max_tokens=c.max_tokens,
      token_budget=c.token_budget, dtype=c.dtype, cache_dir=c.cache_dir or None, mesh=mesh,
      label=dataset.name)
  return prepare_content(table, c.normalize)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                       stop_after_steps: int | None = None, overwrite: bool = False) -> dict | None:
  """Runs every stage and writes workdir/results.json; returns the results.

  With `stop_after_steps`, training checkpoints and returns None after that
  many steps of this invocation (time-boxed jobs, e.g. a Colab session); the
  next call with the same workdir and config resumes where it stopped.
  `overwrite` replaces a run of another config in the workdir (workdir.py).
  """
  start_time = time.time()
  config_lib.validate(config)
  config_json = json.loads(config.to_json_best_effort())
  workdir = pathlib.Path(workdir)
  run_dir = workdir_lib.check(workdir, config, config_json, overwrite=overwrite)  # before any work
  mesh = sharding.make_mesh(config.mesh.num_devices)
  sharding.check_divisible(config.train.batch_size, mesh, "config.train.batch_size")

  _banner("data")
  dataset, split = load_data(config)
  log.info("%s: %s; %d training users, %d evaluated, %d dropped (< 3 items)",
               dataset.name, dataset.stats(), len(split.train), len(split.valid.targets),
               split.num_dropped_users)
  per_epoch = batching.steps_per_epoch(len(split.train), config.train.batch_size)
  if per_epoch == 0:
    raise JaxrecError(f"config.train.batch_size={config.train.batch_size} is larger than the "
                      f"{len(split.train)} training users")
  total_steps = per_epoch * config.train.num_epochs

  _banner("CEG")
  table = content_table(config, dataset, mesh)
  content = None if table is None else sharding.put_replicated(jnp.asarray(table), mesh)

  _banner("train")
  model = LearnTowers(tower_config(config, dataset.num_items))
  tx = make_optimizer(config.train, total_steps)
  params = init_params(model, config, content)
  state = sharding.put_replicated(TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params)), mesh)
  best = {"params": None, "step": 0, "valid": None, "history": []}
  run_dir.create()  # with overwrite: removes the previous run's files
  ckpt = RunCheckpoints(workdir / "checkpoints") if config.train.checkpoint else None
  if ckpt is not None:
    restored = ckpt.restore({"state": state, "best_params": state.params}, config_json)
    if restored is not None:
      tree, record = restored
      has_best = record["best"]["valid"] is not None
      state = tree["state"]
      best = {"params": jax.device_get(tree["best_params"]) if has_best else None, **record["best"]}
      log.info("resumed from step %d (best so far: step %d)", int(state.step), best["step"])
  _atomic_write_json(workdir / "config.json", config_json)

  step_fn = jax.jit(
      functools.partial(train_step, model=model, tx=tx, lc=config.loss, seed=config.seed),
      in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh), sharding.replicated(mesh)),
      out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)),
      donate_argnums=0)
  def eval_fn(params, histories, targets):
    return evaluate.evaluate(model, params, content, histories, targets,
                             max_history=config.data.max_history, mesh=mesh,
                             ks=tuple(config.eval.ks), user_chunk=config.eval.user_chunk)
  log_path = workdir / "metrics.jsonl"
  first = int(state.step)
  with workdir_lib.open_metrics(log_path, resume_step=first) as metrics_file, \
       preemption.StopOnSignal() as stop_signal, checkpoints.closing(ckpt), \
       tqdm(total=total_steps, initial=first, desc="train", unit="step") as bar:
    for step in range(first, total_steps):
      batch = batching.train_batch(
          split.train, step, batch_size=config.train.batch_size, seed=config.seed,
          max_history=config.data.max_history, target_len=config.data.target_len, mode=config.data.cut)
      state, metrics = step_fn(state, sharding.put_batch(batch, mesh), content)
      done = step + 1
      if done % config.train.log_every == 0 or done == total_steps:
        m = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not math.isfinite(m["loss"]):
          raise nonfinite.diverged(f"training loss became {m['loss']}", done, config, content)
        metrics_file.write(json.dumps({"step": done, "epoch": done / per_epoch, **m}) + "\n")
        metrics_file.flush()
        bar.set_postfix(loss=f"{m['loss']:.4f}", tau=f"{1 / m['logit_scale']:.3f}")
      if done % config.train.eval_every == 0 or done == total_steps:
        valid = eval_fn(state.params["towers"], split.valid.histories, split.valid.targets)
        nonfinite.check_validation(state.params, valid, done, config, content)  # before best/ckpt
        best["history"].append({"step": done, **valid})
        metrics_file.write(json.dumps({"step": done, "valid": valid}) + "\n")
        metrics_file.flush()
        if best["valid"] is None or valid[config.eval.select] > best["valid"][config.eval.select]:
          # A host copy: the device buffers of `state` are donated to the next step.
          best.update(params=jax.device_get(state.params), step=done, valid=valid)
        tqdm.write(f"step {done}: valid {config.eval.select}={valid[config.eval.select]:.4f} "
                   f"(best {best['valid'][config.eval.select]:.4f} at step {best['step']})")
        if ckpt is not None:
          ckpt.save(done, _ckpt_tree(state, best), _record(config_json, best))
      bar.update(1)
      if stop_signal.requested and done < total_steps:  # SIGTERM/SIGINT: save this step, stop
        raise preemption.stop(stop_signal, done, total_steps, ckpt, _ckpt_tree(state, best),
                              _record(config_json, best), workdir / "checkpoints")
      if stop_after_steps is not None and done - first >= stop_after_steps and done < total_steps:
        if ckpt is None:
          raise JaxrecError("stop_after_steps needs config.train.checkpoint=True to resume")
        if ckpt.latest_step() != done:
          ckpt.save(done, _ckpt_tree(state, best), _record(config_json, best))
        ckpt.close()
        log.info("stopped after step %d; run again with the same workdir to resume", done)
        return None
  if ckpt is not None:
    ckpt.close()

  _banner("test")
  test = eval_fn(best["params"]["towers"], split.test.histories, split.test.targets)
  popularity = evaluate.popularity(split.train, split.test.histories, split.test.targets,
                                   dataset.num_items, mesh=mesh, ks=tuple(config.eval.ks))
  results = {
      "valid": best["valid"], "test": test, "popularity_test": popularity,
      "config": config_json, "best_step": best["step"],
      "total_steps": total_steps, "dataset": dataset.stats(),
      "valid_history": best["history"], "wall_seconds": round(time.time() - start_time, 1),
  }
  _atomic_write_json(workdir / "results.json", results)
  log.info("test at step %d: %s", best["step"], test)
  return results
