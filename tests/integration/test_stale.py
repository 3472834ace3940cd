#!/usr/bin/env python3
"""Stale serving (issue 9, docs/stale-and-tags.md) on one instance, against
the real daemon: stale-while-revalidate, stale-if-error, max-stale, Age,
ETag/304 and HEAD on a stale answer, RESP never seeing a stale value, and
hostile window values.

Time passes for real here: TTLs of one second, and every step waits for the
condition it needs (the answer changing), never for a fixed time.

usage: test_stale.py [path/to/ringcached]
"""

from harness import keys_per_shard, run_main, stats, stats_delta, wait_for
from resp_harness import RespServer

WAIT = 15       # seconds any one condition may take to come true


def get(srv, key, cc=None, method="GET", headers=None):
    h = list(headers or [])
    if cc is not None:
        h.append(("Cache-Control", cc))
    return srv.request(method, "/cache/" + key, headers=h)


def x_cache(r):
    return r.header("X-Cache")


def swr_window(c, srv, key):
    """?swr=: fresh, then STALE with Age and the ETag of the write, then
    (beyond swr, inside sie) a miss unless asked for; max-stale=N bounds."""
    r = srv.request("PUT", "/cache/%s?ttl=1&swr=3&sie=300" % key, b"old value")
    c.eq(r.status, 201, "PUT ?ttl=1&swr=3&sie=300 -> 201 (%s)" % key)
    etag = r.header("ETag")
    r = get(srv, key)
    c.check(r.status == 200 and x_cache(r) == "HIT", "fresh: 200 X-Cache: HIT", r)
    c.check(r.header("Age") is None, "a fresh answer has no Age", r)
    c.eq(r.header("Cache-Control"), "max-age=1", "max-age counts to the TTL, not past it")

    before = stats(srv)["total"]
    r = wait_for(lambda: (lambda g: g if x_cache(g) != "HIT" else None)(get(srv, key)), WAIT)
    c.check(r is not None and r.status == 200 and x_cache(r) == "STALE",
            "past its TTL, inside swr: 200 X-Cache: STALE", r)
    if r is None:
        return
    c.eq(r.body, b"old value", "the stale answer is the old value")
    c.eq(r.header("ETag"), etag, "the stale answer keeps the write's ETag")
    c.check(r.header("Cache-Control") is None, "no max-age on a stale answer", r)
    age = r.header("Age")
    c.check(age is not None and age.isdigit() and int(age) >= 1,
            "Age: seconds since the write (>= the TTL)", r)
    r = get(srv, key, headers=[("If-None-Match", etag)])
    c.check(r.status == 304 and x_cache(r) == "STALE" and r.header("Age") is not None,
            "If-None-Match on a stale answer: 304 X-Cache: STALE with Age", r)
    r = get(srv, key, method="HEAD")
    c.check(r.status == 200 and x_cache(r) == "STALE" and r.body == b"" and
            r.header("Content-Length") == "9", "HEAD of a stale item: 200 STALE, no body", r)
    delta = stats_delta(before, stats(srv)["total"])
    c.check(delta["stale"] >= 3, "/stats counts stale answers in `stale`", delta)

    # beyond swr (3 s) inside sie (300 s): a plain GET misses
    r = wait_for(lambda: (lambda g: g if g.status == 404 else None)(get(srv, key)), WAIT)
    c.check(r is not None and x_cache(r) == "MISS", "past swr: a plain GET is a miss", r)
    for cc in ("stale-if-error", "max-stale", "max-stale=1000", "no-cache, stale-if-error=600"):
        r = get(srv, key, cc)
        c.check(r.status == 200 and x_cache(r) == "STALE" and r.body == b"old value",
                "past swr, Cache-Control: %s -> STALE" % cc, r)
    for cc in ("max-stale=1", "stale-if-error=0", "max-stale=-1", "max-stale=x", "only-if-cached"):
        r = get(srv, key, cc)
        c.check(r.status == 404 and x_cache(r) == "MISS",
                "past swr, Cache-Control: %s -> miss (N bounds, malformed is absent)" % cc, r)


def cache_control_windows(c, srv, key):
    """The same windows from the PUT's Cache-Control."""
    r = srv.request("PUT", "/cache/" + key, b"cc value", headers=[
        ("Cache-Control", "max-age=1, stale-while-revalidate=300")])
    c.eq(r.status, 201, "PUT Cache-Control: max-age=1, stale-while-revalidate=300 -> 201")
    r = wait_for(lambda: (lambda g: g if x_cache(g) != "HIT" else None)(get(srv, key)), WAIT)
    c.check(r is not None and x_cache(r) == "STALE" and r.body == b"cc value",
            "Cache-Control windows: STALE after max-age", r)
    # overwritten without windows: fresh, and then simply gone
    r = srv.request("PUT", "/cache/%s?ttl=1" % key, b"plain")
    c.eq(r.status, 204, "overwrite without windows -> 204")
    r = wait_for(lambda: (lambda g: g if g.status != 200 else None)(get(srv, key, "max-stale")),
                 WAIT)
    c.check(r is not None and r.status == 404,
            "the overwrite has no windows: past its TTL a miss even with max-stale", r)


