#!/usr/bin/env bash
# Session of 2026-12-02 (third): seeds 1 and 2 of Office with SmolLM2 content (`:smollm2`, the row of
# experiments/results/ceg_office.md that had one seed). The SmolLM2 store is cached by the seed-0 run.
# Run from the repository root.
set -eu
for seed in 1 2; do
  w=sweeps/office-smollm2-std-seed$seed
  python -m jaxrec.main --config=configs/office.py:smollm2 --config.seed=$seed --workdir=$w
  cp $w/results.json experiments/results/quality_runs/office-smollm2-standardize-seed${seed}__results.json
done
python experiments/ceg_office_table.py
