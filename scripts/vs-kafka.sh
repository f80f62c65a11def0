#!/usr/bin/env bash
# ztfbroker beside Apache Kafka 4.1.1 (KRaft, one node, its default settings) on
# this machine, alternating the two brokers over rounds, with Kafka's own perf
# tools, kcat and `ztfbroker bench`.
#
#   scripts/vs-kafka.sh [rounds (default 3)] [scale (default 1: ~1.5 GB per round and broker)]
#   ZTFBROKER_SERVE_ARGS='--set fetch.copy=true' scripts/vs-kafka.sh   # ztfbroker with other settings
#
# Kafka's jars (broker, tools, log4j) are fetched with Maven into
# ~/.cache/ztfbroker-vs-kafka the first time; the project itself never needs
# them. Each workload runs on a fresh topic; for every broker and workload the
# script records throughput as the client reports it, the broker process's
# own CPU seconds (utime+stime from /proc/<pid>/stat) per GB moved, and for
# the producer tool its p99 latency. The Java tools' rates are their own
# (without the JVM's start); kcat's are wall-clock to its last message: it
# is told how many to read (-c N), not to stop at the end (-e), because
# librdkafka signals a partition's end only after an empty fetch, which any
# broker holds for fetch.wait.max.ms (500 ms): a constant, 80% of the time
# to read 240 MB from ztfbroker. kcat prints each message's size (%S), not
# the message: piping 240 MB to a counter cost more CPU than kcat itself
# and bounded the rate. It prints every round, then the medians
# and the ratio ztfbroker / Kafka (throughput: above 1 is faster; CPU per GB:
# below 1 is cheaper). ztfbroker runs with its defaults: every acknowledged
# batch is fsynced first. Kafka runs with its defaults: it acknowledges from
# the page cache and leaves flushing to the OS.
#
# Workloads (the issue's table):
#   java-prod-1k   ProducerPerformance, 1 KiB records, acks=all, idempotent, 6 partitions
#   java-prod-64k  ProducerPerformance, 64 KiB records, 6 partitions
#   java-cons-1k   ConsumerPerformance of the 1 KiB topic
#   java-cons-64k  ConsumerPerformance of the 64 KiB topic
#   kcat-prod-60k  kcat producing 60 kB messages to 1 partition (acks=all)
#   kcat-cons-60k  kcat consuming them
#   fanout-8       8 kcat consumers reading that topic at once
#   bench          `ztfbroker bench` against both brokers (its own table, printed first)
#
# The write floor: at the end of each round scripts/write-floor writes the
# round's produced bytes (the three workloads' in their order) to new
# files, 1 MiB per pwrite, nothing else (no fsync, no checks): what storing
# bytes in the page cache costs on this machine, which every broker pays
# per byte produced. Printed per workload, with each broker's CPU beyond it.
# On a virtual machine whose memory balloon reports free pages to the host
# (virtio-balloon free page reporting), each new page-cache page is first
# faulted in by the host: 0.4-8 s/GB here, often most of a produce's CPU.
# It depends on how long ago the memory was freed and on how much was
# written since: writing 720 MB into a new file cost 0.8 s/GB right after
# another file was deleted, 2.7 s/GB 3 s later, 7.2 s/GB 10 s later, as the
# balloon hands the freed pages back to the host; a broker's kcat produce
# cost 1.0 s/GB on its own and 3.2-3.4 s/GB after 4.3 GB written first. So
# every broker starts, and the floor runs, SETTLE seconds (default 15) after
# the last files were deleted: otherwise the broker that starts sooner after
# the other's cleanup (ztfbroker in 0.1 s, Kafka in 3 s) writes into cheaper
# memory.
set -euo pipefail
ROUNDS=${1:-3}
SCALE=${2:-1}
SETTLE=${SETTLE:-15}
KAFKA_VERSION=4.1.1
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

for tool in java mvn kcat python3 go; do
  command -v "$tool" >/dev/null || { echo "vs-kafka: $tool is needed (apt-get install -y default-jdk-headless maven kcat)" >&2; exit 1; }
done

# --- Kafka's jars ----------------------------------------------------------------------------------
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ztfbroker-vs-kafka/$KAFKA_VERSION
if [ ! -f "$cache/done" ]; then
  mkdir -p "$cache"
  cat > "$cache/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ztfbroker</groupId><artifactId>vs-kafka</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  (cd "$cache" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$cache/libs")
  touch "$cache/done"