def hostile(c, srv):
    c.section("hostile window values")
    srv.request("PUT", "/cache/hostile", b"kept")
    for q, name in (("swr=-1", "swr"), ("swr=abc", "swr"), ("swr=", "swr"),
                    ("swr=99999999999", "swr"), ("swr=31536001", "swr"),
                    ("sie=-5", "sie"), ("sie=31536001", "sie"), ("sie=1e9", "sie")):
        r = srv.request("PUT", "/cache/hostile?ttl=5&" + q, b"lost")
        c.check(r.status == 400 and name.encode() in r.body,
                "PUT ?%s -> 400 naming %s" % (q, name), r)
    for cc, name in (("stale-while-revalidate=-1", b"stale-while-revalidate"),
                     ("stale-while-revalidate", b"stale-while-revalidate"),
                     ("stale-while-revalidate=\"9", b"stale-while-revalidate"),
                     ("stale-if-error=99999999999999999999999", b"stale-if-error"),
                     ("max-age=5, stale-if-error=2.5", b"stale-if-error")):
        r = srv.request("PUT", "/cache/hostile", b"lost", headers=[("Cache-Control", cc)])
        c.check(r.status == 400 and name in r.body,
                "PUT Cache-Control: %s -> 400 naming it" % cc, r)
    r = get(srv, "hostile")
    c.check(r.status == 200 and r.body == b"kept", "refused PUTs stored nothing", r)
    r = srv.request("PUT", "/cache/hostile?ttl=4294967295&swr=31536000&sie=31536000", b"max")
    c.eq(r.status, 204, "the largest TTL and windows are accepted")
    r = get(srv, "hostile")
    c.check(r.status == 200 and x_cache(r) == "HIT", "and the item is fresh", r)
    c.check(srv.healthy(), "still healthy")


def resp_never_stale(c, srv, key):
    c.section("RESP: past its TTL an item is gone, as in Redis")
    srv.request("PUT", "/cache/%s?ttl=1&swr=300" % key, b"resp value")
    with srv.client() as r:
        c.eq(r.cmd("GET", key), b"resp value", "RESP GET of a fresh windowed item")
        ttl = r.cmd("TTL", key)
        c.check(isinstance(ttl, int) and 0 <= ttl <= 1,
                "TTL counts to the TTL, not past the windows", ttl)
    g = wait_for(lambda: (lambda x: x if x_cache(x) == "STALE" else None)(get(srv, key)), WAIT)
    c.check(g is not None, "HTTP sees it STALE", g)
    with srv.client() as r:
        c.eq(r.cmd("GET", key), None, "RESP GET of a stale item: nil")
        c.eq(r.cmd("EXISTS", key), 0, "EXISTS: 0")
        c.eq(r.cmd("TTL", key), -2, "TTL: -2 (no such key)")
        c.eq(r.cmd("INCR", key), 1, "INCR starts from nothing")
    r = get(srv, key)
    c.check(r.status == 200 and r.body == b"1" and x_cache(r) == "HIT",
            "the INCR's value replaced the stale one", r)


def stale_with_lease(c, srv, key):
    """Within swr, a GET with X-Cache-Fill: lease gets the stale value and,
    the first one only, a lease to refresh it; nobody waits (issue 9)."""
    lease = [("X-Cache-Fill", "lease")]
    r = srv.request("PUT", "/cache/%s?ttl=1&swr=60" % key, b"old")
    c.eq(r.status, 201, "PUT ?ttl=1&swr=60 -> 201 (%s)" % key)
    r = wait_for(lambda: (lambda g: g if x_cache(g) == "STALE" else None)(get(srv, key)), WAIT)
    c.check(r is not None, "the value turns stale", r)
    conn = srv.connect()
    first = conn.roundtrip("GET", "/cache/" + key, headers=lease)
    tok = first.header("X-Cache-Lease")
    c.check(first.status == 200 and x_cache(first) == "STALE" and first.body == b"old" and
            tok is not None and len(tok) == 32,
            "the first lease GET of a stale value: 200 STALE, the old value, and a lease", first)
    for i in range(3):
        r = get(srv, key, headers=lease)
        c.check(r.status == 200 and x_cache(r) == "STALE" and r.body == b"old" and
                r.header("X-Cache-Lease") is None,
                "lease GET %d while the refresh is out: the stale value at once, no token" % (i + 2),
                r)
    r = conn.roundtrip("PUT", "/cache/%s?ttl=60" % key, b"new", headers=[("X-Cache-Lease", tok)])
    c.eq(r.status, 204, "the refresh with the token stores (204: it replaces the stale item)")
    r = get(srv, key, headers=lease)
    c.check(r.status == 200 and x_cache(r) == "HIT" and r.body == b"new",
            "then a fresh HIT of the new value", r)
    conn.close()


def body(c):
    srv = RespServer(checks=c).start()
    # one key per shard: the local path and the forwarded one
    ks = keys_per_shard("stale", 2, 3)
    c.section("stale-while-revalidate, stale-if-error, max-stale")
    for shard in (0, 1):
        swr_window(c, srv, ks[shard][0])
    c.section("windows from Cache-Control")
    cache_control_windows(c, srv, ks[0][1])
    c.section("stale-while-revalidate with fill leases: one refresher, nobody waits")
    for shard in (0, 1):
        stale_with_lease(c, srv, ks[shard][1] + "-lease")
    hostile(c, srv)
    resp_never_stale(c, srv, ks[1][2])


if __name__ == "__main__":
    run_main("test_stale", body)
