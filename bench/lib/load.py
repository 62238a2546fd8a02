"""The load generators a scenario drives a Running server with. Each runs
pinned to procs.CPU_CLIENT and returns a dict of figures, always with
"client_cpu": the generator's own CPU use in % of one core over its run
(from wait4's rusage), so a saturated generator can be told apart from a
saturated server. Those that take shared= (a Running process on the
generator's core, such as a proxy's upstream) also return "shared_cpu":
that process's CPU use in % of one core over the same run.
"""
import re
import subprocess
import sys
import time
from pathlib import Path

import procs
from servers import LIB

MB = 1e6


class BenchError(Exception):
    """A measurement that failed (a wrong answer, a generator error)."""


def _run(argv, stdin=None, cpu=None):
    """Runs a generator to completion (on cpu, by default procs.CPU_CLIENT);
    returns its output (stdout and stderr together), CPU % of one core, and
    wall seconds."""
    start = time.monotonic()
    p = procs.spawn(argv, procs.CPU_CLIENT if cpu is None else cpu, stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    code, cpu = procs.wait_usage(p)
    wall = time.monotonic() - start
    if code != 0:
        raise BenchError(f"{argv[0]} exited with {code}: {out.strip()[-500:]}")
    return out, 100 * cpu / wall, wall


def _shared_cpu(shared, before, wall, figures):
    """Adds shared_cpu (see above) to figures when there is a shared process."""
    if shared is not None:
        figures["shared_cpu"] = 100 * (shared.cpu_seconds() - before) / wall
    return figures


def _result(out, tool):
    """The figures of a bench tool's "RESULT key=value ..." line."""
    line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise BenchError(f"{tool} printed no result: {out[-500:]}")
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def wrk(run, srv, path, pipeline=1, duration=None, shared=None, threads=1, cpu=None,
        headers=()):
    """wrk -t<threads> -c50 on path for the run's duration (on cpu, default
    procs.CPU_CLIENT); pipeline > 1 sends that many requests per write;
    headers ("Name: value") are added to each request. Returns requests/s,
    p50/p99 latency in ms and the server's CPU µs per request (all its
    processes and threads, from /proc)."""
    argv = ["wrk", f"-t{threads}", "-c50", f"-d{duration or run.duration}s",
            *(a for h in headers for a in ("-H", h)), "-s",
            str(LIB / "wrk.lua"), srv.url(path), "--", str(pipeline)]
    cpu_before = srv.cpu_seconds()
    shared_before = shared.cpu_seconds() if shared else 0
    out, client_cpu, wall = _run(argv, cpu=cpu)
    server_cpu = srv.cpu_seconds() - cpu_before
    line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise BenchError(f"wrk printed no result: {out[-500:]}")
    r = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    errors = {k[7:]: v for k, v in r.items() if k.startswith("errors_") and v}
    if r["requests"] == 0 or "connect" in errors or "status" in errors:
        raise BenchError(f"wrk: {r['requests']} requests, errors {errors}")
    if errors:
        print(f"  warning: wrk socket errors {errors}", file=sys.stderr)
    return _shared_cpu(shared, shared_before, wall, {
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
        "cpu_us": server_cpu * 1e6 / r["requests"], "client_cpu": client_cpu})


def h2load(run, srv, conns, streams, duration=None, path="/"):
    """h2load -c<conns> -m<streams> over HTTP/2 (h2 by ALPN on https, h2c
    with prior knowledge on http) for duration seconds (the run's by
    default). Returns requests/s, the mean time per request in ms and the
    server's CPU µs per request."""
    argv = ["h2load", f"-c{conns}", f"-m{streams}", f"-D{duration or run.duration}",
            srv.url(path)]
    cpu_before = srv.cpu_seconds()
    out, client_cpu, _ = _run(argv)
    server_cpu = srv.cpu_seconds() - cpu_before
    m = re.search(r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed", out, re.M)
    fin = re.search(r"^finished in ([\d.]+)s, ([\d.]+) req/s", out, re.M)
    lat = re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out, re.M)
    if m is None or fin is None or lat is None:
        raise BenchError(f"h2load printed no result: {out[-500:]}")
    if srv.scheme == "https" and "Application protocol: h2" not in out:
        raise BenchError(f"h2load did not get h2 by ALPN: {out[-500:]}")
    done, ok, failed = int(m.group(2)), int(m.group(3)), int(m.group(4))
    if ok == 0 or failed > done // 100:
        raise BenchError(f"h2load: {ok} succeeded, {failed} failed: {out[:600]}")
    mean = float(lat.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[lat.group(2)]
    return {"rps": float(fin.group(2)), "mean_ms": mean,
            "cpu_us": server_cpu * 1e6 / ok, "client_cpu": client_cpu}


def warm_up(run, srv, path, headers=()):
    """A short wrk run whose figures are dropped: JIT compilers (LuaJIT, V8)
    and lazily built state are warm before the measurement."""
    wrk(run, srv, path, duration=run.warmup, headers=headers)


# curl's -w output after the response body. --speed-time/--speed-limit make
# a transfer that stalls for 10 s fail instead of waiting for a server timeout.
CURL = ["curl", "-sS", "--speed-time", "10", "--speed-limit", "1", "-w",
        "\nCURL %{http_code} %{size_download} %{time_total}\n"]


def _curl(argv, what, stdin=None):
    """Runs curl; returns the response body (unless -o sent it elsewhere),
    the bytes received, seconds, and curl's CPU %."""
    out, client_cpu, _ = _run(CURL + argv, stdin=stdin)
    body, _, figures = out.rpartition("\nCURL ")
    status, size, seconds = figures.split()
    if status != "200":
        raise BenchError(f"{what}: HTTP status {status}: {out[-300:]}")
    return body.strip(), int(size), float(seconds), client_cpu


def response_size(srv, path, headers=()):
    """The size in bytes of one response body as sent (not decoded), with
    headers ("Name: value") on the request."""
    argv = [*(a for h in headers for a in ("-H", h)), "-o", "/dev/null", srv.url(path)]
    return _curl(argv, f"GET {path}")[1]


def upload(run, srv, path, chunked, shared=None):
    """PUTs run.upload_bytes of zeros with curl -T: chunked when read from a
    pipe (head -c N /dev/zero), with a Content-Length when read from a
    (sparse) file. The server must answer with the byte count. Returns MB/s
    and the server's peak RSS in MB during the upload."""
    n = run.upload_bytes
    srv.reset_peak_rss()
    shared_before = shared.cpu_seconds() if shared else 0
    if chunked:
        head = procs.spawn(["head", "-c", str(n), "/dev/zero"], procs.CPU_CLIENT,
                           stdout=subprocess.PIPE)
        try:
            body, _, seconds, client_cpu = _curl(["-T", "-", srv.url(path)], "upload",
                                                 stdin=head.stdout)
        finally:
            head.stdout.close()
            _, head_cpu = procs.wait_usage(head)
        # head feeds curl on the same core: count it as part of the client.
        client_cpu += 100 * head_cpu / seconds
    else:
        body, _, seconds, client_cpu = _curl(["-T", str(run.upload_file(n)), srv.url(path)],
                                             "upload")
    if body != str(n):
        raise BenchError(f"upload: sent {n} bytes, the server counted {body[:200]!r}")
    return _shared_cpu(shared, shared_before, seconds, {
        "mbs": n / seconds / MB, "peak_rss_mb": srv.peak_rss() / MB, "client_cpu": client_cpu})


def download(run, srv, path, n, shared=None):
    """GETs path, which must send n bytes, with curl -o /dev/null. Returns
    MB/s and the server's peak RSS in MB during the download."""
    srv.reset_peak_rss()
    shared_before = shared.cpu_seconds() if shared else 0
    _, size, seconds, client_cpu = _curl(["-o", "/dev/null", srv.url(path)], "download")
    if size != n:
        raise BenchError(f"download: received {size} of {n} bytes")
    return _shared_cpu(shared, shared_before, seconds, {
        "mbs": n / seconds / MB, "peak_rss_mb": srv.peak_rss() / MB, "client_cpu": client_cpu})


def idle(run, srv, path, n, websocket=False):
    """Opens n keep-alive connections with idle_client, one GET on each (or,
    with websocket=True, n WebSockets upgraded on path, with ws_client), and
    reads the server's RSS before and while they are held. Returns the RSS
    growth per connection in bytes, how many connections were still open
    after the reading, and the client's CPU time in ms."""
    if websocket:
        def client(k):
            return [run.tool("ws_client", "-lz"), "127.0.0.1", str(srv.port), path, "idle", str(k)]
        _hold(client(1), 1, lambda: None)  # first-connection set-up
    else:
        def client(k):
            return [run.idle_client, "127.0.0.1", str(srv.port), str(k), path]
        _curl(["-o", "/dev/null", srv.url(path)], "idle")  # first-request set-up
    time.sleep(0.2)
    before = srv.rss()
    held = []

    def measure():
        time.sleep(0.3)  # the server has sent the last answers; let it settle
        held.append(srv.rss())
    closed, cpu = _hold(client(n), n, measure)
    return {"bytes_per_conn": (held[0] - before) / n, "open": n - closed,
            "client_cpu_ms": cpu * 1000}


def _hold(argv, n, while_held):
    """Runs a client that prints "ready N", holds its connections until its
    standard input closes, then prints "closed K"; calls while_held() while
    they are held. Returns K and the client's CPU seconds."""
    p = procs.spawn(argv, procs.CPU_CLIENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True)
    ready = p.stdout.readline()
    ok = ready == f"ready {n}\n"
    try:
        if ok:
            while_held()
    finally:
        p.stdin.close()  # lets the client go
        rest = p.stdout.read()
        code, cpu = procs.wait_usage(p)
    if not ok or code != 0:
        raise BenchError(f"{Path(argv[0]).name}: {(ready + rest).strip()[-500:]}")
    return int(rest.split()[-1]), cpu


def ws_echo(run, srv, path, conns, size, seconds, deflate=False):
    """ws_client: conns WebSockets on path, each with one binary message of
    size bytes in flight (sent, echoed whole, sent again) for seconds; with
    deflate, permessage-deflate negotiated and the message compressible text.
    Returns round trips/s, MB/s (payload bytes each way), the server's CPU
    µs per round trip and the data frames per echo (> 1: fragmented)."""
    argv = [run.tool("ws_client", "-lz"), "127.0.0.1", str(srv.port), path, "echo", str(conns),
            str(size), str(seconds)] + (["deflate"] if deflate else [])
    cpu_before = srv.cpu_seconds()
    out, client_cpu, _ = _run(argv)
    server_cpu = srv.cpu_seconds() - cpu_before
    r = _result(out, "ws_client")
    rt = r["round_trips"]
    return {"rtps": rt / r["seconds"], "mbs": rt * size / r["seconds"] / MB,
            "cpu_us": server_cpu * 1e6 / rt, "frames": r["frames"] / rt,
            "client_cpu": client_cpu, "zbytes": r.get("zbytes")}


def lp_echo(client, port, mode, conns, size, seconds, srv):
    """lp_client: conns connections to 127.0.0.1:port over mode (tcp, tls,
    ws, wss), each with one length-prefixed message of size bytes in flight
    for seconds. Returns round trips/s, the server's CPU µs per round trip
    and the client's CPU %."""
    argv = [client, "127.0.0.1", str(port), mode, str(conns), str(size), str(seconds)]
    cpu_before = srv.cpu_seconds()
    out, client_cpu, _ = _run(argv)
    server_cpu = srv.cpu_seconds() - cpu_before
    r = _result(out, "lp_client")
    rt = r["round_trips"]
    if rt == 0:
        raise BenchError(f"lp_client {mode} {size}: no round trip")
    return {"rtps": rt / r["seconds"], "cpu_us": server_cpu * 1e6 / rt,
            "client_cpu": client_cpu}


def handshakes(run, srv, conns, seconds, groups="default", resume=False):
    """tls_client: conns connections at a time, each a TLS handshake (full,
    or with resume=True offering its slot's previous session), GET / with
    Connection: close, the answer read to the server's close, for seconds;
    groups are the ECDHE groups offered (an OpenSSL list, or "default").
    Returns handshakes/s, the server's CPU µs per handshake and the share of
    them that resumed a session."""
    argv = [run.tool("tls_client", "-lssl", "-lcrypto"), "127.0.0.1", str(srv.port),
            str(conns), str(seconds), groups] + (["resume"] if resume else [])
    cpu_before = srv.cpu_seconds()
    out, client_cpu, _ = _run(argv)
    server_cpu = srv.cpu_seconds() - cpu_before
    r = _result(out, "tls_client")
    return {"hps": r["handshakes"] / r["seconds"], "cpu_us": server_cpu * 1e6 / r["handshakes"],
            "resumed": r["resumed"] / r["handshakes"], "client_cpu": client_cpu}


def negotiated(srv, groups=None):
    """What `openssl s_client` (OpenSSL's default offer, or only groups)
    and the server agree on, as "TLSv1.2 CIPHER, ECDHE over GROUP"."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}",
            "-servername", "localhost"] + (["-groups", groups] if groups else [])
    out, _, _ = _run(argv, stdin=subprocess.DEVNULL)
    m = re.search(r"^New, (\S+), Cipher is (\S+)", out, re.M)
    key = re.search(r"^Server Temp Key: (.*)", out, re.M)
    if m is None:
        raise BenchError(f"openssl s_client: no session: {out[-500:]}")
    # "ECDH, prime256v1, 256 bits" or "X25519, 253 bits": the group's name.
    parts = key.group(1).split(", ") if key else ["?"]
    group = parts[1] if parts[0] == "ECDH" and len(parts) > 2 else parts[0]
    return f"{m.group(1)} {m.group(2)}, ECDHE over {group}"
