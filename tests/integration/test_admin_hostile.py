#!/usr/bin/env python3
"""The operations endpoints against hostile HTTP clients and a hostile
instance registry in Redis: /health, /stats, /metrics, /dashboard, /cluster
and /tags/.

- methods, query strings and look-alike paths on the admin paths: the route
  table's answers (README "The API"), a request body read and skipped;
- a client that pipelines /metrics and never reads: its connection's memory
  stays within its bound (README "Memory per connection") and the shard
  keeps serving everyone else;
- --api-keys-file: which admin paths are open (/health, /dashboard) and
  which want a key (/stats, /metrics, /cluster, /tags/), while SIGHUP
  reloads the file under a stream of /stats;
- /cluster with a registry written by another client of the same Redis
  (docs/coherence.md, "Limits on what Redis sends"): entries that are not
  one JSON object in UTF-8 with nesting at most 16 are left out, so the
  answer is always strict JSON; 10,000 entries; an answer bounded at 1 MiB
  (COH_CLUSTER_MAX) whatever the registry holds, and the room for it
  reserved, so a client pipelining /cluster and reading nothing holds no
  more than its bound.

usage: test_admin_hostile.py [path/to/ringcached]
"""

import json
import os
import signal
import threading
import time

from harness import (Conn, Server, api_keys_file, build_request, show, stats, wait_for)
from redis_harness import PREFIX, run_with_redis

MiB = 1 << 20
CLUSTER_MAX = 1 * MiB          # COH_CLUSTER_MAX (include/ringcache/coherence.h)
# One connection's unsent answers stop its parsing at 8 MiB (CONN_OUT_MAX);
# one more answer or room may pass that, plus its buffers: well under this.
CONN_SLACK = 16 * MiB
KEY = "admin-key-1"
AUTH = [("X-API-Key", KEY)]


def conn_memory(srv, headers=None):
    return stats(srv, headers=headers)["total"]["conn_memory"]


def settled_conn_memory(srv, headers=None):
    """conn_memory once two sweeps (4 a second) agree: the gauge is updated
    by each shard's sweep, not as answers arrive."""
    last = [None]

    def same():
        v = conn_memory(srv, headers)
        ok = v == last[0]
        last[0] = v
        return ok
    wait_for(same, 3.0, interval=0.3)
    return last[0]


# --- methods, queries, paths ---------------------------------------------------------

