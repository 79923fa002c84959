#!/usr/bin/env bash
# Requests a TPU VM slice as a queued resource and waits until it is ACTIVE.
#   ACCELERATOR_TYPE=v5litepod-32 experiments/tpu_vm/create.sh [--dry-run]
# Settings (TPU_NAME, ZONE, ACCELERATOR_TYPE, PROVISIONING, ...): common.sh.
# PROVISIONING=spot adds --spot; best-effort needs the alpha command (--best-effort);
# on-demand adds neither.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
parse_dry_run "$@"
require_tpu

GCLOUD=(gcloud compute tpus queued-resources)
case "$PROVISIONING" in
  spot) PROV=(--spot) ;;
  best-effort) GCLOUD=(gcloud alpha compute tpus queued-resources); PROV=(--best-effort) ;;
  on-demand) PROV=() ;;
  *) die "PROVISIONING=$PROVISIONING: want spot, best-effort or on-demand" ;;
esac
run "${GCLOUD[@]}" create "$QUEUED_RESOURCE" --node-id="$TPU_NAME" --zone="$ZONE" \
  --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION" "${PROV[@]}" \
  "${PROJECT_FLAG[@]}"
wait_active
