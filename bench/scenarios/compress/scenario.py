"""compress: a 1 MB JSON body gzip'd per request, rill.middleware.compress
against nginx's gzip filter at the same level."""
import json
import random

import load
from report import Metric
from servers import Nginx, Rill

ORDER = 12
LEVEL = 6
TITLE = ("GET /data.json: a 1 MB JSON body gzip'd per request at level " + str(LEVEL) +
         " (wrk -t1 -c50 with Accept-Encoding: gzip, keep-alive, {duration} s)")
SERVERS = [
    Rill("app.lua", env={"COMPRESS_BODY": "@BODY@", "COMPRESS_LEVEL": str(LEVEL)}),
    Nginx("nginx.conf", note="`gzip on; gzip_comp_level " + str(LEVEL) +
          "`, the file served with `alias` (sendfile is off for gzip'd answers)"),
]
METRICS = [
    Metric("mbs", "MB/s (uncompressed)", "higher", "{:.1f}", limited_by="wrk_cpu"),
    Metric("wrk_cpu", "wrk CPU", fmt="{:.0f}%"),
    Metric("rps", "req/s", "higher", "{:.0f}"),
    Metric("cpu_ms", "server CPU ms/req", "lower", "{:.2f}"),
    Metric("gz_bytes", "gzip'd bytes", None, "{:.0f}"),
]
NOTES = [
    "The body is the same bytes for both: a JSON array of 1 MB of records made by the "
    "scenario (a fixed seed); nginx serves it from a file, rill reads the file once at "
    "startup and answers with res:send. MB/s counts the uncompressed body (req/s × its "
    "size); gzip'd bytes is the size of one compressed answer (curl), to show both "
    "compress alike.",
]
SIZE = 1_000_000


def _body():
    rng = random.Random(14)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
             "india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa"]
    records, size, i = [], 2, 0
    while True:
        rec = {"id": i, "name": f"{rng.choice(words)} {rng.choice(words)}",
               "email": f"user{i}@example.com", "active": rng.random() < 0.5,
               "score": round(rng.random() * 1000, 3),
               "tags": rng.sample(words, 3), "note": " ".join(rng.choices(words, k=6))}
        text = json.dumps(rec, separators=(",", ":"))
        if size + len(text) + 1 > SIZE:
            break
        records.append(text)
        size += len(text) + 1
        i += 1
    body = "[" + ",".join(records) + "]"
    return body + " " * (SIZE - len(body))


def setup(run):
    path = run.rundir / "data.json"
    path.write_text(_body())
    path.chmod(0o644)
    run.vars["BODY"] = str(path)
    run.vars["LEVEL"] = str(LEVEL)
    return []


def measure(run, srv):
    hdr = ["Accept-Encoding: gzip"]
    size = load.response_size(srv, "/data.json", hdr)
    load.warm_up(run, srv, "/data.json", headers=hdr)
    r = load.wrk(run, srv, "/data.json", headers=hdr)
    return {"mbs": r["rps"] * SIZE / 1e6, "wrk_cpu": r["client_cpu"], "rps": r["rps"],
            "cpu_ms": r["cpu_us"] / 1000, "gz_bytes": size}
