#!/usr/bin/env bash
# Launches `python -m jaxrec.main` on every worker of a TPU VM slice, or as N
# processes on this machine, through the same code path: every process starts
# jax.distributed (jaxrec/distributed.py) and joins one global device mesh.
#
#   experiments/tpu_vm/launch.sh [--dry-run] [--local N] [--module M] -- <jaxrec.main flags>
#
# --module M  run python -m M instead of jaxrec.main (e.g. jaxrec.embed: CEG alone)
# --local N   N processes here, coordinator on a free localhost port, each with
#             $JAXREC_LOCAL_DEVICES (default 4) fake CPU devices. Process 0's
#             output is this script's; the others' goes to stderr, each line
#             prefixed "[process i]". SIGTERM / SIGINT are passed to every process
#             (as a TPU preemption reaches every worker); when one process fails,
#             the others are stopped. Exit status: the first non-zero one seen (not
#             the 143 of a process this script stopped after it), else 0.
# otherwise   on the slice in $TPU_NAME / $ZONE (see common.sh): ssh --worker=all runs
#             the command on every worker (JAX finds the slice's coordinator) and
#             streams their output here; --workdir=gs://BUCKET/RUN becomes the
#             bucket's gcsfuse mount on the workers (setup.sh, WORKDIR_BUCKET).
# --dry-run   print the exact commands instead of running them.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/common.sh"

LOCAL=0
MODULE=jaxrec.main
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --local) LOCAL="${2:?--local needs a number of processes}"; shift 2 ;;
    --local=*) LOCAL="${1#--local=}"; shift ;;
    --module) MODULE="${2:?--module needs a module}"; shift 2 ;;
    --module=*) MODULE="${1#--module=}"; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (jaxrec.main flags go after --)" ;;
  esac
done
[[ "$LOCAL" =~ ^[0-9]+$ ]] || die "--local needs a number of processes, got $LOCAL"

if [[ "$LOCAL" -gt 0 ]]; then
  PYTHON="${PYTHON:-python3}"
  PORT="${JAXREC_PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}"
  pids=()
  for ((i = 0; i < LOCAL; i++)); do
    cmd=(env "JAXREC_COORDINATOR=localhost:$PORT" "JAXREC_NUM_PROCESSES=$LOCAL" "JAXREC_PROCESS_ID=$i"
         "JAX_PLATFORMS=cpu" "XLA_FLAGS=--xla_force_host_platform_device_count=${JAXREC_LOCAL_DEVICES:-4}"
         "$PYTHON" -m "$MODULE" "$@")
    if [[ -n "$DRY_RUN" ]]; then
      show "${cmd[@]}"
      continue
    fi
    if [[ "$i" -eq 0 ]]; then
      "${cmd[@]}" &
    else
      "${cmd[@]}" > >(sed -u "s/^/[process $i] /" >&2) 2>&1 &
    fi
    pids+=("$!")
  done
  [[ -n "$DRY_RUN" ]] && exit 0
  forward() { kill -s "$1" "${pids[@]}" 2>/dev/null || true; }
  trap 'forward TERM' TERM
  trap 'forward INT' INT
  # Wait for every process; one that fails (or is killed) leaves the others blocked in a
  # collective, so they are stopped: SIGTERM, then SIGKILL 30 s later.
  declare -A rcs=()
  failed_at=""
  first_rc=0
  while [[ ${#rcs[@]} -lt $LOCAL ]]; do
    for ((i = 0; i < LOCAL; i++)); do
      [[ -n "${rcs[$i]:-}" ]] && continue
      if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        set +e; wait "${pids[$i]}"; rcs[$i]=$?; set -e
        if [[ "${rcs[$i]}" -ne 0 && -z "$failed_at" ]]; then
          failed_at=$SECONDS
          first_rc="${rcs[$i]}"
          [[ "${rcs[$i]}" -gt 128 ]] || forward TERM   # a signal reaches the others itself
        fi
      fi
    done
    if [[ -n "$failed_at" && $((SECONDS - failed_at)) -gt 30 ]]; then forward KILL; fi
    sleep 0.2
  done
  # The first failure is the cause: processes stopped after it exit 143 whatever they were doing.
  exit "$first_rc"
fi

require_tpu
flags=""
for a in "$@"; do
  if [[ "$a" == --workdir=gs://* ]]; then  # the bucket as setup.sh mounts it on every worker
    flags+=" --workdir=\$HOME/gcs/$(quote "${a#--workdir=gs://}")"
  else
    flags+=" $(quote "$a")"
  fi
done
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${PROJECT_FLAG[@]}" --worker=all \
  --command="set -o pipefail; cd $REMOTE_DIR && JAXREC_COORDINATOR=auto python3 -m $MODULE$flags 2>&1 | tee -a \$HOME/jaxrec-\$(hostname).log"
