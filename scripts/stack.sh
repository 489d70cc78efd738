#!/usr/bin/env bash
# Start or stop the local stack: Redis (only if none answers), one worker on both queues, and
# the API. `stack.sh up` waits for /readyz, prints the URL and returns; `stack.sh down` stops
# exactly what `up` started, by the pids it recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=runs/stack
BIN=.venv/bin
mkdir -p "$STATE"

free_port() {
  "$BIN/python" - "$1" <<'PY'
import socket, sys
port = int(sys.argv[1])
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PY
}

up() {
  if [ -f "$STATE/api.pid" ] && kill -0 "$(cat "$STATE/api.pid")" 2>/dev/null; then
    echo "lpft is already running at $(cat "$STATE/url")"; return 0
  fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --pidfile "$PWD/$STATE/redis.pid"
    echo started > "$STATE/redis.started"
  fi
  export LPFT_REDIS_URL="${LPFT_REDIS_URL:-redis://127.0.0.1:6379/0}"
  export LPFT_ARTIFACTS_DIR="${LPFT_ARTIFACTS_DIR:-$PWD/runs/service}"
  # The local stack listens on 127.0.0.1 only; without keys it runs in open mode, said aloud.
  if [ -z "${LPFT_API_KEYS:-}${LPFT_API_KEYS_FILE:-}" ]; then
    export LPFT_OPEN_MODE=true
  fi
  port=$(free_port "${LPFT_API_PORT:-8000}")
  export LPFT_API_PORT=$port
  # Both log JSON lines (lpft_contract.logs); --quiet leaves out Celery's text banner.
  nohup "$BIN/celery" --quiet -A lpft_worker.celery_app worker -Q cpu,gpu -P solo -n "local@%h" \
    --without-gossip --without-mingle -l info > "$STATE/worker.log" 2>&1 &
  echo $! > "$STATE/worker.pid"
  nohup "$BIN/uvicorn" --factory lpft_api.main:create_app --host 127.0.0.1 --port "$port" \
    > "$STATE/api.log" 2>&1 &
  echo $! > "$STATE/api.pid"
  url="http://127.0.0.1:$port"
  echo "$url" > "$STATE/url"
  for _ in $(seq 1 120); do
    if curl -fsS "$url/readyz" >/dev/null 2>&1; then
      echo "lpft API ready at $url (logs in $STATE/); stop it with: make down"
      return 0
    fi
    sleep 0.5
  done
  echo "the API did not become ready; see $STATE/api.log" >&2
  down
  return 1
}

down() {
  for name in api worker; do
    if [ -f "$STATE/$name.pid" ]; then
      kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true
      rm -f "$STATE/$name.pid"
    fi
  done
  if [ -f "$STATE/redis.started" ]; then
    redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true
    rm -f "$STATE/redis.started" "$STATE/redis.pid"
  fi
  rm -f "$STATE/url"
  echo "lpft stopped"
}

"$1"
