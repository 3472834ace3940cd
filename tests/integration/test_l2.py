#!/usr/bin/env python3
"""Issue 5 over real sockets: a real redis-server and two real ringcached
instances (a and b, --shards 2) sharing it as L2.

Write-through, promotion (also of values other applications wrote),
coalescing of 75 concurrent misses into one Redis GET, invalidation by
DELETE, by overwrite and by a bare or framed PUBLISH, own messages
ignored, bad data in Redis read as a miss, and the instance registry
(entries appear, /cluster lists them, a killed instance's entry goes).
Redis faults are in test_l2_faults.py; the Redis and instance helpers in
redis_harness.py.

The formats checked in Redis are those of docs/coherence.md.

usage: test_l2.py [path/to/ringcached]
"""

import gzip
import json
import os
import time

from content_codings import settle
from harness import WRITE_OK, Conn, build_request, show, stats, stats_delta, wait_for
from redis_harness import (CHANNEL, PREFIX, Marker, command_calls, l1_on, poll_get, put_settled,
                           run_with_redis, start_instance, wait_l2_ready)

READY_TIMEOUT = 10.0      # both connections of a fresh instance up
PROPAGATE_TIMEOUT = 2.0   # an invalidation reaches the other instance
REGISTRY_TIMEOUT = 15.0   # heartbeat TTL (5 s) + period (1 s) + margin
COALESCE_N = 75


def get(srv, key, headers=None):
    return srv.request("GET", "/cache/" + key, headers=headers)


def put(srv, key, body, headers=None, query=""):
    return srv.request("PUT", "/cache/" + key + query, body, headers)


def write_ok(c, r, what):
    return c.check(r.status in WRITE_OK and r.header("X-L2") == "ok",
                   what + " -> 201/204 with X-L2: ok", show(r))


def hit(c, r, body, xcache, what):
    return c.check(r.status == 200 and r.body == body and r.header("X-Cache") == xcache,
                   "%s -> 200 %r, X-Cache: %s" % (what, body[:40], xcache), show(r))


# --- write-through -------------------------------------------------------------

def write_through(c, redis, a, b):
    c.section("write-through: PUT on a, Redis holds it, b promotes it")
    key, val = "wt:1", b"value-one"
    put_settled(c, redis, a, b, key, val, [("Content-Type", "text/plain")], "?ttl=60")

    stored = redis.cmd("GET", PREFIX + key)
    c.eq(stored, b"\0RCV1text/plain\n" + val,
         "Redis GET ringcache:wt:1 holds the frame \\0RCV1<content-type>\\n<value>")
    pttl = redis.cmd("PTTL", PREFIX + key)
    c.check(isinstance(pttl, int) and 0 < pttl <= 60000,
            "the Redis key carries the value's TTL (PTTL in (0, 60000])", "PTTL %r" % (pttl,))

    r = put(a, "wt:nottl", b"forever")
    write_ok(c, r, "PUT /cache/wt:nottl (no ttl) on a")
    c.eq(redis.cmd("PTTL", PREFIX + "wt:nottl"), -1, "a value without TTL has none in Redis (PTTL -1)")
    c.eq(redis.cmd("GET", PREFIX + "wt:nottl"), b"\0RCV1\nforever",
         "no Content-Type given: empty content type in the frame")

    r = get(b, key)
    hit(c, r, val, "HIT-L2", "first GET /cache/wt:1 on b")
    c.eq(r.header("Content-Type"), "text/plain", "b serves the Content-Type stored with it")
    r = get(b, key)
    hit(c, r, val, "HIT", "second GET /cache/wt:1 on b")

    put_settled(c, redis, a, b, key, b"value-two", [("Content-Type", "text/plain")])
    c.eq(redis.cmd("GET", PREFIX + key), b"\0RCV1text/plain\nvalue-two",
         "Redis holds the overwritten value")

    # binary key and value survive the trip through Redis
    bkey = "wt%3Abin%00%FF"
    bval = bytes(range(256)) * 4
    put_settled(c, redis, a, b, bkey, bval)
    c.eq(redis.cmd("GET", PREFIX.encode() + b"wt:bin\x00\xff"), b"\0RCV1\n" + bval,
         "Redis key ringcache:wt:bin\\0\\xff holds the binary value")
    r = b.request("GET", "/cache/" + bkey)
    hit(c, r, bval, "HIT-L2", "GET of the binary key on b")

    # A Content-Type with obs-text (bytes 0x80-0xFF, RFC 9110 5.5) goes to Redis
    # like any other (issue 11, defect 1: it was answered 204 without X-L2 and
    # never written, so other instances kept serving the old value).
    ctype = b"text/plain; name=\xe9t\xe9"
    put_settled(c, redis, a, b, "wt:obs", b"accented", [("Content-Type", ctype)])
    c.eq(redis.cmd("GET", PREFIX + "wt:obs"), b"\0RCV1" + ctype + b"\naccented",
         "Redis holds the value with its obs-text Content-Type")
    r = get(b, "wt:obs")
    hit(c, r, b"accented", "HIT-L2", "GET /cache/wt:obs on b")
    c.eq(r.header("Content-Type"), ctype.decode("latin-1"),
         "b serves the Content-Type byte for byte")


