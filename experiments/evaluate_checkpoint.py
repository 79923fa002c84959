r"""Test metrics of an unfinished run's best-so-far parameters: a budget-capped row.

  python experiments/evaluate_checkpoint.py --workdir=sweeps/beauty-learn/t00-base

A run stopped before early stopping ended it (SIGTERM saves a checkpoint) has no
results.json. This reads the run's own config.json and latest checkpoint, takes
the parameters that were best on *validation* so far (as the finished run
would), evaluates them once on test with the same report as training, and writes
`<workdir>/results_capped.json` with `"capped": true` and the last trained step,
so tables can show the row as a lower bound (like RecBole's capped rows). Run it
only while no training process writes to the workdir.
"""

import argparse
import json
import pathlib
import time

import jax.numpy as jnp

from jaxrec import config as config_lib, evaluate, sharding, train
from jaxrec.files import atomic_write_json
from jaxrec.model.towers import LearnTowers


def capped_results(workdir: pathlib.Path) -> dict:
  config_json = json.loads((workdir / "config.json").read_text())
  config = config_lib.from_json(config_json)
  mesh = sharding.make_mesh(config.mesh.num_devices)
  dataset, split, cold = train.load_data(config)
  per_epoch, _ = train.training_input(config, split)
  table = train.content_table(config, dataset, mesh)
  content = None if table is None else sharding.put_replicated(jnp.asarray(table), mesh)
  model = LearnTowers(train.tower_config(config, dataset.num_items))
  towers, record, last_step = train.restore_best(workdir, config, config_json, model, content, mesh)
  best = record["best"]
  ranks = evaluate.rank(model, towers, content, split.test.histories,
                        split.test.targets, max_history=config.data.max_history, mesh=mesh,
                        user_chunk=config.eval.user_chunk)
  return {
      "capped": True, "valid": best["valid"],
      **train.test_report(config, dataset, split, cold, ranks, mesh),
      "config": config_json, "best_step": best["step"], "best_epoch": best["step"] / per_epoch,
      "last_step": last_step, "last_epoch": last_step / per_epoch, "steps_per_epoch": per_epoch,
      "valid_history": best["history"], "evaluated_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
  }


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True, type=pathlib.Path)
  args = ap.parse_args()
  if (args.workdir / "results.json").exists():
    raise SystemExit(f"{args.workdir} finished (results.json exists); nothing to cap")
  results = capped_results(args.workdir)
  atomic_write_json(args.workdir / "results_capped.json", results, indent=2)
  print(f"{args.workdir}: trained to epoch {results['last_epoch']:.1f}, best validation at epoch "
        f"{results['best_epoch']:.1f}; test {json.dumps(results['test'])}")


if __name__ == "__main__":
  main()
