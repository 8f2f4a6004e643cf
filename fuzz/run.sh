#!/usr/bin/env bash
# make fuzz (FUZZ_SECONDS=300 per target) and make fuzz-ci (30 s): builds the `fuzz`
# build preset (the fuzz targets of the clang ASan+UBSan tree, build-asan/), writes the
# seed corpus (fuzz_make_seeds), runs each libFuzzer target for a bounded time and prints
# what it did. Exits 1 when any target crashed, leaked, timed
# out or ran out of memory; the input is in build-asan/artifacts/<target>/ (fix the bug,
# then commit the input under fuzz/regressions/<target>/: tests/fuzz_regression replays it).
#
# The corpus each run grows is kept in build-asan/corpus/<target>/ (not committed), so
# successive runs on one machine continue where the last stopped.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${FUZZ_SECONDS:-300}"
targets="${FUZZ_TARGETS:-fuzz_image fuzz_json fuzz_multipart fuzz_manifest fuzz_onnx}"
build=build-asan

CANDOR_PRESET=fuzz CANDOR_CONFIGURE_PRESET=asan bash scripts/setup.sh

# Leaks at exit of the generator are of no interest; it is not what is being fuzzed.
rm -rf "$build/seeds"
ASAN_OPTIONS=detect_leaks=0 "$build/fuzz/fuzz_make_seeds" "$build/seeds" "$root"

# Per target: the longest input, and the dictionary. Inputs are kept small so that
# iterations stay fast: images up to 32 KiB (the harness decodes at most 256x256),
# requests a little over the fuzzed server's 24 KiB body limit, manifests 8 KiB.
max_len() { case "$1" in fuzz_manifest | fuzz_onnx) echo 8192 ;; *) echo 32768 ;; esac; }
dict() {
  case "$1" in
    fuzz_image) echo fuzz/dicts/image.dict ;; fuzz_json) echo fuzz/dicts/json.dict ;;
    fuzz_multipart) echo fuzz/dicts/multipart.dict ;; fuzz_manifest) echo fuzz/dicts/manifest.dict ;;
    fuzz_onnx) echo fuzz/dicts/onnx.dict ;;
  esac
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
report="$build/fuzz_report.md"
mkdir -p "$build/logs"
{
  echo "| target | seconds | executions | exec/s | crashes | corpus (files) | coverage (edges) |"
  echo "|---|---|---|---|---|---|---|"
} >"$report"
# One target a core (FUZZ_JOBS, default nproc): the targets share nothing but the machine, and
# libFuzzer runs one process per target, so on 2 cores the CI stage takes half as long for the
# same seconds of fuzzing per target.
jobs="${FUZZ_JOBS:-$(nproc)}"
fuzz_one() {
  local t="$1" corpus="$build/corpus/$1" artifacts="$build/artifacts/$1" log="$build/logs/$1.log"
  mkdir -p "$corpus" "$artifacts"
  local inputs=("$corpus" "$build/seeds/$t")
  [ -d "fuzz/regressions/$t" ] && inputs+=("fuzz/regressions/$t")
  local before after crashes execs rate cov files rc start=$SECONDS
  before=$(find "$artifacts" -type f | wc -l)
  echo "fuzz: $t for ${seconds}s (log: $log)"
  set +e
  "$build/fuzz/$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=30 -rss_limit_mb=3072 \
    -dict="$(dict "$t")" -artifact_prefix="$artifacts/" -print_final_stats=1 "${inputs[@]}" >"$log" 2>&1
  rc=$?
  set -e
  after=$(find "$artifacts" -type f | wc -l)
  crashes=$((after - before))
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  files=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes="failed (exit $rc)"; fi
  echo "| $t | $((SECONDS - start)) | ${execs:-?} | ${rate:-?} | $crashes | $files | ${cov:-?} |" >"$build/logs/$t.row"
  if [ "$rc" -ne 0 ] || [ "$crashes" != 0 ]; then
    echo "fuzz: $t FAILED; the last lines of its log:"
    tail -40 "$log"
    return 1
  fi
}
# In batches of $jobs: every target runs for the same time, so a batch ends together.
failed=0
pids=()
for t in $targets; do
  fuzz_one "$t" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    for p in "${pids[@]}"; do wait "$p" || failed=1; done
    pids=()
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
for t in $targets; do cat "$build/logs/$t.row" >>"$report"; done
echo
cat "$report"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target crashed; its input is under $build/artifacts/" >&2
  exit 1
fi