def own_messages(c, redis, a, b):
    c.section("own invalidations are ignored: the writer keeps its L1 copy")
    m = Marker(redis, [a, b])
    c.check(m.ready, "marker key is in L1 on a and b")
    st0 = stats(a)["l2"]
    r = put(a, "own:1", b"mine")
    write_ok(c, r, "PUT /cache/own:1 on a")
    r = a.request("DELETE", "/cache/own:gone")
    c.within(r.status, {200, 204, 404}, "DELETE /cache/own:gone (absent) on a answers")
    c.check(m.fire(), "a and b handled every invalidation published so far (marker dropped)")
    r = get(a, "own:1")
    hit(c, r, b"mine", "HIT", "GET /cache/own:1 on a after its own invalidation went round")
    d = stats_delta(st0, stats(a)["l2"])
    c.check(d.get("invalidations_own", 0) >= 2,
            "a counted its own invalidations (/stats l2.invalidations_own +2)", repr(d))

    c.section("a framed invalidation carrying a's id: a ignores it, b applies it")
    put_settled(c, redis, a, b, "own:2", b"two")
    l1_on(c, b, "own:2", b"two", "b")
    m = Marker(redis, [a, b])
    n = redis.cmd("PUBLISH", CHANNEL, b"\0RCI1a\0own:2")
    c.eq(n, 2, "PUBLISH reaches both instances (2 subscribers)")
    c.check(m.fire(), "marker dropped on a and b")
    hit(c, get(a, "own:2"), b"two", "HIT", "GET /cache/own:2 on a (message had a's id)")
    hit(c, get(b, "own:2"), b"two", "HIT-L2", "GET /cache/own:2 on b (re-read from Redis)")


# --- promotion ----------------------------------------------------------------

