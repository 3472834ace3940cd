#!/usr/bin/env python3
"""API-key auth, /stats and /metrics (issue 4) over real sockets: keys from
--api-keys-file in X-API-Key or Authorization: Bearer, bad key files, the
counters and latency histograms after a known sequence of requests, and
the Prometheus text.  The rules are docs/stats.md's and the README's.

usage: test_auth_stats.py [path/to/ringcached]
"""

import json
import os
import re
import secrets
import shutil
import tempfile
import time

from harness import (RUN_TIMEOUT, WRITE_OK, ProtocolError, Server, build_request, free_port,
                     key_shard, keys_per_shard, run_binary, run_main, show, stats, stats_delta,
                     wait_for)
from fastlane_lib import le_value, parse_metrics, random_value, text_value

FLAGS = ["--shards", "2", "--memory", "64M"]

COUNTERS = ["requests", "local_requests", "forwarded_requests", "hits", "misses", "not_modified",
            "sets", "deletes", "errors", "received_bytes", "sent_bytes", "connections_accepted",
            "evictions", "expirations"]
GAUGES = ["connections", "items", "value_bytes", "arena_bytes"]
PERCENTILES = ["p50", "p90", "p99", "p99.9", "max"]
KINDS = ["local", "forwarded", "local_all", "forwarded_all"]


