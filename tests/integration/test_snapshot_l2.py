#!/usr/bin/env python3
"""Warm restarts with --redis (docs/operations.md, src/snapshot/verify.c):
an item invalidated while the daemon was down must not come back.

Instance A saves its L1 at SIGTERM.  While it is down, instance B and an
application change Redis and publish invalidations that A never hears.
When A starts again it loads its snapshot and, before serving, reads every
loaded key from Redis: only items Redis still holds as they are (same
bytes, same Content-Type, no shorter TTL) stay in L1.  Checked per case:

  unchanged                     -> served from L1 (X-Cache: HIT)
  B PUT a new value             -> the new value (from Redis), never the old
  B DELETE                      -> 404
  application SET (plain value) -> Redis' value
  application SET, other type   -> Redis' value and type
  application PEXPIRE (shorter) -> not from the snapshot; Redis' TTL
  application PUBLISH only      -> served: Redis holds the same value, which
                                   is what a cold daemon would fetch too
And with Redis down at the restart, nothing from the snapshot is served:
A cannot prove any item current, gives up after SNAP_VERIFY_STALL_MS (5 s)
and starts as a cold daemon would.

usage: test_snapshot_l2.py [path/to/ringcached]
"""

import os
import re
import shutil
import tempfile

import harness
from harness import WRITE_OK, Server, show, wait_for
from redis_harness import PREFIX, CHANNEL, l2_flags, run_with_redis, wait_l2_ready


def frame(ctype, value):
    """A value as ringcached stores it in Redis (docs/coherence.md)."""
    return b"\0RCV1" + ctype + b"\n" + value


def log_line(srv, word):
    for ln in srv.log_text().splitlines():
        if "snapshot" in ln and word in ln:
            return ln
    return None


def start(c, redis, ident, path):
    return Server(l2_flags(redis, ident, ["--snapshot", path]), checks=c,
                  hash_seed="random").start()


def max_age(r):
    m = re.search(r"max-age=(\d+)", r.header("Cache-Control") or "")
    return int(m.group(1)) if m else None