def promotion(c, redis, a, b):
    c.section("promotion of values other applications wrote")
    c.eq(redis.cmd("SET", PREFIX + "user:42", "hello"), b"OK", "SET ringcache:user:42 hello in Redis")
    r = get(a, "user:42")
    hit(c, r, b"hello", "HIT-L2", "GET /cache/user:42 on a")
    c.eq(r.header("Content-Type"), "application/octet-stream",
         "a plain value gets the default Content-Type")
    hit(c, get(a, "user:42"), b"hello", "HIT", "second GET /cache/user:42 on a")
    st = stats(a)["l2"]
    c.check(st.get("raw_values", 0) >= 1, "a counted the plain value (l2.raw_values)", repr(st))

    redis.cmd("SET", PREFIX + "user:43", "world")
    r = a.request("HEAD", "/cache/user:43")
    c.check(r.status == 200 and r.header("Content-Length") == "5",
            "HEAD /cache/user:43 (only in Redis) on a -> 200, Content-Length: 5", show(r))

    redis.cmd("SET", PREFIX + "framed", b"\0RCV1text/html\n<p>hi</p>")
    r = get(b, "framed")
    hit(c, r, b"<p>hi</p>", "HIT-L2", "GET of a framed value an application wrote, on b")
    c.eq(r.header("Content-Type"), "text/html", "its Content-Type comes from the frame")

    r = get(a, "nowhere")
    c.check(r.status == 404 and r.header("X-Cache") == "MISS",
            "GET /cache/nowhere (in neither) on a -> 404, X-Cache: MISS", show(r))
    r = get(a, "nowhere")
    c.check(r.status == 404 and r.header("X-Cache") == "MISS", "again -> 404, X-Cache: MISS", show(r))
    redis.cmd("SET", PREFIX + "nowhere", "late")
    hit(c, get(a, "nowhere"), b"late", "HIT-L2",
        "after it appears in Redis, GET /cache/nowhere on a (misses are not cached)")

    c.section("promotion keeps the TTL left in Redis")
    redis.cmd("SET", PREFIX + "short", "brief", "PX", "1500")
    hit(c, get(a, "short"), b"brief", "HIT-L2", "GET /cache/short (PX 1500 in Redis) on a")
    r, seen, dt = poll_get(a, "short", lambda r: r.status == 404, 6.0, interval=0.1)
    c.check(not isinstance(r, Exception) and r.status == 404,
            "the promoted copy expires with the Redis key (404 within 6 s)",
            "seen %r" % seen)
    c.note("404 after %.1f s" % dt)

    c.section("promotion brings the compressed variants")
    text = (b"ringcache promotes values from Redis into L1 with their variants. " * 60)
    redis.cmd("SET", PREFIX + "big", b"\0RCV1text/plain\n" + text)
    r = get(a, "big", [("Accept-Encoding", "gzip")])
    c.check(r.status == 200 and r.header("X-Cache") == "HIT-L2",
            "GET /cache/big (Accept-Encoding: gzip) on a -> 200 HIT-L2", show(r))
    # the promoted value's variants are made off the shard (docs/fastlane.md)
    c.check(settle(a), "the compression workers made the promoted value's variants")
    r = get(a, "big", [("Accept-Encoding", "gzip")])
    body = r.body
    if r.header("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    c.check(r.status == 200 and r.header("X-Cache") == "HIT" and
            r.header("Content-Encoding") == "gzip" and body == text,
            "second GET: HIT served gzip-encoded, decoding to the value", show(r))
    r = get(a, "big")
    hit(c, r, text, "HIT", "GET /cache/big without Accept-Encoding: identity")


# --- coalescing ---------------------------------------------------------------

def coalescing(c, redis, a, b):
    # A small value, and a large one whose read stays in flight longer, so
    # more of the GETs miss L1 and meet the read in flight.
    coalesce_round(c, redis, a, "coal:small", b"coalesced-value")
    coalesce_round(c, redis, a, "coal:large", os.urandom(256 << 10))


def coalesce_round(c, redis, a, key, val):
    c.section("coalescing: %d concurrent GETs of %s (%d bytes, only in Redis) -> one Redis GET"
              % (COALESCE_N, key, len(val)))
    redis.cmd("SET", PREFIX + key, val)
    conns = [Conn(a.port) for _ in range(COALESCE_N)]
    try:
        req = build_request("GET", "/cache/" + key)
        doc0 = stats(a)
        with redis.client() as rc:
            before = command_calls(rc, "get")
            for cn in conns:
                cn.send(req)
            resps = []
            for cn in conns:
                try:
                    resps.append(cn.read_response())
                except Exception as e:  # noqa: BLE001 - reported below
                    resps.append(e)
            after = command_calls(rc, "get")
    finally:
        for cn in conns:
            cn.close()
    good = [r for r in resps if not isinstance(r, Exception) and r.status == 200 and r.body == val]
    bad = [r for r in resps if r not in good]
    c.check(not bad, "all %d GETs -> 200 with the value" % COALESCE_N,
            "%d bad, first: %s" % (len(bad), show(bad[0]) if bad else ""))
    kinds = {}
    for r in good:
        kinds[r.header("X-Cache")] = kinds.get(r.header("X-Cache"), 0) + 1
    doc1 = stats(a)
    d = stats_delta(doc0["l2"], doc1["l2"])
    t = stats_delta(doc0["total"], doc1["total"])
    c.note("X-Cache of the answers: %r; a's /stats l2 deltas: %r; total hits +%d, misses +%d"
           % (kinds, d, t["hits"], t["misses"]))
    c.check(set(kinds) <= {"HIT-L2", "HIT"} and kinds.get("HIT-L2", 0) >= 1,
            "answers are HIT-L2 or HIT, at least one HIT-L2", repr(kinds))
    c.eq(after - before, 1, "Redis cmdstat_get calls increased by exactly 1")
    c.eq(d.get("redis_gets", 0), after - before, "a's l2.redis_gets agrees with Redis")
    # Every GET that missed L1 (/stats misses) waited for the one Redis
    # read, on the owner shard or in the coherence thread, and was answered
    # from its value: the issue calls that HIT-L2 (src/shard/l2.c).  The
    # rest were L1 hits.  (l2.gets counts only the GETs that reached the
    # coherence thread: the owner shard sends one and holds the others.)
    c.check(kinds.get("HIT-L2", 0) == t["misses"] and kinds.get("HIT", 0) == t["hits"],
            "every GET answered from the L2 read says HIT-L2 (as many as /stats misses), "
            "every other one HIT (as many as /stats hits)",
            "X-Cache %r; /stats total: misses +%d, hits +%d" % (kinds, t["misses"], t["hits"]))


