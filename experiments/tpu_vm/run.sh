#!/usr/bin/env bash
# The whole job on a TPU VM slice: create, install, launch jaxrec.main on every
# worker (logs streamed here), and on a preemption (exit 143, or the slice gone)
# tear down, recreate and launch again with the same --workdir, which resumes
# from its last checkpoint; tear down when the run has finished.
#   WORKDIR_BUCKET=my-bucket ACCELERATOR_TYPE=v5litepod-32 \
#     experiments/tpu_vm/run.sh [--dry-run] -- --config=configs/office.py --workdir=RUN
# RUN is a path under ~/gcs/$WORKDIR_BUCKET on the workers (setup.sh mounts it).
# MAX_RESTARTS (default 5) bounds the preemptions survived.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; args=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (jaxrec.main flags go after --)" ;;
  esac
done
export DRY_RUN
dry=(); [[ -n "$DRY_RUN" ]] && dry=(--dry-run)

for ((attempt = 0; attempt <= ${MAX_RESTARTS:-5}; attempt++)); do
  "$HERE/create.sh" "${dry[@]}"
  "$HERE/setup.sh" "${dry[@]}"
  set +e; "$HERE/launch.sh" "${dry[@]}" -- "${args[@]}"; rc=$?; set -e
  [[ -n "$DRY_RUN" ]] && { "$HERE/teardown.sh" "${dry[@]}"; exit 0; }
  if [[ "$rc" -eq 0 ]]; then
    "$HERE/teardown.sh"; exit 0
  fi
  state="$(qr_state)"
  if [[ "$rc" -ne 143 && "$state" == "ACTIVE" ]]; then
    echo "jaxrec.main failed (exit $rc) on an ACTIVE slice; not restarting (the slice is kept)" >&2
    exit "$rc"
  fi
  echo "preempted (exit $rc, queued resource ${state:-absent}); recreating the slice" >&2
  "$HERE/teardown.sh" || true
done
die "gave up after ${MAX_RESTARTS:-5} restarts"