def body(c, redis):
    d = tempfile.mkdtemp(prefix="ringcache-snap-l2-")
    try:
        run(c, redis, os.path.join(d, "a.snap"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(c, redis, path):
    c.section("A writes through to Redis, then stops and saves its L1")
    a = start(c, redis, "snap-a", path)
    c.check(wait_l2_ready(a, "snap-a", 10.0) is not None, "A's link to Redis is up")
    writes = {
        "same": (b"unchanged while A was down", None, ""),
        "changed": (b"old value", None, ""),
        "deleted": (b"deleted while A was down", None, ""),
        "app-set": (b"app will overwrite", None, ""),
        "app-type": (b'{"a":1}', "application/json", ""),
        "app-ttl": (b"app will shorten my TTL", None, "?ttl=1000"),
        "app-publish": (b"app publishes only", None, ""),
    }
    for i in range(300):
        writes["n%d" % i] = (b"kept-%d" % i, None, "")
    for k, (v, ct, q) in writes.items():
        h = [("Content-Type", ct)] if ct else []
        r = a.request("PUT", "/cache/" + k + q, v, h)
        if r.status not in WRITE_OK or r.header("X-L2") != "ok":
            c.check(False, "PUT %s on A with X-L2: ok" % k, show(r))
    for k in ("same", "changed", "n7"):
        r = a.request("GET", "/cache/" + k)
        c.check(r.status == 200 and r.header("X-Cache") == "HIT", "A holds %s in L1" % k, show(r))
    rc = a.stop()
    c.check(rc == 0 and log_line(a, "saved") is not None, "A stopped and saved its snapshot",
            a.log_text()[-1500:])

    c.section("while A is down: B and an application change Redis")
    b = Server(l2_flags(redis, "snap-b"), checks=c).start()
    c.check(wait_l2_ready(b, "snap-b", 10.0) is not None, "B's link to Redis is up")
    r = b.request("PUT", "/cache/changed", b"new value")
    c.check(r.status in WRITE_OK and r.header("X-L2") == "ok", "B: PUT changed", show(r))
    r = b.request("DELETE", "/cache/deleted")
    c.check(r.status == 204 and r.header("X-L2") == "ok", "B: DELETE deleted", show(r))
    redis.cmd("SET", PREFIX + "app-set", "plain from the app")
    redis.cmd("PUBLISH", CHANNEL, "app-set")
    redis.cmd("SET", PREFIX + "app-type", frame(b"text/plain", b'{"a":1}'))
    redis.cmd("PUBLISH", CHANNEL, "app-type")
    redis.cmd("PEXPIRE", PREFIX + "app-ttl", 100000)
    redis.cmd("PUBLISH", CHANNEL, "app-ttl")
    redis.cmd("PUBLISH", CHANNEL, "app-publish")

    c.section("A starts again: loads, checks every item against Redis, then serves")
    a = start(c, redis, "snap-a", path)
    line = wait_for(lambda: log_line(a, "checked against Redis"), 5.0)
    c.check(line is not None, "A's log says it checked the snapshot against Redis",
            a.log_text()[-1500:])
    m = re.search(r"(\d+) current, (\d+) changed or gone \(dropped\), (\d+) not answered",
                  line or "")
    c.check(m is not None and int(m.group(2)) == 5 and int(m.group(3)) == 0,
            "5 items changed or gone while A was down were dropped, none unanswered",
            line)
    c.check(m is not None and int(m.group(1)) >= 302,
            "the unchanged items were found current", line)

    def get(k):
        return a.request("GET", "/cache/" + k)

    r = get("same")
    c.check(r.status == 200 and r.body == b"unchanged while A was down" and
            r.header("X-Cache") == "HIT", "unchanged: served from L1 (HIT)", show(r))
    bad = [k for k in ("n0", "n150", "n299") if get(k).header("X-Cache") != "HIT"]
    c.check(not bad, "the other unchanged keys are L1 hits", bad)
    r = get("changed")
    c.check(r.status == 200 and r.body == b"new value" and r.header("X-Cache") == "HIT-L2",
            "changed by B: the new value, from Redis (never the old one)", show(r))
    r = get("deleted")
    c.check(r.status == 404, "deleted by B: 404", show(r))
    r = get("app-set")
    c.check(r.status == 200 and r.body == b"plain from the app" and
            r.header("X-Cache") == "HIT-L2", "overwritten by the application: its value",
            show(r))
    r = get("app-type")
    c.check(r.status == 200 and r.header("Content-Type") == "text/plain" and
            r.header("X-Cache") == "HIT-L2",
            "rewritten with another Content-Type: Redis' type", show(r))
    r = get("app-ttl")
    c.check(r.status == 200 and r.header("X-Cache") == "HIT-L2" and
            (max_age(r) or 0) <= 100,
            "TTL shortened in Redis: not kept from the snapshot; Redis' TTL", show(r))
    r = get("app-publish")
    c.check(r.status == 200 and r.body == b"app publishes only",
            "invalidated by a PUBLISH alone, Redis unchanged: Redis' (same) value", show(r))

    c.section("Redis down at the restart: nothing from the snapshot is served")
    rc = a.stop()
    c.check(rc == 0 and log_line(a, "saved") is not None, "A saved again", a.log_text()[-1500:])
    redis.kill()
    # it serves only after giving up on Redis (5 s without an answer): wait
    # for that longer than the harness' usual start bound
    harness.START_TIMEOUT = 40.0
    a = start(c, redis, "snap-a", path)
    line = wait_for(lambda: log_line(a, "not answered"), 5.0)
    m = re.search(r"(\d+) current, (\d+) changed or gone \(dropped\), (\d+) not answered",
                  line or "")
    c.check(m is not None and int(m.group(1)) == 0 and int(m.group(3)) > 300,
            "A could check nothing and dropped every item", line or a.log_text()[-1500:])
    r = get("same")
    c.check(r.status == 404 and r.header("X-Cache") == "MISS",
            "an unchanged item is not served from the unchecked snapshot", show(r))
    redis.restart()


if __name__ == "__main__":
    run_with_redis("snapshot_l2", body)
