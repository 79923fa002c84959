#!/usr/bin/env bash
# This stop's quality runs (2026-12-01, second session). Stored runs made before ceg.dtype's default
# became "auto" resume with --config.ceg.dtype=float32 (the value they were made with).
set -u
S="python -m jaxrec.sweep"
F="--config.ceg.dtype=float32"
# Finish the stopped runs (they resume from their checkpoints).
$S --config=configs/ml_latest_small.py:sasrec --workdir=sweeps/ml_latest_small-sasrec --seeds=0 $F
$S --config=configs/beauty.py --workdir=sweeps/beauty-learn --seeds=0 $F
# Seeds 1 and 2 of the top rows (finished trials are read back).
$S --config=configs/ml_100k.py --workdir=sweeps/ml_100k-learn --seeds=0,1,2 $F
$S --config=configs/ml_latest_small.py --workdir=sweeps/ml_latest_small-learn --seeds=0,1,2 $F
# Warm-up in epochs against the default warm-up (validation only).
G="--grid=train.warmup_epochs=1 --seeds=0"
$S --config=configs/office.py:sasrec --workdir=sweeps/warmup-office-sasrec $G
$S --config=configs/ml_100k.py:sasrec --workdir=sweeps/warmup-ml_100k-sasrec $G
$S --config=configs/office.py --workdir=sweeps/warmup-office-learn $G
$S --config=configs/ml_100k.py --workdir=sweeps/warmup-ml_100k-learn $G
# RecBole-like sampling for the ML-100K SASRec-equivalent (stopped after seed 1: both seeds below the
# default on validation).
$S --config=configs/ml_100k.py:sasrec --workdir=sweeps/parity-ml_100k-sasrec \
  --grid="data.window_stride|train.batch_size=10|6" --seeds=0,1,2
# The ML-latest-small RecBole row (a RecBole 1.2.1 venv; the shared script unchanged).
PEER_ROOT=/tmp/peer python experiments/recbole_peer/make_atomic_ml_latest_small.py
PEER_ROOT=/tmp/peer "${RECBOLE_PYTHON:-python}" ../shared/baselines/recbole/run_recbole.py SASRec mlls \
  --epochs 6 --threads 1 --dropout 0.2
python experiments/quality_report.py
