#!/usr/bin/env python3
"""Tags through the Redis L2 (issue 9, docs/coherence.md "Tags"): a real
redis-server and two ringcached instances (a and b) sharing it.

A tagged write-through adds its key to <prefix>tag:<tag>; DELETE /tags/{tag}
on one instance deletes the tagged keys from Redis (not a key rewritten
without the tag) and every instance drops them from L1 through one message,
"tag:<tag>" on the invalidation channel, which an application may PUBLISH
too.  Cache keys named tag:... are refused (they would be the sets).

usage: test_tags_l2.py [path/to/ringcached]
"""

import json
import os
import shutil
import tempfile

from harness import keys_per_shard, show, stats, wait_for
from redis_harness import (CHANNEL, PREFIX, l1_on, put_settled, run_with_redis, start_instance,
                           wait_l2_ready)

READY_TIMEOUT = 10.0
WAIT = 10.0


def body_of(r):
    try:
        return json.loads(r.body)
    except ValueError:
        return None


def members(redis, tag):
    return sorted(m.decode() for m in (redis.cmd("SMEMBERS", PREFIX + "tag:" + tag) or []))


def until_l2_copy(srv, key, body):
    """True once srv answers key with `body` read from Redis (HIT-L2): its
    L1 copy, if any, is gone."""
    return wait_for(lambda: (lambda r: r.status == 200 and r.body == body and
                             r.header("X-Cache") == "HIT-L2")(
        srv.request("GET", "/cache/" + key)), WAIT, interval=0.02)


def sets(c, redis, a, b):
    c.section("a tagged write-through joins <prefix>tag:<tag>")
    ks = keys_per_shard("tl2-", 2, 3)
    keys = [ks[0][0], ks[0][1], ks[1][0], ks[1][1]]
    for k in keys:
        put_settled(c, redis, a, b, k, b"old-" + k.encode(),
                    [("X-Cache-Tags", "grp, k-" + k)], "?ttl=300")
    c.eq(members(redis, "grp"), sorted(keys), "SMEMBERS ringcache:tag:grp holds the 4 keys")
    pttl = redis.cmd("PTTL", PREFIX + "tag:grp")
    c.check(isinstance(pttl, int) and 290000 < pttl <= 302000,
            "the set lives as long as its longest-lived member", pttl)
    frame = redis.cmd("GET", PREFIX + keys[0])
    c.check(frame.startswith(b"\0RCV2\n") and b"grp" in frame,
            "the value is an RCV2 frame carrying its tags", frame[:60])
    put_settled(c, redis, a, b, ks[1][2], b"forever", [("X-Cache-Tags", "eternal")])
    c.eq(redis.cmd("PTTL", PREFIX + "tag:eternal"), -1, "a member without TTL: the set has none")
    # Found by review: PEXPIRE NX gave the set of a member without TTL the
    # TTL of the next member, so the set went first and a purge then left
    # the member without TTL in Redis for every instance to read back.
    put_settled(c, redis, a, b, ks[0][2], b"brief", [("X-Cache-Tags", "eternal")], "?ttl=300")
    c.eq(redis.cmd("PTTL", PREFIX + "tag:eternal"), -1,
         "a member with a TTL joins it later: the set still has none (it outlives the first)")
    r = a.request("PUT", "/cache/tag:grp", b"x")
    c.check(r.status == 400 and b"reserved" in r.body,
            "PUT /cache/tag:grp (the set's name) -> 400 reserved", show(r))
    return keys


def purge(c, redis, a, b, keys):
    c.section("DELETE /tags/grp on a: Redis and both L1s")
    for k in keys:
        l1_on(c, b, k, b"old-" + k.encode(), "b")       # b promoted them: in its index
    # rewritten without the tag: stays everywhere
    put_settled(c, redis, a, b, keys[0], b"kept", None, "?ttl=300")
    before_b = stats(b)
    r = a.request("DELETE", "/tags/grp")
    d = body_of(r)
    c.check(r.status == 200 and r.header("X-L2") == "ok" and d is not None and
            d.get("removed") == 3 and d.get("l2_removed") == 3,
            "DELETE /tags/grp -> 200, X-L2: ok, removed 3 here and 3 in Redis", show(r))
    for k in keys[1:]:
        c.eq(redis.cmd("EXISTS", PREFIX + k), 0, "Redis no longer holds %s" % k)
    c.eq(redis.cmd("GET", PREFIX + keys[0])[-4:], b"kept", "the rewritten key stays in Redis")
    c.eq(redis.cmd("EXISTS", PREFIX + "tag:grp"), 0, "the set is gone")
    # b's L1: put new values straight into Redis; once b's L1 copy is gone
    # it answers them from Redis (HIT-L2), never the old value from L1
    for k in keys[1:]:
        redis.cmd("SET", PREFIX + k, b"fresh")
    for k in keys[1:]:
        c.check(until_l2_copy(b, k, b"fresh"),
                "b dropped %s from L1 (the purge message): now read from Redis" % k)
    r = b.request("GET", "/cache/" + keys[0])
    c.check(r.status == 200 and r.body == b"kept", "b: the rewritten key is kept", show(r))
    after_b = stats(b)
    c.check(after_b["l2"]["purges_received"] - before_b["l2"]["purges_received"] == 1,
            "b received one purge message", after_b["l2"])
    r = a.request("DELETE", "/tags/never-used")
    c.check(r.status == 200 and body_of(r) == {"removed": 0, "l2_removed": 0},
            "purge of an unknown tag -> removed 0, l2_removed 0", show(r))


