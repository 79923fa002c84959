"""LEARN training and evaluation: data -> CEG -> train -> eval, in one call.

`train_and_evaluate(config, workdir)` is what `jaxrec.main` runs and what a
notebook imports. The train step is data-parallel over the mesh: the global
batch is split over devices, parameters are replicated, and the in-batch
logits of the whole global batch are formed inside jit (XLA all-gathers the
item embeddings), so 8 devices compute exactly what 1 device does. Across
several processes (hosts) the mesh is global and jaxrec/distributed.py does
the rest: evaluation split over processes, process 0 alone writing.
"""

import dataclasses
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
from jaxrec import distributed
from jaxrec import evaluate
from jaxrec import metric_writer
from jaxrec import nonfinite
from jaxrec import objectives
from jaxrec import preemption
from jaxrec import sharding
from jaxrec import workdir as workdir_lib
from jaxrec.checkpoints import RunCheckpoints
from jaxrec.data import batching, grain_input, packing, prefetch, prompts, registry, splits, stream_split, time_split
from jaxrec.errors import JaxrecError
from jaxrec.files import atomic_write_json
from jaxrec.llm import embed
from jaxrec.model.item_input import pca_id_table
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
      dropout=m.dropout, normalize=m.normalize, norm=m.norm, init_std=m.init_std, head=m.head, share_towers=m.share_towers, adapter=m.adapter,
      adapter_experts=m.adapter_experts, adapter_dropout=m.adapter_dropout, fusion=m.fusion,
      id_dropout=m.id_dropout)


def prepare_content(table: np.ndarray, normalize: str) -> np.ndarray:
  """[N, H] CEG output -> [N + 1, H] lookup table with a zero row 0 for padding."""
  table = table.astype(np.float32)
  if normalize == "l2":
    table = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
  elif normalize == "standardize":
    table = (table - table.mean(0)) / (table.std(0) + 1e-6)
  return np.concatenate([np.zeros((1, table.shape[1]), np.float32), table])


def warmup_steps(tc: ml_collections.ConfigDict, total_steps: int, steps_per_epoch: int) -> int:
  """`warmup_epochs` epochs when set, else `warmup_frac` of the run; at least 1 step, at most the run."""
  if tc.get("warmup_epochs", 0.0) > 0:
    return max(1, min(total_steps, round(tc.warmup_epochs * steps_per_epoch)))
  return max(1, int(tc.warmup_frac * total_steps))


def lr_schedule(tc: ml_collections.ConfigDict, total_steps: int,
                steps_per_epoch: int | None = None) -> optax.Schedule:
  """Linear warm-up, then cosine decay to 0 or constant; step -> learning rate."""
  warmup = warmup_steps(tc, total_steps, steps_per_epoch or max(1, total_steps // tc.num_epochs))
  if tc.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        0.0, tc.learning_rate, warmup_steps=warmup, decay_steps=max(total_steps, 2), end_value=0.0)
  return optax.join_schedules(
      [optax.linear_schedule(0.0, tc.learning_rate, warmup), optax.constant_schedule(tc.learning_rate)],
      [warmup])


def make_optimizer(tc: ml_collections.ConfigDict, total_steps: int,
                   steps_per_epoch: int | None = None,
                   schedule: optax.Schedule | None = None) -> optax.GradientTransformation:
  """AdamW on `schedule` (default `lr_schedule`); no decay on biases, norms, temperature."""
  schedule = schedule or lr_schedule(tc, total_steps, steps_per_epoch)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  adam = optax.adamw(schedule, weight_decay=tc.weight_decay, mask=decay_mask)
  return optax.chain(optax.clip_by_global_norm(tc.grad_clip), adam) if tc.grad_clip > 0 else adam


def init_params(model: LearnTowers, config: ml_collections.ConfigDict, content) -> dict:
  h = jnp.ones((2, config.data.max_history), jnp.int32)
  t = jnp.ones((2, config.data.target_len), jnp.int32)
  towers = model.init(jax.random.key(config.seed), h, t, content)["params"]
  if config.model.id_init == "pca" and "item_id_embedding" in towers["item_input"]:
    towers["item_input"]["item_id_embedding"]["embedding"] = jnp.asarray(
        pca_id_table(np.asarray(content), config.model.d_model))
  return {"towers": towers, "log_scale": jnp.asarray(-math.log(config.loss.temperature), jnp.float32)}


def train_step(state: TrainState, batch, content, *, loss_fn, tx, seed: int,
               schedule: optax.Schedule | None = None):
  """One optimiser step on the global batch; dropout and sampling keyed by (seed, step).

  With `schedule` (the optimiser's), metrics["lr"] is the rate this step applied.
  """
  rng = jax.random.fold_in(jax.random.key(seed), state.step)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, aux), grads = grad_fn(state.params, batch, content, rng)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, "grad_norm": optax.tree_utils.tree_norm(grads), **aux}
  if schedule is not None:
    metrics["lr"] = jnp.asarray(schedule(state.step), jnp.float32)
  return TrainState(state.step + 1, params, opt_state), metrics