def methods_and_paths(c, srv):
    c.section("admin paths: methods, query strings, look-alike paths")
    for path in ("/health", "/stats", "/metrics", "/dashboard"):
        r = srv.request("GET", path + "?x=1&%zz&ttl=abc&&=")
        c.eq(r.status, 200, "GET %s with an odd query string -> 200 (the query is ignored)" % path)
        with Conn(srv.port) as k:
            h = k.roundtrip("HEAD", path)
            after = k.roundtrip("GET", "/health")
        c.check(h.status == 200 and h.header("Content-Length") not in (None, "0") and
                h.body == b"" and after.status == 200 and after.body == b"OK\n",
                "HEAD %s -> 200 with GET's Content-Length, no body; the connection goes on"
                % path, show(h) + " then " + show(after))
        for m in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            r = srv.request(m, path, b"x" if m in ("POST", "PUT", "PATCH") else None)
            c.check(r.status == 405 and r.header("Allow") == "GET, HEAD",
                    "%s %s -> 405, Allow: GET, HEAD" % (m, path), show(r))
    for m in ("GET", "HEAD", "PUT", "POST"):
        with Conn(srv.port) as k:
            r = k.roundtrip(m, "/tags/t1", b"x" if m in ("PUT", "POST") else None)
        c.check(r.status == 405 and r.header("Allow") == "DELETE",
                "%s /tags/t1 -> 405, Allow: DELETE" % m, show(r))
    for path in ("/stats/", "/stats/x", "/STATS", "/statsx", "//stats", "/st%61ts",
                 "/metrics.json", "/health/", "/cluster/", "/dashboard.html", "/tags",
                 "/"):
        r = srv.request("GET", path)
        c.eq(r.status, 404, "GET %s -> 404" % path)
    r = srv.request("GET", "/cluster")
    c.check(r.status == 404 and b"redis" in r.body, "GET /cluster without --redis -> 404, saying why",
            show(r))
    # a body on a GET of an admin path is read and skipped, not taken as the next request
    smuggled = build_request("GET", "/nope")
    with Conn(srv.port) as k:
        k.send(build_request("GET", "/stats", smuggled) + build_request("GET", "/health"))
        a = k.read_response()
        b = k.read_response()
    c.check(a.status == 200 and b.status == 200 and b.body == b"OK\n",
            "GET /stats with a body (a request's bytes) then GET /health: 200, 200",
            show(a) + " then " + show(b))
    with Conn(srv.port) as k:
        k.send(b"GET http://elsewhere:1/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        r = k.read_response()
    c.check(r.status == 200 and r.body.startswith(b"# HELP"),
            "absolute-form GET http://elsewhere/metrics -> 200 Prometheus text", show(r))
    with Conn(srv.port) as k:
        k.send(b"GET /stats HTTP/1.0\r\n\r\n")
        r = k.read_response()
        closed = k.closed_by_peer()
    c.check(r.status == 200 and json.loads(r.body)["shards"] == 2 and closed,
            "HTTP/1.0 GET /stats -> 200 JSON, then the connection closes", show(r))
    for tag, want in (("", 400), ("%00", 400), ("a%2Cb", 400), ("x" * 129, 400),
                      ("x" * 128, 200), ("%7E", 200)):
        r = srv.request("DELETE", "/tags/" + tag)
        c.check(r.status == want and (want != 200 or json.loads(r.body) == {"removed": 0}),
                "DELETE /tags/%s -> %d" % (tag[:12] + ("..." if len(tag) > 12 else ""), want),
                show(r))


# --- a client that pipelines /metrics and reads nothing ------------------------------------

def pipelined_metrics(c, srv):
    c.section("1000 pipelined GET /metrics and /stats from a client that reads nothing")
    n = 1000
    base = settled_conn_memory(srv)
    size = len(srv.request("GET", "/metrics").body)
    hog = Conn(srv.port, timeout=10.0)
    reqs = b"".join(build_request("GET", "/metrics" if i % 2 else "/stats") for i in range(n))
    hog.send(reqs)
    c.note("/metrics is %d bytes: %d answers are about %.0f MiB" % (size, n, n * size / MiB))
    # the shard goes on serving others while the hog's answers wait
    r = srv.request("GET", "/health")
    c.eq(r.status, 200, "GET /health on another connection meanwhile -> 200")
    held = settled_conn_memory(srv) - base
    c.check(held <= CONN_SLACK, "the hog's connection holds %.1f MiB <= %d MiB (not %d answers)"
            % (held / MiB, CONN_SLACK // MiB, n), "conn_memory grew by %d" % held)
    got = 0
    bad = None
    for i in range(n):
        r = hog.read_response()
        want = b"# HELP" if i % 2 else b"{\"uptime_seconds\""
        if r.status != 200 or not r.body.startswith(want):
            bad = bad or "answer %d: %s" % (i, show(r))
        got += 1
    hog.close()
    c.check(got == n and bad is None, "then it reads all %d answers, each 200 in order" % n, bad)


# --- --api-keys-file: open and closed paths, SIGHUP under /stats ---------------------------

def keyed(c, binary_flags):
    c.section("--api-keys-file: /health and /dashboard open, the rest want a key")
    with api_keys_file(KEY, "old-key") as path:
        srv = Server(binary_flags + ["--api-keys-file", path], checks=c).start()
        for p in ("/health", "/dashboard"):
            c.eq(srv.request("GET", p).status, 200, "GET %s without a key -> 200" % p)
        for m, p in (("GET", "/stats"), ("HEAD", "/stats"), ("GET", "/metrics"),
                     ("GET", "/cluster"), ("DELETE", "/tags/t"), ("GET", "/stats?key=" + KEY)):
            with Conn(srv.port) as k:
                r = k.roundtrip(m, p)
            c.check(r.status == 401 and (r.header("WWW-Authenticate") or "").startswith("Bearer"),
                    "%s %s without a key -> 401 with WWW-Authenticate" % (m, p), show(r))
        r = srv.request("GET", "/cluster", headers=AUTH)
        c.eq(r.status, 404, "GET /cluster with a key, no --redis -> 404")
        r = srv.request("GET", "/stats", headers=[("Authorization", "Bearer " + KEY)])
        c.eq(r.status, 200, "GET /stats with Authorization: Bearer -> 200")

        c.section("SIGHUP reloads of the key file under a stream of /stats")
        stop = threading.Event()
        hups = [0]

        def reloader():
            i = 0
            while not stop.is_set() and i < 200:
                tmp = path + ".new"
                with open(tmp, "w") as f:
                    f.write("%s\n%s\n" % (KEY, "old-key" if i % 2 else "new-key"))
                os.chmod(tmp, 0o600)
                os.rename(tmp, path)
                srv.proc.send_signal(signal.SIGHUP)
                hups[0] += 1
                i += 1
                time.sleep(0.005)

        t = threading.Thread(target=reloader)
        t.start()
        statuses = {}
        try:
            with Conn(srv.port) as k:
                for i in range(300):
                    r = k.roundtrip("GET", "/stats" if i % 2 else "/metrics", headers=AUTH)
                    statuses[r.status] = statuses.get(r.status, 0) + 1
        finally:
            stop.set()
            t.join()
        c.check(statuses == {200: 300}, "300 /stats and /metrics with the kept key during %d "
                "reloads: all 200" % hups[0], repr(statuses))
        with open(path, "w") as f:
            f.write("%s\nnew-key\n" % KEY)
        srv.proc.send_signal(signal.SIGHUP)
        ok = wait_for(lambda: srv.request("GET", "/stats", headers=[("X-API-Key", "old-key")])
                      .status == 401, 3.0)
        c.check(ok, "after the last reload the dropped key gets 401")
        c.eq(srv.request("GET", "/stats", headers=[("X-API-Key", "new-key")]).status, 200,
             "and the added key 200")
        c.check(srv.alive(), "the daemon is alive after the reloads")
        srv.stop()


# --- /cluster and a hostile registry ----------------------------------------------------

def nest(depth):
    """An object nested `depth` levels deep, the outermost counted."""
    s = "{}"
    for _ in range(depth - 1):
        s = '{"a":%s}' % s
    return s.encode()


GOOD = {
    b"good-plain": b'{"id":"good-plain","address":"127.0.0.1:1"}',
    b"good-deep16": nest(16),
    b"good-escaped": b'{"id":"\\u0000\\ud800 \\"q\\"","n":-0.5e+3}',
    b"good-utf8": '{"id":"\u00e9\u4e2d\U0001f600"}'.encode(),
    b"good-ws": b' \t{ "a" : [ 1 , true , null ] }\r\n',
    b"good-nul\0field": b'{"nul":"in the field"}',
}
BAD = {
    b"bad-deep17": nest(17),
    b"bad-latin1": b'{"id":"\xe9"}',
    b"bad-overlong": b'{"id":"\xc0\xaf"}',
    b"bad-surrogate": b'{"id":"\xed\xa0\x80"}',
    b"bad-array": b"[1]",
    b"bad-string": b'"x"',
    b"bad-trailing": b'{"a":1}x',
    b"bad-two": b"{}{}",
    b"bad-empty": b"",
    b"bad-control": b'{"a":"\x01"}',
    b"bad-escape": b'{"a":"\\x"}',
    b"bad-unclosed": b'{"a":[1,2}',
    b"bad-leading-zero": b'{"a":01}',
    b"bad-neg-leading-zero": b'{"a":-00.5}',
    b"bad-comma": b'{"a":1,}',
    b"bad-nan": b'{"a":NaN}',
}


def cluster(c, srv, what, conn=None):
    """GET /cluster: (response, its document or None).  The document must
    be strict JSON: UTF-8, no NaN, no leading zeros."""
    r = conn.roundtrip("GET", "/cluster", headers=AUTH) if conn else \
        srv.request("GET", "/cluster", headers=AUTH)
    doc = None
    try:
        doc = json.loads(r.body.decode("utf-8"),
                         parse_constant=lambda x: (_ for _ in ()).throw(ValueError(x)))
    except (ValueError, UnicodeDecodeError) as e:
        c.check(False, "%s: /cluster is strict JSON" % what, "%s: %s" % (e, show(r)))
    return r, doc


def registry_add(redis, entries):
    """HSET the entries into the registry and give each a heartbeat key
    without TTL, so the instance's reaping leaves them in place."""
    items = list(entries.items())
    for i in range(0, len(items), 1000):
        part = items[i:i + 1000]
        args = ["HSET", PREFIX + "instances"]
        for f, v in part:
            args += [f, v]
        redis.cmd(*args)
        margs = ["MSET"]
        for f, _ in part:
            margs += [PREFIX.encode() + b"instance:" + f, b"1"]
        redis.cmd(*margs)


def registry_clear(redis, fields):
    fields = list(fields)
    for i in range(0, len(fields), 1000):
        redis.cmd("HDEL", PREFIX + "instances", *fields[i:i + 1000])
        redis.cmd("DEL", *[PREFIX.encode() + b"instance:" + f for f in fields[i:i + 1000]])


def listed(doc):
    return [json.dumps(v, sort_keys=True) for v in doc.get("instances", [])] if doc else None


def hostile_registry(c, redis, srv):
    c.section("/cluster: registry entries that are not one UTF-8 JSON object, nesting <= 16")
    ok = wait_for(lambda: srv.request("GET", "/cluster", headers=AUTH).status == 200, 10.0, 0.1)
    c.check(ok, "GET /cluster -> 200 once the instance is up")
    r = srv.request("GET", "/cluster")
    c.eq(r.status, 401, "GET /cluster without a key -> 401")
    registry_add(redis, {**GOOD, **BAD})
    before = stats(srv, headers=AUTH)["l2"]["bad_data"]
    r, doc = cluster(c, srv, "hostile entries")
    want = sorted(json.dumps(json.loads(v), sort_keys=True) for v in GOOD.values())
    got = listed(doc)
    own = [e for e in (got or []) if '"adm"' in e]
    c.check(r.status == 200 and got is not None and sorted(set(got) - set(own)) == want and
            len(own) == 1, "GET /cluster lists its own entry and the %d good ones, none of the "
            "%d bad" % (len(GOOD), len(BAD)), show(r))
    after = stats(srv, headers=AUTH)["l2"]["bad_data"]
    c.eq(after - before, len(BAD), "l2 bad_data counts each bad entry of that /cluster once")
    if doc:
        c.eq(doc.get("self"), "adm", "\"self\" is the instance's id")
    registry_clear(redis, list(GOOD) + list(BAD))

    c.section("/cluster with 10,000 registry entries")
    many = {b"m%05d" % i: b'{"id":"m%05d","address":"10.0.%d.%d:8080"}' % (i, i // 256, i % 256)
            for i in range(10000)}
    registry_add(redis, many)
    t0 = time.monotonic()
    r, doc = cluster(c, srv, "10,000 entries")
    dt = time.monotonic() - t0
    got = [v.get("id") for v in doc.get("instances", [])] if doc else []
    c.check(r.status == 200 and set(many_id.decode() for many_id in many) <= set(got) and
            len(got) == 10001, "GET /cluster -> 200 listing all 10,000 and itself", show(r))
    c.check(got == sorted(got), "in id order")
    c.note("/cluster of 10,001 entries (%d bytes) took %.0f ms" % (len(r.body), dt * 1000))
    r = srv.request("GET", "/cache/some-key", headers=AUTH)
    c.eq(r.status, 404, "the shards serve /cache/ after it")
    registry_clear(redis, many)

    c.section("/cluster answers at most 1 MiB: entries past it are left out and counted")
    big = {b"big-%d" % i: b'{"id":"big-%d","pad":"%s"}' % (i, b"p" * (300 << 10))
           for i in range(5)}
    registry_add(redis, big)
    r, doc = cluster(c, srv, "1.5 MiB of entries")
    got = [v.get("id") for v in doc.get("instances", [])] if doc else []
    c.check(r.status == 200 and len(r.body) <= CLUSTER_MAX and doc is not None,
            "GET /cluster -> 200, at most 1 MiB", show(r))
    c.check(got == sorted(got) and got[:3] == ["adm", "big-0", "big-1"] and
            doc.get("left_out", 0) == 6 - len(got) and doc.get("left_out", 0) > 0,
            "the first entries in id order, the rest counted in \"left_out\"",
            "listed %r, left_out %r" % (got, doc and doc.get("left_out")))
    registry_clear(redis, big)

    c.section("a client pipelines 64 /cluster of a 1.2 MiB registry and reads nothing")
    huge = {b"huge": b'{"id":"huge","pad":"%s"}' % (b"h" * (1200 << 10))}
    registry_add(redis, huge)
    base = settled_conn_memory(srv, AUTH)
    ok_before = stats(srv, headers=AUTH)["total"]["responses_2xx"]
    hog = Conn(srv.port, timeout=20.0)
    n = 64
    hog.send(b"".join(build_request("GET", "/cluster", headers=AUTH) for _ in range(n)))
    # every one answered (queued to be sent, counted: docs/stats.md), or
    # the connection stopped parsing at its bound
    polls = [0]

    def all_answered():
        # each poll's own 200 is counted once it is queued: not the hog's
        done = stats(srv, headers=AUTH)["total"]["responses_2xx"] - ok_before - polls[0]
        polls[0] += 1
        return done >= n
    answered = wait_for(all_answered, 10.0, 0.2)
    c.note("all %d answered before the connection's memory was read: %s" % (n, bool(answered)))
    held = settled_conn_memory(srv, AUTH) - base
    c.check(held <= CONN_SLACK, "its connection holds %.1f MiB <= %d MiB, not %d answers of "
            "1.2 MiB" % (held / MiB, CONN_SLACK // MiB, n), "conn_memory grew by %d" % held)
    bad = None
    for i in range(n):
        try:
            r = hog.read_response()
            d = json.loads(r.body)
            if r.status != 200 or d.get("left_out") != 1 or \
                    [v.get("id") for v in d["instances"]] != ["adm"]:
                bad = bad or "answer %d: %s" % (i, show(r))
        except Exception as e:      # noqa: BLE001 - a check, not a crash
            bad = bad or "answer %d: %r" % (i, e)
            break
    hog.close()
    c.check(bad is None, "then it reads %d answers: 200, the huge entry left out" % n, bad)
    registry_clear(redis, huge)

    c.section("the registry's name holding a string (WRONGTYPE): bad data, the breaker stays shut")
    opens = stats(srv, headers=AUTH)["l2"]["breaker_opens"]
    redis.cmd("DEL", PREFIX + "instances")
    redis.cmd("SET", PREFIX + "instances", "not a hash")
    codes = [srv.request("GET", "/cluster", headers=AUTH).status for _ in range(12)]
    l2 = stats(srv, headers=AUTH)["l2"]
    c.check(all(s == 503 for s in codes), "12 GET /cluster -> 503 each", repr(codes))
    c.check(l2["breaker_opens"] == opens and l2["breaker_open"] == 0,
            "the breaker did not open (breaker_opens %d -> %d)" % (opens, l2["breaker_opens"]))
    r = srv.request("PUT", "/cache/after-wrongtype", b"v", headers=AUTH)
    c.check(r.status in (201, 204) and r.header("X-L2") == "ok",
            "a PUT after them is written through: X-L2: ok", show(r))
    redis.cmd("DEL", PREFIX + "instances")
    ok = wait_for(lambda: srv.request("GET", "/cluster", headers=AUTH).status == 200, 5.0, 0.2)
    c.check(ok, "once the string is gone the next heartbeat puts the registry back: /cluster 200")
    c.check(srv.alive() and srv.request("GET", "/health").status == 200, "the daemon is alive")


def main(c, redis):
    srv = Server(["--shards", "2", "--memory", "64M"], checks=c).start()
    methods_and_paths(c, srv)
    pipelined_metrics(c, srv)
    srv.stop()
    keyed(c, ["--shards", "2", "--memory", "64M"])
    with api_keys_file(KEY) as path:
        srv = Server(["--shards", "2", "--memory", "64M", "--redis", redis.url(),
                      "--instance-id", "adm", "--redis-timeout", "2000",
                      "--api-keys-file", path], checks=c).start()
        hostile_registry(c, redis, srv)
        srv.stop()


if __name__ == "__main__":
    run_with_redis("test_admin_hostile", main)