def app_publish(c, redis, a, b):
    c.section("an application's PUBLISH of tag:<tag> purges every L1")
    ks = keys_per_shard("app-", 2, 1)
    keys = [ks[0][0], ks[1][0]]
    for k in keys:
        put_settled(c, redis, a, b, k, b"v", [("X-Cache-Tags", "apptag")], "?ttl=300")
        l1_on(c, a, k, b"v", "a")
        l1_on(c, b, k, b"v", "b")
    redis.cmd("PUBLISH", CHANNEL, "tag:apptag")
    for srv, name in ((a, "a"), (b, "b")):
        for k in keys:
            c.check(until_l2_copy(srv, k, b"v"),
                    "%s dropped %s from L1 (Redis keeps it: only L1 is purged)" % (name, k))


def hostile(c, redis, a, b):
    c.section("hostile data in Redis: never deleted on a guess, never a crash")
    # a member whose value's frame is damaged, or plain, or untagged: kept
    redis.cmd("SADD", PREFIX + "tag:h", "h-bad", "h-plain", "h-other", "h-missing")
    redis.cmd("SET", PREFIX + "h-bad", b"\0RCV2\n\x05\x00\x02\x09\x01h")
    redis.cmd("SET", PREFIX + "h-plain", b"h")
    redis.cmd("SET", PREFIX + "h-other", b"\0RCV2\n\x04\x00\x02\x01\x01x" + b"v")
    redis.cmd("HSET", PREFIX + "h-hash", "f", "v")
    redis.cmd("SADD", PREFIX + "tag:h", "h-hash")
    r = a.request("DELETE", "/tags/h")
    c.check(r.status == 200 and body_of(r) == {"removed": 0, "l2_removed": 0} and
            r.header("X-L2") == "ok", "members whose values do not carry the tag are kept",
            show(r))
    for k in ("h-bad", "h-plain", "h-other", "h-hash"):
        c.eq(redis.cmd("EXISTS", PREFIX + k), 1, "%s is still in Redis" % k)
    # the set's name taken by a string: Redis refuses SPOP, the purge says so
    redis.cmd("SET", PREFIX + "tag:str", "not a set")
    r = a.request("DELETE", "/tags/str")
    c.check(r.status == 200 and r.header("X-L2") == "error" and
            (body_of(r) or {}).get("removed") == 0,
            "a tag whose set is not a set: 200 for L1, X-L2: error", show(r))
    c.check(a.healthy(), "a still healthy")
    c.check(wait_l2_ready(a, "a", READY_TIMEOUT) is not None, "a's L2 works again")