class TempDir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="ringcached-auth-")

    def file(self, name, text, mode=0o600):
        p = os.path.join(self.path, name)
        with open(p, "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())
        os.chmod(p, mode)
        return p

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


# --- auth ---------------------------------------------------------------------------

def denied(c, r, what, value=None):
    ok = c.eq(r.status, 401, "%s -> 401" % what)
    if ok:
        c.check(r.header("WWW-Authenticate") not in (None, ""),
                "%s: 401 has WWW-Authenticate" % what, show(r))
        if value is not None:
            c.check(value not in r.body, "%s: 401 does not carry the value" % what)
    else:
        c.note(show(r))


def auth(c, tmp):
    c.section("--api-keys-file with two keys (mode 0600)")
    k1 = secrets.token_hex(16)          # 32 characters
    k2 = "K2-" + secrets.token_hex(20)  # 43 characters
    path = tmp.file("keys", "%s\n%s\n" % (k1, k2))
    srv = Server(FLAGS + ["--api-keys-file", path], checks=c).start()
    c.check(k1 not in srv.log_text() and k2 not in srv.log_text(),
            "the startup log does not show the keys")
    c.check("readable" not in srv.log_text(), "no 'readable by group or others' warning at 0600",
            srv.log_text()[-300:])

    value = b"secret value"
    ok_put = srv.request("PUT", "/cache/a", value, [("X-API-Key", k1)])
    c.within(ok_put.status, WRITE_OK, "PUT with the right key in X-API-Key -> 201/204")

    c.section("requests without a valid key")
    denied(c, srv.request("GET", "/cache/a"), "GET /cache/a without a key", value)
    r = srv.request("HEAD", "/cache/a")
    denied(c, r, "HEAD /cache/a without a key")
    g = srv.request("GET", "/cache/a")
    c.eq(r.raw_head, g.raw_head, "HEAD's 401 head is GET's")
    denied(c, srv.request("GET", "/cache/missing"), "GET of a missing key without a key")
    r = srv.request("PUT", "/cache/b", b"intruder")
    denied(c, r, "PUT /cache/b without a key")
    r = srv.request("DELETE", "/cache/a")
    denied(c, r, "DELETE /cache/a without a key")
    wrong_last = k1[:-1] + ("0" if k1[-1] != "0" else "1")
    wrong_first = ("0" if k1[0] != "0" else "1") + k1[1:]
    mixed = k1[:16] + k2[16:32]
    bad = [
        (wrong_last, "a wrong key of the same length (last byte differs)"),
        (wrong_first, "a wrong key of the same length (first byte differs)"),
        (k1[:-1], "the right key minus its last byte (a prefix)"),
        (k1[:16], "the first half of the right key"),
        (k1[:1], "the first byte of the right key"),
        (k1 + "x", "the right key plus one byte"),
        (k1 + k1, "the right key twice"),
        ("x" + k1, "one byte plus the right key"),
        (k1.upper(), "the right key in upper case"),
        (mixed, "half of key 1 and half of key 2"),
        (k2[:32], "the first 32 bytes of key 2 (key 1's length)"),
    ]
    for key, what in bad:
        denied(c, srv.request("GET", "/cache/a", headers=[("X-API-Key", key)]),
               "X-API-Key: %s" % what, value)
        denied(c, srv.request("GET", "/cache/a", headers=[("Authorization", "Bearer " + key)]),
               "Authorization: Bearer %s" % what, value)
    for hv, what in (("", "an empty X-API-Key"),):
        denied(c, srv.request("GET", "/cache/a", headers=[("X-API-Key", hv)]), what, value)
    for hv, what in (("Bearer", "'Bearer' and no key"), ("Bearer ", "'Bearer ' and no key"),
                     (k1, "the key without a scheme"), ("Basic " + k1, "the key as Basic"),
                     ("Bearer" + k1, "'Bearer' glued to the key"),
                     ("Token " + k1, "the key under another scheme")):
        denied(c, srv.request("GET", "/cache/a", headers=[("Authorization", hv)]),
               "Authorization: %s" % what, value)
    c.eq(srv.request("GET", "/cache/b", headers=[("X-API-Key", k1)]).status, 404,
         "the PUT without a key stored nothing")
    c.eq(srv.request("GET", "/cache/a", headers=[("X-API-Key", k1)]).body, value,
         "the DELETE without a key deleted nothing")

    c.section("requests with a valid key")
    good = [
        ([("X-API-Key", k1)], "X-API-Key: key 1"),
        ([("X-API-Key", k2)], "X-API-Key: key 2"),
        ([("Authorization", "Bearer " + k1)], "Authorization: Bearer key 1"),
        ([("Authorization", "Bearer " + k2)], "Authorization: Bearer key 2"),
        ([("Authorization", "bearer " + k1)], "Authorization: bearer (lower case) key 1"),
        ([("Authorization", "BEARER " + k2)], "Authorization: BEARER key 2"),
        ([("Authorization", "Bearer   " + k1)], "Authorization: Bearer, three spaces, key 1"),
        ([("X-API-Key", "  %s\t" % k1)], "X-API-Key: key 1 with surrounding whitespace"),
        ([("x-api-key", k2)], "x-api-key (lower-case field name): key 2"),
    ]
    for h, what in good:
        r = srv.request("GET", "/cache/a", headers=h)
        c.check(r.status == 200 and r.body == value, "GET with %s -> 200 and the value" % what,
                show(r))
    for i, (h, what) in enumerate(good[:4]):
        r = srv.request("PUT", "/cache/w%d" % i, b"w", headers=h)
        c.eq(r.status, 201, "PUT a new key with %s -> 201" % what)
    r = srv.request("HEAD", "/cache/a", headers=[("X-API-Key", k2)])
    c.eq(r.status, 200, "HEAD with key 2 -> 200")
    r = srv.request("GET", "/cache/missing", headers=[("X-API-Key", k2)])
    c.eq(r.status, 404, "GET of a missing key with key 2 -> 404 (not 401)")
    r = srv.request("DELETE", "/cache/w0", headers=[("Authorization", "Bearer " + k2)])
    c.eq(r.status, 204, "DELETE with Authorization: Bearer key 2 -> 204")

    with srv.connect() as conn:
        conn.send(build_request("GET", "/cache/a", headers=[("X-API-Key", k1)]))
        a = conn.read_response()
        conn.send(build_request("GET", "/cache/a", headers=[("X-API-Key", wrong_last)]))
        b = conn.read_response()
        c.check(a.status == 200 and b.status == 401,
                "one connection: a good key then a wrong one -> 200 then 401 "
                "(the key is checked per request)", "%r then %r" % (a, b))

    c.section("/health, /stats, /metrics with keys configured")
    c.eq(srv.request("GET", "/health").status, 200, "GET /health without a key -> 200")
    for path in ("/stats", "/metrics"):
        denied(c, srv.request("GET", path), "GET %s without a key" % path)
        denied(c, srv.request("GET", path, headers=[("X-API-Key", wrong_last)]),
               "GET %s with a wrong key" % path)
        r = srv.request("GET", path, headers=[("X-API-Key", k1)])
        c.eq(r.status, 200, "GET %s with X-API-Key key 1 -> 200" % path)
        r = srv.request("GET", path, headers=[("Authorization", "Bearer " + k2)])
        c.eq(r.status, 200, "GET %s with Authorization: Bearer key 2 -> 200" % path)
    c.section("a body without a key is refused before it is sent")
    for hdrs, what in (("Content-Length: 1000000\r\nExpect: 100-continue\r\n",
                        "Expect: 100-continue"),
                       ("Content-Length: 1000000\r\n", "Content-Length, body not sent"),
                       ("Transfer-Encoding: chunked\r\n", "chunked, no chunk sent")):
        with srv.connect() as cl:
            cl.send(("PUT /cache/early HTTP/1.1\r\nHost: x\r\n%s\r\n" % hdrs).encode())
            r = cl.read_response()
            c.eq(r.status, 401, "PUT with %s and no key -> 401 before the body" % what)
            c.check(r.has_token("Connection", "close"), "... with Connection: close", show(r))
            c.check(cl.closed_by_peer(), "... and the connection is closed")
    r = srv.request("GET", "/cache/early", headers=[("X-API-Key", k1)])
    c.eq(r.status, 404, "nothing was stored by the refused PUTs")
    for line, want, what in (("FOO /cache/early", 405, "an unknown method on /cache/"),
                             ("POST /stats", 405, "POST /stats"),
                             ("PUT /health", 405, "PUT /health")):
        with srv.connect() as cl:
            cl.send(("%s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" % line)
                    .encode())
            r = cl.read_response()
            c.eq(r.status, want, "%s with a body not sent yet and no key -> %d, as when complete"
                 % (what, want))
            c.check(cl.closed_by_peer(), "... and the connection is closed")

    try:
        errors, detail = stats(srv, headers=[("X-API-Key", k1)])["total"]["errors"], None
    except ProtocolError as e:
        errors, detail = None, str(e)
    c.check(errors is not None and errors > 0,
            "/stats with a key is the JSON document and counts the 401s as errors", detail)
    c.check(k1 not in srv.log_text() and k2 not in srv.log_text(), "the log does not show the keys")
    srv.stop()

    c.section("key file format: comments, blank lines, CRLF, trailing spaces")
    k3 = "k3#" + secrets.token_hex(8)
    k4 = secrets.token_hex(128)                  # 256 bytes, the longest key
    path = tmp.file("keys-fmt", "# a comment line\r\n\r\n   \n%s \r\n\t\n#%s\n%s\n"
                    % (k3, k1, k4))
    srv = Server(FLAGS + ["--api-keys-file", path], checks=c).start()
    r = srv.request("PUT", "/cache/f", b"v", [("X-API-Key", k3)])
    c.within(r.status, WRITE_OK, "a key with '#' inside and a trailing space + CRLF works")
    r = srv.request("GET", "/cache/f", headers=[("Authorization", "Bearer " + k4)])
    c.eq(r.status, 200, "a 256-byte key works")
    denied(c, srv.request("GET", "/cache/f", headers=[("X-API-Key", k1)]),
           "the key of a comment line ('#key')")
    denied(c, srv.request("GET", "/cache/f", headers=[("X-API-Key", "#" + k1)]),
           "a comment line as a key")
    denied(c, srv.request("GET", "/cache/f", headers=[("X-API-Key", k4[:-1])]),
           "the 256-byte key minus its last byte")
    denied(c, srv.request("GET", "/cache/f", headers=[("X-API-Key", k4 + "0")]),
           "the 256-byte key plus a byte")
    srv.stop()

    c.section("a key file readable by others")
    path = tmp.file("keys-open", "%s\n" % k1, 0o644)
    srv = Server(FLAGS + ["--api-keys-file", path], checks=c).start()
    c.eq(srv.request("GET", "/cache/x", headers=[("X-API-Key", k1)]).status, 404,
         "mode 0644: the daemon starts and the key works")
    log = srv.log_text()
    c.check("--api-keys-file" in log and "readable" in log,
            "mode 0644: the log warns that the key file is readable by group or others",
            repr(log[-300:]))
    srv.stop()


def bad_key_files(c, tmp):
    c.section("bad --api-keys-file: the daemon exits 2 (a bad flag value) with a message naming the flag")
    secret = "s3cr3t-" + secrets.token_hex(6)
    cases = [
        (os.path.join(tmp.path, "does-not-exist"), "a missing file", None),
        (tmp.file("empty", ""), "an empty file", None),
        (tmp.file("comments", "# only a comment\n\n   \n"), "a file with comments only", None),
        (tmp.file("space", "goodkey-1234567890\nbad %s\n" % secret), "a key with a space (line 2)",
         2),
        (tmp.file("ctl", "goodkey-1234567890\n\n%s\x01\n" % secret),
         "a key with a control character (line 3)", 3),
        (tmp.file("long", "%s\n" % ("L" * 257)), "a 257-byte key (line 1)", 1),
        (tmp.file("utf8", "%s\u00e9\n" % secret), "a key with a non-ASCII byte (line 1)", 1),
        (tmp.path, "a directory", None),
    ]
    for path, what, line in cases:
        t0 = time.monotonic()
        rc, out = run_binary(["--listen", "127.0.0.1:%d" % free_port()] + FLAGS
                             + ["--api-keys-file", path])
        took = time.monotonic() - t0
        if rc is None:
            c.check(False, "%s: the daemon exits (it was still running after %.0f s)"
                    % (what, RUN_TIMEOUT), repr(out[-300:]))
            continue
        c.eq(rc, 2, "%s: exit status 2 (took %.1f s)" % (what, took))
        c.check("--api-keys-file" in out, "%s: the message names --api-keys-file" % what,
                repr(out[-300:]))
        c.check(secret not in out, "%s: the message does not show the bad line's text" % what,
                repr(out[-300:]))
        if line is not None:
            c.check(re.search(r"\bline %d\b" % line, out) is not None,
                    "%s: the message names line %d" % (what, line), repr(out[-300:]))
    rc, out = run_binary(["--listen", "127.0.0.1:%d" % free_port()] + FLAGS + ["--api-keys-file"])
    c.eq(rc, 2, "--api-keys-file without a value exits 2")
    c.check("--api-keys-file" in out, "... naming --api-keys-file", repr(out[-300:]))


# --- stats ----------------------------------------------------------------------------

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


def main(c):
    tmp = TempDir()
    try:
        auth(c, tmp)
        bad_key_files(c, tmp)
    finally:
        tmp.remove()
    counters(c)
    evictions(c)


if __name__ == "__main__":
    run_main("test_auth_stats", main)
