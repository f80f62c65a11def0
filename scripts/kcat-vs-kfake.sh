#!/usr/bin/env bash
# kcat producing and consuming 60 kB messages against ztfbroker and franz-go's
# kfake (with a data dir), in one run, on this machine.
#
#   scripts/kcat-vs-kfake.sh [messages (default 4000)] [message bytes (default 60000)]
#
# For each broker it prints MB/s for produce and consume as kcat sees them, the
# broker process's own CPU seconds per GB moved (utime+stime from
# /proc/<pid>/stat), and its peak resident memory (VmHWM). On 2 cores kcat
# itself may be the bottleneck, which is why CPU per GB is the figure to compare.
set -euo pipefail
N=${1:-4000}
SIZE=${2:-60000}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/ztfbroker" ./cmd/ztfbroker
go build -o "$work/kfakeserve" ./bench/kfakeserve
# N lines of SIZE printable bytes (base64 has no newline within a line).
head -c $((N * SIZE * 3 / 4)) /dev/urandom | base64 -w "$SIZE" | head -n "$N" > "$work/msgs"
bytes=$(stat -c %s "$work/msgs")
hz=$(getconf CLK_TCK)

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

printf '%-24s %12s %12s %14s %14s %10s\n' broker "produce MB/s" "consume MB/s" "CPU s/GB prod" "CPU s/GB cons" "peak RSS MB"
measure() {
  local name=$1 port=$2 pid=$3 topic="bench-$RANDOM"
  wait_port "$port"
  local c0 t0 c1 t1 c2 t2
  c0=$(cpu "$pid"); t0=$(date +%s.%N)
  kcat -b "127.0.0.1:$port" -t "$topic" -P -X acks=all -X queue.buffering.max.kbytes=1048576 -l "$work/msgs"
  c1=$(cpu "$pid"); t1=$(date +%s.%N)
  got=$(kcat -b "127.0.0.1:$port" -t "$topic" -C -o beginning -e -q -f '%s\n' | wc -c)
  c2=$(cpu "$pid"); t2=$(date +%s.%N)
  [ "$got" = "$bytes" ] || { echo "$name: consumed $got bytes of $bytes" >&2; exit 1; }
  local rss; rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  awk -v n="$name" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c0="$c0" -v c1="$c1" -v c2="$c2" -v hz="$hz" -v rss="$rss" 'BEGIN {
    mb = b / 1e6; gb = b / 1e9
    printf "%-24s %12.1f %12.1f %14.2f %14.2f %10.1f\n", n, mb/(t1-t0), mb/(t2-t1), (c1-c0)/hz/gb, (c2-c1)/hz/gb, rss/1024 }'
}

p=$(free_port); h=$(free_port)
"$work/ztfbroker" serve --data-dir "$work/zb" --listen "127.0.0.1:$p" --http "127.0.0.1:$h" \
  --packager=false --archive=false 2>"$work/zb.log" &
zb=$!
measure "ztfbroker" "$p" "$zb"
kill -TERM "$zb"; wait "$zb" || true

# The same with fsync every 200 ms instead of before each acknowledgement,
# closer to kfake's own default (no fsync at all).
printf 'log.flush.interval.ms: 200\n' > "$work/interval.yaml"
p=$(free_port); h=$(free_port)
"$work/ztfbroker" serve --config "$work/interval.yaml" --data-dir "$work/zbi" --listen "127.0.0.1:$p" --http "127.0.0.1:$h" \
  --packager=false --archive=false 2>"$work/zbi.log" &
zb=$!
measure "ztfbroker (flush 200ms)" "$p" "$zb"
kill -TERM "$zb"; wait "$zb" || true

p=$(free_port)
"$work/kfakeserve" --port "$p" --data-dir "$work/kf" 2>"$work/kf.log" &
kf=$!
measure "kfake (data dir)" "$p" "$kf"
kill -TERM "$kf"; wait "$kf" || true

p=$(free_port)
"$work/kfakeserve" --port "$p" --data-dir "$work/kfs" --sync 2>"$work/kfs.log" &
kf=$!
measure "kfake (data dir, sync)" "$p" "$kf"
kill -TERM "$kf"; wait "$kf" || true
echo "($N messages of $SIZE bytes, $(nproc) cores)"