# --- invalidation -------------------------------------------------------------

def invalidation(c, redis, a, b):
    c.section("invalidation by DELETE")
    put_settled(c, redis, a, b, "inv:del", b"doomed")
    l1_on(c, b, "inv:del", b"doomed", "b")
    r = a.request("DELETE", "/cache/inv:del")
    c.check(r.status in (200, 204) and r.header("X-L2") == "ok",
            "DELETE /cache/inv:del on a -> 200/204, X-L2: ok", show(r))
    c.eq(redis.cmd("EXISTS", PREFIX + "inv:del"), 0, "the key is gone from Redis")
    r, seen, dt = poll_get(b, "inv:del", lambda r: r.status == 404, PROPAGATE_TIMEOUT)
    c.check(not isinstance(r, Exception) and r.status == 404,
            "b answers 404 for inv:del within %.0f s of a's DELETE" % PROPAGATE_TIMEOUT,
            "seen %r" % seen)
    c.note("b answered 404 after %.1f ms" % (dt * 1000))
    c.eq(get(a, "inv:del").status, 404, "a answers 404 for inv:del")

    c.section("DELETE of a key only Redis holds")
    redis.cmd("SET", PREFIX + "inv:l2only", "only in redis")
    r = b.request("DELETE", "/cache/inv:l2only")
    c.check(r.status == 204 and r.header("X-L2") == "ok",
            "DELETE /cache/inv:l2only (not in b's L1) on b -> 204, X-L2: ok", show(r))
    c.eq(redis.cmd("EXISTS", PREFIX + "inv:l2only"), 0, "the key is gone from Redis")
    r = b.request("DELETE", "/cache/inv:l2only")
    c.check(r.status == 404 and r.header("X-L2") == "ok",
            "DELETE again (in neither) -> 404, X-L2: ok", show(r))
    c.eq(get(b, "inv:l2only").status, 404, "GET /cache/inv:l2only on b -> 404")

    c.section("invalidation by overwrite")
    put_settled(c, redis, a, b, "inv:ow", b"old-value")
    l1_on(c, b, "inv:ow", b"old-value", "b")
    r = put(a, "inv:ow", b"new-value")
    write_ok(c, r, "PUT new value of inv:ow on a")
    r, seen, dt = poll_get(b, "inv:ow", lambda r: r.body == b"new-value", PROPAGATE_TIMEOUT)
    c.check(not isinstance(r, Exception) and r.status == 200 and r.body == b"new-value",
            "b returns the new value of inv:ow within %.0f s" % PROPAGATE_TIMEOUT,
            "seen %r" % seen)
    c.check(all(s[0] == 200 and s[2] in (b"old-value", b"new-value") for s in seen),
            "b answered only the old then the new value meanwhile", "seen %r" % seen)
    c.note("b returned the new value after %.1f ms" % (dt * 1000))
    hit(c, get(b, "inv:ow"), b"new-value", "HIT", "b's next GET of inv:ow")

    c.section("invalidation by a bare-key PUBLISH from an application")
    put_settled(c, redis, a, b, "inv:pub", b"published")
    l1_on(c, a, "inv:pub", b"published", "a")
    l1_on(c, b, "inv:pub", b"published", "b")
    c.eq(redis.cmd("DEL", PREFIX + "inv:pub"), 1, "DEL ringcache:inv:pub in Redis directly")
    c.eq(redis.cmd("PUBLISH", CHANNEL, "inv:pub"), 2,
         "PUBLISH ringcache:invalidate inv:pub reaches 2 subscribers")
    for name, srv in (("a", a), ("b", b)):
        r, seen, dt = poll_get(srv, "inv:pub", lambda r: r.status == 404, PROPAGATE_TIMEOUT)
        c.check(not isinstance(r, Exception) and r.status == 404,
                "%s answers 404 for inv:pub within %.0f s" % (name, PROPAGATE_TIMEOUT),
                "seen %r" % seen)

    c.section("bare-key PUBLISH after an application changed the value in Redis")
    put_settled(c, redis, a, b, "inv:app", b"before")
    l1_on(c, a, "inv:app", b"before", "a")
    l1_on(c, b, "inv:app", b"before", "b")
    redis.cmd("SET", PREFIX + "inv:app", "after")
    redis.cmd("PUBLISH", CHANNEL, "inv:app")
    for name, srv in (("a", a), ("b", b)):
        r, seen, dt = poll_get(srv, "inv:app", lambda r: r.body == b"after", PROPAGATE_TIMEOUT)
        c.check(not isinstance(r, Exception) and r.status == 200 and r.body == b"after",
                "%s re-reads inv:app from Redis after the PUBLISH" % name, "seen %r" % seen)
        c.check(("HIT-L2" in [s[1] for s in seen if s[2] == b"after"]),
                "%s served the new value as HIT-L2 first" % name, "seen %r" % seen)

    c.section("a framed invalidation from another instance id")
    put_settled(c, redis, a, b, "inv:frame", b"framed")
    l1_on(c, a, "inv:frame", b"framed", "a")
    l1_on(c, b, "inv:frame", b"framed", "b")
    redis.cmd("DEL", PREFIX + "inv:frame")
    redis.cmd("PUBLISH", CHANNEL, b"\0RCI1someone-else\0inv:frame")
    for name, srv in (("a", a), ("b", b)):
        r, seen, dt = poll_get(srv, "inv:frame", lambda r: r.status == 404, PROPAGATE_TIMEOUT)
        c.check(not isinstance(r, Exception) and r.status == 404,
                "%s drops inv:frame on \\0RCI1someone-else\\0inv:frame" % name, "seen %r" % seen)


