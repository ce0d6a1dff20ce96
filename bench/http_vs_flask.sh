#!/usr/bin/env bash
# The mock's zero-latency throughput beside a bare Flask handler, back to back, same load generator:
#   bash bench/http_vs_flask.sh              # granian (2 workers) then the mock with 1 and 2 workers
#   WORKERS="2" bash bench/http_vs_flask.sh  # the mock's worker counts to try
# wrk -t1 -c16 -d10s with ../shared/bench/prepare_inbound.lua after 3 s of warm-up; loopback only.
# Needs wrk, and granian in /tmp/anchors/venv (../shared/bench/run_http_anchors.sh --setup).
# The full anchor run (WireMock, hey at fixed rates) is ../shared/bench/run_http_anchors.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
LUA=../shared/bench/prepare_inbound.lua
URL_PATH=/v2/prepare_inbound
run() { wrk -t1 -c16 -d10s --latency -s "$LUA" "$1$URL_PATH" | awk '/Requests\/sec/ {r=$2} / 99%/ {p=$2} END {print r " req/s, p99 " p}'; }
warm() { wrk -t1 -c16 -d3s -s "$LUA" "$1$URL_PATH" >/dev/null; }

(cd ../shared/bench && exec /tmp/anchors/venv/bin/granian --interface wsgi --workers 2 --host 127.0.0.1 \
  --port 8094 flask_app:app >/dev/null 2>&1) &
anchor=$!
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:8094/ && break; sleep 0.1; done
warm http://127.0.0.1:8094
echo "bare Flask (granian, 2 workers): $(run http://127.0.0.1:8094)"
kill "$anchor"; wait "$anchor" 2>/dev/null || true

for w in ${WORKERS:-1 2}; do
  setsid .venv/bin/python -m mock_server serve --no-sip --quiet --http-port 8000 --workers "$w" >/dev/null 2>&1 &
  mock=$!
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:8000/_mock/health && break; sleep 0.1; done
  warm http://127.0.0.1:8000
  echo "synthflow-mock, $w worker(s): $(run http://127.0.0.1:8000)"
  kill -TERM -- -"$mock"; wait "$mock" 2>/dev/null || true
done
