#!/bin/sh
# Real HTTP/2 clients (curl --http2-prior-knowledge, nghttp, h2load) against
# the C layer alone (tests/c/h2_serve.c): h2c with prior knowledge over TCP.
#   tests/c/h2_clients.sh BUILD_DIR
set -u
bin=$1/h2_serve
out=$(mktemp -d "${TMPDIR:-/tmp}/rill-h2.XXXXXX")
"$bin" >"$out/port" 2>"$out/log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$out"' EXIT INT TERM
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [ -s "$out/port" ] && break
  sleep 0.1
done
port=$(cat "$out/port")
url=http://127.0.0.1:$port
fail=0
check() { # name, expected, actual
  if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAILED: $1: expected [$2], got [$3]"; fail=1; fi
}
if command -v curl >/dev/null; then
  check "curl GET" "hello from rill h2" "$(curl -sS --http2-prior-knowledge "$url/")"
  check "curl version" "2" "$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_version}' "$url/")"
  head -c 3000000 /dev/zero >"$out/body"
  check "curl POST 3 MB" "3000000" "$(curl -sS --http2-prior-knowledge --data-binary @"$out/body" "$url/echo")"
  check "curl 4 MiB" "4194304" "$(curl -sS --http2-prior-knowledge "$url/big" | wc -c)"
  # (Two URLs on one curl line: Debian 12's curl 7.88.1 fails the second
  # with "Error in the HTTP2 framing layer" against nginx too.)
fi
if command -v nghttp >/dev/null; then
  check "nghttp GET" "hello from rill h2" "$(nghttp "$url/")"
  check "nghttp 3 streams" "3" "$(nghttp -n -s "$url/?a" "$url/big" "$url/?b" 2>&1 | grep -c ' 200 ')"
fi
if command -v h2load >/dev/null; then
  res=$(h2load -n 2000 -c 4 -m 50 "$url/" 2>&1)
  check "h2load 2000 requests" "2000" "$(echo "$res" | sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p')"
  echo "$res" | grep -E '^finished in|^requests:' | sed 's/^/  /'
fi
kill $pid
wait $pid 2>/dev/null
exit $fail
