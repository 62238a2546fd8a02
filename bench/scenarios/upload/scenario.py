"""upload: a large PUT streamed to a handler that counts its bytes, chunked
and with a Content-Length: throughput and the server's peak memory."""
import load
from report import Metric
from servers import ROOT, Nginx, Node, Rill

ORDER = 3
TITLE = "{upload} PUT /count (curl -T) to a handler that counts the bytes"
SERVERS = [
    Rill(ROOT / "examples/echo.lua"),
    Nginx("nginx-lua.conf", label="nginx-lua", lua=True,
          note="ngx.req.socket() refuses chunked bodies in lua-nginx-module 0.10.23 "
               "(\"chunked request bodies not supported yet\"), so the chunked upload is read "
               "with ngx.req.read_body(), which spools the body to a temporary file; "
               "Content-Length bodies are streamed through ngx.req.socket()"),
    Node("node.js"),
]
METRICS = [
    Metric("chunked_mbs", "chunked MB/s", "higher", limited_by="chunked_cpu"),
    Metric("chunked_cpu", "curl CPU", fmt="{:.0f}%"),
    Metric("chunked_rss", "chunked peak RSS MB", "lower", "{:.1f}"),
    Metric("length_mbs", "Content-Length MB/s", "higher", limited_by="length_cpu"),
    Metric("length_cpu", "curl CPU", fmt="{:.0f}%"),
    Metric("length_rss", "Content-Length peak RSS MB", "lower", "{:.1f}"),
]


def measure(run, srv):
    chunked = load.upload(run, srv, "/count", chunked=True)
    length = load.upload(run, srv, "/count", chunked=False)
    return {"chunked_mbs": chunked["mbs"], "chunked_cpu": chunked["client_cpu"],
            "chunked_rss": chunked["peak_rss_mb"], "length_mbs": length["mbs"],
            "length_cpu": length["client_cpu"], "length_rss": length["peak_rss_mb"]}
