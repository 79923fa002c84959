#!/usr/bin/env bash
# Quality runs behind experiments/results/quality.md (batch 1: baselines and the paper's rows).
# Each line is resumable: rerunning skips finished trials. Run from the repo root.
set -u
S="python -m jaxrec.sweep"
M="python -m jaxrec.main"
$S --config=configs/office.py:sasrec --workdir=sweeps/office-sasrec --seeds=0,1,2
$S --config=configs/ml_100k.py:sasrec --workdir=sweeps/ml_100k-sasrec --seeds=0,1,2
$M --config=configs/office.py:paper --workdir=sweeps/office-paper-v1 --config.train.num_epochs=10 --config.train.eval_every_epochs=2
$M --config=configs/office.py:baseline_v1 --workdir=sweeps/office-baseline_v1
$M --config=configs/office.py:paper_v2 --workdir=sweeps/office-paper-v2 --config.train.num_epochs=10 --config.train.eval_every_epochs=2
$M --config=configs/office.py:paper_v3 --workdir=sweeps/office-paper-v3 --config.train.num_epochs=10 --config.train.eval_every_epochs=2
$S --config=configs/ml_latest_small.py:sasrec --workdir=sweeps/ml_latest_small-sasrec --seeds=0
$S --config=configs/beauty.py:sasrec --workdir=sweeps/beauty-sasrec --seeds=0
