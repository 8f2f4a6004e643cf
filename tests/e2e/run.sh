#!/usr/bin/env bash
# End-to-end tests of the web console: headless Chromium against a real `candor serve`.
#
#   tests/e2e/run.sh [path/to/candor]
#
# 1. Makes sure Debian's chromium is installed (apt-get; no browser download).
# 2. Installs playwright-core and axe-core from tests/e2e/package-lock.json (npm ci).
# 3. Starts `candor serve` on a free loopback port with a fresh store in a temporary
#    directory (its encryption key file is created there), reads the admin key it
#    prints once on stdout, waits for /readyz.
# 4. Runs tests/e2e/console.test.js with node's test runner; stops the server on exit.
#
# Environment: CANDOR_BIN (default: the argument, else build/candor), CHROMIUM
# (default /usr/bin/chromium), CANDOR_E2E_SCREENSHOTS (default /tmp/candor-e2e-screens),
# CANDOR_E2E_KEEP=1 keeps the temporary directory (server log, store).
# Exit status: 0 when every test passed; non-zero otherwise, including when Chromium,
# npm or the server is not available (the tests never pass without running).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
BIN="${1:-${CANDOR_BIN:-$ROOT/build/candor}}"

log() { printf 'e2e: %s\n' "$*" >&2; }
die() { printf 'e2e: FAIL: %s\n' "$*" >&2; exit 1; }

# ---- 1. Chromium (Debian package)
if [[ ! -x "$CHROMIUM" ]]; then
  [[ "$CHROMIUM" == /usr/bin/chromium ]] || die "CHROMIUM=$CHROMIUM is not an executable"
  command -v apt-get >/dev/null || die "chromium is missing and apt-get is not available; install chromium"
  log "installing chromium (apt-get install -y chromium)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y chromium >/dev/null 2>&1; then
    log "install failed; apt-get update, then again"
    apt-get update >/dev/null 2>&1 || true
    apt-get install -y chromium >/dev/null || die "could not install chromium with apt-get: the e2e tests cannot run"
  fi
  [[ -x "$CHROMIUM" ]] || die "chromium installed but $CHROMIUM is missing"
fi
export CHROMIUM

# ---- 2. playwright-core and axe-core (the accessibility check), pinned in package.json;
# package-lock.json holds each tarball's sha512, which npm ci verifies.
command -v node >/dev/null || die "node is not installed"
command -v npm >/dev/null || die "npm is not installed"
STALE=0
for dep in playwright-core axe-core; do
  WANT="$(node -p 'require(process.argv[1]).devDependencies[process.argv[2]]' "$HERE/package.json" "$dep")"
  HAVE="$(node -p 'require(process.argv[1]).version' "$HERE/node_modules/$dep/package.json" 2>/dev/null || true)"
  [[ "$WANT" == "$HAVE" ]] || STALE=1
done
if [[ $STALE == 1 ]]; then
  log "npm ci in tests/e2e"
  (cd "$HERE" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) ||
    (cd "$HERE" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) ||
    die "npm could not install playwright-core and axe-core"
fi
# The browser comes from Debian: never let playwright download one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# ---- 3. the server
[[ -x "$BIN" ]] || die "no server binary at $BIN (build it first: the console tests need 'candor serve')"
HELP="$("$BIN" serve --help 2>&1)" || die "$BIN has no 'serve' subcommand"
grep -qE -- '--port|--listen' <<<"$HELP" || die "$BIN has no 'serve' subcommand with a --port or --listen option (is it built with the server?)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/candor-e2e.XXXXXX")"
SERVER_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -s "$TMP/server.err" ]]; then
    log "server stderr (last 30 lines):"
    tail -n 30 "$TMP/server.err" >&2 || true
  fi
  if [[ "${CANDOR_E2E_KEEP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port (the kernel picks it; the window before the server binds is tiny).
PORT="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
BASE="http://127.0.0.1:$PORT/"

has_opt() { grep -q -- "$1\b" <<<"$HELP"; }
ARGS=(serve)
has_opt --store && ARGS+=(--store "$TMP/candor.db")
has_opt --host && ARGS+=(--host 127.0.0.1)
if has_opt --port; then ARGS+=(--port "$PORT")
elif has_opt --listen; then ARGS+=(--listen "127.0.0.1:$PORT")
fi
if has_opt --web-dir; then ARGS+=(--web-dir "$ROOT/web")
elif has_opt --web; then ARGS+=(--web "$ROOT/web"); fi

log "starting: $BIN ${ARGS[*]}"
(cd "$ROOT" && exec env CANDOR_STORE="$TMP/candor.db" "$BIN" "${ARGS[@]}" >"$TMP/server.out" 2>"$TMP/server.err") &
SERVER_PID=$!

# The admin key is printed once, on the first start with an empty store.
KEY=""
for _ in $(seq 600); do
  KEY="$(grep -oE 'cnd_[A-Za-z0-9_-]{20,}' "$TMP/server.out" | head -n 1 || true)"
  [[ -n "$KEY" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.out" >&2; die "the server exited before printing an admin key"; }
  sleep 0.1
done
[[ -n "$KEY" ]] || { cat "$TMP/server.out" >&2; die "no admin key (cnd_...) on the server's stdout within 60 s"; }

# Ready once the engine and collections are loaded.
READY=0
for _ in $(seq 1200); do
  if curl -fsS -o /dev/null --max-time 2 "${BASE}readyz" 2>/dev/null; then READY=1; break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited while loading"
  sleep 0.1
done
[[ $READY == 1 ]] || die "the server was not ready within 120 s (${BASE}readyz)"
log "server ready at $BASE"

# ---- 4. the tests
export CANDOR_URL="$BASE" CANDOR_ADMIN_KEY="$KEY"
export CANDOR_E2E_SCREENSHOTS="${CANDOR_E2E_SCREENSHOTS:-/tmp/candor-e2e-screens}"
cd "$HERE"
node --test --test-concurrency=1 --test-reporter=spec console.test.js
