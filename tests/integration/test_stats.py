#!/usr/bin/env python3
"""/stats and /metrics (issue 4) over real sockets: the counters and
latency histograms after a known sequence of requests, the store figures
(items, value_bytes, evictions, expirations), and the Prometheus text
against the JSON.  The rules are docs/stats.md's.

usage: test_stats.py [path/to/ringcached]
"""

import json
import re

from harness import (WRITE_OK, ProtocolError, Server, build_request, key_shard, keys_per_shard,
                     run_main, stats, stats_delta, wait_for)
from content_codings import random_value, text_value

FLAGS = ["--shards", "2", "--memory", "64M"]

COUNTERS = ["requests", "local_requests", "forwarded_requests", "hits", "misses", "not_modified",
            "sets", "deletes", "errors", "received_bytes", "sent_bytes", "connections_accepted",
            "evictions", "expirations"]
GAUGES = ["connections", "items", "value_bytes", "arena_bytes"]
PERCENTILES = ["p50", "p90", "p99", "p99.9", "max"]
KINDS = ["local", "forwarded", "local_all", "forwarded_all"]


# --- /stats ---------------------------------------------------------------------------

class Client:
    """One kept-alive connection that counts the bytes it sends and receives."""

    def __init__(self, srv):
        self.conn = srv.connect()
        self.sent = 0
        self.received = 0

    def req(self, method, path, body=None, headers=None):
        data = build_request(method, path, body, headers)
        self.sent += len(data)
        self.conn.send(data)
        r = self.conn.read_response(head_only=(method == "HEAD"))
        self.received += len(r.raw_head) + len(r.body)
        return r

    def close(self):
        self.conn.close()


