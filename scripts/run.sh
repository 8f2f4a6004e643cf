#!/usr/bin/env bash
# `make run`: the service on 127.0.0.1:8080 with the embedded SQLite store in var/.
# On the first start it prints the admin API key once (keep it) and the console URL.
# Override with CANDOR_PORT, CANDOR_HOST, CANDOR_STORE.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/var"
chmod 700 "$root/var"
exec "$root/build/candor" serve \
  --store "${CANDOR_STORE:-$root/var/candor.db}" \
  --host "${CANDOR_HOST:-127.0.0.1}" \
  --port "${CANDOR_PORT:-8080}" \
  --web "$root/web"
