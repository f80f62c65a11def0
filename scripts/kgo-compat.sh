#!/usr/bin/env bash
# franz-go's own client integration tests (package kgo) as a compatibility suite against ztfbroker.
#
#   scripts/kgo-compat.sh [test regexp]
#
# Starts `ztfbroker serve` on free ports with a fresh data directory, copies the kgo package source of
# the franz-go version in go.mod (from the module cache), and runs its tests with KGO_SEEDS pointing at
# the broker and KGO_TEST_RF=1. They create their own topics. Prints PASS/FAIL per test and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-'^(TestGroupETL|TestClient_Produce|TestClient_ProduceLargeMessages|TestConsumeRegex|TestAddRemovePartitions|TestGroupSimple|TestPauseIssue489|TestIssue.*)$'}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/ztfbroker" ./cmd/ztfbroker
src=$(go list -m -f '{{.Dir}}' github.com/twmb/franz-go)
cp -r "$src" "$work/franz-go"
chmod -R u+w "$work/franz-go"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kp=$(port); hp=$(port)
"$work/ztfbroker" serve --data-dir "$work/data" --listen "127.0.0.1:$kp" --http "127.0.0.1:$hp" \
  --packager=false --archive=false 2>"$work/broker.log" &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$hp/healthz" >/dev/null && break; sleep 0.1; done

cd "$work/franz-go/pkg/kgo"
set +e
KGO_SEEDS="127.0.0.1:$kp" KGO_TEST_RF=1 KGO_TEST_RECORDS=${KGO_TEST_RECORDS:-20000} \
  go test -count=1 -timeout 10m -run "$RUN" -v . 2>&1 | tee "$work/kgo.log" | grep -E '^(--- |ok|FAIL|panic)'
set -e
echo
echo "passed: $(grep -c '^--- PASS' "$work/kgo.log" || true)   failed: $(grep -c '^--- FAIL' "$work/kgo.log" || true)   skipped: $(grep -c '^--- SKIP' "$work/kgo.log" || true)"
grep '^--- FAIL' "$work/kgo.log" && exit 1 || exit 0
