#!/usr/bin/env python3
"""Stale serving through the Redis L2 (issue 9, docs/coherence.md "RCV2"): a
real redis-server and two ringcached instances (a and b) sharing it.

The TTL and the windows travel with the value (the \\0RCV2 frame, PX =
TTL + S + E); an instance that promotes a value past its TTL applies the
same rules as the one that wrote it (STALE with the write's Age, or a miss
unless asked); RCV1 and plain values stay readable; hostile RCV2 frames are
bad data, never served.  Time passes for real (TTLs of one second); every
step waits for its condition, never for a fixed time.

usage: test_stale_l2.py [path/to/ringcached]
"""

import struct

from harness import Conn, build_request, free_port, show, stats, stats_delta, wait_for
from redis_harness import (PREFIX, Resp, put_settled, resp_encode, run_with_redis,
                           start_instance, wait_l2_ready)

READY_TIMEOUT = 10.0
WAIT = 15.0


def get(srv, key, cc=None):
    h = [("Cache-Control", cc)] if cc else None
    return srv.request("GET", "/cache/" + key, headers=h)


def until(srv, key, pred, cc=None):
    """The first GET of key on srv whose response satisfies pred, or None."""
    return wait_for(lambda: (lambda r: r if pred(r) else None)(get(srv, key, cc)), WAIT)


def ext_windows(ttl, swr, sie):
    return struct.pack("<BIII", 1, ttl, swr, sie)


def frame(redis, key):
    return redis.cmd("GET", PREFIX + key)


def write_through(c, redis, a, b):
    c.section("the windows travel with the value: RCV2, PX = TTL + S + E")
    put_settled(c, redis, a, b, "sl2:wt", b"v1", [("Content-Type", "text/plain")],
                "?ttl=1&swr=300&sie=600")
    ext = ext_windows(2, 300, 600)      # the store's TTL has put_ttl()'s extra second
    want = b"\0RCV2text/plain\n" + struct.pack("<H", len(ext)) + ext + b"v1"
    c.eq(frame(redis, "sl2:wt"), want, "Redis holds \\0RCV2<type>\\n<len><ext><value>")
    pttl = redis.cmd("PTTL", PREFIX + "sl2:wt")
    c.check(isinstance(pttl, int) and 900000 < pttl <= 903000,
            "PX covers the TTL and both windows (PTTL in (900 s, 903 s])", pttl)
    put_settled(c, redis, a, b, "sl2:plain", b"p", None, "?ttl=60")
    c.eq(frame(redis, "sl2:plain"), b"\0RCV1\np", "a value without windows stays RCV1")

    r = get(b, "sl2:wt")
    c.check(r.status == 200 and r.header("X-Cache") in ("HIT-L2", "STALE"),
            "b promotes it from Redis", show(r))
    r = until(b, "sl2:wt", lambda r: r.header("X-Cache") == "STALE")
    c.check(r is not None and r.body == b"v1" and (r.header("Age") or "").isdigit(),
            "b serves it STALE past its TTL, with Age", show(r) if r else None)


