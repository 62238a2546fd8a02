"""download: a large response generated in 64 KiB writes under a
Content-Length: throughput and the server's peak memory."""
import load
from report import Metric
from servers import Nginx, Node, Rill

ORDER = 4
TITLE = "GET /download: {download} in 64 KiB writes with a Content-Length (curl -o /dev/null)"
SERVERS = [
    Rill("app.lua"),
    Nginx("nginx-lua.conf", label="nginx-lua", lua=True),
    Node("node.js"),
]
METRICS = [
    Metric("mbs", "MB/s", "higher", limited_by="curl_cpu"),
    Metric("curl_cpu", "curl CPU", fmt="{:.0f}%"),
    Metric("rss", "peak RSS MB", "lower", "{:.1f}"),
]
BLOCK = 65536


def measure(run, srv):
    blocks = run.download_bytes // BLOCK
    r = load.download(run, srv, f"/download?blocks={blocks}", blocks * BLOCK)
    return {"mbs": r["mbs"], "curl_cpu": r["client_cpu"], "rss": r["peak_rss_mb"]}
