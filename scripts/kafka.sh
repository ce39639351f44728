#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker+controller) for development,
# tests and CI, assembled from Maven Central jars and run with Java 17. No Docker.
#
#   scripts/kafka.sh fetch     download the jars once into .cache/kafka/lib (git-ignored)
#   scripts/kafka.sh start     format storage, start on 127.0.0.1, wait until it serves requests
#   scripts/kafka.sh stop      stop it cleanly (SIGTERM, then SIGKILL after 30 s)
#   scripts/kafka.sh resume    start a stopped broker again, same port, same data
#   scripts/kafka.sh status    print the bootstrap address if running
#
# Environment: KAFKA_PORT (default 9092, `auto` = a free port), KAFKA_DIR (default var/kafka),
# KAFKA_HEAP (default 512m). `start` prints NUDGE_KAFKA_BOOTSTRAP=127.0.0.1:PORT.
# Extra (secured) listeners beside the PLAINTEXT one, all optional, unset = unchanged:
#   KAFKA_EXTRA_LISTENERS     e.g. TLS://127.0.0.1:9093,SCRAM://127.0.0.1:9094 (listeners and
#                             advertised.listeners)
#   KAFKA_EXTRA_PROTOCOL_MAP  e.g. TLS:SSL,SCRAM:SASL_PLAINTEXT
#   KAFKA_EXTRA_CONFIG        a file appended to server.properties (listener.name.* settings)
#   KAFKA_FORMAT_ARGS         extra storage-format arguments, e.g.
#                             --add-scram SCRAM-SHA-256=[name=alice,password=...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
lib="$root/.cache/kafka/lib"
dir="${KAFKA_DIR:-$root/var/kafka}"
python="${PYTHON:-python3}"
java_opts=(-Xmx"${KAFKA_HEAP:-512m}" -Xms128m -XX:+UseSerialGC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$root/scripts/kafka/log4j2.properties" -Dkafka.logs.dir="$dir/logs")

fetch() {
  if [ -f "$lib/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { echo "kafka.sh: Maven (mvn) is required to fetch the Kafka jars" >&2; exit 1; }
  echo "kafka.sh: fetching Kafka jars from Maven Central into $lib" >&2
  rm -rf "$lib"
  mvn -q -B -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >&2
  touch "$lib/.complete"
}

running_pid() {
  [ -f "$dir/pid" ] || return 1
  local pid; pid="$(cat "$dir/pid")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
  fetch
  if pid="$(running_pid)"; then
    echo "NUDGE_KAFKA_BOOTSTRAP=127.0.0.1:$(cat "$dir/port")"
    return 0
  fi
  local port="${KAFKA_PORT:-9092}" cport
  [ "$port" = auto ] && port="$("$python" "$root/scripts/free_port.py")"
  "$python" "$root/scripts/port_check.py" free "$port" || port_in_use "$port"
  cport="$("$python" "$root/scripts/free_port.py")"
  rm -rf "$dir"; mkdir -p "$dir/data" "$dir/logs"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport${KAFKA_EXTRA_LISTENERS:+,$KAFKA_EXTRA_LISTENERS}
advertised.listeners=PLAINTEXT://127.0.0.1:$port${KAFKA_EXTRA_LISTENERS:+,$KAFKA_EXTRA_LISTENERS}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${KAFKA_EXTRA_PROTOCOL_MAP:+,$KAFKA_EXTRA_PROTOCOL_MAP}
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=67108864
log.retention.hours=168
PROPS
  if [ -n "${KAFKA_EXTRA_CONFIG:-}" ]; then cat "$KAFKA_EXTRA_CONFIG" >> "$dir/server.properties"; fi
  local format_args=()
  if [ -n "${KAFKA_FORMAT_ARGS:-}" ]; then read -r -a format_args <<< "$KAFKA_FORMAT_ARGS"; fi
  local cluster_id
  cluster_id="$("$python" -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
  java "${java_opts[@]}" -cp "$lib/*" kafka.tools.StorageTool format \
    --cluster-id="$cluster_id" --config "$dir/server.properties" --ignore-formatted "${format_args[@]}" \
    >"$dir/logs/format.out" 2>&1 || { cat "$dir/logs/format.out" >&2; exit 1; }
  echo "$port" > "$dir/port"
  launch
}

port_in_use() {
  echo "kafka.sh: port $1 on 127.0.0.1 is already in use (another broker? \`ss -ltnp 'sport = :$1'\` names it):" \
    "stop it, or choose another port with KAFKA_PORT=PORT (KAFKA_PORT=auto: a free one)" >&2
  exit 1
}

launch() {
  local port; port="$(cat "$dir/port")"
  local t0; t0="$(date +%s.%N)"
  # Never report someone else's broker as ours: the port must be free before the start,
  # and ours (its listener in our java's file descriptors) after it.
  "$python" "$root/scripts/port_check.py" free "$port" || port_in_use "$port"
  nohup java "${java_opts[@]}" -cp "$lib/*" kafka.Kafka "$dir/server.properties" \
    >>"$dir/logs/stdout.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$dir/pid"
  if ! "$python" "$root/scripts/kafka_probe.py" "127.0.0.1:$port" "${KAFKA_START_TIMEOUT:-90}"; then
    tail -50 "$dir/logs/stdout.log" "$dir/logs/server.log" >&2 || true
    stop; exit 1
  fi
  if ! kill -0 "$pid" 2>/dev/null || ! "$python" "$root/scripts/port_check.py" owns "$pid" "$port"; then
    tail -20 "$dir/logs/stdout.log" >&2 || true
    echo "kafka.sh: the broker started as pid $pid is not the one answering on port $port" >&2
    stop; port_in_use "$port"
  fi
  echo "kafka.sh: broker ready on 127.0.0.1:$port in $("$python" -c \
    'import sys,time;print(f"{time.time()-float(sys.argv[1]):.1f}")' "$t0") s" >&2
  echo "NUDGE_KAFKA_BOOTSTRAP=127.0.0.1:$port"
}

resume() {
  if running_pid >/dev/null; then status; return 0; fi
  [ -f "$dir/server.properties" ] || { echo "kafka.sh: nothing to resume in $dir" >&2; exit 1; }
  launch
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

status() {
  if running_pid >/dev/null; then echo "NUDGE_KAFKA_BOOTSTRAP=127.0.0.1:$(cat "$dir/port")"
  else echo "kafka: not running" >&2; return 1; fi
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  resume) resume ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 fetch|start|resume|stop|status" >&2; exit 2 ;;
esac