fi
cp="$cache/libs/*"
cat > "$work/log4j2.yaml" <<'EOF'
Configuration:
  Appenders:
    Console: {name: STDERR, target: SYSTEM_ERR, PatternLayout: {pattern: "%d %p %c{1} %m%n"}}
  Loggers:
    Root: {level: warn, AppenderRef: {ref: STDERR}}
EOF
jvm() { java -Xmx512m -Dlog4j2.configurationFile="$work/log4j2.yaml" -cp "$cp" "$@"; }

go build -o "$work/ztfbroker" ./cmd/ztfbroker
go build -o "$work/write-floor" ./scripts/write-floor

hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

N1K=$(awk -v s="$SCALE" 'BEGIN{print int(1000000*s)}')    # 1 KiB records: ~1 GB
N64K=$(awk -v s="$SCALE" 'BEGIN{print int(8000*s)}')      # 64 KiB records: ~0.5 GB
N60K=$(awk -v s="$SCALE" 'BEGIN{print int(4000*s)}')      # 60 kB kcat messages: ~240 MB
head -c $((N60K * 60000 * 3 / 4)) /dev/urandom | base64 -w 60000 | head -n "$N60K" > "$work/msgs"
kcat_bytes=$(( $(stat -c %s "$work/msgs") - N60K ))   # the messages, without kcat -l's newlines

results="$work/results"   # round broker workload value-kind value
: > "$results"
record() { echo "$1 $2 $3 $4 $5" >> "$results"; }

# start_kafka / start_ztfbroker set pid and port.
start_kafka() {
  local dir="$work/kafka-$1" ctl
  port=$(free_port); ctl=$(free_port)
  mkdir -p "$dir"
  cat > "$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$ctl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
  jvm kafka.tools.StorageTool format --standalone -t "$(python3 -c 'import uuid,base64
while (i := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))[0] == "-": pass
print(i)')" \
    -c "$dir/server.properties" >/dev/null
  # Kafka's own start script gives the broker a 1 GiB heap.
  java -Xmx1G -Xms1G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Dlog4j2.configurationFile="$work/log4j2.yaml" \
    -cp "$cp" kafka.Kafka "$dir/server.properties" 2>"$dir/kafka.log" >/dev/null &
  pid=$!
  wait_port "$port"
  sleep 2
}
start_ztfbroker() {
  local dir="$work/zb-$1" http
  port=$(free_port); http=$(free_port)
  "$work/ztfbroker" serve --data-dir "$dir" --listen "127.0.0.1:$port" --http "127.0.0.1:$http" --admin-http= \
    --packager=false --archive=false ${ZTFBROKER_SERVE_ARGS:-} 2>"$work/zb-$1.log" &
  pid=$!
  wait_port "$port"
}

# measure ROUND BROKER WORKLOAD BYTES CMD...: runs CMD, records seconds and CPU
# s/GB of the broker; CMD's stdout is kept in $work/out.
measure() {
  local round=$1 broker=$2 wl=$3 bytes=$4; shift 4
  local c0 t0 c1 t1
  c0=$(cpu "$pid"); t0=$(date +%s.%N)
  "$@" > "$work/out"
  c1=$(cpu "$pid"); t1=$(date +%s.%N)
  record "$round" "$broker" "$wl" mbps "$(awk -v b="$bytes" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%.2f", b/1e6/(t1-t0)}')"
  record "$round" "$broker" "$wl" cpu "$(awk -v b="$bytes" -v c0="$c0" -v c1="$c1" -v hz="$hz" 'BEGIN{printf "%.3f", (c1-c0)/hz/(b/1e9)}')"
}

