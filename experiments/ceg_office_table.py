r"""Office, ID vs BERT (MiniLM) vs LLM (SmolLM2) content: experiments/results/ceg_office.md.

Reads the kept result files in experiments/results/quality_runs/ (each holds its
full config): the ID row, the default recipe with MiniLM content (seeds 0-2 of
its validation-best sweep trial) and the same recipe with SmolLM2 content.

  python experiments/ceg_office_table.py
"""

import json
import pathlib

import numpy as np

RUNS = pathlib.Path(__file__).resolve().parent / "results" / "quality_runs"
OUT = RUNS.parent / "ceg_office.md"
METRICS = ("HR@10", "HR@50", "HR@200", "NDCG@10", "NDCG@50", "NDCG@200")
_MINILM = "office-learn2__t03-d_model-d_out-mlp_dim=128-128-512_temperature=0.1"
ROWS = [  # (label, result files, command, note)
    ("ID only (`:id`, LEARN towers, best objective)", ["office-id"],
     "python -m jaxrec.main --config=configs/office.py:id --workdir=sweeps/office-id",
     "experiments/quality_queue_5.sh"),
    ("MiniLM (BERT) content + ID (default recipe)", [_MINILM, _MINILM + "-seed1", _MINILM + "-seed2"],
     "python -m jaxrec.sweep --config=configs/office.py:learn --workdir=sweeps/office-learn2 "
     "--config.model.adapter=whiten --config.model.adapter_dropout=0.2 --config.model.id_init=pca "
     "--config.model.dropout=0.3 --grid=\"model.d_model|model.d_out|model.mlp_dim=64|64|256,128|128|512;"
     "loss.temperature=0.05,0.1\" --seeds=0,1,2",
     "experiments/quality_queue_2.sh; its validation-best trial t03 (width 128, tau 0.1) is the "
     "default recipe"),
    ("SmolLM2-135M (LLM) content + ID, content L2-normalised (as MiniLM)", ["office-smollm2"],
     "python -m jaxrec.main --config=configs/office.py:smollm2 --config.ceg.normalize=l2 "
     "--workdir=/work/scratch-cegshard/office-smollm2",
     "run before `:smollm2` standardised its content; SmolLM2's CEG took 56 min on the shared "
     "2-core CPU, then cached"),
    ("SmolLM2-135M (LLM) content + ID, content standardised (`:smollm2`, validation-best)",
     ["office-smollm2-standardize", "office-smollm2-standardize-seed1", "office-smollm2-standardize-seed2"],
     "python -m jaxrec.main --config=configs/office.py:smollm2 "
     "--workdir=/work/scratch-cegshard/office-smollm2-std",
     "seed 0 run as `--config.ceg.normalize=standardize`, since made the recipe's setting; seeds 1 and 2: "
     "experiments/quality_queue_12.sh"),
    ("MiniLM content + ID (default recipe), sequences streamed (`data.input=stream`)",
     ["office-stream-seed0", "office-stream-seed1", "office-stream-seed2"],
     "python -m jaxrec.main --config=configs/office.py --config.data.input=stream --workdir=sweeps/office-stream-seed0",
     "experiments/quality_queue_13.sh: the default recipe with only data.input changed; training batches "
     "come from the users split in on-disk order, so they differ from the in-memory run's"),
]


def cell(values: list[float]) -> str:
  return f"{values[0]:.4f}" if len(values) == 1 else f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def main() -> None:
  lines = ["# Office: ID vs BERT vs LLM content", "",
           "Leave-one-out test metrics (full ranking, history excluded) at the validation-best "
           "step (NDCG@10), the same recipe (next item at every position, full softmax, whitening "
           "adapter + PCA-initialised IDs, width 128, tau 0.1) with only the content model (or, last row, the "
           "input pipeline) changed; "
           "± = std over seeds 0, 1, 2. Built by `python experiments/ceg_office_table.py` from "
           "experiments/results/quality_runs/. SmolLM2's content normalisation was chosen on "
           "validation with seed 0 (NDCG@10 0.0885 standardised against 0.0787 L2-normalised); MiniLM's "
           "rows use L2 (standardising MiniLM was not tried).", "",
           "| content | seeds | valid NDCG@10 | " + " | ".join(METRICS) + " |",
           "|---|---|---|" + "---|" * len(METRICS)]
  commands = []
  for label, names, command, note in ROWS:
    results = [json.loads((RUNS / f"{n}__results.json").read_text()) for n in names
               if (RUNS / f"{n}__results.json").exists()]
    if not results:
      lines.append(f"| {label} | - | not run yet |" + " |" * len(METRICS))
    else:
      lines.append(f"| {label} | {len(results)} | {cell([r['valid']['NDCG@10'] for r in results])} | "
                   + " | ".join(cell([r["test"][m] for r in results]) for m in METRICS) + " |")
    commands.append(f"- {label}: `{command}` ({note})")
  OUT.write_text("\n".join(lines + ["", "Commands:", ""] + commands) + "\n")
  print(OUT.read_text())


if __name__ == "__main__":
  main()
