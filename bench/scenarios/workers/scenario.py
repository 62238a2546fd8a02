"""workers: GET / -> "Hello, world!" with 1 and 2 workers (rill), worker
processes (nginx) or cluster processes (Node). This machine has two cores,
so nothing is pinned here: the servers and wrk (two threads) share both,
and what one takes the other cannot use. Labels: -Nw workers, -Np
processes. rill with 2 workers is the first row; every ratio is against it."""
import load
import procs
from report import Metric
from servers import ROOT, Nginx, Node, Rill

ORDER = 10
TITLE = ('GET / → "Hello, world!" with 1 and 2 workers or processes, wrk -t2 -c50, '
         'servers and wrk sharing both cores, {duration} s per figure')
BOTH = f"{procs.CPU_SERVER},{procs.CPU_CLIENT}"
HELLO = ROOT / "examples/hello.lua"
SERVERS = [
    Rill(HELLO, label="rill-2w", args=["--workers", "2"], cpus=BOTH),
    Rill(HELLO, label="rill-1w", cpus=BOTH),
    Nginx("../hello/nginx.conf", label="nginx-2p", processes=2, cpus=BOTH),
    Nginx("../hello/nginx.conf", label="nginx-1p", cpus=BOTH),
    Node("node.js", label="node-2p", args=[2], cpus=BOTH),
    Node("node.js", label="node-1p", args=[1], cpus=BOTH),
]
NOTES = [
    "nothing is pinned: on two cores the load generator competes with the server, so "
    "2 workers cannot double 1; server CPU µs/req shows what each request cost",
    "node-2p is the cluster module: a primary process hands connections to two workers",
]
METRICS = [
    Metric("rps", "req/s", "higher"),
    Metric("wrk_cpu", "wrk CPU", fmt="{:.0f}%"),
    Metric("p99_ms", "p99 ms", "lower", "{:.2f}"),
    Metric("cpu_us", "server CPU µs/req", "lower", "{:.2f}"),
]


def measure(run, srv):
    load.warm_up(run, srv, "/")
    r = load.wrk(run, srv, "/", threads=2, cpu=BOTH)
    return {"rps": r["rps"], "wrk_cpu": r["client_cpu"], "p99_ms": r["p99_ms"],
            "cpu_us": r["cpu_us"]}
