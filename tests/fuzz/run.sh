#!/bin/sh
# Runs the libFuzzer targets of tests/fuzz for a while each:
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 20); every target unless some are named.
# Builds build-fuzz (clang, RILL_FUZZ=ON) if needed. Each target fuzzes a
# copy of its seed corpus in a temporary directory (the committed corpus
# never grows), with leak detection on. Prints one line per target:
# executions, executions per second, the last coverage figures (cov: edges,
# ft: features). Exits non-zero if any target crashed, leaked, tripped
# UndefinedBehaviorSanitizer, broke an invariant or gave different results
# for its input fed whole and in pieces; the input that did it is kept in
# tests/fuzz/crashes/<target>/ with the log.
set -u
cd "$(dirname "$0")/../.."

secs=20
if [ $# -gt 0 ]; then
  secs=$1
  shift
fi
all="fuzz_http_head fuzz_chunked fuzz_ws_frame fuzz_http_response fuzz_http_conn fuzz_ws_conn fuzz_multipart fuzz_inflate fuzz_proxy_proto fuzz_h2 fuzz_h2_client"
targets=${*:-$all}
build=${RILL_FUZZ_BUILD:-build-fuzz}

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang cmake -S . -B "$build" -DRILL_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    >/dev/null || exit 1
else
  cmake "$build" >/dev/null || exit 1 # targets added since it was configured
fi
# shellcheck disable=SC2086
if ! cmake --build "$build" -j2 --target $targets >"$build/fuzz-build.log" 2>&1; then
  cat "$build/fuzz-build.log"
  echo "fuzz: the build failed" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rill-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
failed=""
for t in $targets; do
  bin="$build/tests/fuzz/$t"
  crashes="tests/fuzz/crashes/$t"
  mkdir -p "$tmp/$t" "$crashes"
  cp tests/fuzz/corpus/"$t"/* "$tmp/$t/"
  case $t in
  fuzz_http_head | fuzz_http_response | fuzz_http_conn) dict=-dict=tests/fuzz/http.dict ;;
  fuzz_chunked) dict=-dict=tests/fuzz/chunked.dict ;;
  fuzz_ws_*) dict=-dict=tests/fuzz/ws.dict ;;
  fuzz_multipart) dict=-dict=tests/fuzz/multipart.dict ;;
  *) dict="" ;;
  esac
  log="$tmp/$t.log"
  # shellcheck disable=SC2086
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
    -detect_leaks=1 -timeout=25 -artifact_prefix="$crashes/" $dict "$tmp/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
  verdict=ok
  if [ $rc -ne 0 ] || grep -qE 'runtime error:|SPLIT MISMATCH|INVARIANT BROKEN|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$log"; then
    verdict="FAILED (exit $rc; log in $crashes/last.log)"
    failed="$failed $t"
    cp "$log" "$crashes/last.log"
  fi
  printf '%-20s %10s execs %7s exec/s  %-22s %s\n' "$t" "${execs:-?}" "${eps:-?}" \
    "${cov:-cov: ? ft: ?}" "$verdict"
  if [ "$verdict" != ok ]; then
    grep -m1 -A40 -E 'SPLIT MISMATCH|INVARIANT BROKEN|runtime error:|ERROR: ' "$log" | head -50
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: failed:$failed" >&2
  exit 1
fi