def _ckpt_tree(state: TrainState, best: dict) -> dict:
  """What a checkpoint holds; before the first validation, best_params is a placeholder."""
  return {"state": state, "best_params": state.params if best["params"] is None else best["params"]}


def restore_best(workdir: str | os.PathLike, config: ml_collections.ConfigDict, config_json: dict,
                 model: LearnTowers, content, mesh=None) -> tuple[Any, dict, int]:
  """(best-validation tower parameters, checkpoint record, last trained step) of a run's
  verified Orbax checkpoint: what serving, `recommend` and capped evaluation read back.
  The optimizer state is restored only for the checkpoint's structure."""
  workdir = pathlib.Path(workdir)
  if not (workdir / "checkpoints").is_dir():
    raise JaxrecError(f"{workdir} has no checkpoints/ (train with config.train.checkpoint=True)")
  params = init_params(model, config, content)
  tx = make_optimizer(config.train, total_steps=1)
  like = {"state": TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params)), "best_params": params}
  ckpt = RunCheckpoints(workdir / "checkpoints")
  try:
    restored = ckpt.restore(like if mesh is None else sharding.put_replicated(like, mesh), config_json)
  finally:
    ckpt.close()
  if restored is None:
    raise JaxrecError(f"{workdir}/checkpoints holds no finished checkpoint")
  tree, record = restored
  if record["best"]["valid"] is None:
    raise JaxrecError(f"{workdir}: the run stopped before its first validation, so it has no "
                      "best parameters yet")
  return tree["best_params"]["towers"], record, int(jax.device_get(tree["state"].step))


def _record(config_json: dict, best: dict) -> dict:
  return {"config": config_json, "best": {k: best[k] for k in ("step", "valid", "history")}}


def _banner(title: str) -> None:
  preemption.raise_pending()   # a signal Python swallowed during the last stage stops here
  log.info("%s %s %s", "=" * 20, title, "=" * 20)


# ----------------------------------------------------------------------------
# The stages.
# ----------------------------------------------------------------------------

def load_data(config: ml_collections.ConfigDict):
  """The dataset, its split (data.protocol) and the cold items (empty unless data.cold_items).

  With data.input='stream' the dataset is its ItemCatalogue and the split a
  StreamedLeaveOneOut: the users' sequences stay on disk (data/stream_split.py).
  """
  d = config.data
  if d.input == "stream":
    return _load_streamed(config)
  dataset = _on_main_first(config, lambda: registry.load_dataset(
      d.kind, d.path or None, via_tfds=d.via_tfds, **_reader_options(config)))
  if d.protocol == "time_split":
    split = time_split.time_split(dataset.sequences, dataset.timestamps, cut_quantile=d.cut_quantile,
                                  valid_users=d.valid_users, test_users=d.test_users,
                                  target_len=d.target_len)
    log.info("time split: cut at t=%d; %d valid and %d test users (disjoint from training)",
             split.cut_time, len(split.valid.users), len(split.test.users))
  else:
    split = splits.leave_one_out(dataset.sequences)
  if not split.train:
    raise JaxrecError(f"{dataset.name}: no user has enough interactions to train on")
  cold = np.zeros(0, np.int32)
  if d.cold_items > 0:
    split, cold = splits.hold_out_items(split, dataset.num_items, d.cold_items, d.cold_seed)
  return dataset, split, cold


