#!/usr/bin/env bash
# airflow-fargate container entrypoint: make the DAGs (and optional requirements) available, then
# exec the executor's command (Airflow 3 `python -m airflow.sdk...` or Airflow 2 `airflow tasks run`)
# so it replaces this shell and receives ECS's SIGTERM directly. One line per step on stderr.
set -euo pipefail

CONTAINER_DAG_PATH="${CONTAINER_DAG_PATH:-/opt/airflow/dags}"
S3_SYNC_ATTEMPTS="${S3_SYNC_ATTEMPTS:-3}"
S3_SYNC_RETRY_SECONDS="${S3_SYNC_RETRY_SECONDS:-5}"
REQUIREMENTS_FILE="${REQUIREMENTS_FILE:-/opt/airflow/requirements.txt}"

log() {
  printf 'entrypoint: %s\n' "$*" >&2
}

# A build arg left empty bakes an empty ENV value into the image; an empty AWS_DEFAULT_REGION (or
# key) breaks the AWS CLI and SDKs where an unset one falls back to the task role and the region
# ECS provides. Empty means unset.
for name in AWS_DEFAULT_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN; do
  if [ -z "${!name:-}" ]; then
    unset "${name}"
  fi
done

require_integer() {  # name value minimum: a whole number >= minimum, else exit 64 naming it
  case "$2" in
    '' | *[!0-9]*)
      log "ERROR: $1 must be a whole number, got '${2:0:40}'"
      exit 64
      ;;
  esac
  if [ "${#2}" -gt 6 ] || [ "$((10#$2))" -lt "$3" ]; then
    log "ERROR: $1 must be a whole number from $3 to 999999, got '${2:0:40}'"
    exit 64
  fi
}

sync_dags() {
  local attempt=1
  require_integer S3_SYNC_ATTEMPTS "${S3_SYNC_ATTEMPTS}" 1
  require_integer S3_SYNC_RETRY_SECONDS "${S3_SYNC_RETRY_SECONDS}" 0
  mkdir -p "${CONTAINER_DAG_PATH}"
  while true; do
    log "syncing DAGs from ${S3_URI} to ${CONTAINER_DAG_PATH} (attempt ${attempt}/${S3_SYNC_ATTEMPTS})"
    if aws s3 sync --no-progress "${S3_URI}" "${CONTAINER_DAG_PATH}"; then
      return 0
    fi
    if [ "${attempt}" -ge "${S3_SYNC_ATTEMPTS}" ]; then
      log "ERROR: could not sync DAGs from ${S3_URI} after ${attempt} attempts; not running the task without its DAGs"
      return 1
    fi
    attempt=$((attempt + 1))
    sleep "${S3_SYNC_RETRY_SECONDS}"
  done
}

install_requirements() {
  if [ ! -f "${REQUIREMENTS_FILE}" ]; then
    log "ERROR: INSTALL_REQUIREMENTS=true but ${REQUIREMENTS_FILE} does not exist"
    return 1
  fi
  log "installing Python requirements from ${REQUIREMENTS_FILE}"
  python -m pip install --no-cache-dir --user -r "${REQUIREMENTS_FILE}"
}

if [ "$#" -eq 0 ]; then
  log "ERROR: no command given (ECS passes the Airflow task command as the container command)"
  exit 64
fi

if [ -n "${S3_URI:-}" ]; then
  sync_dags || exit 65
else
  log "S3_URI not set: using the DAGs in ${CONTAINER_DAG_PATH}"
fi

if [ "${INSTALL_REQUIREMENTS:-false}" = "true" ]; then
  install_requirements || exit 66
fi

log "exec $1 (+$(($# - 1)) arguments)"
exec "$@"
