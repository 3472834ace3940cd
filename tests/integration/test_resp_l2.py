#!/usr/bin/env python3
"""The RESP front end with --redis (issue 12, docs/resp.md "Consistency with
the shared Redis"): writes over RESP go through to Redis and invalidate the
other instances exactly like HTTP writes; misses promote from Redis; INCR,
APPEND and the other read-modify-write commands read a key L1 lacks from
Redis first, apply in L1 on the key's owner, and write the result through;
without Redis they refuse a key L1 lacks rather than guess it.

Two instances, a and b, share one redis-server.

Usage: test_resp_l2.py [path/to/ringcached]
"""

from harness import wait_for
from redis_harness import PREFIX, Marker, l2_flags, run_with_redis, wait_l2_ready
from resp_harness import RespError, RespServer

FRAME = b"\x00RCV1\n"       # a value written without a Content-Type (docs/coherence.md)


def start(c, redis, name):
    srv = RespServer(l2_flags(redis, name), checks=c).start()
    c.check(wait_l2_ready(srv, name, 10.0) is not None, "%s reaches Redis" % name)
    return srv


def settled(c, redis, a, b, what):
    c.check(Marker(redis, [a, b]).fire(), "a and b handled the invalidations of %s" % what)


def body(c, redis):
    a = start(c, redis, "resp-a")
    b = start(c, redis, "resp-b")
    ra, rb = a.client(), b.client()

    c.section("SET over RESP is written through and invalidates the other instance")
    c.eq(rb.cmd("SET", "k1", "old"), b"OK", "b: SET k1 old")
    c.eq(ra.cmd("GET", "k1"), b"old", "a: GET k1 promotes it from Redis")
    c.eq(ra.cmd("GET", "k1"), b"old", "a: and holds it in L1")
    c.eq(rb.cmd("SET", "k1", "new"), b"OK", "b: SET k1 new")
    c.eq(redis.cmd("GET", PREFIX + "k1"), FRAME + b"new", "Redis holds the new value")
    settled(c, redis, a, b, "SET k1")
    c.eq(ra.cmd("GET", "k1"), b"new", "a: GET k1 -> the new value")
    h = a.request("GET", "/cache/k1")
    c.check(h.status == 200 and h.body == b"new", "a over HTTP: the same key", h)

    c.section("DEL over RESP")
    c.eq(rb.cmd("DEL", "k1", "nope"), 1, "b: DEL k1 nope -> 1")
    c.eq(redis.cmd("EXISTS", PREFIX + "k1"), 0, "gone from Redis")
    settled(c, redis, a, b, "DEL k1")
    c.eq(ra.cmd("GET", "k1"), None, "a: GET k1 -> nil")
    redis.cmd("SET", PREFIX + "only-redis", "r")
    c.eq(ra.cmd("DEL", "only-redis"), 1, "DEL of a key only Redis has counts it")
    c.eq(ra.cmd("EXISTS", "only-redis"), 0, "and it is gone")

    c.section("INCR: a key only Redis has is read first, then incremented, then written")
    redis.cmd("SET", PREFIX + "cnt", "10")
    c.eq(ra.cmd("INCR", "cnt"), 11, "a: INCR cnt -> 11 (10 from Redis)")
    c.eq(redis.cmd("GET", PREFIX + "cnt"), FRAME + b"11", "Redis holds 11")
    settled(c, redis, a, b, "INCR cnt")
    c.eq(rb.cmd("INCRBY", "cnt", 5), 16, "b: INCRBY cnt 5 -> 16")
    settled(c, redis, a, b, "INCRBY cnt")
    c.eq(ra.cmd("GET", "cnt"), b"16", "a sees 16")
    c.eq(ra.cmd("INCR", "fresh"), 1, "INCR of a key nowhere -> 1")
    c.eq(redis.cmd("GET", PREFIX + "fresh"), FRAME + b"1", "written through")

    c.section("APPEND, GETDEL, EXPIRE, SET NX against Redis")
    redis.cmd("SET", PREFIX + "ap", "abc")
    c.eq(ra.cmd("APPEND", "ap", "def"), 6, "APPEND to a value only Redis has")
    c.eq(redis.cmd("GET", PREFIX + "ap"), FRAME + b"abcdef", "Redis holds abcdef")
    redis.cmd("SET", PREFIX + "gd", "v")
    c.eq(ra.cmd("GETDEL", "gd"), b"v", "GETDEL of a key only Redis has")
    c.eq(redis.cmd("EXISTS", PREFIX + "gd"), 0, "deleted in Redis")
    redis.cmd("SET", PREFIX + "ex", "v")
    c.eq(ra.cmd("EXPIRE", "ex", 100), 1, "EXPIRE of a key only Redis has")
    pttl = redis.cmd("PTTL", PREFIX + "ex")
    c.check(isinstance(pttl, int) and 0 < pttl <= 101000, "Redis has its TTL", pttl)
    redis.cmd("SET", PREFIX + "nx", "there")
    c.eq(ra.cmd("SET", "nx", "mine", "NX"), None, "SET NX sees the key Redis has")
    c.eq(ra.cmd("SET", "nx", "mine", "XX", "GET"), b"there", "SET XX GET answers Redis's value")
    c.eq(redis.cmd("GET", PREFIX + "nx"), FRAME + b"mine", "and writes through")

    c.section("MSET and MGET across shards and Redis")
    c.eq(rb.cmd("MSET", "m1", "1", "m2", "2", "m3", "3"), b"OK", "b: MSET")
    c.eq(ra.cmd("MGET", "m1", "m2", "m3", "m4"), [b"1", b"2", b"3", None],
         "a: MGET promotes them")
    c.eq(ra.cmd("EXISTS", "m1", "m2", "m4"), 2, "a: EXISTS")

    c.section("the names ringcached keeps in Redis are refused as keys, saying which")
    reserved = RespError("ERR key reserved for ringcached's own use in Redis (registry, fill "
                         "leases, tag sets)")
    for key in ("instances", "instance:x", "lease:k", "tag:t"):
        c.eq(ra.cmd("SET", key, "v"), reserved, "SET %s -> the reserved-key error" % key)
    c.eq(redis.cmd("EXISTS", PREFIX + "tag:t"), 0, "nothing written to the tag set's name")

    c.section("without Redis, a read-modify-write of a key L1 lacks is refused")
    redis.pause()
    try:
        got = ra.cmd("INCR", "cnt-x")
        c.check(isinstance(got, RespError) and str(got).startswith("TRYAGAIN"),
                "INCR while Redis does not answer -> TRYAGAIN", got)
        c.eq(ra.cmd("INCR", "cnt"), 17, "INCR of a key L1 holds still works (16 -> 17)")
    finally:
        redis.resume()
    c.check(wait_for(lambda: ra.cmd("INCR", "cnt-y") == 1, 10.0, 0.1),
            "once Redis answers again, INCR works")
    ra.close()
    rb.close()


if __name__ == "__main__":
    run_with_redis("test_resp_l2", body)
