#!/usr/bin/env bash
# Candor's whole set-up, idempotent (safe to run again; quick when nothing changed):
#   1. the Debian packages in scripts/deps.txt (apt-get, only when one is missing),
#   2. the model pack and test images from the npm registry, SHA-256 checked,
#   3. the build (CMake, Release, warnings as errors) into build/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

mapfile -t packages < <(grep -v -e '^#' -e '^$' scripts/deps.txt)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

bash scripts/fetch_models.sh

# CANDOR_PRESET=asan|tsan|fuzz (the Makefile's sanitizer and fuzz targets): that
# CMakePresets.json build preset instead of build/, configured by the configure preset
# CANDOR_CONFIGURE_PRESET (default: the same name; the fuzz targets live in the asan tree).
if [ -n "${CANDOR_PRESET:-}" ]; then
  cmake --preset "${CANDOR_CONFIGURE_PRESET:-$CANDOR_PRESET}" >/dev/null
  cmake --build --preset "$CANDOR_PRESET" -j "$(nproc)"
  echo "setup: done; preset $CANDOR_PRESET built"
  exit 0
fi
build="${CANDOR_BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCANDOR_WERROR=ON ${CANDOR_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)"
echo "setup: done; the CLI is $build/candor"
