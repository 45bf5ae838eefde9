#!/usr/bin/env bash
# Builds kmsctl and runs the whole suite, in phases:
#   1. Release build (scripts/setup.sh, which also installs missing packages) into build/
#   2. ctest in build/ (unit + end-to-end), on vault files
#   3. the end-to-end tests again in build/, on vaults in PostgreSQL with their token behind
#      `p11-kit server` (ctest label store_postgresql: throwaway clusters the tests start)
#   4. ASan + UBSan build into build-asan/ with clang when it is installed (scripts/setup.sh
#      installs it; else the default compiler), RelWithDebInfo, which CMakeLists.txt makes -O1
#      -g1, -no-pie for a sanitized build: the suite starts kmsctl thousands of times, and a
#      clang-sanitized kmsctl runs the suite in about half the time of a GCC-sanitized one
#   5. ctest in build-asan/ with leak detection on (suppressions: tests/lsan.supp), on vault files
#   6. libFuzzer build into build-fuzz/ (clang) and a fixed-time run of every build-fuzz/fuzz/fuzz_*,
#      as many targets at once as there are CPUs
# Every phase runs even after an earlier one failed (except those that need its build); a summary
# line per phase is printed at the end, and the exit code is non-zero if any phase failed.
#
# Environment:
#   FUZZ_SECONDS    seconds per fuzz target (default: 30 when CI=true, else 10); 0 skips fuzzing
#   CTEST_TIMEOUT   default per-test timeout in seconds for tests that set none (default: 600)
#   CTEST_JOBS      parallel tests (default: 2)
#   CTEST_PG_JOBS   parallel tests of phase 3 (default: 4: they wait on psql, the PostgreSQL
#                   server and `p11-kit server` more than they compute)
#   KMS_SKIP_ASAN=1 / KMS_SKIP_FUZZ=1   skip those phases (for quick local runs)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
root=$PWD

if [[ ${CI:-} == true ]]; then
  FUZZ_SECONDS=${FUZZ_SECONDS:-30}
else
  FUZZ_SECONDS=${FUZZ_SECONDS:-10}
fi
CTEST_TIMEOUT=${CTEST_TIMEOUT:-600}
CTEST_JOBS=${CTEST_JOBS:-2}
CTEST_PG_JOBS=${CTEST_PG_JOBS:-4}

# Sanitizer settings for phases 5 and 6 (exported only there).
san_env=(
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
  "LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0"
)

summary=()
failed=0
t_start=$SECONDS

banner() { printf '\n==== %s ====\n' "$*"; }

# run_phase NAME FUNCTION: runs it, records PASS/FAIL and its duration.
run_phase() {
  local name=$1 fn=$2 t0=$SECONDS status
  banner "$name"
  if "$fn"; then status=PASS; else status=FAIL; failed=1; fi
  local line
  line=$(printf '%-4s  %-22s %4ds' "$status" "$name" $((SECONDS - t0)))
  [[ -n ${phase_note:-} ]] && line+="  ($phase_note)"
  phase_note=
  summary+=("$line")
  printf '==== %s ====\n' "$line"
  [[ $status == PASS ]]
}

skip_phase() {
  local name=$1 why=$2
  banner "$name"
  echo "skipped: $why"
  summary+=("$(printf '%-4s  %-22s %4s   (%s)' SKIP "$name" - "$why")")
}

