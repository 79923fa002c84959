# Shared by the TPU VM scripts (sourced, not run). Settings come from the
# environment, with these defaults:
#   TPU_NAME          the TPU VM (node) name                     jaxrec-tpu
#   QUEUED_RESOURCE   the queued resource that requests it       $TPU_NAME-qr
#   ZONE              the zone                     us-west4-a (v5e), us-central2-b (v4)
#   ACCELERATOR_TYPE  v5litepod-8 (one host), v5litepod-32 or v4-32 (multi-host), ...
#                                                                v5litepod-8
#   RUNTIME_VERSION   TPU software version ("" = the one for ACCELERATOR_TYPE:
#                     v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv5 for v5p,
#                     v2-alpha-tpuv6e for v6e, tpu-ubuntu2204-base for v4 and older)
#   PROJECT           gcloud project ("" = gcloud's default)
#   PROVISIONING      spot | best-effort | on-demand                spot
#   REMOTE_DIR        where jaxrec lives on every worker           jaxrec
# and DRY_RUN=1 (or --dry-run) prints every gcloud command instead of running it.
# shellcheck shell=bash

TPU_NAME="${TPU_NAME:-jaxrec-tpu}"
QUEUED_RESOURCE="${QUEUED_RESOURCE:-$TPU_NAME-qr}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v5litepod-8}"
case "$ACCELERATOR_TYPE" in  # a zone that offers the type
  v4-*) ZONE="${ZONE:-us-central2-b}" ;;
  *) ZONE="${ZONE:-us-west4-a}" ;;
esac
PROJECT="${PROJECT:-}"
PROVISIONING="${PROVISIONING:-spot}"
REMOTE_DIR="${REMOTE_DIR:-jaxrec}"
DRY_RUN="${DRY_RUN:-}"
PROJECT_FLAG=()
[[ -n "$PROJECT" ]] && PROJECT_FLAG=(--project="$PROJECT")

die() { echo "error: $*" >&2; exit 2; }

runtime_for() {  # the TPU software version JAX uses on an accelerator type
  case "$1" in
    v5litepod-*|v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    v2-*|v3-*|v4-*) echo tpu-ubuntu2204-base ;;
    *) die "unknown accelerator type $1 (e.g. v5litepod-8, v5litepod-32, v4-32); set RUNTIME_VERSION" ;;
  esac
}
RUNTIME_VERSION="${RUNTIME_VERSION:-$(runtime_for "$ACCELERATOR_TYPE")}"

quote() {  # an argument as the shell reads it back: bare if safe, else in single quotes
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

show() {  # one shell-quoted command line, as it would run
  local out="" a
  for a in "$@"; do out+="$(quote "$a") "; done
  echo "${out% }"
}

run() {  # run a command, or print it with --dry-run
  if [[ -n "$DRY_RUN" ]]; then
    show "$@"
  else
    "$@"
  fi
}

parse_dry_run() {  # scripts whose only flag is --dry-run
  for a in "$@"; do
    case "$a" in
      --dry-run) DRY_RUN=1 ;;
      -h|--help) sed -n '2,/^set /p' "$0" | sed '$d'; exit 0 ;;
      *) die "unknown argument $a (settings are environment variables: see common.sh)" ;;
    esac
  done
}

require_tpu() {
  [[ -n "$DRY_RUN" ]] || command -v gcloud >/dev/null || die "gcloud is not installed (see https://cloud.google.com/sdk/docs/install)"
}

qr_state() {  # WAITING_FOR_RESOURCES, PROVISIONING, ACTIVE, SUSPENDED, FAILED, ... ("" if none)
  run gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE" --zone="$ZONE" \
    "${PROJECT_FLAG[@]}" --format='value(state.state)' 2>/dev/null || true
}

wait_active() {  # polls the queued resource until ACTIVE (a dry run prints the poll once)
  if [[ -n "$DRY_RUN" ]]; then qr_state; return; fi
  local state
  while true; do
    state="$(qr_state)"
    echo "queued resource $QUEUED_RESOURCE: ${state:-absent}" >&2
    case "$state" in
      ACTIVE) return 0 ;;
      FAILED|SUSPENDED|"") die "queued resource $QUEUED_RESOURCE is ${state:-absent}" ;;
    esac
    sleep 30
  done
}
