"""The README's benchmark summary: a few figures of each scenario from a
run's latest.json, with rill's ratio to each peer, between two markers.

    summary.py [latest.json [README.md]]

rewrites the part of README.md between the markers and prints it. bench/run
calls it after a full run into bench/results.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- bench summary: written by bench/run -->"
END = "<!-- end of bench summary -->"

# The figures the summary shows: per scenario, metric keys of its table.
FIGURES = {
    "hello": ["cpu_us", "rps16", "rps"],
    "router": ["cpu_us"],
    "upload": ["chunked_mbs", "length_mbs", "length_rss"],
    "download": ["mbs", "rss"],
    "static": ["cpu_us", "mbs", "rss"],
    "idle": ["bytes"],
    "tls": ["cpu_us", "full_us", "resumed_us"],
    "h2": ["one_us", "many_us"],
    "websocket": ["us64", "us65536", "zrtcpu64", "zrtcpu65536", "idle_bytes"],
    "proxy": ["cpu_us", "up_mbs", "down_mbs", "rss"],
    "workers": ["rps", "cpu_us"],
    "compress": ["mbs", "cpu_ms"],
    "redis": ["single_cps", "pipe_cps"],
    "postgres": ["add_qcpu", "lookup_qcpu"],
    "client": ["cpu_us"],
}


def number(v):
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def value(server, key):
    v = server["median"].get(key)
    if v is None:
        return "–"
    return number(v) + ("*" if key in server.get("saturated", []) else "")


def markdown(data):
    env = data["environment"]
    when = data["generated"][:16].replace("T", " ")
    zone = data["generated"][19:]
    when += " UTC" if zone in ("+00:00", "Z") else f" (UTC{zone})"
    out = [f"Full run of {when}, median of {data['rounds']} rounds, "
           f"on {env['CPU']}; {env['OS']}; rill {env['rill'].split(', ')[1]}; "
           f"{env['nginx']}; Node {env['Node']}.", "",
           "| scenario: figure | rill | each peer, and rill's ratio to it (> 1: rill is better) |",
           "|------------------|------|---------------------------------------------------------|"]
    for sc in data["scenarios"]:
        if sc["name"] not in FIGURES or not sc["servers"]:
            continue
        metrics = {m["key"]: m for m in sc["metrics"]}
        rill, peers = sc["servers"][0], sc["servers"][1:]
        for key in FIGURES[sc["name"]]:
            m = metrics[key]
            what = f"{sc['name']}: {m['part'] + ', ' if m['part'] else ''}{m['label']}"
            if rill["label"] != "rill":
                what += f" ({rill['label']})"
            cells = []
            for p in peers:
                ratio = sc["ratios"].get(p["label"], {}).get(key)
                cells.append(f"{p['label']} {value(p, key)}"
                             + (f" (**{ratio:.2f}**)" if ratio is not None else ""))
            out.append(f"| {what} | {value(rill, key)} | {' · '.join(cells)} |")
    out += ["", "`*`: the load generator was saturated (≥ 95% of its core): its limit, "
            "not the server's. Every table: [bench/results/latest.md](bench/results/latest.md).",
            "", "![rill's ratio to each peer](bench/results/ratios.png)"]
    return "\n".join(out)


def rewrite(readme, block):
    text = readme.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: no '{BEGIN}' ... '{END}' markers")
    readme.write_text(text[:start + len(BEGIN)] + "\n\n" + block + "\n\n" + text[end:])


def update(latest=ROOT / "bench/results/latest.json", readme=ROOT / "README.md"):
    """Rewrites readme's summary from latest; returns the summary."""
    block = markdown(json.loads(Path(latest).read_text()))
    rewrite(Path(readme), block)
    return block


def main():
    print(update(*sys.argv[1:3]))


if __name__ == "__main__":
    main()
