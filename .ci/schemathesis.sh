#!/usr/bin/env bash
# Property-based API testing: runs schemathesis against a live authd, driven
# by the OpenAPI document authd itself serves at /openapi.json, with every
# check on: any failed check fails the run, not only a server error (a 5xx,
# a status the document does not list, a body that does not match its
# schema, an undocumented content type, a missing documented header, a
# schema-violating request accepted, a valid one refused, an unsupported
# method not answered 405, ...). Which statuses the data checks accept is
# configured in the open in .ci/schemathesis.toml (e.g. 401 for a token
# nobody issued).
#
# Usage: .ci/schemathesis.sh [path/to/authd]
#   The binary comes from the argument, else $AUTHD_BIN, else `cargo build`
#   and target/debug/authd.
# Environment:
#   SCHEMATHESIS_MAX_EXAMPLES  examples per operation and phase (default 100)
#   SCHEMATHESIS_SEED          fixed seed for a reproducible run
#   SCHEMATHESIS_VERSION       the schemathesis release to install
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
VENV="${TMPDIR:-/tmp}/authd-schemathesis-venv"

log() { printf '\n== %s ==\n' "$*"; }

log "schemathesis ${SCHEMATHESIS_VERSION} in ${VENV}"
if [ ! -x "${VENV}/bin/schemathesis" ] ||
  ! "${VENV}/bin/schemathesis" --version 2>/dev/null | grep -qF "${SCHEMATHESIS_VERSION}"; then
  python3 -m venv "${VENV}"
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
fi
"${VENV}/bin/schemathesis" --version

log "authd binary"
BIN="${1:-${AUTHD_BIN:-}}"
if [ -z "${BIN}" ]; then
  cargo build --bin authd
  BIN="${CARGO_TARGET_DIR:-target}/debug/authd"
fi
[ -x "${BIN}" ] || { echo "not an executable: ${BIN}" >&2; exit 2; }
BIN="$(cd "$(dirname "${BIN}")" && pwd)/$(basename "${BIN}")"
echo "${BIN}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/authd-schemathesis.XXXXXX")"
SERVER_PID=""
cleanup() {
  status=$?
  if [ -n "${SERVER_PID}" ] && kill -0 "${SERVER_PID}" 2>/dev/null; then
    kill "${SERVER_PID}" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "${SERVER_PID}" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "${SERVER_PID}" 2>/dev/null || true
    wait "${SERVER_PID}" 2>/dev/null || true
  fi
  if [ "${status}" -ne 0 ] && [ -f "${WORK}/authd.log" ]; then
    echo "--- last lines of the authd log (${WORK}/authd.log) ---" >&2
    tail -n 40 "${WORK}/authd.log" >&2
  else
    rm -rf "${WORK}"
  fi
  exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:${PORT}"

log "starting authd on ${BASE} (SQLite in ${WORK}/data)"
# A clean environment: nothing from the caller may point authd at another
# database or change its limits.
env -i PATH="${PATH}" HOME="${HOME:-/tmp}" \
  AUTHD_BIND="127.0.0.1:${PORT}" \
  AUTHD_DATA_DIR="${WORK}/data" \
  AUTHD_RATE_LIMIT_ENABLED=false \
  AUTHD_ARGON2_M_KIB=1024 \
  AUTHD_ARGON2_T=1 \
  AUTHD_LOG_LEVEL=warn \
  AUTHD_SHUTDOWN_DELAY_MS=0 \
  SECRET_KEY="schemathesis-secret-key-0123456789abcdef" \
  "${BIN}" >"${WORK}/authd.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 300); do
  if ! kill -0 "${SERVER_PID}" 2>/dev/null; then
    echo "authd exited before becoming healthy" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null --max-time 1 "${BASE}/health" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
curl -fsS --max-time 2 "${BASE}/health"
echo

# Signed-in users of schemathesis's own, so that the operations behind a
# bearer token are exercised past the token check: see the hooks file.
export SCHEMATHESIS_HOOKS="$(pwd)/.ci/schemathesis_hooks.py"
export AUTHD_BASE_URL="${BASE}"

CONFIG="$(pwd)/.ci/schemathesis.toml"
log "schemathesis run (${MAX_EXAMPLES} examples per operation and phase; accepted statuses: ${CONFIG})"
common=(
  --checks all
  --max-examples "${MAX_EXAMPLES}"
  --request-timeout 10
  --no-color
)
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then
  common+=(--seed "${SCHEMATHESIS_SEED}")
fi
# schemathesis keeps a cache in ./.schemathesis: run it from the temporary
# directory so that nothing lands in the repository.
cd "${WORK}"
# Every operation, including the stateful phase that follows the document's
# links (sign up -> refresh -> revoke -> authorize). schemathesis leaves out
# the operation that serves the document itself...
"${VENV}/bin/schemathesis" --config-file "${CONFIG}" run "${BASE}/openapi.json" "${common[@]}" \
  --phases examples,coverage,fuzzing,stateful --workers 4
# ...so GET /openapi.json is checked on its own.
"${VENV}/bin/schemathesis" --config-file "${CONFIG}" run "${BASE}/openapi.json" "${common[@]}" \
  --phases coverage,fuzzing --include-path /openapi.json

# The server must have survived the run.
curl -fsS --max-time 2 "${BASE}/health" >/dev/null
log "schemathesis passed"