# tool_mbps replaces the wall-clock MB/s of a Java tool's run (which includes
# the JVM's start) with the rate the tool itself reports: ProducerPerformance's
# "(X MB/sec)", ConsumerPerformance's fetch.MB.sec (without the group join,
# where Kafka waits group.initial.rebalance.delay.ms and ztfbroker does not).
tool_mbps() {
  local v
  if grep -q 'records sent' "$work/out"; then
    v=$(grep 'records sent' "$work/out" | tail -1 | sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/')
  else
    v=$(grep -E '^[0-9]{4}-' "$work/out" | tail -1 | awk -F', *' '{print $9}')
  fi
  [ -n "$v" ] || { echo "$2 $3: no rate in the tool's output:" >&2; cat "$work/out" >&2; exit 1; }
  # MB here is the tools' MiB.
  sed -i "/^$1 $2 $3 mbps /d" "$results"
  record "$1" "$2" "$3" mbps "$(awk -v v="$v" 'BEGIN{printf "%.2f", v*1.048576}')"
}

create() { jvm org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --create --topic "$1" --partitions "$2" --replication-factor 1 >/dev/null; }

prodperf() { # topic records size
  jvm org.apache.kafka.tools.ProducerPerformance --topic "$1" --num-records "$2" --record-size "$3" --throughput -1 \
    --producer-props "bootstrap.servers=127.0.0.1:$port" acks=all enable.idempotence=true
}
consperf() { # topic records
  jvm org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "127.0.0.1:$port" --topic "$1" --messages "$2" \
    --group "perf-$RANDOM" --timeout 60000
}
# kcat_sizes TOPIC: kcat reads the topic's N60K messages and prints the sum
# of their sizes.
kcat_sizes() {
  kcat -b "127.0.0.1:$port" -t "$1" -C -o beginning -c "$N60K" -q -f '%S\n' | awk '{s += $1} END {print s}'
}
fanout() { # topic
  local i pids=()
  for i in $(seq 8); do
    kcat_sizes "$1" > "$work/fan.$i" & pids+=($!)
  done
  wait "${pids[@]}"
  for i in $(seq 8); do
    [ "$(cat "$work/fan.$i")" = "$kcat_bytes" ] || { echo "fan-out consumer $i got $(cat "$work/fan.$i") bytes of $kcat_bytes" >&2; return 1; }
  done
}

run_round() {
  local round=$1 broker=$2
  sleep "$SETTLE"
  if [ "$broker" = kafka ]; then start_kafka "$round"; else start_ztfbroker "$round"; fi
  local rss0; rss0=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  create p1k 6; create p64k 6; create k60 1
  measure "$round" "$broker" java-prod-1k $((N1K * 1024)) prodperf p1k "$N1K" 1024
  tool_mbps "$round" "$broker" java-prod-1k
  record "$round" "$broker" java-prod-1k p99ms "$(grep -o '[0-9.]* ms 99th' "$work/out" | tail -1 | awk '{print $1}')"
  measure "$round" "$broker" java-prod-64k $((N64K * 65536)) prodperf p64k "$N64K" 65536
  tool_mbps "$round" "$broker" java-prod-64k
  record "$round" "$broker" java-prod-64k p99ms "$(grep -o '[0-9.]* ms 99th' "$work/out" | tail -1 | awk '{print $1}')"
  measure "$round" "$broker" java-cons-1k $((N1K * 1024)) consperf p1k "$N1K"
  tool_mbps "$round" "$broker" java-cons-1k
  measure "$round" "$broker" java-cons-64k $((N64K * 65536)) consperf p64k "$N64K"
  tool_mbps "$round" "$broker" java-cons-64k
  measure "$round" "$broker" kcat-prod-60k "$kcat_bytes" kcat -b "127.0.0.1:$port" -t k60 -P -X acks=all \
    -X queue.buffering.max.kbytes=1048576 -l "$work/msgs"
  measure "$round" "$broker" kcat-cons-60k "$kcat_bytes" kcat_sizes k60
  [ "$(cat "$work/out")" = "$kcat_bytes" ] || { echo "$broker: kcat consumed $(cat "$work/out") bytes of $kcat_bytes" >&2; exit 1; }
  measure "$round" "$broker" fanout-8 $((8 * kcat_bytes)) fanout k60
  record "$round" "$broker" all rssmb "$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$pid/status")"
  : "$rss0"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$work/kafka-$round" "$work/zb-$round"
}

# write_floor ROUND: the bytes of the round's three produce workloads
# written to new files in the brokers' file system, in the same order, and
# nothing else.
write_floor() {
  local out wl
  sleep "$SETTLE"
  out=$("$work/write-floor" "$work" $((N1K * 1024)) $((N64K * 65536)) "$kcat_bytes")
  for wl in java-prod-1k java-prod-64k kcat-prod-60k; do
    record "$1" floor "$wl" mbps "$(echo "$out" | head -1 | awk '{print $1}')"
    record "$1" floor "$wl" cpu "$(echo "$out" | head -1 | awk '{print $3}')"
    out=$(echo "$out" | tail -n +2)
  done
}

