#!/usr/bin/env bash
# Quality runs with the default recipe, queue B (run beside queue A): Beauty and
# MovieLens latest-small, default recipe and SASRec-equivalent, seed 0.
set -u
S="python -m jaxrec.sweep"
$S --config=configs/beauty.py --workdir=sweeps/beauty-learn --seeds=0
$S --config=configs/beauty.py:sasrec --workdir=sweeps/beauty-sasrec --seeds=0
$S --config=configs/ml_latest_small.py --workdir=sweeps/ml_latest_small-learn --seeds=0
$S --config=configs/ml_latest_small.py:sasrec --workdir=sweeps/ml_latest_small-sasrec --seeds=0
