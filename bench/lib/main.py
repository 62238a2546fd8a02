"""The harness behind bench/run: runs scenarios against rill and its peers,
prints the environment and a table per scenario, and writes them to
RESULTS/latest.md, RESULTS/latest.json and RESULTS/ratios.png.

    main.py [--quick] [--results DIR] [SCENARIO...]

A scenario is bench/scenarios/NAME/scenario.py (see bench/README.md). Each
round starts every server afresh, in an order that rotates between rounds,
and calls the scenario's measure(run, server); tables show the medians.
"""
import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import load
import procs
import report
import summary
from servers import LIB, ROOT

SCENARIOS = ROOT / "bench" / "scenarios"
MiB = 1024 * 1024


class Run:
    """This run's settings (full or quick), its scratch directory and the
    tools built for it. Scenarios read their sizes and durations here."""

    def __init__(self, quick, rundir):
        self.quick = quick
        self.rundir = rundir
        self.rounds = 1 if quick else 3
        self.duration = 2 if quick else 6  # seconds of each wrk measurement
        self.warmup = 1  # seconds of wrk before measuring
        # Seconds of each figure of scenarios with many (one per message
        # size, one per kind of TLS handshake).
        self.short = 1 if quick else 3
        self.upload_bytes = (256 if quick else 1024) * MiB
        self.download_bytes = self.upload_bytes
        self.idle_conns = 2000 if quick else 10000
        self.rill_bin = os.environ["RILL_BIN"]
        # Servers and the idle client need a descriptor per connection.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.nofile = hard
        if self.idle_conns + 100 > hard:
            self.idle_conns = hard - 100
            print(f"bench: open files limited to {hard}: {self.idle_conns} idle connections",
                  file=sys.stderr)
        self._tools = {}
        self._upload_file = None
        self._certificate = None
        # @NAME@ fields of servers' arguments and configurations (servers.py);
        # a scenario's setup() adds its own.
        self.vars = {}
        # Notes under the current scenario's table, added by its measure().
        self.notes = []

    def fields(self):
        """What scenario titles may mention: {duration}, {upload}, ..."""
        return {"duration": self.duration, "short": self.short,
                "upload": size(self.upload_bytes),
                "download": size(self.download_bytes), "idle_conns": f"{self.idle_conns:,}"}

    def fill(self, text, **more):
        """text with each @NAME@ of self.vars and more replaced by its value."""
        values = {**self.vars, **more}

        def value(m):
            if m.group(1) not in values:
                raise RuntimeError(f"no value for @{m.group(1)}@ in {text[:80]!r}")
            return str(values[m.group(1)])
        return re.sub(r"@([A-Z][A-Z0-9_]*)@", value, text)

    def note(self, text):
        """Adds a note under the current scenario's table (once)."""
        if text not in self.notes:
            self.notes.append(text)

    def tool(self, name, *libs):
        """bench/lib/NAME.c compiled into the run directory on first use
        (linked with libs, e.g. "-lssl"); returns the program's path."""
        if name not in self._tools:
            exe = self.rundir / name
            subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(LIB / f"{name}.c"),
                            *libs], check=True)
            self._tools[name] = str(exe)
        return self._tools[name]

    @property
    def idle_client(self):
        """The idle connection client, compiled on first use."""
        return self.tool("idle_client")

    def certificate(self):
        """A self-signed ECDSA P-256 certificate for CN=localhost and its key,
        made with openssl on first use: {"CERT": path, "KEY": path}."""
        if self._certificate is None:
            cert, key = self.rundir / "cert.pem", self.rundir / "key.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                            "-keyout", str(key), "-out", str(cert)],
                           check=True, capture_output=True)
            self._certificate = {"CERT": cert, "KEY": key}
        return self._certificate

    def upload_file(self, n):
        """A sparse file of n zero bytes (deleted with the run directory),
        read once so that its pages are cached before the first upload."""
        if self._upload_file is None:
            self._upload_file = self.rundir / "upload.bin"
            with open(self._upload_file, "wb") as f:
                f.truncate(n)
            with open(self._upload_file, "rb") as f:
                while f.read(MiB):
                    pass
        return self._upload_file


def size(n):
    return f"{n // (1024 * MiB)} GiB" if n % (1024 * MiB) == 0 else f"{n // MiB} MiB"


