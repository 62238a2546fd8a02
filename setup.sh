#!/bin/sh
# rill's set-up, on Debian 12 as root (or with sudo):
#   ./setup.sh run [APP.lua [OPTIONS]]
#                     install what is missing, build, serve APP.lua with
#                     OPTIONS (rill serve's; default: examples/hello.lua on
#                     127.0.0.1:8080)
#   ./setup.sh test   install what is missing, build, run every test, then again
#                     under AddressSanitizer + UndefinedBehaviorSanitizer, then
#                     the libFuzzer targets of tests/fuzz for 20 s each
set -eu
cd "$(dirname "$0")"

# Build and runtime dependencies, then what the tests drive the server with.
PKGS="build-essential cmake pkg-config libluajit2-5.1-dev libuv1-dev libmbedtls-dev
      node-llhttp lua-busted lua-cjson zlib1g-dev media-types libnghttp2-dev"
TEST_PKGS="curl openssl ca-certificates python3 python3-websockets postgresql redis-server wrk
           strace redis-tools clang libclang-rt-14-dev haproxy nghttp2-client python3-h2 valgrind"

install_deps() {
  missing=""
  for p in $PKGS "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  echo "setup: installing$missing"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
}

# build DIR [cmake args...]
build() {
  dir=$1
  shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
}

case "${1:-}" in
run)
  shift
  install_deps
  build build -DCMAKE_BUILD_TYPE=Release
  [ $# -gt 0 ] || set -- examples/hello.lua --listen 127.0.0.1:8080
  exec ./build/rill serve "$@"
  ;;
test)
  install_deps $TEST_PKGS
  build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
  (cd build && ctest --output-on-failure)
  echo "setup: again under AddressSanitizer + UndefinedBehaviorSanitizer"
  build build-asan -DCMAKE_BUILD_TYPE=Debug -DRILL_SANITIZE=ON
  (cd build-asan &&
    RILL_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure)
  echo "setup: the fuzz targets, 20 s each (tests/fuzz/run.sh)"
  tests/fuzz/run.sh 20
  ;;
*)
  echo "usage: $0 run|test" >&2
  exit 2
  ;;
esac
