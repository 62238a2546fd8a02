"""stream_proxy: the stream scenario's response (a million small writes)
through a reverse proxy from one shared upstream (rill examples/echo.lua):
rill's examples/proxy.lua against nginx's proxy_pass."""
import importlib.util
from pathlib import Path

import load
import procs
from report import Metric
from servers import ROOT, Nginx, Rill

_spec = importlib.util.spec_from_file_location(
    "stream_scenario", Path(__file__).resolve().parent.parent / "stream" / "scenario.py")
stream = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stream)

ORDER = 8.5
TITLE = (f"GET /stream?n={stream.LINES:,} through a reverse proxy (the upstream: rill "
         "examples/echo.lua, one write per line), curl -o /dev/null")
SERVERS = [
    Rill(ROOT / "examples/proxy.lua", env={"UPSTREAM": "http://127.0.0.1:@UPSTREAM_PORT@"}),
    Nginx("../proxy/nginx.conf", note="proxy_pass as in the proxy scenario (no buffering)"),
]
UPSTREAM = Rill(ROOT / "examples/echo.lua", label="upstream")
METRICS = [
    Metric("mbs", "MB/s", "higher", limited_by=("curl_cpu", "up_cpu")),
    Metric("curl_cpu", "curl CPU", fmt="{:.0f}%"),
    Metric("up_cpu", "upstream CPU", fmt="{:.0f}%"),
    Metric("cpu_ms", "proxy CPU ms/MB", "lower", "{:.2f}"),
    Metric("rss", "proxy peak RSS MB", "lower", "{:.1f}"),
]
NOTES = [
    "The upstream runs on CPU 1 beside curl, as in the proxy scenario; `*` marks a figure "
    "where curl's and the upstream's CPU add up to ≥ 95%. The proxy's CPU per MB is the "
    "figure no neighbour caps.",
]
_upstream = None


def setup(run):
    global _upstream
    _upstream = UPSTREAM.start(run, cpu=procs.CPU_CLIENT)
    run.vars["UPSTREAM_PORT"] = _upstream.port
    return [_upstream]


def measure(run, srv):
    load.warm_up(run, srv, "/")
    up_before = _upstream.cpu_seconds()
    r = stream.stream(run, srv)
    wall = stream.body_bytes(stream.LINES) / load.MB / r["mbs"]
    r["up_cpu"] = 100 * (_upstream.cpu_seconds() - up_before) / wall
    return r
