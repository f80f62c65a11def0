#!/usr/bin/env bash
# franz-go's own client integration tests (package kgo) as a compatibility suite against ztfbroker.
#
#   scripts/kgo-compat.sh [test regexp]
#   scripts/kgo-compat.sh --sasl [test regexp]
#
# Starts `ztfbroker serve` on free ports with a fresh data directory, copies the kgo package source of
# the franz-go version in go.mod (from the module cache), and runs its tests with KGO_SEEDS pointing at
# the broker and KGO_TEST_RF=1. They create their own topics. Prints PASS/FAIL per test and a summary.
#
# --sasl makes a CA and a server certificate (openssl) and a SCRAM user `kgo` (a super user, added with
# `ztfbroker user add --data-dir` before the start), and serves three listeners: SSL, where every kgo test
# connects over TLS (KGO_SEEDS, KGO_TEST_TLS=ca:...); SASL_PLAINTEXT, for franz-go's SCRAM tests
# (KGO_TEST_SCRAM_SEEDS, KGO_TEST_SCRAM=kgo:...:512; they dial without TLS); and SASL_SSL, checked first
# by logging in as kgo over TLS with SCRAM-SHA-512 (`ztfbroker user list`). The default regexp then
# also runs TestSCRAMAuth and TestSCRAMAuthBadCredentials. TestIssue769 is skipped there: it sets its own
# Dialer, which franz-go refuses beside the TLS config KGO_TEST_TLS adds, and the nil client panics.
set -euo pipefail
cd "$(dirname "$0")/.."
SASL=
if [[ ${1:-} == --sasl ]]; then SASL=1; shift; fi
RUN=${1:-'^(TestGroupETL|TestClient_Produce|TestClient_ProduceLargeMessages|TestConsumeRegex|TestAddRemovePartitions|TestGroupSimple|TestPauseIssue489|TestIssue.*)$'}
if [[ -n $SASL && -z ${1:-} ]]; then RUN="${RUN%')$'}|TestSCRAMAuth|TestSCRAMAuthBadCredentials)\$"; fi
SKIP='^$'
if [[ -n $SASL ]]; then SKIP='^TestIssue769$'; fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/ztfbroker" ./cmd/ztfbroker
src=$(go list -m -f '{{.Dir}}' github.com/twmb/franz-go)
cp -r "$src" "$work/franz-go"
chmod -R u+w "$work/franz-go"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kp=$(port); hp=$(port)
env=(KGO_SEEDS="127.0.0.1:$kp")
if [[ -z $SASL ]]; then
  "$work/ztfbroker" serve --data-dir "$work/data" --listen "127.0.0.1:$kp" --http "127.0.0.1:$hp" \
    --packager=false --archive=false 2>"$work/broker.log" &
else
  sp=$(port); ssp=$(port)
  (cd "$work" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=kgo-compat-ca \
      -keyout ca.key -out ca.pem &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
      -keyout server.key -out server.csr &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile server.ext \
      -out server.pem) 2>/dev/null
  cat >"$work/ztfbroker.yaml" <<EOF
listeners:
  - name: SSL
    listen: 127.0.0.1:$kp
    tls.cert: $work/server.pem
    tls.key: $work/server.key
  - name: SASL_PLAINTEXT
    listen: 127.0.0.1:$sp
    sasl.mechanisms: [SCRAM-SHA-512, SCRAM-SHA-256]
  - name: SASL_SSL
    listen: 127.0.0.1:$ssp
    tls.cert: $work/server.pem
    tls.key: $work/server.key
    sasl.mechanisms: [SCRAM-SHA-512, SCRAM-SHA-256]
authz.super.users: [kgo]
EOF
  pw=$(openssl rand -hex 16)
  echo "$pw" >"$work/kgo.pw"
  "$work/ztfbroker" user add --data-dir "$work/data" kgo <"$work/kgo.pw"
  "$work/ztfbroker" serve --config "$work/ztfbroker.yaml" --data-dir "$work/data" --http "127.0.0.1:$hp" \
    --admin-http "" --packager=false --archive=false 2>"$work/broker.log" &
  env+=(KGO_TEST_TLS="ca:$work/ca.pem" KGO_TEST_SCRAM_SEEDS="127.0.0.1:$sp" KGO_TEST_SCRAM="kgo:$pw:512")
fi
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$hp/healthz" >/dev/null && break; sleep 0.1; done
if [[ -n $SASL ]]; then
  "$work/ztfbroker" user list --bootstrap "127.0.0.1:$ssp" --sasl-user kgo --sasl-password-file "$work/kgo.pw" \
    --tls-ca "$work/ca.pem" >/dev/null
  echo "SASL_SSL 127.0.0.1:$ssp: kgo logged in with SCRAM-SHA-512 over TLS"
fi

cd "$work/franz-go/pkg/kgo"
set +e
env "${env[@]}" KGO_TEST_RF=1 KGO_TEST_RECORDS=${KGO_TEST_RECORDS:-20000} \
  go test -count=1 -timeout 10m -run "$RUN" -skip "$SKIP" -v . 2>&1 | tee "$work/kgo.log" | grep -E '^(--- |ok|FAIL|panic)'
set -e
echo
echo "passed: $(grep -c '^--- PASS' "$work/kgo.log" || true)   failed: $(grep -c '^--- FAIL' "$work/kgo.log" || true)   skipped: $(grep -c '^--- SKIP' "$work/kgo.log" || true)"
grep '^--- FAIL' "$work/kgo.log" && exit 1 || exit 0
