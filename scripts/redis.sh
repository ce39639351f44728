#!/usr/bin/env bash
# A real Redis server (Debian's redis-server) on 127.0.0.1 for development, tests and CI.
# No persistence: it is a scratch server.
#
#   scripts/redis.sh install   apt-get install redis-server if it is missing
#   scripts/redis.sh start     start it (daemonized), wait until it answers PING
#   scripts/redis.sh stop      stop it cleanly
#   scripts/redis.sh status    print the URL if running
#
# Environment: REDIS_PORT (default 6379, `auto` = a free port), REDIS_DIR (default var/redis).
# `start` prints NUDGE_REDIS_URL=redis://127.0.0.1:PORT/0.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${REDIS_DIR:-$root/var/redis}"
python="${PYTHON:-python3}"

install() {
  command -v redis-server >/dev/null && return 0
  echo "redis.sh: installing Debian's redis-server" >&2
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >&2
  # Debian starts a system instance on 6379; this project runs its own.
  $sudo service redis-server stop >/dev/null 2>&1 || true
}

running_pid() {
  [ -f "$dir/redis.pid" ] || return 1
  local pid; pid="$(cat "$dir/redis.pid")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

ping() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }

start() {
  install
  if running_pid >/dev/null; then
    echo "NUDGE_REDIS_URL=redis://127.0.0.1:$(cat "$dir/port")/0"; return 0
  fi
  local port="${REDIS_PORT:-6379}"
  [ "$port" = auto ] && port="$("$python" "$root/scripts/free_port.py")"
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  echo "$port" > "$dir/port"
  for _ in $(seq 1 100); do ping "$port" && break; sleep 0.1; done
  ping "$port" || { echo "redis.sh: redis did not answer on port $port" >&2; cat "$dir/redis.log" >&2; exit 1; }
  echo "NUDGE_REDIS_URL=redis://127.0.0.1:$port/0"
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/redis.pid"
}

status() {
  if running_pid >/dev/null; then echo "NUDGE_REDIS_URL=redis://127.0.0.1:$(cat "$dir/port")/0"
  else echo "redis: not running" >&2; return 1; fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
