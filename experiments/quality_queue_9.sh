#!/usr/bin/env bash
# Session of 2026-12-02 (second): seeds of the Beauty top rows (seed 0 ran in quality_queue_4/6.sh).
# Two seeds at once: each sweep invocation reruns the validation-best trial with the seeds it is given
# and skips trials whose results.json exists, so the last call reads every seed back and writes the
# 3-seed report. Stored runs made before ceg.dtype's default became "auto" resume with float32.
set -u
S="python -m jaxrec.sweep"
F="--config.ceg.dtype=float32"
SEED=${1:-1}
$S --config=configs/beauty.py --workdir=sweeps/beauty-learn --seeds=0,$SEED $F &
$S --config=configs/beauty.py:sasrec --workdir=sweeps/beauty-sasrec --seeds=0,$SEED $F &
wait
