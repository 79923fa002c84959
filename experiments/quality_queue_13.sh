#!/usr/bin/env bash
# Session of 2026-12-02 (fourth): the default Office recipe (MiniLM content + ID) with
# --config.data.input=stream, seeds 0-2: the users' sequences stay in the TFDS users split and are read
# as training and evaluation need them. Beside the in-memory rows of experiments/results/ceg_office.md
# (same configs but data.input). Run from the repository root.
set -eu
for seed in 0 1 2; do
  w=sweeps/office-stream-seed$seed
  python -m jaxrec.main --config=configs/office.py --config.data.input=stream --config.seed=$seed --workdir=$w
  cp $w/results.json experiments/results/quality_runs/office-stream-seed${seed}__results.json
done
python experiments/ceg_office_table.py
