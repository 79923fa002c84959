#!/usr/bin/env bash
# Quality runs with the default (validated) recipe on every dataset, the cold-item
# protocol on Office, and the remaining paper ablations. Resumable; run from the repo root.
set -u
S="python -m jaxrec.sweep"
M="python -m jaxrec.main"
$S --config=configs/ml_100k.py --workdir=sweeps/ml_100k-learn --seeds=0,1,2
for v in learn content id; do
  $M --config=configs/office.py:$v --workdir=sweeps/office-cold-$v --config.data.cold_items=0.1
done
$M --config=configs/office.py:content --workdir=sweeps/office-content
$M --config=configs/office.py:id --workdir=sweeps/office-id
$S --config=configs/ml_latest_small.py --workdir=sweeps/ml_latest_small-learn --seeds=0
$S --config=configs/ml_latest_small.py:sasrec --workdir=sweeps/ml_latest_small-sasrec --seeds=0
$S --config=configs/beauty.py --workdir=sweeps/beauty-learn --seeds=0
$S --config=configs/beauty.py:sasrec --workdir=sweeps/beauty-sasrec --seeds=0
$M --config=configs/office.py:baseline_v1 --workdir=sweeps/office-baseline_v1
$M --config=configs/office.py:paper_v2 --workdir=sweeps/office-paper-v2 --config.train.num_epochs=10 --config.train.eval_every_epochs=2
$M --config=configs/office.py:paper_v3 --workdir=sweeps/office-paper-v3 --config.train.num_epochs=10 --config.train.eval_every_epochs=2
