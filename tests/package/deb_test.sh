#!/usr/bin/env bash
# The Debian package, installed for real: dpkg -i, the user and directories, `candor serve`
# started exactly as candor.service starts it (its User=, WorkingDirectory=,
# EnvironmentFile= and ExecStart=, read from the installed unit), /healthz and /readyz
# (the engine loaded from /usr/share/candor), then dpkg -r keeps the data and dpkg -P
# removes it. systemd is not PID 1 here, so the unit's sandbox is checked by
# `systemd-analyze verify`, not exercised.
#
# usage: deb_test.sh BUILD_DIR   (ctest passes it; CANDOR_DEB=path.deb uses that package)
# Exit 77 (ctest: skipped) with the reason when this machine cannot run it: not root, no
# dpkg, or a Candor installation or its data already present (the test would remove it).
set -euo pipefail
build="$(cd "${1:?usage: deb_test.sh BUILD_DIR}" && pwd)"
skip() { echo "SKIPPED: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (it installs the package with dpkg)"
for tool in dpkg dpkg-deb setpriv curl cpack; do
  command -v "$tool" >/dev/null || skip "needs $tool"
done

# One package test at a time on this machine.
exec 9>/tmp/candor-deb-test.lock
flock 9
if dpkg-query -W -f='${Status}' candor 2>/dev/null | grep installed >/dev/null; then
  skip "a candor package is installed already; the test would remove it"
fi
for d in /var/lib/candor /etc/candor; do
  [ ! -e "$d" ] || skip "$d exists; the test's purge would delete it"
done

# The package: given, else the one `make deb` left if it is newer than its inputs, else
# built now when any of its inputs is newer (once; later runs reuse it).
deb="${CANDOR_DEB:-}"
if [ -z "$deb" ]; then
  deb="$(ls -t "$build"/package/candor_*.deb 2>/dev/null | head -1 || true)"
  src="$(cd "$(dirname "$0")/../.." && pwd)"
  stale=0
  for input in "$build/candor" "$src"/packaging/* "$src"/packaging/debian/* "$src/cmake/candor_package.cmake"; do
    if [ -z "$deb" ] || [ "$input" -nt "$deb" ]; then stale=1; fi
  done
  if [ "$stale" = 1 ]; then
    (cd "$build" && cpack -G DEB >/dev/null)
    deb="$(ls -t "$build"/package/candor_*.deb | head -1)"
  fi
fi
echo "package: $deb"

created_user=0
getent passwd candor >/dev/null || created_user=1
server_pid=""
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  dpkg -P candor >/dev/null 2>&1 || true
  if [ "$created_user" = 1 ] && getent passwd candor >/dev/null; then deluser --quiet candor >/dev/null 2>&1 || true; fi
  [ -z "${work:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
work="$(mktemp -d)"
fail() { echo "FAIL: $*"; exit 1; }
# Pipelines end in `grep PATTERN >/dev/null`, not `grep -q`: -q stops reading at the first
# match and the writer then fails with EPIPE, which pipefail turns into a failure.
mode_of() { stat -c '%a %U:%G' "$1"; }
expect_mode() {  # PATH "MODE OWNER:GROUP"
  local got; got="$(mode_of "$1")"
  [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
}

# What the package holds: the binary, every model of the manifest, the console, the unit,
# the configuration as a conffile, and the maintainer scripts.
dpkg-deb -c "$deb" > "$work/contents"
for f in ./usr/bin/candor ./usr/share/candor/config/models.json ./usr/share/candor/web/index.html \
         ./lib/systemd/system/candor.service ./etc/candor/candor.conf; do
  grep " $f\$" "$work/contents" >/dev/null || fail "package lacks $f"
done
models=$(grep -c ' ./usr/share/candor/models/.*\.onnx$' "$work/contents" || true)
[ "$models" -ge 3 ] || fail "package holds $models models"
dpkg-deb --ctrl-tarfile "$deb" | tar -x -O ./conffiles | grep -x /etc/candor/candor.conf >/dev/null \
  || fail "/etc/candor/candor.conf is not a conffile"

dpkg -i "$deb" >/dev/null
getent passwd candor >/dev/null || fail "no user candor"
[ "$(getent passwd candor | cut -d: -f7)" = /usr/sbin/nologin ] || fail "candor has a login shell"
[ "$(id -u candor)" -lt 1000 ] || fail "candor is not a system user"
expect_mode /var/lib/candor "700 candor:candor"
expect_mode /etc/candor "750 root:candor"
expect_mode /etc/candor/candor.conf "640 root:candor"
unit=/lib/systemd/system/candor.service
[ -f "$unit" ] || fail "no unit at $unit"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
else
  echo "note: systemd-analyze not installed; unit not verified"
fi
# The installed binary finds its data under /usr/share/candor, not in a build tree.
/usr/bin/candor --help | grep "/usr/share/candor/models" >/dev/null || fail "candor --help does not name /usr/share/candor/models"

# Start it as the unit does. The operator's edit of the conffile: a free port.
unit_value() { sed -n "s/^$1=//p" "$unit" | head -1; }
user="$(unit_value User)"; group="$(unit_value Group)"; wd="$(unit_value WorkingDirectory)"
envfile="$(unit_value EnvironmentFile)"; exec_start="$(unit_value ExecStart)"; umask_value="$(unit_value UMask)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -i "s/--port [0-9]*/--port $port/" "$envfile"
grep -- "--port $port" "$envfile" >/dev/null || fail "could not set the port in $envfile"
# systemd reads the environment file as KEY=value lines and expands $VAR in ExecStart
# into words; a shell does the same for these plain values.
set -a; . "$envfile"; set +a
command_line=$(eval "echo $exec_start")
# The README's first step: the first API key, created from a terminal as the service user
# (it creates the store, its template key and the pepper), so the server prints none to
# the journal.
as_service_user() { setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs env -i PATH=/usr/bin:/bin HOME="$wd" "$@"; }
key=$(cd "$wd" && umask "$umask_value" && as_service_user /usr/bin/candor key create admin --operations admin \
      --store /var/lib/candor/candor.db)
[ -n "$key" ] || fail "candor key create printed no key"
echo "starting as $user:$group in $wd: $command_line"
(cd "$wd" && umask "$umask_value" && exec setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs \
   env -i PATH=/usr/bin:/bin HOME="$wd" $command_line) > "$work/stdout" 2> "$work/stderr" &
server_pid=$!
url="http://127.0.0.1:$port"
ready=""
for _ in $(seq 1 300); do
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/stdout" "$work/stderr"; fail "candor serve exited"; }
  if curl -fsS "$url/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || { cat "$work/stderr"; fail "not ready within 30 s"; }
curl -fsS "$url/healthz" | grep '"ok"' >/dev/null || fail "/healthz"
curl -fsS "$url/" | grep -i "<html" >/dev/null || fail "the console (/usr/share/candor/web) is not served"
! grep "Created the first admin API key" "$work/stdout" >/dev/null || fail "the server printed a key although one existed"
curl -fsS -H "X-API-Key: $key" "$url/v1/collections" | grep collections >/dev/null || fail "GET /v1/collections"
[ "$(ps -o user=,comm= -p "$server_pid" | tr -s ' ')" = "candor candor" ] || fail "the server does not run as candor"
expect_mode /var/lib/candor/candor.db "600 candor:candor"
expect_mode /var/lib/candor/candor.db.key "600 candor:candor"
expect_mode /var/lib/candor/candor.db.apikeys-pepper "600 candor:candor"
kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=""

# Remove: the program goes, the data stays.
dpkg -r candor >/dev/null
[ ! -e /usr/bin/candor ] || fail "/usr/bin/candor left after remove"
[ -f /var/lib/candor/candor.db ] || fail "remove deleted the store"
[ -f /var/lib/candor/candor.db.key ] || fail "remove deleted the template key"
[ -f /etc/candor/candor.conf ] || fail "remove deleted the conffile"
# Purge: the data goes too.
dpkg -P candor >/dev/null
[ ! -e /var/lib/candor ] || fail "purge left /var/lib/candor"
[ ! -e /etc/candor ] || fail "purge left /etc/candor"
echo "PASS: installed, served as the unit would as $user, removed (data kept), purged (data gone)"
