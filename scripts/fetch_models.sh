#!/usr/bin/env bash
# Fetches the model pack and the test images from the npm registry with `npm pack`
# (a tarball download: no install scripts run), extracts what Candor uses and checks
# every file's SHA-256. Idempotent: files already present with the right hash are kept.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache/npm"
models="$root/models"
testdata="$root/testdata"
mkdir -p "$cache" "$models" "$testdata/face-api"

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# npm_extract PACKAGE@VERSION: leaves the unpacked tarball in $cache/<name>/package
npm_extract() {
  local spec="$1" dir="$cache/$(echo "$1" | tr '/@' '__')"
  if [ ! -d "$dir/package" ]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    (cd "$dir.tmp" && npm pack --silent --ignore-scripts "$spec" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir/package"
}

# Models: names and hashes come from the committed manifest.
need_models=0
while read -r file sha; do
  sha_ok "$models/$file" "$sha" || need_models=1
done < <(node -e 'const m=require(process.argv[1]); for (const e of m.models) console.log(e.file, e.sha256)' "$root/config/models.json")
if [ "$need_models" = 1 ]; then
  spec=$(node -e 'const m=require(process.argv[1]); console.log(m.source.npm+"@"+m.source.version)' "$root/config/models.json")
  pkg=$(npm_extract "$spec")
  while read -r file sha; do
    cp "$pkg/model/$file" "$models/$file.tmp"
    if ! sha_ok "$models/$file.tmp" "$sha"; then
      echo "fetch_models: $file from $spec has SHA-256 $(sha256sum "$models/$file.tmp" | cut -d' ' -f1), expected $sha" >&2
      rm -f "$models/$file.tmp"; exit 1
    fi
    mv "$models/$file.tmp" "$models/$file"
  done < <(node -e 'const m=require(process.argv[1]); for (const e of m.models) console.log(e.file, e.sha256)' "$root/config/models.json")
fi
echo "models: $(ls "$models" | wc -l) files verified in $models"

# Test images: the six group photos of @vladmandic/face-api (MIT), demo/sample1..6.jpg.
need_images=0
while read -r sha file; do sha_ok "$testdata/face-api/$file" "$sha" || need_images=1; done < "$root/scripts/testdata.sha256"
if [ "$need_images" = 1 ]; then
  pkg=$(npm_extract "@vladmandic/face-api@1.7.15")
  while read -r sha file; do
    cp "$pkg/demo/$file" "$testdata/face-api/$file"
    sha_ok "$testdata/face-api/$file" "$sha" || { echo "fetch_models: $file hash mismatch" >&2; exit 1; }
  done < "$root/scripts/testdata.sha256"
fi
echo "test images: $(ls "$testdata/face-api" | wc -l) files verified in $testdata/face-api"
