#!/usr/bin/env bash
# The demo rows of the README (synthetic data, offline): default recipe, ID only, paper setting.
set -u
for v in learn id paper; do
  python -m jaxrec.main --config=configs/demo.py:$v --workdir=sweeps/demo-$v
done
