#!/usr/bin/env bash
# Loopback load test of `candor serve`: requests/s and p50/p99 latency of
# POST /v1/compare and POST /v1/collections/{c}/search on a collection of N
# templates, at 1, 4 and 16 connections; the server's resident memory before and
# after; and the engine's own time for the same requests, measured in the same run,
# to show what the HTTP layer adds.
#
# Usage: bench/server/wrk_bench.sh [BUILD_DIR]   (default: build)
#   N=10000        templates in the collection (synthetic, plus one real subject)
#   DURATION=10    seconds per wrk run (6 runs: the whole script stays within ~3 min)
#   WORKERS=0      server inference workers (0: one per core)
# Needs: wrk (scripts/deps.txt), curl, the targets candor-server and candor_server_bench_seed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${1:-$ROOT/build}"
N="${N:-10000}"
DURATION="${DURATION:-10}"
WORKERS="${WORKERS:-0}"
PORT="${PORT:-18431}"
SERVER="$BUILD/candor-server"
SEED="$BUILD/candor_server_bench_seed"
for bin in "$SERVER" "$SEED"; do
  [[ -x "$bin" ]] || { echo "missing $bin: cmake --build $BUILD --target candor-server candor_server_bench_seed" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/candor-wrk.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== seeding $N templates"
timeout 600 "$SEED" seed "$WORK/store.db" bench "$N" "$WORK"
echo "== engine's own time (in-process, same store, 20 reps)"
ENGINE_JSON="$(timeout 300 "$SEED" time "$WORK/store.db" bench "$WORK" 20)"
echo "$ENGINE_JSON"

echo "== starting the server"
"$SERVER" serve --store "$WORK/store.db" --port "$PORT" --workers "$WORKERS" --web "$WORK" \
  >"$WORK/stdout.txt" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
ADMIN="$(grep -o 'cnd_[A-Za-z0-9_-]*' "$WORK/stdout.txt" | head -1)"
KEY="$(curl -sf -H "X-API-Key: $ADMIN" -H 'Content-Type: application/json' \
  -d '{"name":"bench","collections":["*"],"operations":["compare","search"],"searches_per_minute":100000000,"searches_per_day":1000000000}' \
  "http://127.0.0.1:$PORT/v1/keys" | sed -E 's/.*"key":"([^"]+)".*/\1/')"
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
RSS_BEFORE="$(rss_kb)"

A64="$(base64 -w0 "$WORK/a.jpg")"; B64="$(base64 -w0 "$WORK/b.jpg")"; P64="$(base64 -w0 "$WORK/probe.jpg")"
cat >"$WORK/compare.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "$KEY"
wrk.body = '{"a":"$A64","b":"$B64"}'
LUA
cat >"$WORK/search.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "$KEY"
wrk.body = '{"image":"$P64","reason":"load test"}'
LUA
# Fail early if a request does not succeed (wrk counts non-2xx separately).
curl -sf -H "X-API-Key: $KEY" -H 'Content-Type: application/json' --data-binary "@-" \
  "http://127.0.0.1:$PORT/v1/compare" <<<"{\"a\":\"$A64\",\"b\":\"$B64\"}" >/dev/null
curl -sf -H "X-API-Key: $KEY" -H 'Content-Type: application/json' --data-binary "@-" \
  "http://127.0.0.1:$PORT/v1/collections/bench/search" <<<"{\"image\":\"$P64\",\"reason\":\"load test\"}" >/dev/null

# wrk's --latency output -> "rps p50 p99 non2xx" (latencies in ms).
run_wrk() {
  local script="$1" path="$2" conns="$3" threads=$(( $3 < 2 ? $3 : 2 ))
  wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 30s --latency -s "$WORK/$script" \
    "http://127.0.0.1:$PORT$path" >"$WORK/wrk.txt"
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    END { printf "%.2f %.1f %.1f %d\n", rps, p50, p99, bad + 0 }' "$WORK/wrk.txt"
}

printf '\n%-8s %5s %10s %9s %9s %7s\n' route conns "req/s" "p50 ms" "p99 ms" non2xx
declare -A P50
for route in compare search; do
  if [[ $route == compare ]]; then path=/v1/compare; else path=/v1/collections/bench/search; fi
  for c in 1 4 16; do
    read -r rps p50 p99 bad < <(run_wrk "$route.lua" "$path" "$c")
    P50[$route.$c]=$p50
    printf '%-8s %5d %10s %9s %9s %7s\n' "$route" "$c" "$rps" "$p50" "$p99" "$bad"
  done
done
RSS_AFTER="$(rss_kb)"

eng() { sed -E "s/.*\"$1\":([0-9.e+-]+).*/\1/" <<<"$ENGINE_JSON"; }
echo
echo "resident memory: before $((RSS_BEFORE / 1024)) MB, after $((RSS_AFTER / 1024)) MB"
awk -v sc="${P50[compare.1]}" -v ec="$(eng compare_p50_ms)" -v ss="${P50[search.1]}" -v es="$(eng search_p50_ms)" \
  'BEGIN { printf "p50 at 1 connection / engine p50: compare %.1f / %.1f ms = %.2fx, search %.1f / %.1f ms = %.2fx\n", sc, ec, sc/ec, ss, es, ss/es }'
echo "refused (429/503) during the run:"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^candor_search_refused_total|status="(429|503)"' || true
