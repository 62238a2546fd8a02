"""client: rill's HTTP client against Node's fetch (undici) and Python's
httpx, each making keep-alive GETs to one nginx on the load generator's CPU:
the client's own CPU time per request. The servers the harness starts are
nginx upstreams (one per row, on the load generator's CPU); the row's client
runs alone on the server CPU, the one measured."""
from pathlib import Path

import load
import procs
from report import Metric
from servers import Nginx

ORDER = 12
TITLE = ("HTTP client: 20,000 keep-alive GETs (5,000 with --quick), 50 in flight, to "
         "nginx `return 200` on the other CPU")

HERE = Path(__file__).resolve().parent


class NginxFor(Nginx):
    """nginx on CPU_CLIENT for the row's client (label)."""

    def __init__(self, label, note):
        super().__init__(HERE / "nginx.conf", label=label, note=note, cpus=procs.CPU_CLIENT)


SERVERS = [
    NginxFor("rill", "client.lua: rill.http.request in 50 threads, the body read with "
                     "read_all"),
    NginxFor("node", "client.js: Node's built-in fetch (undici) in 50 async workers, "
                     "the body read with res.text()"),
    NginxFor("httpx", "client.py: httpx.AsyncClient (Debian's python3-httpx) with 50 "
                      "connections, 50 asyncio tasks"),
]
METRICS = [
    Metric("cpu_us", "client CPU µs/req", "lower", "{:.1f}"),
    Metric("rps", "req/s", "higher", "{:,.0f}", limited_by="nginx_cpu"),
    Metric("nginx_cpu", "nginx CPU", fmt="{:.0f}%"),
]
NOTES = [
    "client CPU µs/req: the client process's own user + system CPU time (os.clock, "
    "process.cpuUsage, time.process_time) over the requests, after 2,000 requests of "
    "warm-up; each client runs alone on the server CPU",
]


def measure(run, srv):
    n = 5000 if run.quick else 20000
    if srv.label == "rill":
        argv = [run.rill_bin, "run", str(HERE / "client.lua"), str(srv.port), str(n)]
    elif srv.label == "node":
        argv = ["node", str(HERE / "client.js"), str(srv.port), str(n)]
    else:
        argv = ["/usr/bin/python3", str(HERE / "client.py"), str(srv.port), str(n)]
    before = srv.cpu_seconds()
    out, _, wall = load._run(argv, cpu=procs.CPU_SERVER)
    nginx_cpu = srv.cpu_seconds() - before
    r = load._result(out, srv.label)
    return {"cpu_us": 1e6 * r["cpu"] / r["ops"], "rps": r["ops"] / r["wall"],
            "nginx_cpu": 100 * nginx_cpu / wall}
