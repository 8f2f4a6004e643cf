#!/usr/bin/env bash
# Loopback load test of `candor serve` against the engine's own work, in one run:
#   - what the server adds per request at 1 connection: the same request done
#     in-process (decode, detect, embed, quality; for a search also the index and the
#     fsync'd audit entry) and then over HTTP, back to back, PAIRS times per run, so the
#     machine's load cancels out of each difference; REPEATS runs, the median of their
#     medians; plus wrk at 1 connection for req/s and p50/p99;
#   - throughput at 2 and 4 connections against the engine's batch throughput with 2
#     threads in-process on the same cores (a ratio; the target is >= 0.90);
#   - the 16-connection overload behaviour (fast 503s) and resident memory.
# Routes: POST /v1/compare and POST /v1/collections/{c}/search (JSON, base64 images)
# on a collection of N templates.
#
# Usage: bench/server/wrk_bench.sh [BUILD_DIR]   (default: build)
#   N=10000        templates in the collection (synthetic, plus one real subject)
#   DURATION=8     seconds per wrk run and per engine throughput measurement
#   REPEATS=3      runs of PAIRS back-to-back engine/server pairs per route
#   PAIRS=20
#   WORKERS=0      server inference workers (0: one per core)
#   OVERLOAD=1     also run 16 connections (0: skip)
#   SOAK=0         then this many seconds of mixed compare/search at 4 connections, with
#                  resident memory sampled every 30 s (SOAK=600: the 10-minute run)
# Needs: wrk (scripts/deps.txt), curl, the targets candor-server and candor_server_bench_seed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${1:-$ROOT/build}"
N="${N:-10000}"
DURATION="${DURATION:-8}"
REPEATS="${REPEATS:-3}"
PAIRS="${PAIRS:-20}"
WORKERS="${WORKERS:-0}"
OVERLOAD="${OVERLOAD:-1}"
SOAK="${SOAK:-0}"
PORT="${PORT:-18431}"
SERVER="${SERVER:-$BUILD/candor-server}"  # SERVER=... compares another build's server
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

echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo "== seeding $N templates"
timeout 600 "$SEED" seed "$WORK/store.db" bench "$N" "$WORK"
echo "== engine batch throughput: 2 threads in-process, ${DURATION}s per route"
THR_JSON="$(timeout 300 "$SEED" throughput "$WORK/store.db" bench "$WORK" "$DURATION" 2)"
echo "$THR_JSON"

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

