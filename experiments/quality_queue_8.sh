#!/bin/bash
# Session of 2026-12-02 (early): the paper's rows and the ablations on the MovieLens datasets
# (Office's ran in quality_queue_1/3/5.sh), one seed each, same settings as Office's.
set -u
M="python -m jaxrec.main"
for ds in ${@:-ml_100k ml_latest_small}; do   # or the datasets given as arguments
  $M --config=configs/$ds.py:baseline_v1 --workdir=sweeps/$ds-baseline_v1
  $M --config=configs/$ds.py:id --workdir=sweeps/$ds-id
  $M --config=configs/$ds.py:paper --workdir=sweeps/$ds-paper-v1 --config.train.num_epochs=10 --config.train.eval_every_epochs=2
  $M --config=configs/$ds.py:content --workdir=sweeps/$ds-content
done
python experiments/quality_report.py