def _load_streamed(config: ml_collections.ConfigDict):
  """load_data of data.input='stream': one pass over the TFDS users split (leave-one-out only)."""
  d = config.data
  with tqdm(desc="users (copied once to a flat file)", unit="user", disable=not distributed.is_main()) as bar:
    items, flat = _on_main_first(config, lambda: registry.load_streamed(
        d.kind, d.path, progress=bar.update, **_reader_options(config)))
  split = stream_split.leave_one_out(flat, items.num_items)
  if not split.num_train_sequences:
    raise JaxrecError(f"{items.name}: no user has enough interactions to train on")
  return dataclasses.replace(items, user_stats=split.stats), split, np.zeros(0, np.int32)


def load_items(config: ml_collections.ConfigDict):
  """What CEG embeds: the dataset (load_data's), or with data.input='stream' its ItemCatalogue
  (its users stay on disk)."""
  d = config.data
  if d.input == "stream":
    return _on_main_first(config, lambda: registry.load_items(d.kind, d.path, **_reader_options(config)))
  return load_data(config)[0]


def _on_main_first(config: ml_collections.ConfigDict, load):
  """load(); with several processes and a TFDS cache, process 0 prepares it and the others read it
  after (processes on one host share the cache)."""
  d = config.data
  if jax.process_count() > 1 and d.via_tfds and d.kind != "synthetic_demo":
    out = load() if distributed.is_main() else None
    distributed.barrier("tfds_prepare")
    return out or load()
  return load()


def num_train_sequences(split) -> int:
  """Training sequences of >= 2 items (what a next-item epoch learns from)."""
  if isinstance(split, stream_split.StreamedLeaveOneOut):
    return split.num_train_sequences
  return len(split.train)


def train_counts(split, num_items: int) -> splits.TrainCounts:
  """Each item's training counts: counted by the streaming pass, or from the sequences in memory."""
  if isinstance(split, stream_split.StreamedLeaveOneOut):
    return split.counts
  return splits.train_counts(split.train, num_items)


def _reader_options(config: ml_collections.ConfigDict) -> dict:
  d = config.data
  if d.kind == "synthetic_demo":
    return {"num_users": d.demo_users, "num_items": d.demo_items, "seed": config.seed}
  return {"name": d.name} if d.kind == "lcrec_json" and d.name else {}


def training_input(config: ml_collections.ConfigDict, split) -> tuple[int, Any]:
  """(steps per epoch, step -> host batch) for the configured objective."""
  d, bs, seed = config.data, config.train.batch_size, config.seed
  if config.loss.objective == "dense_all_action":
    per_epoch = batching.steps_per_epoch(len(split.train), bs)
    return per_epoch, lambda step: batching.train_batch(
        split.train, step, batch_size=bs, seed=seed, max_history=d.max_history,
        target_len=d.target_len, mode=d.cut)
  if d.input in ("grain", "stream"):
    # stream: split.train reads the training sequences from the flat copy of the users split.
    rows = grain_input.GrainInput(split.train, max_history=d.max_history, batch_size=bs, seed=seed,
                                  objective=config.loss.objective, pack=d.pack, stride=d.window_stride)
    return rows.steps_per_epoch, prefetch.Prefetched(rows.batch)    # packs ahead while the device steps
  rows = packing.pack(split.train, d.max_history, config.loss.objective, d.pack, d.window_stride)
  log.info("next-item input: %d rows of %d positions, %.0f%% filled", rows.num_rows,
           d.max_history, 100 * float(np.mean(rows.inputs > 0)))
  return packing.steps_per_epoch(rows, bs), lambda step: packing.batch(rows, step, batch_size=bs, seed=seed)


