#!/usr/bin/env python3
"""Fill leases across a fleet (issue 9, docs/cache-aside.md): a real
redis-server and two real ringcached instances (a and b, --shards 2)
sharing it.  One lease per key across both, taken in Redis with the read
in one step; a waiter on b answered after a's fill; a DELETE on b revokes
a's lease; a holder on a that dies hands the lease to b's waiter; with
Redis down, leases are each instance's alone and hits never wait.

No timing thresholds: waiting is observed through /stats (lease_waiters),
arrival through the answers themselves.

usage: test_leases_l2.py [path/to/ringcached]
"""

import time

from harness import IO_TIMEOUT, Conn, build_request, stats
from redis_harness import PREFIX, run_with_redis, start_instance, wait_l2_ready

READY_TIMEOUT = 10.0
LEASE = [("X-Cache-Fill", "lease")]


def tot(srv):
    return stats(srv)["total"]


def wait_waiters(c, srv, want, what):
    deadline = time.monotonic() + IO_TIMEOUT
    got = None
    while time.monotonic() < deadline:
        got = tot(srv)["lease_waiters"]
        if got == want:
            break
        time.sleep(0.01)
    return c.eq(got, want, what)


def lease_get(conn, key):
    return conn.roundtrip("GET", "/cache/" + key, headers=LEASE)


def put(conn, key, value, token=None):
    h = [("X-Cache-Lease", token)] if token else []
    return conn.roundtrip("PUT", "/cache/" + key, value, headers=h)


def granted(r):
    return r.status == 404 and r.header("X-Cache") == "MISS" and bool(r.header("X-Cache-Lease"))


def one_lease(c, redis, a, b):
    c.section("one lease per key across two instances; b's waiter gets a's fill")
    ca, cb, cb2 = Conn(a.port), Conn(b.port), Conn(b.port)
    r = lease_get(ca, "fk")
    c.check(granted(r), "a: miss in L1 and Redis -> 404 with a token", r)
    tok = r.header("X-Cache-Lease")
    c.eq(redis.cmd("GET", PREFIX + "lease:fk"), tok.encode(),
         "the lease is in Redis: <prefix>lease:<key> = the token")
    r = b.request("GET", "/cache/fk")
    c.check(r.status == 404 and r.header("X-Cache-Lease") is None,
            "b: a GET without X-Cache-Fill is a plain miss", r)
    cb.send(build_request("GET", "/cache/fk", headers=LEASE))
    cb2.send(build_request("GET", "/cache/fk", headers=LEASE))
    wait_waiters(c, b, 2, "b: both lease GETs wait (a holds the fleet's lease)")
    r = put(ca, "fk", b"from-a", tok)
    c.check(r.status == 201 and r.header("X-L2") == "ok", "a fills with its token", r)
    c.eq(redis.cmd("EXISTS", PREFIX + "lease:fk"), 0, "the fill dropped the lease in Redis")
    got = [cb.read_response(), cb2.read_response()]
    c.check(all(g.status == 200 and g.body == b"from-a" for g in got),
            "b's waiters get a's value once its invalidation arrives", got)
    c.check(sorted(g.header("X-Cache") for g in got) == ["HIT-FILL", "HIT-L2"],
            "one read it from Redis (HIT-L2), the other from b's L1 (HIT-FILL)",
            [g.header("X-Cache") for g in got])
    c.check(all(g.header("X-Cache-Lease") is None for g in got), "no token went to b's clients")
    r = lease_get(cb, "fk")
    c.eq((r.status, r.header("X-Cache")), (200, "HIT"), "then b hits in L1")
    for x in (ca, cb, cb2):
        x.close()


def fill_lands_first(c, redis, a, b):
    c.section("a value already in Redis: the lease GET reads it, no token")
    redis.cmd("DEL", PREFIX + "lease:pre")
    with Conn(a.port) as ca:
        c.eq(put(ca, "pre", b"there").status, 201, "a: plain PUT")
    with Conn(b.port) as cb:
        r = lease_get(cb, "pre")
        c.check(r.status == 200 and r.body == b"there" and r.header("X-Cache") == "HIT-L2" and
                r.header("X-Cache-Lease") is None, "b: 200 HIT-L2 from Redis, no token", r)
    c.eq(redis.cmd("EXISTS", PREFIX + "lease:pre"), 0, "and no lease was taken in Redis")