def promoted_stale(c, redis, a, b):
    c.section("a value read from Redis past its TTL: the writer's rules and Age")
    put_settled(c, redis, a, b, "sl2:late", b"late", None, "?ttl=1&swr=300")
    # Clocks count whole seconds, and Redis' PTTL is rounded up: b's copy
    # may turn stale up to ~1.25 s after a's (docs/stale-and-tags.md), so
    # b reads once a is 2 s past (Age 4: written, fresh 2 s, 2 s stale).
    r = until(a, "sl2:late", lambda r: int(r.header("Age") or 0) >= 4)
    c.check(r is not None and r.header("X-Cache") == "STALE", "a: STALE past the TTL",
            show(r) if r else None)
    age_a = int(r.header("Age")) if r is not None else 0
    before = stats(b)["total"]
    r = get(b, "sl2:late")      # b has never read it: an L1 miss, read from Redis
    c.check(r.status == 200 and r.header("X-Cache") == "STALE" and r.body == b"late",
            "b's first GET (from Redis) is already STALE, not a fresh HIT-L2", show(r))
    age_b = r.header("Age")
    # (the same second of imprecision: b's copy may be up to a second younger)
    c.check(age_b is not None and age_b.isdigit() and int(age_b) >= age_a - 1,
            "its Age counts from the original write (%s >= %d - 1)" % (age_b, age_a), show(r))
    c.check(r.header("Cache-Control") is None, "no max-age on it", show(r))
    d = stats_delta(before, stats(b)["total"])
    # like hits, `stale` counts L1 lookups: the answer after Redis is the miss's
    c.check(d["misses"] == 1 and d["stale"] == 0, "b counted one L1 miss", d)
    r = get(b, "sl2:late")
    c.check(r.header("X-Cache") == "STALE", "b's next GET: STALE from its L1", show(r))
    c.eq(stats_delta(before, stats(b)["total"])["stale"], 1, "counted in b's `stale`")

    c.section("past swr, inside sie, read from Redis: a miss unless asked")
    put_settled(c, redis, a, b, "sl2:sie", b"err", None, "?ttl=1&swr=1&sie=600")
    r = until(a, "sl2:sie", lambda r: r.status == 404)
    c.check(r is not None and r.header("X-Cache") == "MISS", "a: past swr, a plain GET misses",
            show(r) if r else None)
    # as above: b reads once a is 2 s past the window (Age 5 = 2 + 1 + 2)
    r = until(a, "sl2:sie", lambda r: int(r.header("Age") or 0) >= 5, "max-stale")
    c.check(r is not None, "a: still STALE with max-stale", show(r) if r else None)
    r = get(b, "sl2:sie")
    c.check(r.status == 404 and r.header("X-Cache") == "MISS",
            "b, from Redis, past swr: a plain GET misses too", show(r))
    r = get(b, "sl2:sie", "stale-if-error")
    c.check(r.status == 200 and r.header("X-Cache") == "STALE" and r.body == b"err",
            "b: GET with Cache-Control: stale-if-error -> STALE", show(r))
    r = get(b, "sl2:sie", "max-stale=0")
    c.check(r.status == 404, "b: max-stale=0 bounds it: a miss", show(r))


def stale_copy_kept(c, redis, a):
    """A read from Redis replaces an L1 copy the GET misses only when
    Redis's copy would answer it (src/shard/l2.c l2_copy_wanted()).  When
    both are past their TTL, L1's copy stays as it was: found by review,
    every plain GET in the stale-if-error window rewrote it from Redis (a
    new store stamp, so a new ETag and a 200 where a revalidation was 304,
    and a compression job per GET)."""
    c.section("a copy as stale as Redis's is not rewritten by the reads that miss it")
    key = "sl2:kept"
    sie = "stale-if-error"
    r = a.request("PUT", "/cache/%s?ttl=1&sie=300" % key, b"s" * 2000,
                  [("Content-Type", "text/plain")])
    c.check(r.status in (201, 204) and r.header("X-L2") == "ok", "a: PUT written through",
            show(r))
    ok = wait_for(lambda: int(redis.cmd("PTTL", PREFIX + key)) <= 300000 and
                  get(a, key, sie).header("X-Cache") == "STALE", WAIT)
    c.check(ok, "past its TTL in L1 and in Redis")
    r = get(a, key, sie)
    etag = r.header("ETag")
    c.check(r.status == 200 and r.header("X-Cache") == "STALE" and etag,
            "a GET with stale-if-error: STALE with an ETag", show(r))
    before = stats(a)["total"]
    for i in range(5):
        r = get(a, key)
        c.check(r.status == 404 and r.header("X-Cache") == "MISS",
                "plain GET %d: a miss (read from Redis, as stale)" % (i + 1), show(r))
    d = stats_delta(before, stats(a)["total"])
    c.eq(d["l2_hits"], 5, "each was read from Redis")
    c.eq(d["zip_queued"], 0, "and none rewrote L1's copy (no compression job)")
    r = get(a, key, sie)
    c.eq((r.status, r.header("ETag")), (200, etag), "its ETag is unchanged")
    r = a.request("GET", "/cache/" + key, headers=[("Cache-Control", sie),
                                                   ("If-None-Match", etag)])
    c.eq(r.status, 304, "a revalidation with it is still 304")
    # a damaged header in Redis is bad data with L1's copy as without it
    # (review: cache_copy_answers() said no, and it went unreported)
    redis.cmd("SET", PREFIX + key, b"\0RCV2\n\x01\x00\x04value", "PX", "60000")
    before = stats(a)["total"]
    r = get(a, key)
    c.check(r.status == 404 and r.header("X-L2") == "bad-data",
            "plain GET over a damaged value in Redis: 404 with X-L2: bad-data", show(r))
    c.eq(stats_delta(before, stats(a)["total"])["l2_refused"], 1, "counted in l2_refused")
    r = get(a, key, sie)
    c.eq((r.status, r.header("ETag")), (200, etag), "and L1's stale copy is untouched")