def item_texts(config: ml_collections.ConfigDict, dataset) -> list[str]:
  """Every item's text, rendered with the configured template (the CEG input)."""
  template = config.data.template or prompts.DEFAULT_TEMPLATES[config.data.kind]
  texts, n_fallback = prompts.render_all(dataset, template, config.data.max_text_chars)
  if n_fallback:
    log.warning("%d of %d items have no text; they get the fallback text 'Item <id>'",
                    n_fallback, len(texts))
  return texts


def ceg_options(config: ml_collections.ConfigDict, dataset) -> dict:
  """Keyword arguments of embed.content_embeddings / embed.build_store from config.ceg,
  shared by training and `python -m jaxrec.embed` so both find the same store."""
  c = config.ceg
  return dict(model=c.model, pooling=c.pooling, max_tokens=c.max_tokens,
              token_budget=c.token_budget, dtype=c.dtype, store_dtype=c.store_dtype,
              chunk_items=c.chunk_items, cache_dir=c.cache_dir or None, label=dataset.name,
              mesh_model=c.mesh_model, fsdp=c.fsdp, attention=c.attention,
              attention_impl=c.attention_impl)


def content_table(config: ml_collections.ConfigDict, dataset, mesh) -> np.ndarray | None:
  """CEG: frozen-LLM embeddings of every item's text (cached), or None for the ID model."""
  m = config.model
  if m.item_input == "id" and m.item_tower != "content" and m.id_init != "pca":
    return None
  table = embed.content_embeddings(item_texts(config, dataset), **ceg_options(config, dataset),
                                   **distributed.ceg_share(mesh))
  return prepare_content(table, config.ceg.normalize)


def _take(histories, indices: np.ndarray):
  """The histories of users `indices`: a lazy view of streamed histories, else a tuple."""
  if isinstance(histories, stream_split.Histories):
    return histories.take(indices)
  return tuple(histories[i] for i in indices)


def eval_interval(config: ml_collections.ConfigDict, per_epoch: int) -> int:
  t = config.train
  return max(1, round(t.eval_every_epochs * per_epoch)) if t.eval_every_epochs > 0 else t.eval_every


def evals_since_best(best: dict) -> int:
  """Validations after the best one: early stopping's counter, derived so it survives a resume."""
  return sum(1 for h in best["history"] if h["step"] > best["step"])


