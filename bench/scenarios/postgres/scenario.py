"""postgres: parameterized SELECTs through each runtime's Postgres client
against one PostgreSQL server: queries per CPU second of the client process
(rill.pg against Node's pg)."""
import glob
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import load
import procs
from report import Metric
from servers import Node, Rill

ORDER = 11
CONNS = 16
TITLE = ("parameterized SELECTs from the client under test to one PostgreSQL "
         f"(Debian's), {CONNS} connections, each with one query in flight: "
         "`SELECT $1::int + 1` and a primary-key lookup in a 1,000-row table")
SERVERS = [
    Rill("app.lua", note="rill.pg: each connection prepares a statement the first time "
         "it sees its SQL and only binds it after"),
    Node("node.js", note="pg (node-postgres) with a pg.Pool of 64; unnamed statements "
         "(Parse, Bind, Execute for every query), its default"),
    Node("node.js", label="node-named", args=["named"],
         note="the same with each query a named prepared statement (`{name, text, values}`)"),
]
ADD, LOOKUP = "SELECT $1::int + 1", "lookup by id"
METRICS = [
    Metric("add_qcpu", "queries / client CPU s", "higher", "{:,.0f}", part=ADD),
    Metric("add_qps", "queries/s", "higher", "{:,.0f}", limited_by="add_pg", part=ADD),
    Metric("add_pg", "postgres CPU", fmt="{:.0f}%", part=ADD),
    Metric("lookup_qcpu", "queries / client CPU s", "higher", "{:,.0f}", part=LOOKUP),
    Metric("lookup_qps", "queries/s", "higher", "{:,.0f}", limited_by="lookup_pg",
           part=LOOKUP),
    Metric("lookup_pg", "postgres CPU", fmt="{:.0f}%", part=LOOKUP),
]
NOTES = [
    "Each peer is a small HTTP server whose one request (`GET /run?q=..&n=N&c=16`) runs "
    "N queries over 16 concurrent connections and answers when all are done; the figure "
    "is N over the CPU time (user + system) the peer's process used meanwhile, so the "
    "HTTP request costs nothing that counts. Postgres runs on CPU 1, the peer on CPU 0; "
    "`postgres CPU` is all of Postgres's processes over the run, in % of one core (`*`: "
    "≥ 95%, Postgres was the limit of queries/s).",
]


class Postgres:
    """Debian's PostgreSQL in a scratch directory, pinned to one CPU."""

    def __init__(self, cpu):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("Debian's postgresql is not installed")
        self.bin = os.path.dirname(bins[-1])
        self.dir = tempfile.mkdtemp(prefix="rill-bench-pg-")
        shutil.chown(self.dir, "postgres")
        self.port = procs.free_port()
        self._pg(["initdb", "-D", f"{self.dir}/data", "-A", "trust", "-U", "postgres"])
        self._pg(["pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                  "-c max_connections=200 -c shared_buffers=64MB -c fsync=off", "start"],
                 cpu=cpu)
        self._pg(["psql", "-h", self.dir, "-p", str(self.port), "-U", "postgres", "-qc",
                  "CREATE TABLE items (id int PRIMARY KEY, name text); "
                  "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g"])

    def _pg(self, argv, cpu=None):
        pre = ["taskset", "-c", str(cpu)] if cpu is not None else []
        subprocess.run([*pre, "runuser", "-u", "postgres", "--", f"{self.bin}/{argv[0]}",
                        *argv[1:]], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)

    def cpu_seconds(self):
        with open(f"{self.dir}/data/postmaster.pid") as f:
            pid = int(f.readline())
        pids = [pid, *procs.children(pid)]
        total = 0.0
        for p in pids:
            try:
                total += procs.cpu_seconds(p)
            except (FileNotFoundError, ProcessLookupError):
                pass
        return total

    def stop(self):
        try:
            self._pg(["pg_ctl", "-D", f"{self.dir}/data", "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


_pg = None


def setup(run):
    global _pg
    _pg = Postgres(procs.CPU_CLIENT)
    # the peers read it from their environment
    os.environ["PG_PORT"] = str(_pg.port)
    return [_pg]


def _get(srv, path):
    with urllib.request.urlopen(srv.url(path), timeout=600) as r:
        return r.read().decode()


def queries(run, srv, q, n):
    before, pg_before, start = srv.cpu_seconds(), _pg.cpu_seconds(), time.monotonic()
    body = _get(srv, f"/run?q={q}&n={n}&c={CONNS}")
    wall = time.monotonic() - start
    cpu, pg_cpu = srv.cpu_seconds() - before, _pg.cpu_seconds() - pg_before
    if body != f"ok {n}":
        raise load.BenchError(f"{srv.label}: {body[:300]}")
    return n / max(cpu, 0.01), n / wall, 100 * pg_cpu / wall


def measure(run, srv):
    n = 30000 if run.quick else 100000
    out = {}
    for q in ("add", "lookup"):
        _get(srv, f"/run?q={q}&n=10000&c={CONNS}")  # warm-up: connections, JITs, plans
        qcpu, qps, pg_cpu = queries(run, srv, q, n)
        out[f"{q}_qcpu"], out[f"{q}_qps"], out[f"{q}_pg"] = qcpu, qps, pg_cpu
    return out
