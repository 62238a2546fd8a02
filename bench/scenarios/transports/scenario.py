"""transports: one length-prefixed echo handler (a 4-byte big-endian length,
then the payload, sent back as it came) over TCP, TLS, WebSocket and
WebSocket over TLS, rill against Boost.Beast doing the same over the same
four: round trips per second and the server's CPU per round trip."""
import load
import procs
from report import Metric
from servers import Native, Rill

ORDER = 7.5
TITLE = ("length-prefixed echo over TCP, TLS, WS and WSS, 50 connections with one message in "
         "flight each (bench/lib/lp_client.c), {short} s per size")
SERVERS = [
    Rill("app.lua", env={"LP_WSS": "@LP_WSS@", "LP_TCP": "@LP_TCP@", "LP_TLS": "@LP_TLS@",
                         "LP_CERT": "@CERT@", "LP_KEY": "@KEY@"},
         note="app.lua: one handler reads the length, then the payload, and writes both "
              "back; over WebSocket it reads ws:as_stream()"),
    Native("beast_lp.cpp", label="beast",
           compile=["g++", "-O2", "-std=c++17", "-o", "@OUT@", "@SRC@", "-lssl", "-lcrypto",
                    "-pthread"],
           args=["@CERT@", "@KEY@", "@LP_WSS@", "@LP_TCP@", "@LP_TLS@"],
           note="beast_lp.cpp, single-threaded, asynchronous: raw streams read the length "
                "and the payload and write both back; WebSockets echo each message as one "
                "frame; TLS is OpenSSL's"),
]
CONNS = 50
TRANSPORTS = [("tcp", "LP_TCP", "TCP"), ("tls", "LP_TLS", "TLS"), ("ws", None, "WS"),
              ("wss", "LP_WSS", "WSS")]
SIZES = [(64, "64 B"), (4096, "4 KiB"), (65536, "64 KiB"), (262144, "256 KiB")]
METRICS = []
for mode, _, name in TRANSPORTS:
    part = name
    for size, sname in SIZES:
        METRICS += [
            Metric(f"{mode}_rt{size}", f"{sname}: round trips/s", "higher",
                   limited_by=f"{mode}_client{size}", part=part),
            Metric(f"{mode}_client{size}", "client CPU", fmt="{:.0f}%", part=part),
            Metric(f"{mode}_us{size}", "server CPU µs/round trip", "lower", "{:.2f}",
                   part=part),
        ]
NOTES = [
    "Ports: WS on the server's port, WSS, TCP and TLS on three more picked free for the "
    "scenario. TLS 1.2 with the "
    "scenario's self-signed ECDSA P-256 certificate; rill's TLS is mbedTLS 2.28, Beast's "
    "OpenSSL. The client is one thread per connection (blocking I/O, OpenSSL), pinned to "
    "the load generator's CPU.",
]


def setup(run):
    run.vars.update(run.certificate())
    for key in ("LP_WSS", "LP_TCP", "LP_TLS"):
        run.vars[key] = procs.free_port()


def measure(run, srv):
    figures = {}
    client = run.tool("lp_client", "-lssl", "-lcrypto", "-pthread")
    for mode, key, _ in TRANSPORTS:
        port = run.vars[key] if key else srv.port
        load.lp_echo(client, port, mode, CONNS, 64, 1, srv)  # warm: JIT, buffers
        for size, _ in SIZES:
            r = load.lp_echo(client, port, mode, CONNS, size, run.short, srv)
            figures.update({f"{mode}_rt{size}": r["rtps"], f"{mode}_client{size}": r["client_cpu"],
                            f"{mode}_us{size}": r["cpu_us"]})
    return figures
