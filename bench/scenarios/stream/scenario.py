"""stream: one response made of a million small writes (numbered lines, as a
server-sent-events feed or a CSV export writes them): throughput, the
server's CPU per MB, its peak memory."""
import load
from report import Metric
from servers import ROOT, Nginx, Node, Rill

ORDER = 4.5
LINES = 1000000
TITLE = (f"GET /stream?n={LINES:,}: one write per line (\"line N\\n\"), chunked, "
         "curl -o /dev/null")
SERVERS = [
    Rill(ROOT / "examples/echo.lua"),
    Nginx("nginx-lua.conf", label="nginx-lua", lua=True,
          note="one ngx.print per line"),
    Node("node.js", note="one res.write per line, waiting for 'drain' when it says so"),
]
METRICS = [
    Metric("mbs", "MB/s", "higher", limited_by="curl_cpu"),
    Metric("curl_cpu", "curl CPU", fmt="{:.0f}%"),
    Metric("cpu_ms", "server CPU ms/MB", "lower", "{:.2f}"),
    Metric("rss", "peak RSS MB", "lower", "{:.1f}"),
]


def body_bytes(n):
    """The bytes of "line 1\\n" ... "line n\\n"."""
    total, digits, low = 0, 1, 1
    while low <= n:
        high = min(n, low * 10 - 1)
        total += (high - low + 1) * (6 + digits)
        digits, low = digits + 1, low * 10
    return total


def stream(run, srv, lines=LINES):
    n = body_bytes(lines)
    before = srv.cpu_seconds()
    r = load.download(run, srv, f"/stream?n={lines}", n)
    cpu = srv.cpu_seconds() - before
    return {"mbs": r["mbs"], "curl_cpu": r["client_cpu"],
            "cpu_ms": cpu * 1000 / (n / load.MB), "rss": r["peak_rss_mb"]}


def measure(run, srv):
    load.warm_up(run, srv, "/stream?n=10")
    return stream(run, srv)