def delete_revokes(c, redis, a, b):
    c.section("a DELETE on b revokes a's lease everywhere: a's late fill is 409")
    ca, cb = Conn(a.port), Conn(b.port)
    tok = lease_get(ca, "dk").header("X-Cache-Lease")
    c.check(tok is not None, "a holds the lease")
    r = cb.roundtrip("DELETE", "/cache/dk")
    c.eq(r.header("X-L2"), "ok", "b's DELETE writes through")
    c.eq(redis.cmd("EXISTS", PREFIX + "lease:dk"), 0, "the lease is gone from Redis")
    r = put(ca, "dk", b"stale", tok)
    c.eq(r.status, 409, "a's holder fills with the revoked token: 409")
    c.eq(redis.cmd("EXISTS", PREFIX + "dk"), 0, "nothing stored in Redis")
    c.eq(ca.roundtrip("GET", "/cache/dk").status, 404, "nothing served by a")
    c.eq(cb.roundtrip("GET", "/cache/dk").status, 404, "nothing served by b")
    r = lease_get(cb, "dk")
    c.check(granted(r), "the next lease GET (on b) takes a new lease", r)
    c.eq(put(cb, "dk", b"fresh", r.header("X-Cache-Lease")).status, 201, "and fills")
    ca.close()
    cb.close()


def holder_dies(c, redis, a, b):
    c.section("a holder on a dies: b's waiter is handed the fleet's lease")
    ca, cb = Conn(a.port), Conn(b.port)
    tok = lease_get(ca, "hk").header("X-Cache-Lease")
    base = tot(b)["lease_waiters"]
    cb.send(build_request("GET", "/cache/hk", headers=LEASE))
    wait_waiters(c, b, base + 1, "b's lease GET waits")
    ca.close()
    r = cb.read_response()
    c.check(granted(r), "b's waiter gets a token (a released the lease in Redis)", r)
    tok_b = r.header("X-Cache-Lease")
    c.check(tok_b != tok, "a new token")
    c.eq(redis.cmd("GET", PREFIX + "lease:hk"), (tok_b or "").encode(),
         "Redis holds b's lease now")
    c.eq(put(cb, "hk", b"from-b", tok_b).status, 201, "b fills")
    with Conn(a.port) as ca2:
        c.eq(put(ca2, "hk", b"x", tok).status, 409, "the dead holder's token: 409")
        r = ca2.roundtrip("GET", "/cache/hk")
        c.eq((r.status, r.body), (200, b"from-b"), "a serves b's value")
    cb.close()


def redis_down(c, redis, a):
    c.section("Redis unreachable: leases are a's alone, hits never wait")
    with Conn(a.port) as ca:
        c.eq(put(ca, "hot", b"cached").status, 201, "a value in a's L1 first")
    redis.kill()
    ca, cw, ch = Conn(a.port), Conn(a.port), Conn(a.port)
    r = lease_get(ca, "down")
    c.check(granted(r) and r.header("X-L2") in ("timeout", "error", "skipped"),
            "a lease GET still gets a token, X-L2 says why Redis was not asked", r)
    tok = r.header("X-Cache-Lease")
    base = tot(a)["lease_waiters"]
    cw.send(build_request("GET", "/cache/down", headers=LEASE))
    wait_waiters(c, a, base + 1, "a second lease GET on a waits for a's holder")
    r = lease_get(ch, "hot")
    c.eq((r.status, r.header("X-Cache"), r.body), (200, "HIT", b"cached"),
         "a hit is answered at once")
    r = put(ca, "down", b"filled-alone", tok)
    c.eq(r.status, 201, "the holder fills (stored in L1; Redis: %s)" % r.header("X-L2"))
    r = cw.read_response()
    c.eq((r.status, r.header("X-Cache"), r.body), (200, "HIT-FILL", b"filled-alone"),
         "the waiter gets the fill")
    for x in (ca, cw, ch):
        x.close()


def reserved(c, a):
    c.section("lease names cannot be cache keys with --redis")
    r = a.request("PUT", "/cache/lease:x", b"v")
    c.eq(r.status, 400, "PUT /cache/lease:x -> 400 (its Redis name is a lease's)")


