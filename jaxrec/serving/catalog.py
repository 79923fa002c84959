"""A trained run as a servable artifact: the model, and per item its id, title and vectors.

`build_artifact(workdir, out)` reads a training workdir once (config.json, the
best parameters of the Orbax checkpoint, the dataset and its CEG store) and
writes a self-contained serving folder that needs neither the dataset nor
Orbax again:

  config.json   the run's config
  params.npz    the best tower parameters (flat arrays, loaded with allow_pickle=False)
  base.npz      per catalogue item: id, title, input vector (what the user tower
                reads) and item embedding (what is searched); and what the
                cold-start encoder needs: the content's PCA basis (model.id_init=pca)
                and its mean/std (ceg.normalize=standardize)
  queries.npy   held-out user embeddings (test users): recall is tuned on them

Items held out of training by the cold-item protocol (`data.cold_items`) are
left out of the catalogue unless `include_cold`: they did not exist when the
model was trained, and are what `POST /items` adds by text.
"""

import json
import logging
import os
import pathlib
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxrec.config import from_json as config_from_json  # noqa: F401 (catalog.config_from_json)
from jaxrec.errors import JaxrecError
from jaxrec.files import atomic_write_json
from jaxrec.model.item_input import pca_basis
from jaxrec.model.towers import LearnTowers

log = logging.getLogger(__name__)

CONFIG, PARAMS, BASE, QUERIES = "config.json", "params.npz", "base.npz", "queries.npy"


def save_params(path: pathlib.Path, params: Any) -> None:
  flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "wb") as f:
    np.savez(f, **{k: np.asarray(v) for k, v in flat.items()})
  os.replace(tmp, path)


def load_params(path: pathlib.Path) -> dict:
  with np.load(path, allow_pickle=False) as z:
    return traverse_util.unflatten_dict({k: jnp.asarray(z[k]) for k in z.files}, sep="/")


def save_npz(path: pathlib.Path, **arrays: np.ndarray) -> None:
  """np.savez, atomically; strings must be numpy unicode arrays (never objects)."""
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)


def load_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except (OSError, ValueError, EOFError) as e:
    raise JaxrecError(f"{path} is missing or damaged ({type(e).__name__}); rebuild the serving "
                      "folder with `python -m jaxrec.serve build`") from e


def restore_best_params(workdir: pathlib.Path, config, config_json: dict, model: LearnTowers,
                        content) -> Any:
  """The best-validation tower parameters of the run's Orbax checkpoint (verified)."""
  from jaxrec import train  # noqa: PLC0415 (training machinery only at build time)
  towers, record, _ = train.restore_best(workdir, config, config_json, model, content)
  return jax.device_get(towers), int(record["best"]["step"])


def item_inputs(model: LearnTowers, params, content, tokens: np.ndarray) -> np.ndarray:
  """[n, d_model] what the user tower reads for each item token."""
  return np.asarray(jax.jit(lambda p, t, c: model.apply(
      {"params": p}, t, c, method=lambda m, t, c: m.item_input(t, c)))(params, tokens, content))


def build_artifact(workdir: str | os.PathLike, out: str | os.PathLike, *,
                   include_cold: bool = False) -> dict:
  """Writes the serving folder `out` from a training workdir; returns a summary."""
  from jaxrec import evaluate, sharding, train  # noqa: PLC0415
  from jaxrec import workdir as workdir_lib  # noqa: PLC0415
  from jaxrec.data import batching, prompts  # noqa: PLC0415
  from jaxrec.llm import embed  # noqa: PLC0415
  workdir, out = pathlib.Path(workdir), pathlib.Path(out)
  try:
    config_json = json.loads((workdir / "config.json").read_text())
  except (OSError, ValueError) as e:
    raise JaxrecError(f"{workdir}/config.json is missing or damaged: is {workdir} a training "
                      "workdir?") from e
  config = config_from_json(config_json)
  if config.method != "learn":
    raise JaxrecError(f"config.method={config.method!r} has no trained towers to serve")
  mesh = sharding.make_mesh(1)
  dataset, split, cold = train.load_data(config)
  raw = None
  if workdir_lib.needs_content(config):
    raw = embed.content_embeddings(train.item_texts(config, dataset), mesh=mesh,
                                   **train.ceg_options(config, dataset)).astype(np.float32)
  content = None if raw is None else jnp.asarray(train.prepare_content(raw, config.ceg.normalize))
  model = LearnTowers(train.tower_config(config, dataset.num_items))
  params, step = restore_best_params(workdir, config, config_json, model, content)

  n = dataset.num_items
  item_emb = np.asarray(evaluate.item_embeddings(model, params, content, n, mesh))
  inputs = item_inputs(model, params, content, np.arange(1, n + 1, dtype=np.int32))
  queries = np.asarray(evaluate.user_embeddings(
      model, params, content, batching.to_tokens(split.test.histories, config.data.max_history),
      mesh))
  keep = np.ones(n, bool) if include_cold else ~np.isin(np.arange(n), cold)
  titles = [prompts.clean_field(f.get("title") or "") or dataset.item_ids[i]
            for i, f in enumerate(dataset.item_fields)]
  stats = {}
  if raw is not None:
    stats = {"content_mean": raw.mean(0), "content_std": raw.std(0)}
    if config.model.id_init == "pca" and config.model.item_input in ("id", "fusion"):
      mean, comps, scale = pca_basis(np.asarray(content), config.model.d_model)
      stats.update(pca_mean=mean, pca_components=comps, pca_scale=np.float64(scale))
  tmp = out.with_name(out.name + ".tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir(parents=True)
  atomic_write_json(tmp / CONFIG, config_json, indent=2)
  save_params(tmp / PARAMS, params)
  save_npz(tmp / BASE, ids=np.asarray(dataset.item_ids, str)[keep],
           titles=np.asarray(titles, str)[keep], rows=np.flatnonzero(keep).astype(np.int32) + 1,
           input_vec=inputs[keep], item_emb=item_emb[keep], **stats)
  np.save(tmp / QUERIES, queries)
  atomic_write_json(tmp / "build.json", {
      "workdir": str(workdir.absolute()), "model_step": step, "dataset": dataset.name,
      "items": int(keep.sum()), "cold_items_left_out": 0 if include_cold else int(len(cold)),
      "d_out": int(item_emb.shape[1]), "queries": len(queries)}, indent=2)
  if out.exists():
    shutil.rmtree(out)
  os.replace(tmp, out)
  return json.loads((out / "build.json").read_text())
