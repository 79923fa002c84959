#!/bin/bash
# Session of 2026-12-01 (late): RecBole's own seed spread on ML-100K (6 epochs, as the shared row) and
# seeds 1 and 2 of the ML-latest-small SASRec-equivalent. Run from the repository root.
set -euo pipefail
S="python -m jaxrec.sweep"
# RecBole SASRec on ML-100K, seeds 2021 and 2022 (a RecBole 1.2.1 venv; the shared script with only its
# seed and checkpoint folder changed). Results: $PEER_ROOT/results/SASRec_ml100k_seed*.json, kept in
# experiments/results/recbole/.
PEER_ROOT=/tmp/peer "${RECBOLE_PYTHON:-python}" ../shared/baselines/recbole/make_atomic.py
for seed in 2021 2022; do
  PEER_ROOT=/tmp/peer "${RECBOLE_PYTHON:-python}" experiments/recbole_peer/run_recbole_seeded.py $seed \
    SASRec ml100k --epochs 6 --threads 1 --dropout 0.2
done
# ML-latest-small SASRec-equivalent, seeds 1 and 2 (seed 0 ran in quality_queue_5.sh; stored runs made
# before ceg.dtype's default became "auto" resume with --config.ceg.dtype=float32).
$S --config=configs/ml_latest_small.py:sasrec --workdir=sweeps/ml_latest_small-sasrec --seeds=0,1,2 \
  --config.ceg.dtype=float32
python experiments/quality_report.py
