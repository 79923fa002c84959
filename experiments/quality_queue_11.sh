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
# Amazon Beauty (session of 2026-12-02, second): `experiments/quality_queue_11.sh beauty`, after
#   $M --config=configs/beauty.py:baseline_v1 --workdir=sweeps/beauty-baseline_v1
#   $M --config=configs/beauty.py:paper --workdir=sweeps/beauty-paper-v1 --config.train.num_epochs=10 \
#     --config.train.eval_every_epochs=2
# (the second and fourth lines of quality_queue_10.sh, run on their own while the fresh-check ran).
