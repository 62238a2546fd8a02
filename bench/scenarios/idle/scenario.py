"""idle: many keep-alive connections held open after one request each: the
server's resident memory per connection."""
import load
from report import Metric
from servers import ROOT, Nginx, Node, Rill

ORDER = 5
TITLE = ("{idle_conns} keep-alive connections, one GET / on each, then held idle: "
         "server RSS growth per connection")
SERVERS = [
    Rill(ROOT / "examples/hello.lua"),
    Nginx("../hello/nginx.conf"),
    Node("node.js"),
]
METRICS = [
    Metric("bytes", "RSS bytes/conn", "lower"),
    Metric("open", "still open", fmt="{:,.0f}"),
    Metric("client_ms", "client CPU ms", fmt="{:,.0f}"),
]


def measure(run, srv):
    r = load.idle(run, srv, "/", run.idle_conns)
    return {"bytes": r["bytes_per_conn"], "open": r["open"], "client_ms": r["client_cpu_ms"]}
