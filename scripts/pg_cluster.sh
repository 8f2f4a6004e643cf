#!/bin/sh
# A throwaway PostgreSQL cluster for tests and benchmarks.
#
#   scripts/pg_cluster.sh start DIR   # prints the connection URI (also written to DIR/uri)
#   scripts/pg_cluster.sh stop DIR    # stops the server and deletes its data
#   scripts/pg_cluster.sh pause DIR   # stops the server, keeping its data (tests of a lost server)
#   scripts/pg_cluster.sh resume DIR  # starts a paused server again
#
# The server listens only on a unix socket in DIR (no TCP port to collide
# with other clusters on the machine; if the server's user cannot reach DIR,
# the socket goes beside the data instead: use the printed URI) and trusts local connections; it holds a
# database named "candor". Its data directory is a fresh temp dir under
# ${TMPDIR:-/tmp} (recorded in DIR/datadir). PostgreSQL refuses to run as
# root, so as root the server runs as the `postgres` system user.
#
# fsync is off unless CANDOR_PG_FSYNC=on: tests check logic, not durability;
# benchmarks comparing with SQLite's full durability set it on.
# CANDOR_PG_OPTIONAL=1: a missing PostgreSQL installation is not an error for `start`.
set -eu

BIN=${CANDOR_PG_BIN:-/usr/lib/postgresql/15/bin}
PORT=5432  # only names the socket file in DIR

usage() { echo "usage: $0 start|stop|pause|resume DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)

if [ "$(id -u)" -eq 0 ]; then
  run_as() { runuser -u postgres -- "$@"; }
  superuser=postgres
else
  run_as() { "$@"; }
  superuser=$(id -un)
fi

uri="postgresql:///candor?host=${dir}&port=${PORT}&user=${superuser}"

stop_cluster() {
  if [ -f "$dir/datadir" ]; then
    data=$(cat "$dir/datadir")
    if [ -d "$data" ]; then
      run_as "$BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
      rm -rf "$(dirname "$data")"
    fi
    rm -f "$dir/datadir" "$dir/uri"
  fi
}

case "$cmd" in
  start)
    if [ ! -x "$BIN/initdb" ]; then
      echo "$0: PostgreSQL is not installed ($BIN/initdb missing; apt-get install postgresql)" >&2
      # The CTest fixture sets CANDOR_PG_OPTIONAL=1: the PostgreSQL tests then
      # skip (or fail under CI=true) instead of every store test going unrun.
      [ "${CANDOR_PG_OPTIONAL:-0}" = 1 ] && exit 0
      exit 1
    fi
    if [ -f "$dir/datadir" ] && [ -f "$dir/uri" ] && run_as "$BIN/pg_ctl" -D "$(cat "$dir/datadir")" status >/dev/null 2>&1; then
      cat "$dir/uri"  # already running
      exit 0
    fi
    stop_cluster
    base=$(mktemp -d "${TMPDIR:-/tmp}/candor-pg.XXXXXX")
    data="$base/data"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres "$base" "$dir"
    fi
    chmod 700 "$base"
    echo "$data" > "$dir/datadir"
    # The socket goes in DIR when the server's user can reach it and the path
    # fits a socket address (107 bytes); else beside the data, in the temp dir.
    sockdir=$dir
    if ! run_as test -w "$dir" -a -x "$dir" 2>/dev/null || [ ${#dir} -gt 90 ]; then
      sockdir=$base
      chmod 755 "$base"
      uri="postgresql:///candor?host=${sockdir}&port=${PORT}&user=${superuser}"
    fi
    # A failed start leaves nothing behind (no data dir, no stale DIR/datadir).
    failed() { cat "$1" >&2; rm -rf "$base"; rm -f "$dir/datadir" "$dir/uri"; exit 1; }
    run_as "$BIN/initdb" -D "$data" -U "$superuser" -A trust -E UTF8 --locale=C >"$base/initdb.log" 2>&1 ||
      failed "$base/initdb.log"
    fsync=${CANDOR_PG_FSYNC:-off}
    echo "-c listen_addresses='' -c unix_socket_directories='$sockdir' -p $PORT -c fsync=$fsync -c max_connections=200" \
      > "$base/options"
    run_as "$BIN/pg_ctl" -D "$data" -l "$base/server.log" -w -t 60 -o "$(cat "$base/options")" start >/dev/null ||
      failed "$base/server.log"
    run_as "$BIN/createdb" -h "$sockdir" -p "$PORT" -U "$superuser" candor
    echo "$uri" > "$dir/uri"
    echo "$uri"
    ;;
  stop)
    stop_cluster
    ;;
  pause)
    data=$(cat "$dir/datadir")
    run_as "$BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    ;;
  resume)
    data=$(cat "$dir/datadir")
    base=$(dirname "$data")
    run_as "$BIN/pg_ctl" -D "$data" -l "$base/server.log" -w -t 60 -o "$(cat "$base/options")" start >/dev/null
    ;;
  *) usage ;;
esac
