#!/usr/bin/env bash
# `ztfbroker mirror` beside Kafka's MirrorMaker 2 (4.1.1, dedicated mode) doing the same copy: a backlog of
# 60 kB records, 4 partitions, from one ztfbroker to another on this machine. MM2 keeps its internal topics
# (mm2-configs/offsets/status, compacted) on the destination ztfbroker.
#
#   scripts/mirror-vs-mm2.sh [records (default 5000)] [rounds (default 2)]
#
# For each tool and round, a fresh topic is filled upstream first, then the tool starts; the script reports
# when the first record reached the destination (start-up: the JVM, MM2's connectors and topic discovery)
# and the copy rate from then to the last record. Kafka's jars are fetched with Maven into
# ~/.cache/ztfbroker-vs-kafka, as scripts/vs-kafka.sh does (plus connect-mirror for MM2).
set -euo pipefail
N=${1:-5000}
ROUNDS=${2:-2}
KAFKA_VERSION=4.1.1
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT

for tool in java mvn python3 go; do
  command -v "$tool" >/dev/null || { echo "mirror-vs-mm2: $tool is needed" >&2; exit 1; }
done
/usr/bin/python3 -c 'import confluent_kafka' || { echo "mirror-vs-mm2: python3-confluent-kafka is needed" >&2; exit 1; }

cache=${XDG_CACHE_HOME:-$HOME/.cache}/ztfbroker-vs-kafka/$KAFKA_VERSION
if [ ! -f "$cache/done" ]; then
  echo "mirror-vs-mm2: run scripts/vs-kafka.sh once (or the mirror tests) to fetch Kafka's jars into $cache" >&2
  exit 1
fi
for a in connect-mirror connect-mirror-client; do
  [ -f "$cache/mm2/$a-$KAFKA_VERSION.jar" ] ||
    mvn -q -B dependency:copy -Dartifact="org.apache.kafka:$a:$KAFKA_VERSION" -DoutputDirectory="$cache/mm2"
done
cp="$cache/libs/*:$cache/mm2/*"
cat > "$work/log4j2.yaml" <<'EOF'
Configuration:
  Appenders:
    Console: {name: STDERR, target: SYSTEM_ERR, PatternLayout: {pattern: "%d %p %c{1} %m%n"}}
  Loggers:
    Root: {level: warn, AppenderRef: {ref: STDERR}}
EOF
jvm=(java -Xmx1g -Dlog4j2.configurationFile="$work/log4j2.yaml" -cp "$cp")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

go build -o "$work/ztfbroker" ./cmd/ztfbroker
up=$(free_port); down=$(free_port)
for side in up down; do
  port=${!side}
  "$work/ztfbroker" serve --data-dir "$work/$side" --listen "127.0.0.1:$port" --http "127.0.0.1:$(free_port)" \
    --admin-http= --packager=false --archive=false 2>"$work/$side.log" &
  pids+=($!)
  wait_port "$port"
done

# copied TOPIC: waits until the destination holds N records of TOPIC; prints "first all" in seconds.
cat > "$work/copied.py" <<'EOF'
import sys, time
from confluent_kafka import Consumer, TopicPartition
bs, topic, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Consumer({'bootstrap.servers': bs, 'group.id': 'mirror-vs-mm2', 'enable.auto.commit': False})
t0, first, n = time.time(), None, 0
while time.time() - t0 < 600:
    try:
        md = c.list_topics(topic, timeout=2)
        parts = md.topics[topic].partitions if topic in md.topics else {}
        n = sum(max(c.get_watermark_offsets(TopicPartition(topic, p), timeout=2)[1], 0) for p in parts)
    except Exception:
        n = 0
    if n > 0 and first is None:
        first = time.time() - t0
    if n >= want:
        print("%.2f %.2f" % (first, time.time() - t0)); sys.exit(0)
    time.sleep(0.05)
sys.exit("timed out at %d of %d records" % (n, want))
EOF

printf "%-8s %5s %10s %10s %10s\n" tool round first-s copy-s MB/s
for round in $(seq "$ROUNDS"); do
  for tool in mirror mm2; do
    topic=ztf_${tool}_$round
    "${jvm[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$up" --create --topic "$topic" --partitions 4 >/dev/null 2>&1
    "${jvm[@]}" org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$N" --record-size 60000 --throughput -1 \
      --producer-props "bootstrap.servers=127.0.0.1:$up" acks=all >/dev/null 2>&1
    if [ "$tool" = mirror ]; then
      "$work/ztfbroker" mirror "kafka://127.0.0.1:$up/$topic" "kafka://127.0.0.1:$down/" 2>"$work/mirror.log" &
    else
      cat > "$work/mm2.properties" <<EOF
clusters = up, down
up.bootstrap.servers = 127.0.0.1:$up
down.bootstrap.servers = 127.0.0.1:$down
up->down.enabled = true
up->down.topics = $topic
down->up.enabled = false
replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy
replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset-syncs.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
sync.topic.acls.enabled = false
tasks.max = 4
EOF
      "${jvm[@]}" org.apache.kafka.connect.mirror.MirrorMaker "$work/mm2.properties" 2>"$work/mm2.log" >/dev/null &
    fi
    pid=$!
    pids+=($pid)
    read -r first all < <(/usr/bin/python3 "$work/copied.py" "127.0.0.1:$down" "$topic" "$N")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v t="$tool" -v r="$round" -v f="$first" -v a="$all" -v n="$N" \
      'BEGIN{c=a-f; printf "%-8s %5d %10.2f %10.2f %10.1f\n", t, r, f, c, n*60000/1e6/(c>0?c:1e-9)}'
  done
done
