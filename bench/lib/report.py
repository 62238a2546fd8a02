"""Medians, ratios and the outputs: Markdown tables, JSON, a gnuplot chart.

    report.py LATEST.json OUT.png    redraws the chart of a run's results

The first server of a scenario is rill; every other row gets rill's ratio to
it, oriented so that > 1 means rill is better whatever the metric.
"""
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

SATURATED = 95  # % of one core: a generator this busy is the limit
RATIO_NOTE = ("ratio: rill against the row's server, > 1 means rill is better "
              "(rill/peer for throughput, peer/rill for latency, CPU time and memory)")
SATURATED_NOTE = (f"`*` the load generator used ≥ {SATURATED}% of its core (with, where "
                  "a column says so, what shares that core): the figure is its limit, "
                  "not the server's")


@dataclass
class Metric:
    """A column: key in measure()'s dict, heading, "higher" or "lower" when
    one is better (those get a ratio column) or None for context figures,
    format, and the key of the generator CPU figure that may cap it (or a
    tuple of keys of processes sharing the generator's core: their sum).
    Consecutive metrics with the same part (a heading) make a table of their
    own under the scenario's title, for scenarios with many columns."""
    key: str
    label: str
    better: str = None
    fmt: str = "{:,.0f}"
    limited_by: object = None
    part: str = None