# --- bad data -----------------------------------------------------------------

def bad_data(c, redis, a, b):
    c.section("bad data in Redis reads as a miss")
    sa, sb = stats(a)["l2"], stats(b)["l2"]
    redis.cmd("HSET", PREFIX + "badkey", "f", "v")
    r = get(a, "badkey")
    c.check(r.status == 404, "GET /cache/badkey (a hash in Redis) on a -> 404", show(r))
    c.note("X-Cache: %s, X-L2: %s" % (r.header("X-Cache"), r.header("X-L2")))
    redis.cmd("SET", PREFIX + "corrupt", b"\0RCV1text/plain")
    r = get(a, "corrupt")
    c.check(r.status == 404, "GET /cache/corrupt (frame without its newline) on a -> 404", show(r))
    redis.cmd("SET", PREFIX + "badctype", b"\0RCV1text/\x01plain\nvalue")
    r = get(b, "badctype")
    c.check(r.status == 404, "GET /cache/badctype (control byte in the content type) on b -> 404",
            show(r))
    redis.cmd("LPUSH", PREFIX + "alist", "x")
    r = a.request("HEAD", "/cache/alist")
    c.check(r.status == 404, "HEAD /cache/alist (a list in Redis) on a -> 404", show(r))
    c.eq(stats_delta(sa, stats(a)["l2"]).get("bad_data", 0), 3, "a counted 3 bad values (l2.bad_data)")
    c.eq(stats_delta(sb, stats(b)["l2"]).get("bad_data", 0), 1, "b counted 1 bad value (l2.bad_data)")

    c.section("malformed invalidations are ignored")
    put_settled(c, redis, a, b, "bad:keep", b"kept")
    l1_on(c, b, "bad:keep", b"kept", "b")
    m = Marker(redis, [a, b])
    sa, sb = stats(a)["l2"], stats(b)["l2"]
    redis.cmd("PUBLISH", CHANNEL, b"\0RCI1no-nul-after-id")
    redis.cmd("PUBLISH", CHANNEL, b"")
    redis.cmd("PUBLISH", CHANNEL, b"k" * 1025)
    c.check(m.fire(), "marker dropped on a and b after the malformed messages")
    for name, srv, st in (("a", a, sa), ("b", b, sb)):
        c.eq(stats_delta(st, stats(srv)["l2"]).get("invalidations_bad", 0), 3,
             "%s counted the 3 malformed messages (l2.invalidations_bad)" % name)
    hit(c, get(b, "bad:keep"), b"kept", "HIT", "b still holds bad:keep")
    c.check(a.healthy() and b.healthy(), "a and b still answer /health with 200")