def stale_if_error_window(c, redis, a, b):
    """A key past its TTL and in its stale-if-error window is a miss to a
    GET that does not ask for stale, so a lease GET of it must get a lease
    (or wait), as for an absent key: that is the expired-key stampede
    leases exist for.  Found by review: Redis still holds the value (its
    PX covers the window), the lease script answered it as a value, L1
    then saw a miss, and every lease GET got 404 without a token."""
    c.section("a key in its stale-if-error window: one lease across the fleet")
    key = "sie-k"
    r = a.request("PUT", "/cache/%s?ttl=1&sie=300" % key, b"old")
    c.check(r.status in (201, 204) and r.header("X-L2") == "ok",
            "a: PUT ?ttl=1&sie=300 written through", r)
    deadline = time.monotonic() + 15
    r = None
    while time.monotonic() < deadline:
        r = a.request("GET", "/cache/" + key)
        if r.status == 404:
            break
        time.sleep(0.05)
    c.eq(r.status, 404, "past its TTL, a GET that does not ask for stale misses")
    r = a.request("GET", "/cache/" + key, headers=[("Cache-Control", "stale-if-error")])
    c.check(r.status == 200 and r.header("X-Cache") == "STALE" and r.body == b"old",
            "a GET with stale-if-error still gets the old value", r)
    # L1's clock counts whole seconds, Redis's PX milliseconds from the
    # write-through: wait until Redis too has only the window left (the
    # moment between is clock_skew()'s case)
    redis_past_ttl(c, redis, key, 300)
    ca, cb = Conn(a.port), Conn(b.port)
    r = lease_get(ca, key)
    c.check(granted(r), "a: lease GET in the window -> 404 with a token", r)
    tok = r.header("X-Cache-Lease")
    before = tot(b)["lease_waiters"]
    cb.send(build_request("GET", "/cache/" + key, headers=LEASE))
    wait_waiters(c, b, before + 1, "b: a lease GET in the window waits for a's fill")
    r = put(ca, key, b"new", tok)
    c.check(r.status in (201, 204), "a: the fill with the token stores", r)
    r = cb.read_response()
    c.check(r.status == 200 and r.body == b"new", "b's waiter gets the fill", r)
    ca.close()
    cb.close()


def redis_past_ttl(c, redis, key, sie):
    """Waits until Redis keeps `key` for its stale-if-error window alone."""
    deadline = time.monotonic() + 15
    t = None
    while time.monotonic() < deadline:
        t = int(redis.cmd("PTTL", PREFIX + key))
        if t <= sie * 1000:
            break
        time.sleep(0.02)
    c.check(0 <= t <= sie * 1000, "Redis's PTTL is within the stale-if-error window",
            "PTTL %s" % t)