def mixed_waiters(c, redis):
    """Requests that wait for one read of a key may differ in what they
    accept: a RESP GET never takes a stale value, an HTTP GET takes one
    within stale-while-revalidate.  Redis's copy goes over L1's when it
    answers any of them (src/shard/l2.c l2_copy_wanted()), not only when
    it answers the first (found by review: a RESP GET first left the HTTP
    GET behind it a miss while Redis's copy was within its window).
    Redis is stopped while the two wait, so they share one read."""
    c.section("one read for a RESP GET and an HTTP GET: Redis's copy serves the one it answers")
    rport = free_port()
    srv = start_instance(c, redis, "mixed", ["--resp-listen", "127.0.0.1:%d" % rport,
                                             "--redis-timeout", "10000"])
    if not c.check(wait_l2_ready(srv, "mixed", READY_TIMEOUT) is not None, "L2 ready"):
        return
    key = "sl2:mixed"
    r = srv.request("PUT", "/cache/%s?ttl=1&swr=2&sie=300" % key, b"both")
    c.check(r.status in (201, 204) and r.header("X-L2") == "ok", "PUT written through", show(r))
    # Redis's copy 4 s behind L1's: L1 counts it past its swr window (an
    # Age of 4 or more, at most about 5.25 s after the write) while Redis
    # is past its TTL but within that window (5-7 s after the write)
    blob = redis.cmd("GET", PREFIX + key)
    redis.cmd("SET", PREFIX + key, blob, "PX", str(int(redis.cmd("PTTL", PREFIX + key)) + 4000))
    sie = "stale-if-error"
    ok = wait_for(lambda: int(get(srv, key, sie).header("Age") or 0) >= 4 and
                  int(redis.cmd("PTTL", PREFIX + key)) <= 302000, WAIT)
    c.check(ok, "L1 past the swr window, Redis past its TTL")
    left = int(redis.cmd("PTTL", PREFIX + key))
    c.check(left > 300000, "and Redis still within its swr window", "PTTL %d" % left)
    before = stats(srv)["total"]
    rc, hc = Resp(rport), Conn(srv.port)
    redis.pause()
    try:
        rc.sock.sendall(resp_encode("GET", key))
        hc.send(build_request("GET", "/cache/" + key))
        # bounded: a and b, sharing this Redis, must not see it stopped for long
        waiting = wait_for(lambda: stats_delta(before, stats(srv)["total"])["misses"] >= 2, 3)
    finally:
        redis.resume()
    c.check(waiting, "both missed L1 and wait for Redis")
    c.eq(rc.read(), None, "the RESP GET (first): nil, Redis's copy is stale to it")
    r = hc.read_response()
    c.check(r.status == 200 and r.header("X-Cache") == "STALE" and r.body == b"both",
            "the HTTP GET behind it: Redis's copy, STALE within swr", show(r))
    c.eq(stats_delta(before, stats(srv)["total"])["l2_hits"], 1, "one read for both")
    rc.close()
    hc.close()
    srv.stop()