def test_report(config, dataset, split, cold: np.ndarray, ranks: np.ndarray, mesh) -> dict:
  """Test metrics, popularity, and breakdowns: by target training count, and cold targets."""
  ks = tuple(config.eval.ks)
  counts = train_counts(split, dataset.num_items).items
  pop_ranks = distributed.rank_users(
      lambda h, t, m: evaluate.popularity_ranks(counts, h, t, mesh=m),
      split.test.histories, split.test.targets, mesh)
  report = {
      "test": evaluate.metrics_from_ranks(ranks, ks),
      "popularity_test": evaluate.metrics_from_ranks(pop_ranks, ks),
  }
  if split.test.targets.ndim == 1:   # one target a user (leave-one-out): group users by it
    groups = evaluate.target_count_groups(counts, split.test.targets)
    report["test_by_target_train_count"] = evaluate.metrics_by_group(ranks, groups, ks)
    report["popularity_by_target_train_count"] = evaluate.metrics_by_group(pop_ranks, groups, ks)
  if len(cold):
    cold_users = {"cold_target": np.isin(split.test.targets, cold),
                  "warm_target": ~np.isin(split.test.targets, cold)}
    report["cold_items"] = len(cold)
    report["test_cold_protocol"] = evaluate.metrics_by_group(ranks, cold_users, ks)
    report["popularity_cold_protocol"] = evaluate.metrics_by_group(pop_ranks, cold_users, ks)
  return report


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
  main = distributed.is_main()   # only process 0 writes results, metrics and logs
  say = tqdm.write if main else (lambda *_: None)
  workdir = pathlib.Path(workdir)
  run_dir = workdir_lib.check(workdir, config, config_json, overwrite=overwrite)  # before any work
  mesh = sharding.make_mesh(config.mesh.num_devices)
  sharding.check_divisible(config.train.batch_size, mesh, "config.train.batch_size")

  _banner("data")
  dataset, split, cold = load_data(config)
  log.info("%s: %s; %d training sequences, %d evaluated, %d dropped (too few items), %d cold items",
           dataset.name, dataset.stats(), num_train_sequences(split), len(split.valid.targets),
           split.num_dropped_users, len(cold))
  per_epoch, batch_at = training_input(config, split)
  if per_epoch == 0:
    raise JaxrecError(f"config.train.batch_size={config.train.batch_size} is larger than the "
                      f"{num_train_sequences(split)} training users")
  total_steps = per_epoch * config.train.num_epochs
  eval_every = eval_interval(config, per_epoch)

  _banner("CEG")
  table = content_table(config, dataset, mesh)
  content = None if table is None else sharding.put_replicated(jnp.asarray(table), mesh)

  _banner("train")
  model = LearnTowers(tower_config(config, dataset.num_items))
  schedule = lr_schedule(config.train, total_steps, per_epoch)
  tx = make_optimizer(config.train, total_steps, per_epoch, schedule)
  params = init_params(model, config, content)
  state = sharding.put_replicated(TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params)), mesh)
  best = {"params": None, "step": 0, "valid": None, "history": []}
  if main:
    run_dir.create()  # with overwrite: removes the previous run's files
  distributed.barrier("workdir ready")
  ckpt = RunCheckpoints(workdir / "checkpoints", keep=config.train.keep_checkpoints) \
      if config.train.checkpoint else None
  if ckpt is not None:
    restored = ckpt.restore({"state": state, "best_params": state.params}, config_json)
    if restored is not None:
      tree, record = restored
      has_best = record["best"]["valid"] is not None
      state = tree["state"]
      best = {"params": jax.device_get(tree["best_params"]) if has_best else None, **record["best"]}
      log.info("resumed from step %d (best so far: step %d)", int(state.step), best["step"])
  if main:
    atomic_write_json(workdir / "config.json", config_json, indent=2)

  log_q = objectives.log_q(train_counts(split, dataset.num_items).targets)
  # Cold-item protocol: held-out items do not exist at training time, so they are no negatives.
  negative_items = np.setdiff1d(np.arange(dataset.num_items), cold) if len(cold) else None
  step_fn = jax.jit(
      functools.partial(train_step, loss_fn=objectives.make_loss_fn(config, model, log_q, negative_items),
                        tx=tx, seed=config.seed, schedule=schedule),
      in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh), sharding.replicated(mesh)),
      out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)),
      donate_argnums=0)
  def ranks_of(params, histories, targets):
    # Several processes: each ranks a share of the users on its own devices.
    return distributed.rank_users(
        lambda h, t, m: evaluate.rank(model, distributed.on_mesh(params, m), distributed.on_mesh(content, m),
                                      h, t, max_history=config.data.max_history, mesh=m,
                                      user_chunk=config.eval.user_chunk, **evaluate.eval_options(config.eval)),
        histories, targets, mesh)
  def eval_fn(params, histories, targets):
    return evaluate.metrics_from_ranks(ranks_of(params, histories, targets), tuple(config.eval.ks))
  # --- partial evaluation (eval.partial_users): periodic validation on a fixed seeded
  # subset of users; the best step's parameters get the full validation at the end.
  part = evaluate.partial_users(len(split.valid.targets), config.eval.partial_users, config.eval.partial_seed)
  is_partial = len(part) < len(split.valid.targets)
  valid_part = ((_take(split.valid.histories, part), split.valid.targets[part]) if is_partial
                else (split.valid.histories, split.valid.targets))
  # --- end partial evaluation
  log_path = workdir / "metrics.jsonl"
  first = int(state.step)
  patience = config.train.patience
  stopped_early = bool(patience) and best["valid"] is not None and evals_since_best(best) >= patience
  metrics_log = workdir_lib.open_metrics(log_path, resume_step=first) if main else open(os.devnull, "w")
  with metrics_log as metrics_file, \
       preemption.StopOnSignal() as stop_signal, checkpoints.closing(ckpt), \
       metric_writer.open_writer(workdir, batch_size=config.train.batch_size, num_devices=mesh.devices.size,
                                 first_step=first, jitted_step=step_fn,
                                 step_args=(state, sharding.put_batch(batch_at(first), mesh), content)) as writer, \
       tqdm(total=total_steps, initial=first, desc="train", unit="step", disable=not main) as bar:
    for step in range(first, total_steps if not stopped_early else first):
      state, metrics = step_fn(state, sharding.put_batch(batch_at(step), mesh), content)
      done = step + 1
      if done % config.train.log_every == 0 or done == total_steps:
        m = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not math.isfinite(m["loss"]):
          raise nonfinite.diverged(f"training loss became {m['loss']}", done, config, content)
        metrics_file.write(json.dumps({"step": done, "epoch": done / per_epoch, **m}) + "\n")
        metrics_file.flush()
        writer.train(done, m)
        bar.set_postfix(loss=f"{m['loss']:.4f}", tau=f"{1 / m['logit_scale']:.3f}")
      if done % eval_every == 0 or done == total_steps:
        valid = eval_fn(state.params["towers"], *valid_part)
        nonfinite.check_validation(state.params, valid, done, config, content)  # before best/ckpt
        best["history"].append({"step": done, **valid})
        metrics_file.write(json.dumps({"step": done, "epoch": done / per_epoch, "valid": valid}) + "\n")
        metrics_file.flush()
        if best["valid"] is None or valid[config.eval.select] > best["valid"][config.eval.select]:
          # A host copy: the device buffers of `state` are donated to the next step.
          best.update(params=jax.device_get(state.params), step=done, valid=valid)
        say(f"step {done} (epoch {done / per_epoch:.1f}): valid {config.eval.select}="
            f"{valid[config.eval.select]:.4f} (best {best['valid'][config.eval.select]:.4f} "
            f"at step {best['step']})")
        stopped_early = bool(patience) and evals_since_best(best) >= patience
        if ckpt is not None:
          ckpt.save(done, _ckpt_tree(state, best), _record(config_json, best))
        writer.valid(done, valid)
        if stopped_early:
          say(f"early stop: no better {config.eval.select} in {patience} validations")
          break
      bar.update(1)
      stop_signal.signum = distributed.agree_on_stop(stop_signal.signum)  # all stop together
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
  ranks = ranks_of(best["params"]["towers"], split.test.histories, split.test.targets)
  full_valid = (eval_fn(best["params"]["towers"], split.valid.histories, split.valid.targets)
                if is_partial else best["valid"])  # partial evaluation: the full validation
  results = {
      "valid": full_valid, "valid_users_periodic": len(part),
      **test_report(config, dataset, split, cold, ranks, mesh),
      "config": config_json, "best_step": best["step"], "best_epoch": best["step"] / per_epoch,
      "total_steps": total_steps, "steps_per_epoch": per_epoch,
      "last_step": best["history"][-1]["step"] if best["history"] else 0,
      "stopped_early": stopped_early, "dataset": dataset.stats(),
      "valid_history": best["history"], "wall_seconds": round(time.time() - start_time, 1),
  }
  if main:
    atomic_write_json(workdir / "results.json", results, indent=2)
  log.info("test at step %d: %s", best["step"], results["test"])
  return results
