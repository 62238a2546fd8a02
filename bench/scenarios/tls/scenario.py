"""tls: HTTPS hello on keep-alive connections, and new TLS connections per
second (full handshakes, and resumed sessions), rill (mbedTLS) against
nginx (OpenSSL) with the same certificate and cipher suite."""
import load
from report import Metric
from servers import ROOT, Nginx, Rill

ORDER = 6
TITLE = ('HTTPS GET / → "Hello, world!", TLS 1.2, self-signed ECDSA P-256 certificate: '
         'wrk -t1 -c50 keep-alive ({duration} s); new connections, 50 at a time, '
         'each a handshake and one request with Connection: close ({short} s per kind)')
SERVERS = [
    Rill(ROOT / "examples/hello.lua", args=["--tls-cert", "@CERT@", "--tls-key", "@KEY@"],
         tls=True),
    Nginx("nginx.conf", tls=True,
          note="`ssl_protocols TLSv1.2; ssl_ciphers ECDHE-ECDSA-CHACHA20-POLY1305;` "
               "(what rill offers and picks), `ssl_ecdh_curve` left at its default (auto)"),
]
KEEPALIVE = "keep-alive (wrk)"
FULL = "full handshakes, default groups"
P256 = "full handshakes, P-256 only"
RESUMED = "resumed handshakes"
METRICS = [
    Metric("rps", "req/s", "higher", limited_by="wrk_cpu", part=KEEPALIVE),
    Metric("wrk_cpu", "wrk CPU", fmt="{:.0f}%", part=KEEPALIVE),
    Metric("p99_ms", "p99 ms", "lower", "{:.2f}", part=KEEPALIVE),
    Metric("cpu_us", "server CPU µs/req", "lower", "{:.2f}", part=KEEPALIVE),
]
for key, part in (("full", FULL), ("p256", P256), ("resumed", RESUMED)):
    METRICS += [
        Metric(f"{key}_hps", "handshakes/s", "higher", limited_by=f"{key}_client", part=part),
        Metric(f"{key}_client", "client CPU", fmt="{:.0f}%", part=part),
        Metric(f"{key}_us", "server CPU µs/handshake", "lower", "{:.1f}", part=part),
    ]
NOTES = [
    "Handshakes: new connections from bench/lib/tls_client.c (OpenSSL), 50 at a time; each "
    "connects, does a TLS 1.2 handshake, sends GET / with `Connection: close`, reads the "
    "answer until the server closes, and is replaced. *Full handshakes* offer no session, "
    "with OpenSSL's default ECDHE groups (X25519 first, as curl and browsers) or only "
    "P-256; *resumed handshakes* offer the session ticket of the slot's previous "
    "connection. wrk with `-H 'Connection: close'` resumes every session after its first "
    "(SSL_clear keeps it), so it cannot measure full handshakes.",
    "The client checks the handshake's signature but not the (self-signed) certificate "
    "chain; even so a full handshake costs it more CPU than it costs nginx, so nginx's "
    "full handshakes/s is the client's limit: compare the server CPU µs per handshake.",
]


def setup(run):
    run.vars.update(run.certificate())


def measure(run, srv):
    # What each side agrees on with s_client, printed under the table.
    run.note(f"{srv.label} negotiates {load.negotiated(srv)} with OpenSSL's default "
             f"offer, {load.negotiated(srv, 'P-256').split(', ')[1]} with only P-256 offered")
    load.warm_up(run, srv, "/")
    ka = load.wrk(run, srv, "/")
    figures = {"rps": ka["rps"], "wrk_cpu": ka["client_cpu"], "p99_ms": ka["p99_ms"],
               "cpu_us": ka["cpu_us"]}
    for key, groups, resume in (("full", "default", False), ("p256", "P-256", False),
                                ("resumed", "default", True)):
        r = load.handshakes(run, srv, 50, run.short, groups=groups, resume=resume)
        if resume and r["resumed"] < 0.9:
            raise load.BenchError(f"only {r['resumed']:.0%} of the sessions resumed")
        figures.update({f"{key}_hps": r["hps"], f"{key}_client": r["client_cpu"],
                        f"{key}_us": r["cpu_us"]})
    return figures