def snapshot(c, redis):
    c.section("--snapshot with --redis: an L1 copy whose tags differ from Redis' is dropped")
    d = tempfile.mkdtemp(prefix="ringcached-tags-l2-snap-")
    path = os.path.join(d, "cache.snap")
    try:
        s = start_instance(c, redis, "s", ["--snapshot", path])
        if not c.check(wait_l2_ready(s, "s", READY_TIMEOUT) is not None, "s: L2 ready"):
            return
        for k in ("snap-same", "snap-moved"):
            r = s.request("PUT", "/cache/" + k, b"v", headers=[("X-Cache-Tags", "t1")])
            c.eq(r.header("X-L2"), "ok", "PUT %s tagged t1 written through" % k)
        c.eq(s.stop(), 0, "s saved its snapshot")
        # while s is down, snap-moved is rewritten in Redis with other tags
        ext = b"\x02\x01\x02t2"
        redis.cmd("SET", PREFIX + "snap-moved", b"\0RCV2\n" + bytes([len(ext), 0]) + ext + b"v")
        s = start_instance(c, redis, "s", ["--snapshot", path])
        r = s.request("GET", "/cache/snap-same")
        c.check(r.status == 200 and r.header("X-Cache") == "HIT",
                "the item Redis holds alike is kept in L1 (HIT)", show(r))
        r = s.request("GET", "/cache/snap-moved")
        c.check(r.status == 200 and r.header("X-Cache") == "HIT-L2",
                "the item whose tags changed in Redis was dropped: read again (HIT-L2)", show(r))
        r = s.request("DELETE", "/tags/t2")
        c.check(r.status == 200 and (body_of(r) or {}).get("removed") == 1,
                "and it now carries Redis' tag t2", show(r))
        s.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def purge_revokes_fleet_lease(c, redis, a):
    """A purge deletes the tagged keys from Redis and must revoke their
    fleet leases there too, as a DELETE does (it deletes <prefix>lease:<key>):
    a holder whose instance has no copy of the key in L1 (so its L1 purge
    revokes nothing), or whose tag: message has not arrived yet, would
    otherwise fill the purged key with what it read before the purge.  Here
    the holder's instance m takes no copy (its --max-value is smaller than
    the value), so the outcome does not depend on when messages arrive.
    Found by review."""
    c.section("DELETE /tags/ revokes the fleet leases of the keys it deletes from Redis")
    m = start_instance(c, redis, "m", ["--max-value", "64"])
    if not c.check(wait_l2_ready(m, "m", READY_TIMEOUT) is not None, "m: L2 ready"):
        return
    key, big = "plk", b"o" * 100
    r = a.request("PUT", "/cache/%s?ttl=1&sie=300" % key, big, headers=[("X-Cache-Tags", "plt")])
    c.check(r.status in (201, 204) and r.header("X-L2") == "ok",
            "a: PUT ?ttl=1&sie=300 tagged plt, written through", show(r))
    c.check(wait_for(lambda: a.request("GET", "/cache/" + key).status == 404, WAIT),
            "past its TTL a GET that does not ask for stale misses")
    cm = m.connect()
    r = cm.roundtrip("GET", "/cache/" + key, headers=[("X-Cache-Fill", "lease")])
    tok = r.header("X-Cache-Lease")
    c.check(r.status == 404 and tok is not None and
            redis.cmd("GET", PREFIX + "lease:" + key) == (tok or "").encode(),
            "m: a lease GET in the stale-if-error window takes the fleet's lease", show(r))
    r = a.request("DELETE", "/tags/plt")
    c.check(r.status == 200 and (body_of(r) or {}).get("l2_removed") == 1,
            "a: DELETE /tags/plt deletes the key from Redis", show(r))
    r = cm.roundtrip("PUT", "/cache/" + key, b"read-before-the-purge",
                     headers=[("X-Cache-Lease", tok or "")])
    c.eq(r.status, 409, "m: the fill with the purged key's lease -> 409")
    c.eq(redis.cmd("EXISTS", PREFIX + key), 0, "nothing stored in Redis")
    cm.close()
    m.stop()


def dead_members_pruned(c, redis, a):
    """A tag written on ever new keys keeps its set alive (each add extends
    it), so members whose keys expired must leave it, or the set grows
    without bound in Redis.  Each add samples two members and drops those
    whose key is gone: after 20 members die, 200 adds sample 400 times
    from a set of 20 dead among at most 221, so at least one is dropped
    unless the pruning is missing (the chance of missing all is ~1e-16).
    Found by review."""
    c.section("a tag's set in Redis drops members whose keys are gone")
    name = PREFIX + "tag:dm"
    r = a.request("PUT", "/cache/dm-keep?ttl=300", b"v", headers=[("X-Cache-Tags", "dm")])
    c.check(r.status in (201, 204), "a long-lived member keeps the set alive", show(r))
    for i in range(20):
        r = a.request("PUT", "/cache/dm-old-%d?ttl=1" % i, b"v", headers=[("X-Cache-Tags", "dm")])
        c.check(r.status in (201, 204) and r.header("X-L2") == "ok", "PUT dm-old-%d" % i, show(r))
    c.eq(redis.cmd("SCARD", name), 21, "21 members")
    gone = wait_for(lambda: all(redis.cmd("EXISTS", PREFIX + "dm-old-%d" % i) == 0
                                for i in range(20)), WAIT)
    c.check(gone, "their keys expired in Redis")
    for i in range(200):
        a.request("PUT", "/cache/dm-new-%d?ttl=300" % i, b"v", headers=[("X-Cache-Tags", "dm")])
    live = sum(redis.cmd("SISMEMBER", name, "dm-new-%d" % i) for i in range(200))
    c.eq(live, 200, "every live key is a member (a purge finds it)")
    n = redis.cmd("SCARD", name)
    c.check(n < 221, "dead members were dropped: SCARD %s < 221" % n, n)


def main(c, redis):
    a = start_instance(c, redis, "a")
    b = start_instance(c, redis, "b")
    for name, srv in (("a", a), ("b", b)):
        if not c.check(wait_l2_ready(srv, name, READY_TIMEOUT) is not None,
                       "%s: L2 ready" % name):
            return
    keys = sets(c, redis, a, b)
    purge(c, redis, a, b, keys)
    app_publish(c, redis, a, b)
    hostile(c, redis, a, b)
    purge_revokes_fleet_lease(c, redis, a)
    dead_members_pruned(c, redis, a)
    c.check(a.healthy() and b.healthy(), "both healthy")
    snapshot(c, redis)


if __name__ == "__main__":
    run_with_redis("test_tags_l2", main)
