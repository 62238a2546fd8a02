"""static: files from disk. A small file (4 KiB) on keep-alive connections
with wrk (req/s and the server's CPU per request), and a large one (the
download size, a sparse file) with curl (MB/s, peak RSS): rill's
app:static (and a handler on rill.fs alone) against nginx's `root` with
`sendfile on`, with its defaults and with open_file_cache."""
import load
from report import Metric
from servers import Nginx, Rill

ORDER = 4.8
TITLE = ("GET a 4 KiB file (wrk -t1 -c50 keep-alive, {duration} s) and a {download} file "
         "(curl -o /dev/null), from disk")
SERVERS = [
    Rill("app.lua", env={"WWW": "@WWW@"}, note="app:static with its defaults"),
    Rill("fs_app.lua", label="rill-fs", env={"WWW": "@WWW@"},
         note="a handler on rill.fs alone: fs.open through the open-file cache (1 s), "
              "res:send_file"),
    Nginx("nginx.conf", note="nginx's defaults: no open_file_cache"),
    Nginx("nginx-cache.conf", label="nginx+cache",
          note="open_file_cache max=1024, valid 1 s, errors cached (as rill's caches)"),
]
METRICS = [
    Metric("rps", "4 KiB req/s", "higher", limited_by="wrk_cpu"),
    Metric("wrk_cpu", "wrk CPU", fmt="{:.0f}%"),
    Metric("p99_ms", "p99 ms", "lower", "{:.2f}"),
    Metric("cpu_us", "server CPU µs/req", "lower", "{:.2f}"),
    Metric("mbs", "large file MB/s", "higher", limited_by="curl_cpu"),
    Metric("curl_cpu", "curl CPU", fmt="{:.0f}%"),
    Metric("rss", "peak RSS MB", "lower", "{:.1f}"),
]
SMALL = 4096


def setup(run):
    www = run.rundir / "static-www"
    www.mkdir(exist_ok=True)
    www.chmod(0o755)
    small = www / "small.bin"
    small.write_bytes(bytes(i % 251 for i in range(SMALL)))
    large = www / "large.bin"
    with open(large, "wb") as f:
        f.truncate(run.download_bytes)
    for p in (small, large):
        p.chmod(0o644)
    # Read once, so that every server finds it in the page cache (the first
    # read of a sparse file fills the cache with zeroed pages, and would
    # count against whichever server comes first).
    with open(large, "rb") as f:
        while f.read(1 << 20):
            pass
    run.vars["WWW"] = str(www)
    return []


def measure(run, srv):
    load.warm_up(run, srv, "/small.bin")
    small = load.wrk(run, srv, "/small.bin")
    big = load.download(run, srv, "/large.bin", run.download_bytes)
    return {"rps": small["rps"], "wrk_cpu": small["client_cpu"], "p99_ms": small["p99_ms"],
            "cpu_us": small["cpu_us"], "mbs": big["mbs"], "curl_cpu": big["client_cpu"],
            "rss": big["peak_rss_mb"]}
