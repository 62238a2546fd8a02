"""h2: hello over HTTP/2 on TLS (ALPN "h2"), many streams per connection,
with h2load: the server's CPU time per request, rill against nginx
(`listen ... ssl http2`) and Node's http2 module, with the same certificate
and cipher suite as the tls scenario."""
import load
from report import Metric
from servers import ROOT, Nginx, Node, Rill

ORDER = 6.5
TITLE = ('HTTP/2 over TLS 1.2 (ALPN h2), GET / → "Hello, world!": h2load with 1 connection '
         '× 100 concurrent streams, then 50 connections × 10 streams ({duration} s each)')
SERVERS = [
    Rill(ROOT / "examples/hello.lua",
         args=["--http2", "--tls-cert", "@CERT@", "--tls-key", "@KEY@"], tls=True),
    Nginx("nginx.conf", tls=True,
          note="`listen ... ssl http2`, `ssl_protocols TLSv1.2; ssl_ciphers "
               "ECDHE-ECDSA-CHACHA20-POLY1305;`, `return 200`"),
    Node("node.js", args=["@CERT@", "@KEY@"], tls=True,
         note="node:http2 createSecureServer, TLS 1.2 with the same suite"),
]
SHAPES = [("one", 1, 100, "1 connection × 100 streams"),
          ("many", 50, 10, "50 connections × 10 streams")]
METRICS = []
for key, _, _, part in SHAPES:
    METRICS += [
        Metric(f"{key}_rps", "req/s", "higher", limited_by=f"{key}_client", part=part),
        Metric(f"{key}_client", "h2load CPU", fmt="{:.0f}%", part=part),
        Metric(f"{key}_ms", "mean ms", "lower", "{:.2f}", part=part),
        Metric(f"{key}_us", "server CPU µs/req", "lower", "{:.2f}", part=part),
    ]
NOTES = [
    "h2load (Debian's nghttp2-client) with `-c C -m M -D {duration}` after a 1 s run to "
    "warm up; it opens its connections (one TLS handshake each) inside the measured run. "
    "Server CPU µs/req: the server's user + system CPU time over the run divided by the "
    "requests h2load completed.",
]


def setup(run):
    run.vars.update(run.certificate())


def measure(run, srv):
    figures = {}
    for key, conns, streams, _ in SHAPES:
        load.h2load(run, srv, conns, streams, duration=1)
        r = load.h2load(run, srv, conns, streams)
        figures.update({f"{key}_rps": r["rps"], f"{key}_client": r["client_cpu"],
                        f"{key}_ms": r["mean_ms"], f"{key}_us": r["cpu_us"]})
    return figures