# ctest_in DIR LOG [CTEST-ARGS...] [-- ENV...]: runs the suite in DIR (ctest's log in DIR/LOG);
# remembers ctest's own closing line for the summary.
ctest_in() {
  local dir=$1 log=$1/$2 rc args=()
  shift 2
  while (($#)) && [[ $1 != -- ]]; do args+=("$1"); shift; done
  (($#)) && shift
  env "$@" ctest --test-dir "$dir" --output-on-failure -j"$CTEST_JOBS" --timeout "$CTEST_TIMEOUT" \
    "${args[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  phase_note=$(grep -E 'tests passed|No tests were found' "$log" | tail -n 1)
  return "$rc"
}

# ---- 1-3: Release --------------------------------------------------------------------------
release_build() { scripts/setup.sh; }
release_tests() { ctest_in build ctest.log -LE store_postgresql; }
postgresql_tests() { ctest_in build ctest-postgresql.log -L store_postgresql -j"$CTEST_PG_JOBS"; }

if run_phase "release build" release_build; then
  run_phase "release tests" release_tests
  run_phase "postgresql tests" postgresql_tests
else
  skip_phase "release tests" "release build failed"
  skip_phase "postgresql tests" "release build failed"
fi

# ---- 4-5: ASan + UBSan -------------------------------------------------------------------------
asan_build() {
  local cc=()
  if command -v clang++ >/dev/null; then
    cc=(CC=clang CXX=clang++)
    local cache=build-asan/CMakeCache.txt
    if [[ -f $cache ]] && ! grep -q '^CMAKE_CXX_COMPILER:.*clang' "$cache"; then
      rm -rf "$cache" build-asan/CMakeFiles   # configured with another compiler: start over
    fi
  fi
  env "${cc[@]}" BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo KMS_SANITIZE=ON scripts/setup.sh
}
asan_tests() { ctest_in build-asan ctest.log -LE store_postgresql -- "${san_env[@]}"; }

if [[ ${KMS_SKIP_ASAN:-0} == 1 ]]; then
  skip_phase "asan build" "KMS_SKIP_ASAN=1"
  skip_phase "asan tests" "KMS_SKIP_ASAN=1"
elif run_phase "asan build" asan_build; then
  run_phase "asan tests" asan_tests
else
  skip_phase "asan tests" "asan build failed"
fi

# ---- 6: libFuzzer --------------------------------------------------------------------------------
fuzz_build() {
  # Coverage instrumentation for every object (the libraries too, not only the fuzz targets),
  # with ASan + UBSan; the fuzz targets themselves link -fsanitize=fuzzer (fuzz/CMakeLists.txt).
  local cache=build-fuzz/CMakeCache.txt
  if [[ -f $cache ]] && ! grep -q '^CMAKE_CXX_COMPILER:.*clang' "$cache"; then
    rm -rf "$cache" build-fuzz/CMakeFiles   # configured with another compiler: start over
  fi
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKMS_FUZZ=ON -DKMS_SANITIZE=ON -DKMS_WERROR="${KMS_WERROR:-ON}" -DBUILD_TESTING=OFF \
    -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link \
    >/dev/null || return 1
  # Build only the fuzz targets (and the libraries they use), not kmsctl, bench or tests.
  local targets=()
  mapfile -t targets < <(ninja -C build-fuzz -t targets all | sed -n 's/^\(fuzz_[A-Za-z0-9_]*\): phony$/\1/p')
  if ((${#targets[@]} == 0)); then
    echo "no fuzz_* targets defined by fuzz/CMakeLists.txt"
    return 1
  fi
  echo "fuzz targets: ${targets[*]}"
  cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"
}

# fuzz_one BINARY: a fixed-time libFuzzer run of one target; its log is build-fuzz/NAME.log.
fuzz_one() {
  local t=$1 name corpus seeds
  name=$(basename "$t")
  corpus=build-fuzz/corpus/$name           # libFuzzer writes new inputs here, not in the repo
  seeds=fuzz/corpus/${name#fuzz_}         # optional committed seeds, read only
  mkdir -p "$corpus"
  local args=(-max_total_time="$FUZZ_SECONDS" -timeout=30 -print_final_stats=1
              -artifact_prefix="build-fuzz/artifacts/$name-" "$corpus")
  [[ -d $seeds ]] && args+=("$seeds")
  [[ -f fuzz/${name#fuzz_}.dict ]] && args=(-dict="fuzz/${name#fuzz_}.dict" "${args[@]}")
  env "${san_env[@]}" "$t" "${args[@]}" >"build-fuzz/$name.log" 2>&1
}

fuzz_run() {
  local targets=() t name rc=0 jobs
  for t in build-fuzz/fuzz/fuzz_*; do
    [[ -f $t && -x $t ]] && targets+=("$t")
  done
  if ((${#targets[@]} == 0)); then
    echo "no fuzz_* binaries in build-fuzz/fuzz/"
    return 1
  fi
  mkdir -p build-fuzz/artifacts
  # Each target is single-threaded: run as many at once as there are CPUs.
  jobs=$(nproc)
  for t in "${targets[@]}"; do
    while (($(jobs -rp | wc -l) >= jobs)); do sleep 1; done
    name=$(basename "$t")
    echo "---- $name for ${FUZZ_SECONDS}s"
    rm -f "build-fuzz/$name.rc"
    { fuzz_one "$t"; echo $? >"build-fuzz/$name.rc"; } &
  done
  wait
  for t in "${targets[@]}"; do
    name=$(basename "$t")
    if [[ $(cat "build-fuzz/$name.rc" 2>/dev/null) == 0 ]]; then
      grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "build-fuzz/$name.log"
      echo "---- $name: ok"
    else
      tail -n 60 "build-fuzz/$name.log"
      echo "---- $name: FAILED (log build-fuzz/$name.log; crash input under build-fuzz/artifacts/)"
      rc=1
    fi
  done
  phase_note="${#targets[@]} targets x ${FUZZ_SECONDS}s, $jobs at a time"
  return "$rc"
}

if [[ ${KMS_SKIP_FUZZ:-0} == 1 || $FUZZ_SECONDS == 0 ]]; then
  skip_phase "fuzz build" "fuzzing turned off"
  skip_phase "fuzz run" "fuzzing turned off"
elif [[ ! -f fuzz/CMakeLists.txt ]]; then
  skip_phase "fuzz build" "no fuzz/CMakeLists.txt yet"
  skip_phase "fuzz run" "no fuzz/CMakeLists.txt yet"
elif ! command -v clang++ >/dev/null; then
  skip_phase "fuzz build" "clang++ not installed"
  skip_phase "fuzz run" "clang++ not installed"
elif run_phase "fuzz build" fuzz_build; then
  run_phase "fuzz run" fuzz_run
else
  skip_phase "fuzz run" "fuzz build failed"
fi

# ---- summary ------------------------------------------------------------------------------------
banner "summary ($((SECONDS - t_start))s)"
printf '%s\n' "${summary[@]}"
if ((failed)); then
  echo "test.sh: FAILED"
  exit 1
fi
echo "test.sh: all phases passed"