class Table:
    """One scenario's results: samples per server and metric, their medians,
    and rill's ratios to each peer."""

    def __init__(self, name, title, metrics, servers):
        self.name, self.title, self.metrics, self.servers = name, title, metrics, servers
        self.samples = {s.label: {m.key: [] for m in metrics} for s in servers}
        self.failures = []
        self.notes = []  # the scenario's own notes (NOTES, run.note())

    @classmethod
    def from_json(cls, d):
        """The table as_json() wrote, with its samples."""
        t = cls(d["name"], d["title"],
                [Metric(m["key"], m["label"], m["better"], part=m["part"]) for m in d["metrics"]],
                [SimpleNamespace(label=s["label"], note=s["note"]) for s in d["servers"]])
        for s in d["servers"]:
            t.samples[s["label"]] = s["samples"]
        t.notes, t.failures = d["notes"], d["failures"]
        return t

    def add(self, label, figures):
        """A round's figures for label; a metric it has no figure for (a
        part of the scenario that server does not do) shows as n/a."""
        for m in self.metrics:
            if m.key in figures:
                self.samples[label][m.key].append(figures[m.key])

    def median(self, label, key):
        values = self.samples[label][key]
        return statistics.median(values) if values else None

    def ratio(self, label, metric):
        """rill's figure against label's, > 1 when rill is better; None
        when either is missing or not positive."""
        ref, peer = self.median(self.servers[0].label, metric.key), self.median(label, metric.key)
        if ref is None or peer is None or ref <= 0 or peer <= 0:
            return None
        return ref / peer if metric.better == "higher" else peer / ref

    def saturated(self, label, metric):
        keys = metric.limited_by
        if not keys:
            return False
        cpus = [self.median(label, k) for k in ((keys,) if isinstance(keys, str) else keys)]
        return None not in cpus and sum(cpus) >= SATURATED

    def parts(self):
        """The metrics as (heading, metrics) runs of the same part."""
        out = []
        for m in self.metrics:
            if out and out[-1][0] == m.part:
                out[-1][1].append(m)
            else:
                out.append((m.part, [m]))
        return out

    def rows(self, rounds, metrics=None):
        """Header and rows of cell strings for metrics (default: all); a
        server measured in fewer than rounds rounds (the others failed) says
        how many."""
        metrics = metrics or self.metrics
        header = ["server"]
        for m in metrics:
            header += [m.label, "ratio"] if m.better else [m.label]
        notes = [s for s in self.servers if s.note]
        rows = []
        for i, s in enumerate(self.servers):
            mark = f" [{notes.index(s) + 1}]" if s.note else ""
            n = len(self.samples[s.label][self.metrics[0].key])
            row = [s.label + mark + (f" ({n} of {rounds})" if n < rounds else "")]
            for m in metrics:
                value = self.median(s.label, m.key)
                cell = "n/a" if value is None else m.fmt.format(value)
                row.append(cell + ("*" if self.saturated(s.label, m) else ""))
                if m.better:
                    ratio = None if i == 0 else self.ratio(s.label, m)
                    row.append("" if i == 0 else "n/a" if ratio is None else f"{ratio:.2f}")
            rows.append(row)
        return header, rows

    def markdown(self, rounds):
        out = [f"### {self.name}: {self.title}", "",
               f"Median of {rounds} round{'s' if rounds > 1 else ''}. {RATIO_NOTE}."]
        for heading, metrics in self.parts():
            header, rows = self.rows(rounds, metrics)
            widths = [max(len(r[c]) for r in [header] + rows) for c in range(len(header))]

            def line(cells):
                return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

            out += [""] + ([f"#### {heading}", ""] if heading else [])
            out += [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
            out += [line(r) for r in rows]
        notes = [f"[{i + 1}] {s.label}: {s.note}" for i, s in
                 enumerate(s for s in self.servers if s.note)]
        notes += self.notes
        if any(self.saturated(s.label, m) for s in self.servers for m in self.metrics):
            notes.append(SATURATED_NOTE)
        notes += [f"failed: {f}" for f in self.failures]
        if notes:
            out += [""] + [f"- {n}" for n in notes]
        return "\n".join(out) + "\n"

    def as_json(self):
        return {
            "name": self.name, "title": self.title,
            "metrics": [{"key": m.key, "label": m.label, "better": m.better, "part": m.part}
                        for m in self.metrics],
            "servers": [{"label": s.label, "note": s.note,
                         "samples": self.samples[s.label],
                         "median": {m.key: self.median(s.label, m.key) for m in self.metrics},
                         "saturated": [m.key for m in self.metrics
                                       if self.saturated(s.label, m)]}
                        for s in self.servers],
            "ratios": {s.label: {m.key: self.ratio(s.label, m)
                                 for m in self.metrics if m.better}
                       for s in self.servers[1:]},
            "notes": self.notes,
            "failures": self.failures,
        }


# One colour per peer (gnuplot's own cycle repeats after eight).
COLORS = ["#9400d3", "#009e73", "#56b4e9", "#e69f00", "#f0e442", "#0072b2", "#e51e10",
          "#404040", "#cc79a7", "#8b4513", "#7fff00", "#00ced1"]


def chart(tables, png, workdir):
    """Draws rill's ratios as grouped bars (one group per scenario metric,
    one bar per peer) on a log scale with a line at 1, with gnuplot.
    Returns False, drawing nothing, when there is no ratio to draw."""
    peers = []
    for t in tables:
        peers += [s.label for s in t.servers[1:] if s.label not in peers]
    groups = []  # (label, a ratio or None per peer)
    for t in tables:
        labels = {s.label for s in t.servers[1:]}
        groups += [(f"{t.name}: {m.part + ', ' if m.part else ''}{m.label}",
                    [t.ratio(p, m) if p in labels else None for p in peers])
                   for m in t.metrics if m.better]
    known = [r for _, ratios in groups for r in ratios if r is not None]
    if not known:
        return False
    rows = [f'"{label}" ' + " ".join("?" if r is None else f"{r:.4f}" for r in ratios)
            for label, ratios in groups]
    longest = max(len(label) for label, _ in groups)  # the labels stand upright
    data = workdir / "ratios.dat"
    data.write_text("\n".join(rows) + "\n")
    columns = ", ".join(f"'{data}' using {i + 2}:xtic(1) title '{p}' lc rgb '{COLORS[i % len(COLORS)]}'"
                        for i, p in enumerate(peers))
    script = f"""
set terminal pngcairo size {max(1500, 45 * len(rows))},{400 + 6 * longest} font ",10"
set output '{png}'
set title "rill against each peer (> 1: rill is better; log scale)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set datafile missing "?"
set logscale y 2
set grid ytics
set ylabel "ratio"
set format y "%.3g"
set xtics rotate by 90 right font ",9" nomirror
set xrange [-0.6:{len(rows) - 0.4}]
set yrange [{min(known + [1]) / 2}:{max(known + [1]) * 1.5}]
set key outside right top
set bmargin {3 + longest * 0.42:.0f}
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2
plot {columns}
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    return True


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    with tempfile.TemporaryDirectory() as work:
        chart([Table.from_json(t) for t in data["scenarios"]], Path(sys.argv[2]), Path(work))
