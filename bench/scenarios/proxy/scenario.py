"""proxy: requests and large bodies through a reverse proxy to one shared
upstream, rill's examples/proxy.lua against nginx's proxy_pass."""
import load
import procs
from report import Metric
from servers import ROOT, Nginx, Rill

ORDER = 8
TITLE = ("reverse proxy to one upstream (rill examples/echo.lua): GET / with wrk -t1 -c50 "
         "keep-alive ({duration} s); PUT /count of {upload} with a Content-Length and "
         "GET /bytes of {download} (curl)")
SERVERS = [
    Rill(ROOT / "examples/proxy.lua", env={"UPSTREAM": "http://127.0.0.1:@UPSTREAM_PORT@"}),
    Nginx("nginx.conf",
          note="proxy_pass to an upstream block with `keepalive 32`, `proxy_http_version "
               "1.1; proxy_set_header Connection \"\"; proxy_request_buffering off; "
               "proxy_buffering off;`, 64 KiB client_body_buffer_size and proxy_buffer_size, "
               "X-Forwarded-For/-Proto/-Host set as rill sets them"),
]
UPSTREAM = Rill(ROOT / "examples/echo.lua", label="upstream")
SMALL = "GET / (wrk)"
LARGE = "large bodies (curl)"
METRICS = [
    Metric("rps", "req/s", "higher", limited_by=("wrk_cpu", "up_cpu"), part=SMALL),
    Metric("wrk_cpu", "wrk CPU", fmt="{:.0f}%", part=SMALL),
    Metric("up_cpu", "upstream CPU", fmt="{:.0f}%", part=SMALL),
    Metric("p50_ms", "p50 ms", "lower", "{:.2f}", part=SMALL),
    Metric("p99_ms", "p99 ms", "lower", "{:.2f}", part=SMALL),
    Metric("cpu_us", "proxy CPU µs/req", "lower", "{:.2f}", part=SMALL),
    Metric("up_mbs", "upload MB/s", "higher", limited_by=("up_curl", "up_up"), part=LARGE),
    Metric("up_curl", "curl CPU", fmt="{:.0f}%", part=LARGE),
    Metric("up_up", "upstream CPU", fmt="{:.0f}%", part=LARGE),
    Metric("down_mbs", "download MB/s", "higher", limited_by=("down_curl", "down_up"),
           part=LARGE),
    Metric("down_curl", "curl CPU", fmt="{:.0f}%", part=LARGE),
    Metric("down_up", "upstream CPU", fmt="{:.0f}%", part=LARGE),
    Metric("rss", "proxy peak RSS MB", "lower", "{:.1f}", part=LARGE),
]
NOTES = [
    "The upstream is one `rill serve examples/echo.lua` (one worker) started for the "
    "scenario and shared by both proxies: it answers the three requests (GET / with 52 "
    "bytes, PUT /count with the body's length, GET /bytes?n=N with N bytes in 64 KiB "
    "writes), where nginx would need Lua to count an upload. The upstream's cost is the "
    "same for both proxies.",
    "CPU placement: the proxy under test runs alone on CPU 0, as the servers of the other "
    "scenarios; the upstream runs on CPU 1 beside the load generator, so that the proxy's "
    "figures are not cut by a neighbour. CPU 1 then carries two processes: `*` marks a "
    "figure where the generator's and the upstream's CPU add up to ≥ 95%, CPU 1 being the "
    "limit. The proxy's CPU µs per request is the figure no neighbour caps.",
    "proxy peak RSS: the larger of the upload's and the download's (VmHWM, reset before "
    "each; nginx: its worker).",
]
_upstream = None  # the Running upstream, for this scenario's run


def setup(run):
    global _upstream
    _upstream = UPSTREAM.start(run, cpu=procs.CPU_CLIENT)
    run.vars["UPSTREAM_PORT"] = _upstream.port
    return [_upstream]


def measure(run, srv):
    load.warm_up(run, srv, "/")
    small = load.wrk(run, srv, "/", shared=_upstream)
    up = load.upload(run, srv, "/count", chunked=False, shared=_upstream)
    n = run.download_bytes
    down = load.download(run, srv, f"/bytes?n={n}", n, shared=_upstream)
    return {"rps": small["rps"], "wrk_cpu": small["client_cpu"], "up_cpu": small["shared_cpu"],
            "p50_ms": small["p50_ms"], "p99_ms": small["p99_ms"], "cpu_us": small["cpu_us"],
            "up_mbs": up["mbs"], "up_curl": up["client_cpu"], "up_up": up["shared_cpu"],
            "down_mbs": down["mbs"], "down_curl": down["client_cpu"],
            "down_up": down["shared_cpu"],
            "rss": max(up["peak_rss_mb"], down["peak_rss_mb"])}
