#!/usr/bin/env python3
"""compare-report.py - the table and the plots of perf/compare.sh.

    python3 perf/compare-report.py DIR [HEADER-FILE]

Reads DIR/runs.csv (one row per load run, columns named in its header; written
by compare.sh), prints the tables (Markdown, ready for docs/benchmarks.md) with
HEADER-FILE's lines above them, and draws with gnuplot:

    DIR/compare-throughput.png  requests/s, bars per value size, a panel per mode
    DIR/compare-cpu.png         server CPU per request, the same layout
    DIR/compare-latency.png     wrk2's corrected p50 and p99 against the
                                achieved rate, a panel per mode (part 2)
    DIR/compare-transport.png   part 3, TCP loopback against a Unix socket
                                (loadgen): requests/s and server CPU per
                                request closed loop, p50 and p99 at one rate

The data and script gnuplot was given are kept in DIR/gnuplot/, so a plot can
be redrawn or restyled without measuring again.  Rerunning this on an old DIR
redraws from its CSV.  Ratios are ringcached / nginx in parts 1 and 2, unix /
tcp in part 3, always from the same run.
"""

import csv
import os
import subprocess
import sys
from collections import OrderedDict

COLORS = {"ringcached": "#1f77b4", "nginx": "#2ca02c"}
# part 3: a light shade for p50, the full colour for p99 (and the other bars)
TR_COLORS = {"tcp": ("#ffbb78", "#ff7f0e"), "unix": ("#c5b0d5", "#9467bd")}
TRANSPORTS = ("tcp", "unix")