def environment(run):
    """Machine and versions, as (name, description) pairs."""
    def first_line(*argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "n/a"

    def deb(package):
        return first_line("dpkg-query", "-W", "-f=${Version}", package)

    def npm(package):
        try:
            path = ROOT / "bench" / "node_modules" / package / "package.json"
            return json.loads(path.read_text())["version"]
        except (OSError, ValueError, KeyError):
            return "not installed"

    with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    commit = first_line("git", "-C", str(Path(run.rill_bin).parent), "describe", "--always",
                        "--dirty")
    with open("/etc/debian_version") as f:
        debian = f.read().strip()
    return [
        ("CPU", f"{model}, {os.cpu_count()} cores (servers on CPU {procs.CPU_SERVER}, "
                f"load generators on CPU {procs.CPU_CLIENT})"),
        ("OS", f"Debian {debian}, Linux {platform.release()}"),
        ("rill", f"{first_line(run.rill_bin, 'version')}, {commit}, {run.rill_bin}"),
        ("nginx", f"{first_line('nginx', '-v').split(': ')[-1]}, "
                  f"lua module {deb('libnginx-mod-http-lua')}"),
        ("Node", first_line("node", "--version")),
        ("Bun", f"{npm('bun')} (npm)"),
        ("LuaJIT", f"libluajit2 {deb('libluajit2-5.1-2')} (rill and nginx-lua)"),
        ("wrk", first_line("wrk", "-v").split(" [")[0]),
        ("curl", " ".join(first_line("curl", "--version").split()[:2])),
        ("TLS", f"rill: mbedTLS {deb('libmbedtls-dev')}; nginx, wrk and the clients: "
                f"{first_line('openssl', 'version').split(' (')[0]}"),
        ("WebSocket peers", f"Node ws {npm('ws')} with bufferutil {npm('bufferutil')}; "
                            f"Boost.Beast from libboost-dev {deb('libboost-dev')}, "
                            f"g++ {first_line('g++', '-dumpfullversion')} -O2"),
    ]


def load_scenario(name):
    path = SCENARIOS / name / "scenario.py"
    if not path.exists():
        raise SystemExit(f"bench: no scenario {name} ({path})")
    spec = importlib.util.spec_from_file_location(f"scenario_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.NAME = name
    for server in module.SERVERS:
        server.resolve(path.parent)
    return module


def progress(text):
    print(text, file=sys.stderr, flush=True)


def run_scenario(sc, run):
    """All rounds of one scenario; returns its report.Table. The scenario's
    setup(run), if it has one, runs first and may return processes (e.g. a
    shared upstream) that are stopped after the last round."""
    table = report.Table(sc.NAME, sc.TITLE.format(**run.fields()), sc.METRICS, sc.SERVERS)
    # run.note() adds to the table's notes: one list.
    run.notes = table.notes = list(getattr(sc, "NOTES", []))
    saved_vars = dict(run.vars)
    helpers = []
    try:
        if hasattr(sc, "setup"):
            helpers = sc.setup(run) or []
        rounds(sc, run, table)
    except (load.BenchError, RuntimeError, OSError, subprocess.CalledProcessError) as e:
        why = " ".join(str(e).split())[:400]
        table.failures.append(f"setting up: {why}")
        progress(f"[{sc.NAME}] FAILED: {why}")
    finally:
        for h in helpers:
            h.stop()
        run.vars = saved_vars
    return table


def rounds(sc, run, table):
    for r in range(run.rounds):
        k = r % len(sc.SERVERS)
        for server in sc.SERVERS[k:] + sc.SERVERS[:k]:
            where = f"[{sc.NAME} {r + 1}/{run.rounds}] {server.label}"
            srv = None
            try:
                srv = server.start(run)
                figures = sc.measure(run, srv)
            except (load.BenchError, RuntimeError, OSError, subprocess.CalledProcessError) as e:
                why = " ".join(str(e).split())[:400]
                table.failures.append(f"{server.label}, round {r + 1}: {why}")
                progress(f"{where}: FAILED: {why}")
                continue
            finally:
                if srv:
                    srv.stop()
            table.add(server.label, figures)
            progress(f"{where}: " + ", ".join(f"{m.label} {m.fmt.format(figures[m.key])}"
                                              for m in sc.METRICS if m.key in figures))


def main():
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 1 round, 2 s (1 s), 256 MiB, 2,000 idle connections")
    default_results = ROOT / "bench" / "results"
    ap.add_argument("--results", type=Path, default=default_results,
                    help="where latest.md, latest.json and ratios.png go")
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                    help="default: all, " + ", ".join(p.parent.name for p in
                                                      sorted(SCENARIOS.glob("*/scenario.py"))))
    args = ap.parse_args()
    names = args.scenarios or [p.parent.name for p in SCENARIOS.glob("*/scenario.py")]
    scenarios = sorted((load_scenario(n) for n in names), key=lambda m: m.ORDER)

    # Ctrl-C ends the run even if SIGINT came ignored (a background job), and
    # SIGTERM and SIGHUP end it the same way: through the finally below.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: sys.exit(128 + signum))
    rundir = Path(tempfile.mkdtemp(prefix="rill-bench-"))
    try:
        run = Run(args.quick, rundir)
        started = time.monotonic()
        env = environment(run)
        head = [f"## rill benchmarks{' (quick)' if run.quick else ''}", "",
                f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", ""]
        head += [f"- {k}: {v}" for k, v in env]
        text = "\n".join(head) + "\n"
        print(text, flush=True)
        tables = []
        for sc in scenarios:
            t0 = time.monotonic()
            tables.append(run_scenario(sc, run))
            progress(f"[{sc.NAME}] {time.monotonic() - t0:.0f} s")
            md = tables[-1].markdown(run.rounds)
            print(md, flush=True)
            text += "\n" + md
        write_results(args.results, text, tables, env, run, rundir)
        if not run.quick and args.results == default_results:
            # A full run into bench/results: the README's summary follows it.
            summary.update(args.results / "latest.json")
        progress(f"bench: done in {time.monotonic() - started:.0f} s; "
                 f"results in {args.results}/latest.md, latest.json, ratios.png")
        return 1 if any(t.failures for t in tables) else 0
    except KeyboardInterrupt:
        progress("bench: interrupted")
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(rundir, ignore_errors=True)


def write_results(results, text, tables, env, run, rundir):
    """latest.md, latest.json and ratios.png in results/, each written to a
    .tmp file first so that an interrupted run leaves the last ones whole."""
    results.mkdir(parents=True, exist_ok=True)
    data = {"generated": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "quick": run.quick, "rounds": run.rounds, "settings": run.fields(),
            "environment": dict(env), "scenarios": [t.as_json() for t in tables]}
    for name, content in (("latest.md", text), ("latest.json", json.dumps(data, indent=1))):
        (results / f"{name}.tmp").write_text(content + "\n")
        os.replace(results / f"{name}.tmp", results / name)
    png = results / "ratios.png"
    if report.chart(tables, results / "ratios.png.tmp", rundir):
        os.replace(results / "ratios.png.tmp", png)
    else:
        png.unlink(missing_ok=True)  # no ratio this time: no stale chart

if __name__ == "__main__":
    sys.exit(main())