for round in $(seq "$ROUNDS"); do
  # Alternate which broker goes first, so that neither always runs on a
  # warmer (or more tired) machine.
  if [ $((round % 2)) = 1 ]; then order="ztfbroker kafka"; else order="kafka ztfbroker"; fi
  for b in $order; do
    echo "round $round: $b" >&2
    run_round "$round" "$b"
  done
  echo "round $round: write floor" >&2
  write_floor "$round"
done

# `ztfbroker bench` measures both brokers in one run, one after the other,
# with latency at ZTF's rates; both run at once but only one is loaded.
start_kafka bench; kpid=$pid; kport=$port
start_ztfbroker bench; zpid=$pid; zport=$port
"$work/ztfbroker" bench --duration "${BENCH_DURATION:-15s}" --target "ztfbroker=127.0.0.1:$zport" --target-pid "ztfbroker=$zpid" \
  --target "kafka=127.0.0.1:$kport" --target-pid "kafka=$kpid" > "$work/bench.txt"
kill -TERM "$zpid" "$kpid"; wait "$zpid" "$kpid" 2>/dev/null || true
echo "== ztfbroker bench =="
cat "$work/bench.txt"
echo
echo "== side by side, Kafka's tools and kcat =="
python3 - "$results" "$ROUNDS" <<'EOF'
import sys, statistics, collections
rows = [l.split() for l in open(sys.argv[1])]
v = collections.defaultdict(list)
for r, broker, wl, kind, val in rows:
    if val not in ("", "nan"):
        v[(broker, wl, kind)].append(float(val))
wls = sorted({(wl) for _, b, wl, _, _ in rows if wl != "all" and b != "floor"}, key=lambda w: [r[2] for r in rows].index(w))
print("%-14s %22s %22s %8s %14s %14s %8s" % ("workload", "ztfbroker MB/s", "kafka MB/s", "ratio",
      "zb CPU s/GB", "kafka CPU s/GB", "ratio"))
for wl in wls:
    def med(b, k):
        xs = v.get((b, wl, k))
        return statistics.median(xs) if xs else float("nan")
    def rng(b, k):
        xs = v.get((b, wl, k)) or [float("nan")]
        return "%.1f (%.1f-%.1f)" % (statistics.median(xs), min(xs), max(xs))
    zm, km = med("ztfbroker", "mbps"), med("kafka", "mbps")
    zc, kc = med("ztfbroker", "cpu"), med("kafka", "cpu")
    print("%-14s %22s %22s %8.2f %14.2f %14.2f %8.2f" % (wl, rng("ztfbroker", "mbps"), rng("kafka", "mbps"),
          zm / km, zc, kc, zc / kc if kc else float("nan")))
    if ("ztfbroker", wl, "p99ms") in v:
        print("%-14s p99 latency ms: ztfbroker %.0f, kafka %.0f" % ("", med("ztfbroker", "p99ms"), med("kafka", "p99ms")))
if ("floor", "kcat-prod-60k", "cpu") in v:
    print("write floor (scripts/write-floor: the round's produced bytes written to new files in the same order,")
    print("nothing else), and each broker's CPU beyond it:")
    print("%-14s %16s %10s %14s %14s %8s" % ("workload", "floor CPU s/GB", "floor MB/s", "zb - floor", "kafka - floor", "ratio"))
    for wl in ("java-prod-1k", "java-prod-64k", "kcat-prod-60k"):
        fc = v[("floor", wl, "cpu")]
        f = statistics.median(fc)
        zc = statistics.median(v.get(("ztfbroker", wl, "cpu")) or [float("nan")])
        kc = statistics.median(v.get(("kafka", wl, "cpu")) or [float("nan")])
        print("%-14s %16s %10.0f %14.2f %14.2f %8.2f" % (wl, "%.2f (%.2f-%.2f)" % (f, min(fc), max(fc)),
              statistics.median(v[("floor", wl, "mbps")]), zc - f, kc - f, (zc - f) / (kc - f)))
print("peak RSS MB: ztfbroker %.0f, kafka %.0f" % (statistics.median(v[("ztfbroker", "all", "rssmb")]),
      statistics.median(v[("kafka", "all", "rssmb")])))
print("(%s rounds, median (min-max); %d cores)" % (sys.argv[2], __import__("os").cpu_count()))
EOF
