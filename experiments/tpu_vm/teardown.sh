#!/usr/bin/env bash
# Deletes the queued resource and its TPU VM slice (--force deletes an ACTIVE one).
#   experiments/tpu_vm/teardown.sh [--dry-run]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
parse_dry_run "$@"
require_tpu
run gcloud compute tpus queued-resources delete "$QUEUED_RESOURCE" --zone="$ZONE" \
  "${PROJECT_FLAG[@]}" --force --quiet
