#!/usr/bin/env bash
# Session of 2026-12-02 (second): the paper's item-tower Variants 2 and 3 (the paper's loss) on the
# MovieLens datasets, as Office's ran in quality_queue_3.sh: 10 epochs, validated every 2, one seed.
set -u
M="python -m jaxrec.main"
for ds in ${@:-ml_100k ml_latest_small}; do
  for v in 2 3; do
    $M --config=configs/$ds.py:paper_v$v --workdir=sweeps/$ds-paper-v$v --config.train.num_epochs=10 \
      --config.train.eval_every_epochs=2
  done
done
python experiments/quality_report.py