# --- prefix -------------------------------------------------------------------

def prefix(c, redis, a, b):
    c.section("--redis-prefix other: keeps a second fleet apart on the same Redis")
    p = start_instance(c, redis, "p", ["--redis-prefix", "other:"])
    c.check(wait_l2_ready(p, "p", READY_TIMEOUT) is not None, "p answers PUTs with X-L2: ok")
    r = put(p, "pfx:1", b"fleet-two")
    c.check(r.status in WRITE_OK and r.header("X-L2") == "ok", "PUT /cache/pfx:1 on p", show(r))
    c.eq(redis.cmd("GET", "other:pfx:1"), b"\0RCV1\nfleet-two", "Redis holds other:pfx:1")
    c.eq(redis.cmd("EXISTS", PREFIX + "pfx:1"), 0, "and no ringcache:pfx:1")
    c.eq(get(a, "pfx:1").status, 404, "a (prefix ringcache:) does not see pfx:1")
    c.check(b"p" in (redis.cmd("HKEYS", "other:instances") or []), "p registers in other:instances")
    c.check("p" not in registry_entries(redis), "and not in ringcache:instances")
    put_settled(c, redis, a, b, "pfx:2", b"fleet-one")
    redis.cmd("SET", "other:pfx:2", "p's own")
    hit(c, get(p, "pfx:2"), b"p's own", "HIT-L2", "p reads other:pfx:2")
    get(p, "pfx:2")
    m = Marker(redis, [a, b])
    put(a, "pfx:2", b"fleet-one-v2")
    c.check(m.fire(), "a and b handled a's write of pfx:2")
    hit(c, get(p, "pfx:2"), b"p's own", "HIT", "p ignores ringcache:invalidate")
    p.stop()


# --- registry -----------------------------------------------------------------

def registry_entries(redis):
    h = redis.cmd("HGETALL", PREFIX + "instances")
    if not isinstance(h, list):
        return {}
    return {h[i].decode("latin-1"): h[i + 1] for i in range(0, len(h), 2)}


def cluster_ids(srv):
    """(ids listed by GET /cluster, the response)."""
    r = srv.request("GET", "/cluster")
    ids = set()
    try:
        doc = json.loads(r.body)
    except ValueError:
        return None, r

    def walk(v):
        if isinstance(v, dict):
            if isinstance(v.get("id"), str):
                ids.add(v["id"])
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(doc.get("instances", doc) if isinstance(doc, dict) else doc)
    return ids, r


