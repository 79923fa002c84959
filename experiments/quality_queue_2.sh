#!/usr/bin/env bash
# Office LEARN recipe search, on validation only (results in sweeps/*/sweep.md).
# Stage 1: adapters, dropouts and ID initialisation around the content + ID fusion recipe.
# Stage 2: width and temperature around stage 1's validation-best trial (t06); its best (t03: width 128, tau 0.1) is the default recipe.
set -u
S="python -m jaxrec.sweep"
$S --config=configs/office.py:learn --workdir=sweeps/office-learn --random=8 --search_seed=0 \
   --grid="model.adapter=linear,whiten,moe;model.adapter_dropout=0.0,0.2;model.id_dropout=0.0,0.1;model.id_init=normal,pca;model.dropout=0.3,0.5" --seeds=0,1,2
$S --config=configs/office.py:learn --workdir=sweeps/office-learn2 \
   --config.model.adapter=whiten --config.model.adapter_dropout=0.2 --config.model.id_init=pca --config.model.dropout=0.3 \
   --grid="model.d_model|model.d_out|model.mlp_dim=64|64|256,128|128|512;loss.temperature=0.05,0.1" --seeds=0,1,2
