#!/usr/bin/env bash
# Quality runs with the default (validated) recipe: queue A (MovieLens 100K, the Office
# cold-item protocol and ablations). Resumable; run from the repo root.
set -u
S="python -m jaxrec.sweep"
M="python -m jaxrec.main"
$S --config=configs/ml_100k.py --workdir=sweeps/ml_100k-learn --seeds=0
for v in learn content id; do
  $M --config=configs/office.py:$v --workdir=sweeps/office-cold-$v --config.data.cold_items=0.1
done
$M --config=configs/office.py:content --workdir=sweeps/office-content
$M --config=configs/office.py:id --workdir=sweeps/office-id
$M --config=configs/office.py:baseline_v1 --workdir=sweeps/office-baseline_v1
# The paper's Variant 1 peaked at epoch 4 of 10 (sweeps/office-paper-v1): 6 epochs for 2 and 3.
$M --config=configs/office.py:paper_v2 --workdir=sweeps/office-paper-v2 --config.train.num_epochs=6 --config.train.eval_every_epochs=2
$M --config=configs/office.py:paper_v3 --workdir=sweeps/office-paper-v3 --config.train.num_epochs=6 --config.train.eval_every_epochs=2
$S --config=configs/ml_100k.py --workdir=sweeps/ml_100k-learn --seeds=0,1,2
