"""websocket: echo round trips per second for four message sizes over 50
connections, the same with permessage-deflate for three, and resident memory
per idle WebSocket, rill against Node's ws and a Boost.Beast server."""
import load
from report import Metric
from servers import ROOT, Bun, Native, Node, Rill

ORDER = 7
TITLE = ("WebSocket echo on / over 50 connections, one binary message in flight on each "
         "(bench/lib/ws_client.c), {short} s per size; {idle_conns} idle WebSockets")
SERVERS = [
    Rill(ROOT / "examples/ws_echo.lua",
         note="examples/ws_echo.lua streams each message back as it arrives; a message "
              "that came in one frame goes back in one (its length is sent first); on "
              "/deflate a compressed message is inflated as read and deflated as written"),
    Node("node.js", note="the ws package with bufferutil (native masking); a message is "
                         "handed over whole and echoed as one frame; on /deflate with "
                         "perMessageDeflate (zlib on libuv's thread pool)"),
    Bun("bun.js", note="Bun.serve's WebSocket (uWebSockets); a message is handed over whole "
                       "and echoed as one frame"),
    Native("beast_echo.cpp", label="beast",
           compile=["g++", "-O2", "-std=c++17", "-o", "@OUT@", "@SRC@", "-pthread"],
           note="beast_echo.cpp, single-threaded, asynchronous: reads a whole message into "
                "a flat_buffer and writes it back as one frame (auto_fragment off)"),
]
CONNS = 50
SIZES = [(64, "64 B"), (4096, "4 KiB"), (65536, "64 KiB"), (262144, "256 KiB")]
# permessage-deflate: rill and Node only (Bun and Beast are not configured for it)
DEFLATE_SIZES = [(64, "64 B"), (4096, "4 KiB"), (65536, "64 KiB")]
DEFLATE_SERVERS = ("rill", "node")
IDLE = "idle WebSockets"
METRICS = []
for size, name in SIZES:
    part = f"{name} messages"
    METRICS += [
        Metric(f"rt{size}", "round trips/s", "higher", limited_by=f"client{size}", part=part),
        Metric(f"mbs{size}", "MB/s", fmt="{:,.1f}", part=part),
        Metric(f"client{size}", "client CPU", fmt="{:.0f}%", part=part),
        Metric(f"us{size}", "server CPU µs/round trip", "lower", "{:.2f}", part=part),
        Metric(f"frames{size}", "frames/echo", fmt="{:.1f}", part=part),
    ]
for size, name in DEFLATE_SIZES:
    part = f"{name} messages, permessage-deflate"
    METRICS += [
        Metric(f"zrt{size}", "round trips/s", limited_by=f"zclient{size}", part=part),
        Metric(f"zclient{size}", "client CPU", fmt="{:.0f}%", part=part),
        Metric(f"zus{size}", "server CPU µs/round trip", fmt="{:.2f}", part=part),
        Metric(f"zrtcpu{size}", "round trips/server CPU s", "higher", "{:,.0f}", part=part),
        Metric(f"zratio{size}", "wire bytes/payload", fmt="{:.2f}", part=part),
    ]
METRICS += [
    Metric("idle_bytes", "RSS bytes/conn", "lower", part=IDLE),
    Metric("idle_open", "still open", fmt="{:,.0f}", part=IDLE),
    Metric("idle_client_ms", "client CPU ms", fmt="{:,.0f}", part=IDLE),
]
NOTES = [
    "MB/s: payload bytes each way (round trips/s × size); its ratio is that of round "
    "trips/s. The client sends each message as one masked frame and reads the echo in "
    "however many frames it comes; frames/echo is their average number.",
    "permessage-deflate (on /deflate): the client offers it with "
    "client_no_context_takeover and sends JSON-like text records, deflated once "
    "(zlib's default level); both servers keep their own context and compress every "
    "echo at zlib level 1, memLevel 8, window 15 (Node's threshold set to 0). The "
    "figure is round trips per second of server CPU; wire bytes/payload is the "
    "client's compressed message over its size.",
    "Idle WebSockets: the server's VmRSS while they are held minus before they were "
    "opened, over their number. They are measured first, on the freshly started server; "
    "then 1 s of 64 B and 1 s of 64 KiB echoes warm it up before the echo figures.",
]


def measure(run, srv):
    idle = load.idle(run, srv, "/", run.idle_conns, websocket=True)
    figures = {"idle_bytes": idle["bytes_per_conn"], "idle_open": idle["open"],
               "idle_client_ms": idle["client_cpu_ms"]}
    for size in (64, 65536):  # JIT compilers (LuaJIT, V8) and buffers warm
        load.ws_echo(run, srv, "/", CONNS, size, 1)
    for size, _ in SIZES:
        r = load.ws_echo(run, srv, "/", CONNS, size, run.short)
        figures.update({f"rt{size}": r["rtps"], f"mbs{size}": r["mbs"],
                        f"client{size}": r["client_cpu"], f"us{size}": r["cpu_us"],
                        f"frames{size}": r["frames"]})
    if srv.label in DEFLATE_SERVERS:
        load.ws_echo(run, srv, "/deflate", CONNS, 4096, 1, deflate=True)  # warm
        for size, _ in DEFLATE_SIZES:
            r = load.ws_echo(run, srv, "/deflate", CONNS, size, run.short, deflate=True)
            figures.update({f"zrt{size}": r["rtps"], f"zclient{size}": r["client_cpu"],
                            f"zus{size}": r["cpu_us"], f"zrtcpu{size}": 1e6 / r["cpu_us"],
                            f"zratio{size}": r["zbytes"] / size})
    return figures