# wrk's --latency output -> "ok_rps p50 p99 non2xx": ok_rps counts 2xx answers only.
wrk_summary() {
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    / requests in / { total = $1; d = $4; secs = d + 0; if (d ~ /m,?$/) secs *= 60; else if (d ~ /h,?$/) secs *= 3600 }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    END { printf "%.2f %.1f %.1f %d\n", (total - bad) / secs, p50, p99, bad + 0 }' "$1"
}
run_wrk() {
  local script="$1" path="$2" conns="$3" threads=$(( $3 < 2 ? $3 : 2 ))
  wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 30s --latency -s "$WORK/$script" \
    "http://127.0.0.1:$PORT$path" >"$WORK/wrk.txt"
  wrk_summary "$WORK/wrk.txt"
}
route_path() { if [[ $1 == compare ]]; then echo /v1/compare; else echo /v1/collections/bench/search; fi; }
json_num() { sed -E "s/.*\"$2\":([0-9.e+-]+).*/\1/" <<<"$1"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Waits until the inference gate is idle again (after an overload run's queue drains).
drain() {
  for _ in $(seq 1 120); do
    curl -s "http://127.0.0.1:$PORT/metrics" | grep -qE '^candor_inference_(active|queue_depth)[^ ]* [1-9]' || return 0
    sleep 0.5
  done
}

echo
echo "== added at 1 connection: $REPEATS runs of $PAIRS back-to-back pairs (in-process, then HTTP) per route"
printf '%-4s %-8s %12s %12s %22s\n' run route "engine p50" "server p50" "added p50 (p25..p75)"
declare -A ADDED
for rep in $(seq 1 "$REPEATS"); do
  PAIRED="$(timeout 900 "$SEED" paired "$WORK/store.db" bench "$WORK" "$PAIRS" "$PORT" "$KEY")"
  for route in compare search; do
    added="$(json_num "$PAIRED" "${route}_added_p50_ms")"
    ADDED[$route]+="$added "
    printf '%-4s %-8s %12.1f %12.1f %10.2f (%.2f..%.2f)\n' "$rep" "$route" "$(json_num "$PAIRED" "${route}_engine_p50_ms")" \
      "$(json_num "$PAIRED" "${route}_server_p50_ms")" "$added" "$(json_num "$PAIRED" "${route}_added_p25_ms")" \
      "$(json_num "$PAIRED" "${route}_added_p75_ms")"
  done
done

echo
echo "== wrk: 1 connection, and throughput against the engine's 2-thread batch throughput (target >= 0.90)"
printf '%-8s %5s %10s %9s %9s %7s %12s %7s\n' route conns "2xx/s" "p50 ms" "p99 ms" non2xx "engine req/s" ratio
declare -A RATIO
for route in compare search; do
  eng_rps="$(json_num "$THR_JSON" "${route}_rps")"
  for c in 1 2 4; do
    drain
    read -r rps p50 p99 bad < <(run_wrk "$route.lua" "$(route_path "$route")" "$c")
    ratio="$(awk -v s="$rps" -v e="$eng_rps" 'BEGIN { printf "%.2f", s / e }')"
    RATIO[$route.$c]="$ratio"
    printf '%-8s %5d %10s %9s %9s %7s %12.2f %7s\n' "$route" "$c" "$rps" "$p50" "$p99" "$bad" "$eng_rps" "$ratio"
  done
done
if [[ "$OVERLOAD" == 1 ]]; then
  for route in compare search; do
    drain
    read -r rps p50 p99 bad < <(run_wrk "$route.lua" "$(route_path "$route")" 16)
    printf '%-8s %5d %10s %9s %9s %7s   (overload: the excess gets fast 503s)\n' "$route" 16 "$rps" "$p50" "$p99" "$bad"
  done
  drain
fi
RSS_AFTER="$(rss_kb)"

if (( SOAK > 0 )); then
  # Compare and search alternate on every connection, so both routes' buffers stay in use.
  cat >"$WORK/mixed.lua" <<LUA
local n = 0
local headers = { ["Content-Type"] = "application/json", ["X-API-Key"] = "$KEY" }
local compare = '{"a":"$A64","b":"$B64"}'
local search = '{"image":"$P64","reason":"soak"}'
request = function()
  n = n + 1
  if n % 2 == 0 then return wrk.format("POST", "/v1/compare", headers, compare) end
  return wrk.format("POST", "/v1/collections/bench/search", headers, search)
end
LUA
  echo
  echo "== soak: ${SOAK}s of alternating compare and search at 4 connections; resident memory every 30 s"
  drain  # the requests the last wrk run left behind, or the soak starts with 503s
  SOAK_START_KB="$(rss_kb)"
  SOAK_MAX_KB="$SOAK_START_KB"
  wrk -t2 -c4 -d"${SOAK}s" --timeout 30s --latency -s "$WORK/mixed.lua" "http://127.0.0.1:$PORT/" >"$WORK/soak.txt" &
  WRK_PID=$!
  started=$SECONDS
  while kill -0 "$WRK_PID" 2>/dev/null; do
    sleep 30
    kb="$(rss_kb)"
    (( kb > SOAK_MAX_KB )) && SOAK_MAX_KB="$kb"
    kill -0 "$WRK_PID" 2>/dev/null && echo "  t=$((SECONDS - started)) s: $((kb / 1024)) MB"
  done
  wait "$WRK_PID"
  read -r rps p50 p99 bad < <(wrk_summary "$WORK/soak.txt")
  requests="$(awk '/ requests in / { print $1 }' "$WORK/soak.txt")"
  SOAK_END_KB="$(rss_kb)"
  echo "soak: $requests requests, $rps 2xx/s, p50 $p50 ms, p99 $p99 ms, non-2xx $bad;" \
       "resident memory $((SOAK_START_KB / 1024)) MB at its start, $((SOAK_END_KB / 1024)) MB at its end," \
       "$((SOAK_MAX_KB / 1024)) MB at most"
fi

echo
echo "resident memory: before $((RSS_BEFORE / 1024)) MB, after $((RSS_AFTER / 1024)) MB"
echo "added at 1 connection, median of $REPEATS runs of $PAIRS pairs: compare $(median <<<"${ADDED[compare]}") ms," \
     "search $(median <<<"${ADDED[search]}") ms (target < 2 ms)"
echo "throughput / engine (2 threads): compare ${RATIO[compare.2]} at 2 connections, ${RATIO[compare.4]} at 4;" \
     "search ${RATIO[search.2]} at 2, ${RATIO[search.4]} at 4 (target >= 0.90)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "refused (429/503) during the run:"
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^candor_search_refused_total|status="(429|503)"' || true