def registry(c, redis, a, b, t_start):
    c.section("registry: HGETALL ringcache:instances and GET /cluster")
    ok = wait_for(lambda: {"a", "b"} <= set(registry_entries(redis)), 3.0)
    entries = registry_entries(redis)
    c.check(ok, "ringcache:instances has fields a and b", repr(entries))
    want_version = os.environ.get("RINGCACHE_VERSION")
    for name, srv in (("a", a), ("b", b)):
        raw = entries.get(name)
        try:
            doc = json.loads(raw)
        except (TypeError, ValueError):
            doc = None
        if not c.check(isinstance(doc, dict), "registry value of %s is a JSON object" % name,
                       repr(raw)):
            continue
        c.eq(doc.get("id"), name, "registry %s: id" % name)
        c.eq(doc.get("address"), "127.0.0.1:%d" % srv.port, "registry %s: address (--listen)" % name)
        v = doc.get("version")
        c.check(isinstance(v, str) and v and (want_version is None or v == want_version),
                "registry %s: version %r" % (name, v), "want %r" % want_version)
        st = doc.get("started")
        c.check(isinstance(st, (int, float)) and t_start - 5 <= st <= time.time() + 5,
                "registry %s: started is the unix start time" % name,
                "started %r, test began %d" % (st, t_start))
        pttl = redis.cmd("PTTL", PREFIX + "instance:" + name)
        c.check(isinstance(pttl, int) and 0 < pttl <= 5000,
                "heartbeat key ringcache:instance:%s exists with a TTL <= 5 s" % name,
                "PTTL %r" % (pttl,))

    ids, r = cluster_ids(a)
    c.check(r.status == 200 and ids == {"a", "b"}, "GET /cluster on a -> 200, lists a and b",
            show(r))
    c.eq(r.header("Content-Type"), "application/json", "/cluster is application/json")
    try:
        c.eq(json.loads(r.body).get("self"), "a", "/cluster on a names itself in \"self\"")
    except (ValueError, AttributeError):
        c.check(False, "/cluster body is a JSON object", show(r))
    ids, r = cluster_ids(b)
    c.check(r.status == 200 and ids == {"a", "b"}, "GET /cluster on b -> 200, lists a and b",
            show(r))

    c.section("registry: kill -9 b, its entry goes")
    b.kill()
    t0 = time.monotonic()
    gone = wait_for(lambda: "b" not in registry_entries(redis), REGISTRY_TIMEOUT, interval=0.2)
    t_hash = time.monotonic() - t0
    c.check(gone, "b's field leaves ringcache:instances within %.0f s" % REGISTRY_TIMEOUT,
            repr(registry_entries(redis)))
    gone = wait_for(lambda: cluster_ids(a)[0] == {"a"}, max(1.0, REGISTRY_TIMEOUT - t_hash),
                    interval=0.2)
    c.check(gone, "GET /cluster on a lists only a", show(a.request("GET", "/cluster")))
    c.note("b's entry was reaped %.1f s after the kill" % t_hash)
    c.eq(redis.cmd("EXISTS", PREFIX + "instance:b"), 0, "b's heartbeat key has expired")
    c.check("a" in registry_entries(redis), "a's entry is still there")

    c.section("registry: a clean stop removes the entry")
    a.stop()
    c.check("a" not in registry_entries(redis) and
            redis.cmd("EXISTS", PREFIX + "instance:a") == 0,
            "after SIGTERM, a's field and heartbeat key are gone", repr(registry_entries(redis)))


def main(c, redis):
    t_start = int(time.time())
    a = start_instance(c, redis, "a")
    b = start_instance(c, redis, "b")
    for name, srv in (("a", a), ("b", b)):
        dt = wait_l2_ready(srv, name, READY_TIMEOUT)
        if not c.check(dt is not None, "%s: a PUT on each shard gets X-L2: ok within %.0f s"
                       % (name, READY_TIMEOUT), show(srv.request("PUT", "/cache/probe", b"x"))):
            return
    write_through(c, redis, a, b)
    own_messages(c, redis, a, b)
    promotion(c, redis, a, b)
    coalescing(c, redis, a, b)
    invalidation(c, redis, a, b)
    bad_data(c, redis, a, b)
    prefix(c, redis, a, b)
    registry(c, redis, a, b, t_start)


if __name__ == "__main__":
    run_with_redis("test_l2", main)