def clock_skew(c, redis, a, b):
    """L1 ends an item's freshness on its store clock (whole seconds, ticked
    once a second), Redis on its PX (milliseconds from the write-through),
    so for a moment L1 may call a value past its TTL that Redis still calls
    fresh.  A lease GET in that moment found the value in Redis, no lease
    taken, and L1's own expired copy a miss: it answered 404 with no token,
    a miss nobody was asked to fill (CI, stop 14); a plain GET answered 404
    too.  Redis's expiry wins now: the value is served, and L1 keeps Redis's
    expiry.  The moment is made wide and certain here: Redis's copies are
    given 2.5 s more than L1's clock can (L1 keeps a TTL of N seconds at
    most N + 2 with its tick)."""
    c.section("L1's clock ends freshness before Redis's: Redis's expiry wins")
    keys = ("skew-lease", "skew-plain")
    for k in keys:
        r = a.request("PUT", "/cache/%s?ttl=1&sie=300" % k, b"old")
        c.check(r.status in (201, 204) and r.header("X-L2") == "ok",
                "a: PUT %s?ttl=1&sie=300 written through" % k, r)
        blob = redis.cmd("GET", PREFIX + k)
        pttl = int(redis.cmd("PTTL", PREFIX + k))
        redis.cmd("SET", PREFIX + k, blob, "PX", str(pttl + 2500))
    # a GET that accepts stale is answered from L1 alone: STALE once L1's
    # clock calls the value past its TTL (a plain GET would ask Redis)
    sie = [("Cache-Control", "stale-if-error")]
    for k in keys:
        deadline = time.monotonic() + 5
        r = None
        while time.monotonic() < deadline:
            r = a.request("GET", "/cache/" + k, headers=sie)
            if r.header("X-Cache") != "HIT":
                break
            time.sleep(0.01)
        c.eq((r.status, r.header("X-Cache")), (200, "STALE"), "L1 calls %s past its TTL" % k)
        left = int(redis.cmd("PTTL", PREFIX + k))
        c.check(left > 300000, "while Redis still calls it fresh", "PTTL %d" % left)
    ca = Conn(a.port)
    r = lease_get(ca, keys[0])
    c.check(r.status == 200 and r.body == b"old" and r.header("X-Cache") == "HIT-L2",
            "a: a lease GET then is served Redis's fresh value (HIT-L2)", r)
    r = a.request("GET", "/cache/" + keys[1])
    c.check(r.status == 200 and r.body == b"old" and r.header("X-Cache") == "HIT-L2",
            "a: so is a plain GET", r)
    for k in keys:
        r = a.request("GET", "/cache/" + k)
        c.check(r.status == 200 and r.body == b"old" and r.header("X-Cache") == "HIT",
                "L1 keeps %s with Redis's expiry: a plain GET hits L1" % k, r)
    key = keys[0]
    redis_past_ttl(c, redis, key, 300)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and a.request("GET", "/cache/" + key).status != 404:
        time.sleep(0.02)
    r = lease_get(ca, key)
    c.check(granted(r), "past both expiries a lease GET gets a token", r)
    r = put(ca, key, b"new", r.header("X-Cache-Lease"))
    c.check(r.status in (201, 204), "and fills", r)
    ca.close()


def feed_lost(c, redis, a):
    """When the invalidation feed breaks, L1 is flushed because a DELETE
    elsewhere may have been missed; that DELETE would have revoked a lease
    too, so every lease ends then and the holder's fill is refused.  The
    lease here is a stale value's refresh lease, this instance's own: its
    PUT writes through as a plain write, so nothing in Redis would refuse
    it.  Found by review: the FLUSH left the leases alive."""
    c.section("a lost invalidation feed ends every lease (as it flushes L1)")
    key = "feed-k"
    r = a.request("PUT", "/cache/%s?ttl=1&swr=300" % key, b"old")
    c.check(r.status in (201, 204) and r.header("X-L2") == "ok", "a: PUT ?ttl=1&swr=300", r)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and a.request("GET", "/cache/" + key).header(
            "X-Cache") != "STALE":
        time.sleep(0.05)
    ca = Conn(a.port)
    r = lease_get(ca, key)
    tok = r.header("X-Cache-Lease")
    c.check(r.status == 200 and r.header("X-Cache") == "STALE" and tok is not None,
            "a: a lease GET of the stale value gets a refresh lease", r)
    flushes = stats(a)["l2"]["flushes"]
    redis.cmd("CLIENT", "KILL", "TYPE", "pubsub")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (stats(a)["l2"]["flushes"] > flushes and
                                               stats(a)["l2"]["subscribed"] == 1):
        time.sleep(0.02)
    c.check(stats(a)["l2"]["flushes"] > flushes, "the feed was lost and is back (FLUSH)")
    r = put(ca, key, b"computed-before", tok)
    c.eq(r.status, 409, "the refresh with a lease from before the loss -> 409")
    ca.close()


def main(c, redis):
    a = start_instance(c, redis, "lease-a")
    b = start_instance(c, redis, "lease-b")
    c.check(wait_l2_ready(a, "lease-a", READY_TIMEOUT) is not None, "a: L2 ready")
    c.check(wait_l2_ready(b, "lease-b", READY_TIMEOUT) is not None, "b: L2 ready")
    one_lease(c, redis, a, b)
    fill_lands_first(c, redis, a, b)
    delete_revokes(c, redis, a, b)
    holder_dies(c, redis, a, b)
    stale_if_error_window(c, redis, a, b)
    clock_skew(c, redis, a, b)
    feed_lost(c, redis, a)
    reserved(c, a)
    redis_down(c, redis, a)


if __name__ == "__main__":
    run_with_redis("test_leases_l2", main)
