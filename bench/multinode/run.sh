#!/bin/sh
# Several Candor nodes over one store: the figures of README "Several nodes".
#
#   bench/multinode/run.sh [BUILD_DIR]      (default: build/; needs candor_multinode_bench)
#
# For SQLite (one file, two processes) and PostgreSQL (a throwaway local cluster
# from scripts/pg_cluster.sh with fsync on; skipped when PostgreSQL is not
# installed) it runs:
#   propagation   1,000 enrollments on node A, time until node B's index holds each
#                 (precomputed templates: the engine is not on the propagation path);
#   revoke race   node B searches real LFW probes while node A revokes every subject,
#                 once with B following the change feed and once without (every answer
#                 then rests on the search's re-check against the store): violations
#                 must be 0 (skipped, saying so, when LFW is absent);
# and once: memory per template of loaded collections for the default index and the
# IVF one (100,000 synthetic templates each).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
bin=$build/candor_multinode_bench
[ -x "$bin" ] || { echo "$0: $bin is missing (cmake --build $build --target candor_multinode_bench)" >&2; exit 1; }
lfw=${CANDOR_LFW:-$root/../shared/datasets/lfw}
models=${CANDOR_MODEL_DIR:-$root/models}
count=${COUNT:-1000}
work=$(mktemp -d "${TMPDIR:-/tmp}/candor-multinode.XXXXXX")
chmod 755 "$work"  # as root the cluster runs as `postgres`, which must reach its socket dir inside
pg_uri=""
cleanup() {
  [ -n "$pg_uri" ] && "$root/scripts/pg_cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
  pg_uri=$(CANDOR_PG_FSYNC=on "$root/scripts/pg_cluster.sh" start "$work/pg")
else
  echo "PostgreSQL is not installed: SQLite only"
fi

revoke_race() {  # $1 store, $2 "" or --no-follow
  rm -f "$work/stop" "$work/search.ready"
  "$bin" --store "$1" --models "$models" revoke-setup --dir "$work" --lfw "$lfw" --subjects 40
  "$bin" --store "$1" --models "$models" revoke-search --dir "$work" --seconds 180 $2 &
  searcher=$!
  while [ ! -f "$work/search.ready" ]; do sleep 0.2; done
  "$bin" --store "$1" --models "$models" revoke-revoke --dir "$work"
  wait "$searcher"
  if [ -z "$2" ]; then log=search.log; else log=search-nofollow.log; fi
  "$bin" revoke-check --dir "$work" --log "$log"
}

for store in "$work/sqlite.db" $pg_uri; do
  echo "== store: $(case $store in postgresql*) echo PostgreSQL ;; *) echo SQLite ;; esac)"
  "$bin" --store "$store" --models "$models" propagation --count "$count"
  if [ -d "$lfw/lfw" ]; then
    revoke_race "$store" ""
    revoke_race "$store" --no-follow
  else
    echo "LFW is absent ($lfw/lfw): revoke race skipped (it needs real faces)"
  fi
done

echo "== memory per template"
"$bin" --models "$models" memory --dir "$work" --count "${MEMORY_COUNT:-100000}"
