#!/usr/bin/env bash
# Session of 2026-12-02 (second): the ablation rows on Amazon Beauty (as quality_queue_8.sh does for the
# MovieLens datasets; one seed each), then the ML-latest-small content-only row that was stopped part
# way (it resumes from its checkpoint). Run from the repository root.
set -u
M="python -m jaxrec.main"
$M --config=configs/beauty.py:id --workdir=sweeps/beauty-id
$M --config=configs/beauty.py:baseline_v1 --workdir=sweeps/beauty-baseline_v1
$M --config=configs/ml_latest_small.py:content --workdir=sweeps/ml_latest_small-content --config.ceg.dtype=float32
$M --config=configs/beauty.py:paper --workdir=sweeps/beauty-paper-v1 --config.train.num_epochs=10 --config.train.eval_every_epochs=2
$M --config=configs/beauty.py:content --workdir=sweeps/beauty-content
python experiments/quality_report.py
