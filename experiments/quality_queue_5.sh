#!/usr/bin/env bash
# Office rows run beside queue A to finish them sooner (queue A finds them done and only
# re-reads them). Resumable; run from the repo root.
set -u
M="python -m jaxrec.main"
$M --config=configs/office.py:id --workdir=sweeps/office-id
$M --config=configs/office.py:id --workdir=sweeps/office-cold-id --config.data.cold_items=0.1
$M --config=configs/office.py:baseline_v1 --workdir=sweeps/office-baseline_v1
$M --config=configs/office.py:paper_v2 --workdir=sweeps/office-paper-v2 --config.train.num_epochs=6 --config.train.eval_every_epochs=2
$M --config=configs/office.py:paper_v3 --workdir=sweeps/office-paper-v3 --config.train.num_epochs=6 --config.train.eval_every_epochs=2