def all_ints(node, path="$"):
    """The paths in a JSON document whose value is not a non-negative int."""
    bad = []
    if isinstance(node, dict):
        for k, v in node.items():
            bad += all_ints(v, "%s.%s" % (path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            bad += all_ints(v, "%s[%d]" % (path, i))
    elif not (isinstance(node, int) and not isinstance(node, bool) and node >= 0):
        bad.append(path)
    return bad


def check_doc_shape(c, doc, nshards, what):
    """Keys, per-shard count, integer values, totals = sums."""
    c.eq(doc.get("shards"), nshards, "%s: shards is %d" % (what, nshards))
    c.check(isinstance(doc.get("uptime_seconds"), int), "%s: uptime_seconds is an integer" % what)
    c.eq(all_ints(doc), [], "%s: every number is a non-negative integer" % what)
    per = doc.get("per_shard", [])
    c.eq(len(per), nshards, "%s: %d per_shard entries" % (what, nshards))
    c.eq([p.get("shard") for p in per], list(range(nshards)), "%s: per_shard[i].shard == i" % what)
    total = doc.get("total", {})
    for name in COUNTERS + GAUGES:
        c.check(name in total and all(name in p for p in per),
                "%s: %s in total and every shard" % (what, name))
        c.eq(total.get(name), sum(p.get(name, 0) for p in per),
             "%s: total.%s is the sum over shards" % (what, name))
    for kind in KINDS:
        t = total.get("latency_ns", {}).get(kind, {})
        c.check(all(k in t for k in ["count"] + PERCENTILES),
                "%s: total.latency_ns.%s has count, p50, p90, p99, p99.9, max" % (what, kind),
                repr(t))
        counts = [p.get("latency_ns", {}).get(kind, {}).get("count", 0) for p in per]
        c.eq(t.get("count"), sum(counts), "%s: total %s latency count is the sum over shards"
             % (what, kind))
        maxes = [p.get("latency_ns", {}).get(kind, {}).get("max", 0) for p in per]
        c.eq(t.get("max"), max(maxes) if maxes else 0,
             "%s: total %s latency max is the largest shard max" % (what, kind))
        for i, p in enumerate(per):
            h = p.get("latency_ns", {}).get(kind, {})
            if h.get("count", 0) == 0:
                c.check(all(h.get(k) == 0 for k in PERCENTILES),
                        "%s: shard %d %s latency with no samples is all 0" % (what, i, kind),
                        repr(h))
            else:
                check_percentiles(c, h, "%s: shard %d %s latency" % (what, i, kind))


def check_percentiles(c, h, what):
    vals = [h.get(k, -1) for k in PERCENTILES]
    c.check(vals[0] > 0 and vals == sorted(vals),
            "%s: 0 < p50 <= p90 <= p99 <= p99.9 <= max" % what, repr(h))


def poll_stats(srv, cond, timeout=5.0):
    """Polls /stats until cond(doc) holds; (held, last doc or None)."""
    last = [None]

    def probe():
        try:
            last[0] = stats(srv)
        except (OSError, ProtocolError):
            last[0] = None
        return last[0] is not None and cond(last[0])
    return bool(wait_for(probe, timeout, 0.2)), last[0]


def totals(doc, *names):
    if doc is None:
        return "no document"
    return ", ".join("%s %s" % (n, [p.get(n) for p in doc["per_shard"]]) for n in names)


def delta(a, b, name):
    return stats_delta(a["total"], b["total"])[name]


def counters(c):
    c.section("/stats after a known sequence of requests (--shards 2)")
    srv = Server(FLAGS, checks=c).start()
    r0 = srv.request("GET", "/stats")
    c.eq(r0.status, 200, "GET /stats -> 200")
    ctype = r0.header("Content-Type") or ""
    c.check(ctype.split(";")[0].strip() == "application/json", "/stats is application/json",
            ctype)
    try:
        s0 = json.loads(r0.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        s0 = None
    c.check(isinstance(s0, dict), "/stats parses as a JSON object", repr(r0.body[:200]))
    c.check(b"\n" not in r0.body.rstrip(b"\n"), "/stats is one line")
    if not isinstance(s0, dict):
        srv.stop()
        return
    check_doc_shape(c, s0, 2, "fresh server")
    for kind in KINDS:
        c.eq(s0["total"]["latency_ns"][kind]["count"], 0, "fresh server: no %s latency samples" % kind)

    keys = keys_per_shard("st-", 2, 3)
    allkeys = keys[0] + keys[1]
    values = {k: text_value(1000 + 37 * i) for i, k in enumerate(allkeys)}
    misses = [k for s in (0, 1) for k in keys_per_shard("miss-", 2, 2)[s]] + ["miss-extra"]
    cl = Client(srv)
    nreq = 0
    for k in allkeys:
        r = cl.req("PUT", "/cache/" + k, values[k], [("Content-Type", "text/plain")])
        c.eq(r.status, 201, "PUT /cache/%s (shard %d) -> 201" % (k, key_shard(k, 2)))
        nreq += 1
    # the variants are made off the shard and installed a little later
    # (docs/fastlane.md): wait for all of them before reading them
    ok, _ = poll_stats(srv, lambda d: d["total"]["zip_installed"] - s0["total"]["zip_installed"]
                       == len(allkeys) and d["total"]["zip_pending"] == 0)
    c.check(ok, "the br and gzip variants of all %d values are installed within 5 s"
            % len(allkeys))
    enc = {}
    for k in allkeys:
        for ae in ("br", "gzip"):
            r = cl.req("GET", "/cache/" + k, headers=[("Accept-Encoding", ae)])
            c.check(r.status == 200 and r.header("Content-Encoding") == ae,
                    "GET /cache/%s, %s -> 200 %s" % (k, ae, ae), repr(r))
            enc[(k, ae)] = len(r.body)
            nreq += 1
    for k in misses:
        r = cl.req("GET", "/cache/" + k)
        c.eq(r.status, 404, "GET /cache/%s -> 404" % k)
        nreq += 1
    sent, received = cl.sent, cl.received
    s1 = stats(srv)
    hits, nmiss = 2 * len(allkeys), len(misses)
    c.note("did %d PUTs, %d GET hits, %d GET misses on one connection" % (len(allkeys), hits, nmiss))
    check_doc_shape(c, s1, 2, "after the requests")
    c.check(delta(s0, s1, "requests") >= nreq, "requests grew by at least %d" % nreq,
            "grew by %d" % delta(s0, s1, "requests"))
    c.eq(delta(s0, s1, "hits"), hits, "hits grew by exactly %d" % hits)
    c.eq(delta(s0, s1, "misses"), nmiss, "misses grew by exactly %d" % nmiss)
    c.eq(delta(s0, s1, "sets"), len(allkeys), "sets grew by exactly %d" % len(allkeys))
    c.eq(delta(s0, s1, "errors"), nmiss, "errors grew by exactly %d (the 404s)" % nmiss)
    c.eq(delta(s0, s1, "deletes"), 0, "deletes did not grow")
    c.eq(delta(s0, s1, "not_modified"), 0, "not_modified did not grow")
    c.check(delta(s0, s1, "received_bytes") >= sent,
            "received_bytes grew by at least the %d bytes sent" % sent,
            "grew by %d" % delta(s0, s1, "received_bytes"))
    c.check(delta(s0, s1, "sent_bytes") >= received,
            "sent_bytes grew by at least the %d bytes received" % received,
            "grew by %d" % delta(s0, s1, "sent_bytes"))
    c.check(delta(s0, s1, "connections_accepted") >= 2,
            "connections_accepted grew by at least 2 (the client and /stats)")
    c.check(s1["total"]["connections"] >= 1,
            "connections >= 1 (the client's is open)", repr(s1["total"]["connections"]))
    served = delta(s0, s1, "local_requests") + delta(s0, s1, "forwarded_requests")
    c.eq(served, nreq, "local_requests + forwarded_requests grew by exactly the %d /cache/ "
         "requests (each served by one store)" % nreq)
    c.check(delta(s0, s1, "forwarded_requests") >= hits // 2,
            "forwarded_requests grew by at least %d (half of the keys are on the other shard)"
            % (hits // 2), "grew by %d" % delta(s0, s1, "forwarded_requests"))
    for s in (0, 1):
        p0, p1 = s0["per_shard"][s], s1["per_shard"][s]
        c.eq(p1["sets"] - p0["sets"], 3, "shard %d: sets grew by 3 (its own keys)" % s)
        c.eq(p1["hits"] - p0["hits"], 6, "shard %d: hits grew by 6 (lookups of its keys)" % s)
        want = sum(1 for k in misses if key_shard(k, 2) == s)
        c.eq(p1["misses"] - p0["misses"], want, "shard %d: misses grew by %d" % (s, want))

    lat = s1["total"]["latency_ns"]
    c.eq(lat["local"]["count"] - s0["total"]["latency_ns"]["local"]["count"], hits // 2,
         "local hit latency: %d new samples (the keys of the client's shard)" % (hits // 2))
    c.eq(lat["forwarded"]["count"] - s0["total"]["latency_ns"]["forwarded"]["count"], hits // 2,
         "forwarded hit latency: %d new samples (the other shard's keys)" % (hits // 2))
    def grew(kind):
        return lat[kind]["count"] - s0["total"]["latency_ns"][kind]["count"]
    c.eq(grew("local_all"), delta(s0, s1, "local_requests"),
         "local_all latency: a sample per /cache/ request the client's shard answered "
         "(PUTs, hits and misses)")
    c.eq(grew("forwarded_all"), delta(s0, s1, "forwarded_requests"),
         "forwarded_all latency: a sample per /cache/ request the other shard answered")
    c.eq(grew("local_all") + grew("forwarded_all"), nreq,
         "local_all + forwarded_all: one sample per /cache/ request (%d)" % nreq)
    for kind in KINDS:
        check_percentiles(c, lat[kind], "total %s latency" % kind)
        c.note("%s (ns): %s" % (kind, lat[kind]))

    c.section("the store figures: items and value_bytes (variants included)")
    ok, s2 = poll_stats(srv, lambda d: d["total"]["items"] == len(allkeys))
    c.check(ok, "total.items reaches %d within 5 s" % len(allkeys),
            "per shard: " + totals(s2, "items", "sets", "value_bytes"))
    if ok:
        for s in (0, 1):
            c.eq(s2["per_shard"][s]["items"], 3, "shard %d: items is 3" % s)
        raw = sum(len(v) for v in values.values())
        full = raw + sum(enc.values())
        c.check(s2["total"]["value_bytes"] >= full,
                "value_bytes >= %d, the values plus their br and gzip variants (raw alone: %d)"
                % (full, raw), "value_bytes %d" % s2["total"]["value_bytes"])
        c.check(s2["total"]["arena_bytes"] > 0, "arena_bytes > 0")

    c.section("not_modified, deletes, expirations")
    s3 = stats(srv)
    k = allkeys[0]
    tag = cl.req("GET", "/cache/" + k).header("ETag")
    for _ in range(2):
        r = cl.req("GET", "/cache/" + k, headers=[("If-None-Match", tag)])
        c.eq(r.status, 304, "conditional GET -> 304")
    r = cl.req("DELETE", "/cache/" + allkeys[1])
    c.eq(r.status, 204, "DELETE -> 204")
    r = cl.req("PUT", "/cache/st-exp?ttl=1", b"v")
    c.eq(r.status, 201, "PUT ?ttl=1 -> 201")
    s4 = stats(srv)
    c.eq(delta(s3, s4, "not_modified"), 2, "not_modified grew by exactly 2")
    c.eq(delta(s3, s4, "deletes"), 1, "deletes grew by exactly 1")
    c.eq(delta(s3, s4, "errors"), 0, "304s and the 204 are not errors")
    r = cl.req("DELETE", "/cache/never-there")
    c.eq(r.status, 404, "DELETE of an absent key -> 404")
    s4b = stats(srv)
    c.eq(delta(s4, s4b, "errors"), 1, "errors grew by 1 (that 404)")
    c.eq(delta(s4, s4b, "deletes"), 0,
         "deletes did not grow (nothing was deleted; docs: 'deletes applied to this "
         "shard's store')")
    gone = wait_for(lambda: srv.request("GET", "/cache/st-exp").status == 404, 5.0, 0.1)
    c.check(gone, "the ttl=1 key is gone within 5 s")
    ok, s5 = poll_stats(srv, lambda d: d["total"]["expirations"] >= 1)
    c.check(ok, "expirations >= 1 within 5 s after the key expired",
            "per shard: " + totals(s5, "expirations", "items"))
    ok, s6 = poll_stats(srv, lambda d: d["total"]["items"] == len(allkeys) - 1)
    c.check(ok, "items falls to %d (one deleted, one expired)" % (len(allkeys) - 1),
            "per shard: " + totals(s6, "items", "deletes", "expirations"))

    metrics(c, srv, cl)
    cl.close()
    srv.stop()


def metrics(c, srv, cl):
    c.section("/metrics: Prometheus text")
    # No hits between the two documents: the histogram counts must agree.
    sj = stats(srv)
    r = srv.request("GET", "/metrics")
    c.eq(r.status, 200, "GET /metrics -> 200")
    c.eq(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8",
         "/metrics Content-Type as docs/stats.md says")
    text = r.body.decode("utf-8", "replace")
    samples, types, helps, bad = parse_metrics(text)
    c.eq(bad, [], "every line of /metrics parses")
    c.check(samples, "/metrics has samples")
    c.eq([n for n, _, _ in samples if not n.startswith("ringcached_")], [],
         "every sample name starts with ringcached_")
    for fam, typ in types.items():
        if typ == "counter":
            c.check(fam.endswith("_total"), "counter %s ends in _total" % fam)
    # TYPE before the family's first sample
    seen_type = set()
    order_ok = True
    for ln in text.split("\n"):
        if ln.startswith("# TYPE "):
            seen_type.add(ln.split()[2])
        elif ln and not ln.startswith("#"):
            name = re.match(r"[a-zA-Z0-9_:]+", ln).group(0)
            fam = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in seen_type and fam not in seen_type:
                order_ok = False
    c.check(order_ok, "every sample follows its family's # TYPE line")

    by_name = {}
    for n, labels, v in samples:
        by_name.setdefault(n, []).append((labels, v))
    for name in COUNTERS + GAUGES:
        mname = "ringcached_%s%s" % (name, "_total" if name in COUNTERS else "")
        want_type = "counter" if name in COUNTERS else "gauge"
        c.eq(types.get(mname), want_type, "%s is a %s" % (mname, want_type))
        series = by_name.get(mname, [])
        c.eq(sorted(l.get("shard") for l, _ in series), ["0", "1"],
             "%s: one sample per shard" % mname)
        for l, v in series:
            s = int(l.get("shard", -1))
            if 0 <= s < 2:
                jv = sj["per_shard"][s][name]
                if name in ("hits", "misses", "sets", "deletes", "not_modified", "evictions",
                            "expirations", "arena_bytes"):
                    c.eq(v, jv, "%s{shard=\"%d\"} equals /stats' %s" % (mname, s, name))
                elif name in COUNTERS:
                    c.check(v >= jv, "%s{shard=\"%d\"} >= /stats' %d" % (mname, s, jv), repr(v))
    c.check("ringcached_uptime_seconds" in by_name, "ringcached_uptime_seconds present")

    hname = "ringcached_request_duration_seconds"
    c.eq(types.get(hname), "histogram", "%s is a histogram" % hname)
    for kind in KINDS:
        buckets = [(le_value(l["le"]), l["le"], v) for l, v in by_name.get(hname + "_bucket", [])
                   if l.get("kind") == kind]
        what = "%s{kind=%s}" % (hname, kind)
        if not c.check(buckets, "%s has buckets" % what):
            continue
        les = [b[0] for b in buckets]
        c.check(les == sorted(les) and len(set(les)) == len(les), "%s: le bounds ascend" % what,
                repr(les))
        counts = [b[2] for b in buckets]
        c.check(counts == sorted(counts), "%s: buckets are cumulative" % what, repr(counts))
        c.eq(buckets[-1][1], "+Inf", "%s: the last bucket is le=\"+Inf\"" % what)
        c.check(any(b[0] < 1e-6 for b in buckets), "%s: has sub-microsecond buckets" % what,
                repr(les))
        cnt = [v for l, v in by_name.get(hname + "_count", []) if l.get("kind") == kind]
        sm = [v for l, v in by_name.get(hname + "_sum", []) if l.get("kind") == kind]
        c.check(len(cnt) == 1 and len(sm) == 1, "%s: one _count and one _sum" % what)
        if len(cnt) != 1 or len(sm) != 1:
            continue
        c.eq(buckets[-1][2], cnt[0], "%s: +Inf bucket equals _count" % what)
        js = sj["total"]["latency_ns"][kind]
        c.eq(cnt[0], js["count"], "%s: _count equals /stats' %s count" % (what, kind))
        if js["count"]:
            mx = js["max"] * 1e-9
            c.check(sm[0] > 0 and sm[0] <= cnt[0] * mx * 1.000001,
                    "%s: 0 < _sum <= count x max (%.9f <= %d x %.9f)"
                    % (what, sm[0], cnt[0], mx))
            covering = [b for b in buckets if b[0] >= mx * 1.0625]
            c.check(covering and covering[0][2] == cnt[0],
                    "%s: the first bucket at or above 1.0625 x max holds every sample" % what,
                    repr(covering[:1]))


def evictions(c):
    c.section("evictions: --shards 1 --memory 8M, 24 x 1 MB")
    srv = Server(["--shards", "1", "--memory", "8M", "--max-value", "2M"], checks=c).start()
    blob = random_value(1 << 20)
    for i in range(24):
        r = srv.request("PUT", "/cache/big%d" % i, blob, [("Content-Type", "image/png")])
        if r.status not in WRITE_OK:
            c.check(False, "PUT big%d -> 201/204" % i, repr(r))
            break
    ok, s = poll_stats(srv, lambda d: d["total"]["evictions"] > 0)
    c.check(ok, "evictions > 0 within 5 s", "per shard: " + totals(s, "evictions", "items", "sets"))
    if ok:
        c.check(s["total"]["items"] < 24, "items < 24 (%d)" % s["total"]["items"])
        c.eq(s["total"]["sets"], 24, "sets is 24")
    srv.stop()


# --- reading the Prometheus text ----------------------------------------------------------

METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)(?: \d+)?$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_labels(text):
    out = {}
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise ValueError("bad label set %r" % text)
        out[m.group(1)] = m.group(2)
        pos = m.end()
    return out


def parse_metrics(text):
    """Prometheus text format 0.0.4 -> (samples, types, helps, bad_lines).
    samples: list of (name, {labels}, float value) in order;
    types: {family: type}; helps: {family: text}."""
    samples, types, helps, bad = [], {}, {}, []
    for ln in text.split("\n"):
        if not ln:
            continue
        if ln.startswith("# TYPE "):
            parts = ln.split()
            if len(parts) != 4:
                bad.append(ln)
                continue
            types[parts[2]] = parts[3]
            continue
        if ln.startswith("# HELP "):
            parts = ln.split(None, 3)
            helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        if ln.startswith("#"):
            continue
        m = METRIC_LINE.match(ln)
        if not m:
            bad.append(ln)
            continue
        try:
            labels = parse_labels(m.group(3) or "")
            v = m.group(4)
            value = float("inf") if v == "+Inf" else float(v)
        except ValueError:
            bad.append(ln)
            continue
        samples.append((m.group(1), labels, value))
    return samples, types, helps, bad


def le_value(le):
    return float("inf") if le == "+Inf" else float(le)


def freshness(c):
    """`items` and the request counters are exact once the requests they
    count have been answered (issue 8: a reader that waited for its PUTs'
    answers saw 1,940,828 of 2,000,000 items, the gauge being copied a few
    times a second).  Read at once, no polling."""
    c.section("freshness: /stats right after the answers")
    srv = Server(["--shards", "2", "--memory", "64M"], checks=c).start()
    n = 3000
    with srv.connect(timeout=30) as conn:
        before = stats(srv, conn)["total"]["requests"]
        for lo in range(0, n, 500):
            conn.send(b"".join(build_request("PUT", "/cache/fresh-%d" % i, b"v%d" % i)
                               for i in range(lo, lo + 500)))
            got = [conn.read_response().status for _ in range(500)]
            if set(got) != {201}:
                c.check(False, "PUTs %d.. answered 201" % lo, repr(set(got)))
                break
        doc = stats(srv, conn)
        c.eq(doc["total"]["items"], n, "items right after %d acknowledged PUTs" % n)
        c.eq(doc["total"]["sets"], n, "sets likewise")
        conn.send(b"".join(build_request("DELETE", "/cache/fresh-%d" % i) for i in range(1000)))
        got = [conn.read_response().status for _ in range(1000)]
        c.eq(set(got), {204}, "1000 DELETEs answered 204")
        doc = stats(srv, conn)
        c.eq(doc["total"]["items"], n - 1000, "items right after them")
        c.eq(doc["total"]["deletes"], 1000, "deletes likewise")
        c.eq(doc["total"]["requests"] - before, n + 1000 + 2, "requests counts every request "
             "answered since (and this /stats and the one before)")
    srv.stop()


def main(c):
    counters(c)
    evictions(c)
    freshness(c)


if __name__ == "__main__":
    run_main("test_stats", main)