def size_name(b):
    b = int(b)
    if b >= 1024 and b % 1024 == 0:
        return "%d KB" % (b // 1024)
    return "%d B" % b


def num(x):
    return "{:,.0f}".format(float(x))


def ms(us):
    try:
        return "%.2f" % (float(us) / 1000)
    except ValueError:  # a percentile wrk could not give (summary.lua)
        return "n/a"


def us(v):
    """Microseconds as loadgen gives them (one decimal)."""
    try:
        f = float(v)
    except ValueError:
        return "n/a"
    return "{:,.0f}".format(f) if f >= 100 else "%.1f" % f


def ratio(a, b):
    a, b = float(a), float(b)
    return "%.2fx" % (a / b) if b else "-"


def mode_name(mode, depth):
    return "plain" if mode == "plain" else "%s-deep pipelined" % depth


def load_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # a CSV from before part 3 has no client column
        if not r.get("client"):
            r["client"] = "wrk" if r["load"] == "closed" else "wrk2"
    return rows


def ordered(values):
    return list(OrderedDict.fromkeys(values))


def pick(rows, **kv):
    for r in rows:
        if all(r[k] == v for k, v in kv.items()):
            return r
    return None


def groups(rows, servers, keys):
    """Yields (values of keys, {server: row}, depth) for every combination
    of keys' values that every server has a row for, in the order of the CSV."""
    def walk(fixed, rest):
        if not rest:
            rs = {s: pick(rows, server=s, **fixed) for s in servers}
            if all(rs.values()):
                yield fixed, rs, next(iter(rs.values()))["depth"]
            return
        for v in ordered(r[rest[0]] for r in rows):
            yield from walk(dict(fixed, **{rest[0]: v}), rest[1:])
    yield from walk({}, list(keys))


def table(out, head, lines):
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    out.extend("| " + " | ".join(cells) + " |" for cells in lines)


def shares(rs, servers):
    """The client's and the rest of the machine's CPU, per server."""
    return [" / ".join("%s%%" % rs[s][col] for s in servers)
            for col in ("client_cpu_pct", "other_cpu_pct")]


def throughput_table(rows, servers, out):
    both = "ringcached" in servers and "nginx" in servers
    head = ["transport", "size", "mode"] + ["%s req/s" % s for s in servers]
    head += ["ratio"] * both + ["%s CPU/req" % s for s in servers] + ["ratio"] * both
    head += ["%s wrk p50 / p99" % s for s in servers]
    head += ["ringcached /stats hit p50 / p99"] * ("ringcached" in servers)
    head += ["client CPU", "other"]
    lines = []
    for k, rs, depth in groups(rows, servers, ("transport", "size", "mode")):
        cells = [k["transport"], size_name(k["size"]), mode_name(k["mode"], depth)]
        cells += [num(rs[s]["req_per_s"]) for s in servers]
        if both:
            cells.append(ratio(rs["ringcached"]["req_per_s"], rs["nginx"]["req_per_s"]))
        cells += ["%s µs" % rs[s]["server_cpu_us_per_req"] for s in servers]
        if both:
            cells.append(ratio(rs["ringcached"]["server_cpu_us_per_req"],
                               rs["nginx"]["server_cpu_us_per_req"]))
        # wrk 4's own correction makes its pipelined percentiles meaningless
        cells += ["%s / %s ms" % (ms(rs[s]["p50_us"]), ms(rs[s]["p99_us"]))
                  if k["mode"] == "plain" else "n/a" for s in servers]
        if "ringcached" in servers:
            r = rs["ringcached"]
            cells.append("%s / %s µs" % (r["srv_p50_us"], r["srv_p99_us"]))
        lines.append(cells + shares(rs, servers))
    table(out, head, lines)


def sweep_table(rows, servers, out):
    both = "ringcached" in servers and "nginx" in servers
    head = ["transport", "mode", "of peak"]
    for s in servers:
        head += ["%s rate (achieved)" % s, "p50", "p90", "p99", "p99.9", "max"]
        head += ["/stats p99"] * (s == "ringcached")
    head += ["p99 ratio"] * both + ["client CPU", "other"]
    lines = []
    for k, rs, depth in groups(rows, servers, ("transport", "mode", "fraction")):
        cells = [k["transport"], mode_name(k["mode"], depth),
                 "%.0f%%" % (100 * float(k["fraction"]))]
        for s in servers:
            r = rs[s]
            cells += ["%s (%s)" % (num(r["target_rate"]), num(r["req_per_s"]))]
            cells += [ms(r[c]) for c in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us")]
            cells += ["%s µs" % r["srv_p99_us"]] * (s == "ringcached")
        if both:
            cells.append(ratio(rs["ringcached"]["p99_us"], rs["nginx"]["p99_us"]))
        lines.append(cells + shares(rs, servers))
    table(out, head, lines)


def page(gp, rows, png, title):
    """Starts a PNG of one panel per mode; returns the modes and transports."""
    modes = ordered(r["mode"] for r in rows)
    gp.append("reset")
    gp.append("set terminal pngcairo noenhanced size %d,480 font 'sans,10'"
              % (460 * len(modes) + 40))
    gp.append("set output '%s'" % png)
    gp.append("set multiplot layout 1,%d title '%s'" % (len(modes), title))
    return modes, ordered(r["transport"] for r in rows)


def bars(gp, rows, servers, column, ylabel, yformat, fmt, png, title):
    """A clustered bar chart per mode: bars per server, clusters per size."""
    modes, tr = page(gp, rows, png, title)
    gp.append("set style data histograms")
    gp.append("set style histogram clustered gap 1")
    gp.append("set style fill solid 0.85 border -1")
    gp.append("set boxwidth 0.9")
    gp.append("set grid ytics")
    gp.append("set yrange [0:*]")
    gp.append("set offsets 0, 0, graph 0.08, 0")
    gp.append("set key top right")
    gp.append("set ylabel '%s'" % ylabel)
    gp.append("set format y '%s'" % yformat)
    n = len(servers)
    width = 1.0 / (n + 1)
    for mode in modes:
        dat = []
        depth = "1"
        for t in tr:
            for size in ordered(r["size"] for r in rows):
                vals = []
                for s in servers:
                    r = pick(rows, transport=t, size=size, mode=mode, server=s)
                    if r:
                        depth = r["depth"]
                    vals.append(r[column] if r else "NaN")
                label = size_name(size) + ("" if len(tr) == 1 else " " + t)
                dat.append('"%s" %s' % (label, " ".join(vals)))
        name = "bars-%s-%s.dat" % (column, mode)
        with open(os.path.join(gp.dir, name), "w") as f:
            f.write("\n".join(dat) + "\n")
        gp.append("set title '%s'" % mode_name(mode, depth))
        plots = []
        for i, s in enumerate(servers):
            col = i + 2
            plots.append("'%s' using %d:xtic(1) title '%s' lc rgb '%s'"
                         % (name, col, s, COLORS.get(s, "#888888")))
        for i, s in enumerate(servers):
            col = i + 2
            x = -0.5 + width * (i + 1)
            plots.append("'%s' using ($0%+.3f):%d:(%s) with labels offset 0,0.7 "
                         "font ',8' notitle" % (name, x, col, fmt % col))
        gp.append("plot " + ", \\\n     ".join(plots))
    gp.append("unset multiplot")


def latency(gp, rows, servers, png, title):
    """p50 and p99 against the achieved rate, a panel per mode."""
    modes, tr = page(gp, rows, png, title)
    gp.append("set style data linespoints")
    gp.append("set logscale y")
    gp.append("set logscale x")
    gp.append("set grid xtics ytics mxtics mytics")
    # one y range for every panel, with room above the data for the key
    top = max(float(r["p99_us"]) for r in rows) / 1000
    gp.append("set yrange [0.1:%g]" % (top * 40))
    gp.append("set key inside top left vertical font ',9' samplen 2")
    gp.append("set xlabel 'achieved requests/s (log scale)'")
    gp.append("set ylabel 'latency (ms, log scale)'")
    for mode in modes:
        plots = []
        depth = "1"
        for t in tr:
            for s in servers:
                pts = [r for r in rows if r["mode"] == mode and r["server"] == s
                       and r["transport"] == t]
                if not pts:
                    continue
                depth = pts[0]["depth"]
                pts.sort(key=lambda r: float(r["req_per_s"]))
                name = "lat-%s-%s-%s.dat" % (t, s, mode)
                with open(os.path.join(gp.dir, name), "w") as f:
                    for r in pts:
                        f.write("%s %s %s\n" % (float(r["req_per_s"]),
                                                float(r["p50_us"]) / 1000,
                                                float(r["p99_us"]) / 1000))
                who = s + ("" if len(tr) == 1 else " " + t)
                color = COLORS.get(s, "#888888")
                plots.append("'%s' using 1:3 title '%s p99' lc rgb '%s' lw 2 pt 7"
                             % (name, who, color))
                plots.append("'%s' using 1:2 title '%s p50' lc rgb '%s' dt 2 pt 6"
                             % (name, who, color))
        gp.append("set title '%s'" % mode_name(mode, depth))
        xs = [float(r["req_per_s"]) for r in rows if r["mode"] == mode]
        lo, hi = min(xs) / 1.5, max(xs) * 1.5
        gp.append("set xrange [%g:%g]" % (lo, hi))
        ticks = [m * 10 ** e for e in range(0, 9) for m in (1, 2, 5) if lo <= m * 10 ** e <= hi]
        gp.append("set xtics (%s)" % ", ".join(
            "'%s' %d" % (("%gk" % (t / 1000)) if t >= 1000 else "%g" % t, t) for t in ticks))
        # wrk2 rounds its waits to whole milliseconds: nothing below this line
        # is the server's (docs/benchmarks.md)
        plots.append("1 with lines dt 2 lw 1.5 lc rgb '#d62728' title 'wrk2 timer floor (~1 ms)'")
        gp.append("plot " + ", \\\n     ".join(plots))
    gp.append("unset multiplot")


def transport_pairs(rows):
    """Part 3: yields (server, size, mode, {transport: row}) for every
    server, size and mode with a row of both transports, in CSV order."""
    for srv in ordered(r["server"] for r in rows):
        for size in ordered(r["size"] for r in rows):
            for mode in ordered(r["mode"] for r in rows):
                rs = {t: pick(rows, server=srv, size=size, mode=mode, transport=t)
                      for t in TRANSPORTS}
                if all(rs.values()):
                    yield srv, size, mode, rs


def both(rs, col, fmt=lambda v: "%s%%" % v):
    return " / ".join(fmt(rs[t][col]) for t in TRANSPORTS)


def transport_tables(rows, wrk_rows, out):
    """wrk_rows: part 1's, for a check of the client: loadgen's tcp req/s
    against wrk's for the same load, where part 1 measured it."""
    closed = [r for r in rows if r["load"] == "closed"]
    rate = [r for r in rows if r["load"] == "rate"]
    head = ["server", "size", "mode", "tcp req/s", "unix req/s", "unix / tcp",
            "tcp CPU/req", "unix CPU/req", "unix / tcp", "tcp p50 / p99", "unix p50 / p99",
            "client CPU", "other", "tcp: loadgen / wrk"]
    lines = []
    for srv, size, mode, rs in transport_pairs(closed):
        t, u = rs["tcp"], rs["unix"]
        w = pick(wrk_rows, transport="tcp", server=srv, size=size, mode=mode,
                 depth=t["depth"], connections=t["connections"])
        lines.append([srv, size_name(size), mode_name(mode, t["depth"]),
                      num(t["req_per_s"]), num(u["req_per_s"]),
                      ratio(u["req_per_s"], t["req_per_s"]),
                      "%s µs" % t["server_cpu_us_per_req"], "%s µs" % u["server_cpu_us_per_req"],
                      ratio(u["server_cpu_us_per_req"], t["server_cpu_us_per_req"])]
                     + ["%s / %s µs" % (us(r["p50_us"]), us(r["p99_us"])) for r in (t, u)]
                     + [both(rs, "client_cpu_pct"), both(rs, "other_cpu_pct"),
                        ratio(t["req_per_s"], w["req_per_s"]) if w else "-"])
    table(out, head, lines)
    if not rate:
        return
    out.append("")
    out.append("At one rate for both transports (%s of the lower peak above; loadgen -R, "
               "latency from each request's due time, µs):"
               % ("%.0f%%" % (100 * float(rate[0]["fraction"]))))
    out.append("")
    head = ["server", "size", "mode", "rate", "achieved tcp / unix"]
    head += ["%s p50 / p90 / p99 / p99.9 / max" % t for t in TRANSPORTS]
    head += ["p99 unix / tcp", "CPU/req tcp / unix", "unix / tcp", "client CPU", "other"]
    lines = []
    for srv, size, mode, rs in transport_pairs(rate):
        t, u = rs["tcp"], rs["unix"]
        cells = [srv, size_name(size), mode_name(mode, t["depth"]), num(t["target_rate"]),
                 both(rs, "req_per_s", num)]
        cells += [" / ".join(us(r[c]) for c in ("p50_us", "p90_us", "p99_us", "p999_us",
                                                "max_us")) for r in (t, u)]
        cells += [ratio(u["p99_us"], t["p99_us"]),
                  both(rs, "server_cpu_us_per_req", lambda v: "%s µs" % v),
                  ratio(u["server_cpu_us_per_req"], t["server_cpu_us_per_req"]),
                  both(rs, "client_cpu_pct"), both(rs, "other_cpu_pct")]
        lines.append(cells)
    table(out, head, lines)


def transport_plot(gp, rows, png):
    """Three panels: requests/s and server CPU per request (closed loop),
    p50 and p99 at one rate; a cluster per mode (and server), tcp and unix
    side by side."""
    closed = [r for r in rows if r["load"] == "closed"]
    rate = [r for r in rows if r["load"] == "rate"]
    servers = ordered(r["server"] for r in rows)
    panels = 2 + bool(rate)

    def label(srv, mode, depth):
        return mode_name(mode, depth) + ("" if len(servers) == 1 else " " + srv)

    def data(name, sel, cols):
        lines = []
        for srv, size, mode, rs in transport_pairs(sel):
            lines.append('"%s" %s' % (label(srv, mode, rs["tcp"]["depth"]),
                                      " ".join(rs[t][c] for c, t in cols)))
        with open(os.path.join(gp.dir, name), "w") as f:
            f.write("\n".join(lines) + "\n")
        return name

    first = rows[0]
    gp.append("reset")
    gp.append("set terminal pngcairo noenhanced size %d,480 font 'sans,10'" % (420 * panels + 40))
    gp.append("set output '%s'" % png)
    gp.append("set multiplot layout 1,%d title 'TCP loopback against a Unix socket, the same "
              "client (loadgen -c%s), size %s'" % (panels, first["connections"],
                                                   size_name(first["size"])))
    gp.append("set style data histograms")
    gp.append("set style histogram clustered gap 1")
    gp.append("set style fill solid 0.85 border -1")
    gp.append("set boxwidth 0.9")
    gp.append("set grid ytics")
    gp.append("set key top left")
    for column, title, ylabel, fmt in (
            ("req_per_s", "requests/s, closed loop", "requests/s", "%.0fk"),
            ("server_cpu_us_per_req", "server CPU per request, closed loop",
             "µs (utime+stime)", "%.2f")):
        name = data("transport-%s.dat" % column, closed, [(column, t) for t in TRANSPORTS])
        gp.append("set title '%s'" % title)
        gp.append("set ylabel '%s'" % ylabel)
        gp.append("set yrange [0:*]")
        gp.append("set offsets 0, 0, graph 0.1, 0")
        value = "column(%d)/1000" if column == "req_per_s" else "column(%d)"
        plots = ["'%s' using %d:xtic(1) title '%s' lc rgb '%s'" % (name, i + 2, t, TR_COLORS[t][1])
                 for i, t in enumerate(TRANSPORTS)]
        plots += ["'%s' using ($0%+.3f):%d:(sprintf('%s', %s)) with labels offset 0,0.7 "
                  "font ',8' notitle" % (name, -0.5 + (i + 1) / 3.0, i + 2, fmt, value % (i + 2))
                  for i in range(len(TRANSPORTS))]
        gp.append("plot " + ", \\\n     ".join(plots))
    if rate:
        cols = [(c, t) for c in ("p50_us", "p99_us") for t in TRANSPORTS]
        name = data("transport-latency.dat", rate, cols)
        gp.append("set title 'latency at %.0f%% of the lower peak (loadgen -R)'"
                  % (100 * float(rate[0]["fraction"])))
        gp.append("set ylabel 'µs (log scale)'")
        gp.append("set logscale y")
        gp.append("set yrange [1:*]")
        plots = ["'%s' using %d:xtic(1) title '%s %s' lc rgb '%s'"
                 % (name, i + 2, t, c[:3], TR_COLORS[t][c == "p99_us"])
                 for i, (c, t) in enumerate(cols)]
        gp.append("plot " + ", \\\n     ".join(plots))
        gp.append("unset logscale y")
    gp.append("unset multiplot")


class Script(list):
    def __init__(self, d):
        super().__init__()
        self.dir = d


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: compare-report.py DIR [HEADER-FILE]")
    d = sys.argv[1]
    rows = load_rows(os.path.join(d, "runs.csv"))
    part3 = [r for r in rows if r["client"] == "loadgen"]
    rows = [r for r in rows if r["client"] != "loadgen"]
    servers = ordered(r["server"] for r in rows)
    closed = [r for r in rows if r["load"] == "closed"]
    rate = [r for r in rows if r["load"] == "rate"]

    out = []
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            out += [l.rstrip("\n") for l in f]
        out.append("")
    if closed:
        out.append("Part 1: throughput, closed loop (wrk). CPU/req: the server's utime+stime "
                   "per request; wrk p50 / p99: round trips as wrk 4 reports them (after its "
                   "rough correction; none for pipelined runs); client CPU and other: % of one "
                   "CPU, per server.")
        out.append("")
        throughput_table(closed, servers, out)
    if rate:
        out.append("")
        out.append("Part 2: latency against rate (wrk2, corrected, ms; under ~1 ms is "
                   "wrk2's timer). Each server at fractions of its own part-1 peak.")
        out.append("")
        sweep_table(rate, servers, out)
    if part3:
        out.append("")
        out.append("Part 3: TCP loopback against a Unix socket, the same client (loadgen) "
                   "and the same server for both, run for run. Closed loop; p50 / p99: "
                   "every request timed from its write to its response's last byte, µs; "
                   "client CPU and other: tcp / unix; loadgen / wrk: against part 1's "
                   "figure for the same load, a check of the client.")
        out.append("")
        transport_tables(part3, closed, out)
    bad = sum(int(r["non2xx"]) + int(r["errors"]) for r in rows + part3)
    if bad:
        out.append("")
        out.append("warning: %d non-2xx responses or socket errors (raw.txt)" % bad)
    print("\n".join(out))

    gdir = os.path.join(d, "gnuplot")
    os.makedirs(gdir, exist_ok=True)
    gp = Script(gdir)
    png = lambda name: os.path.join(os.path.abspath(d), name)
    if closed:
        bars(gp, closed, servers, "req_per_s", "requests/s", "%.0s%c",
             'sprintf("%%.0fk", column(%d)/1000)', png("compare-throughput.png"),
             "GET hits, closed loop (wrk -c%s), server and client on one CPU each"
             % closed[0]["connections"])
        bars(gp, closed, servers, "server_cpu_us_per_req", "server CPU per request (µs)", "%g",
             'sprintf("%%.1f", column(%d))', png("compare-cpu.png"),
             "server CPU time (utime+stime) per GET hit, lower is better")
    if any(True for _ in transport_pairs(part3)):
        transport_plot(gp, part3, png("compare-transport.png"))
    if rate:
        latency(gp, rate, servers, png("compare-latency.png"),
                "latency against offered rate (wrk2 -c%s, corrected), size %s"
                % (rate[0]["connections"], size_name(rate[0]["size"])))
    script = os.path.join(gdir, "compare.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    subprocess.run(["gnuplot", "compare.gp"], cwd=gdir, check=True)


if __name__ == "__main__":
    main()