def old_formats(c, redis, a, b):
    c.section("RCV1 and plain values stay readable")
    redis.cmd("SET", PREFIX + "sl2:rcv1", b"\0RCV1text/plain\nold", "PX", "60000")
    redis.cmd("SET", PREFIX + "sl2:raw", b"raw bytes")
    r = get(b, "sl2:rcv1")
    c.check(r.status == 200 and r.body == b"old" and r.header("X-Cache") == "HIT-L2" and
            r.header("Content-Type") == "text/plain", "an RCV1 value: HIT-L2", show(r))
    r = get(b, "sl2:raw")
    c.check(r.status == 200 and r.body == b"raw bytes", "a plain value: served whole", show(r))


def hostile(c, redis, a, b):
    c.section("hostile RCV2 frames: bad data, never served")
    good = ext_windows(2, 300, 0)
    cases = {
        "sl2:bad-len0": b"\0RCV2\n\0\0value",
        "sl2:bad-past": b"\0RCV2\n\x40\x00abc",
        "sl2:bad-over": b"\0RCV2\n\x01\x08" + b"x" * 3000,
        "sl2:bad-bits": b"\0RCV2\n\x01\x00\x04value",
        "sl2:bad-nobits": b"\0RCV2\n\x01\x00\x00value",
        "sl2:bad-short": b"\0RCV2\n\x05\x00\x01\x02\x00\x00\x00value",
        "sl2:bad-tags": b"\0RCV2\n\x04\x00\x02\x01\x09a" + b"value",
        "sl2:bad-ntags": b"\0RCV2\n\x03\x00\x02\x09\x01" + b"value",
        "sl2:bad-ctl": b"\0RCV2a\x01b\n" + struct.pack("<H", len(good)) + good + b"v",
        "sl2:bad-cut": b"\0RCV2\n" + struct.pack("<H", len(good)) + good[:5],
        # windows no PUT can write (over CACHE_STALE_MAX): served STALE past
        # any window, with an Age counted from the store clock's 0 (review)
        "sl2:bad-swr": b"\0RCV2\n\x0d\x00" + ext_windows(2, 0xffffffff, 0) + b"v",
        "sl2:bad-sie": b"\0RCV2\n\x0d\x00" + ext_windows(2, 0, 31536001) + b"v",
    }
    before = stats(b)
    for k, v in cases.items():
        redis.cmd("SET", PREFIX + k, v, "PX", "60000")
    for k in cases:
        r = get(b, k)
        c.check(r.status == 404 and r.header("X-L2") == "bad-data",
                "GET %s -> 404 with X-L2: bad-data" % k, show(r))
    after = stats(b)
    bad = after["l2"]["bad_data"] - before["l2"]["bad_data"]
    refused = after["total"]["l2_refused"] - before["total"]["l2_refused"]
    c.eq(bad + refused, len(cases), "every one counted in bad_data (frame) or l2_refused (ext)")
    c.check(refused >= 5, "the shard refused the malformed extension headers (%d)" % refused)
    c.check(b.healthy(), "b still healthy")


def main(c, redis):
    a = start_instance(c, redis, "a")
    b = start_instance(c, redis, "b")
    for name, srv in (("a", a), ("b", b)):
        if not c.check(wait_l2_ready(srv, name, READY_TIMEOUT) is not None,
                       "%s: L2 ready" % name):
            return
    write_through(c, redis, a, b)
    promoted_stale(c, redis, a, b)
    stale_copy_kept(c, redis, a)
    old_formats(c, redis, a, b)
    hostile(c, redis, a, b)
    mixed_waiters(c, redis)     # last: it stops Redis for a moment


if __name__ == "__main__":
    run_with_redis("test_stale_l2", main)
