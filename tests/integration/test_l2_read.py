#!/usr/bin/env python3
"""Issue 8: L1 misses read from Redis on each shard's own connection
(src/shard/l2read.c, src/coherence/read.c), with the rules of the coherence
thread's reads kept.

A real redis-server that requires a password, with the data in db 3, and
ringcached pointed at it through a relay (redis_harness.Relay) that forwards
every byte and can hold a connection's replies or commands, so a test
decides when a read's reply, or a write, reaches its destination.

  - misses are answered HIT-L2 through the shards' own connections (AUTH
    and SELECT done by each);
  - a DELETE and a GET of the same key, pipelined: the GET is answered 404,
    not the value the DELETE removed (a read waits behind a write in flight
    of its key on this shard);
  - a read in flight overtaken by a DELETE on the same instance, by an
    invalidation from elsewhere, or by a lost subscription: its value is
    answered, but not kept in L1;
  - the deadline (--redis-timeout): a reply held past it is answered
    X-L2: timeout; breaker_failures in a row drop the connection and open
    the breaker; afterwards the connection comes back;
  - Redis killed while a read is held: answered X-L2: error, not after the
    deadline; after a restart the connection comes back.

usage: test_l2_read.py [path/to/ringcached]
"""

import json

from harness import (WRITE_OK, Conn, Server, build_request, keys_per_shard, show, stats,
                     stats_delta, wait_for)
from redis_harness import PREFIX, CHANNEL, run_with_redis, wait_l2_ready

PASSWORD = "pa:ss@w%rd"     # percent-encoded in the URL (Relay.url())
DB = 3
NSHARDS = 2
READY_TIMEOUT = 10.0
WAIT = 10.0
# what the relay holds is held for seconds: no deadline may pass meanwhile
HOLD_FLAGS = ["--redis-timeout", "20000"]


def start(c, relay, iid, extra=()):
    srv = Server(["--shards", str(NSHARDS), "--memory", "64M", "--redis", relay.url(),
                  "--instance-id", iid] + list(extra), checks=c).start()
    c.check(wait_l2_ready(srv, iid, READY_TIMEOUT) is not None,
            "%s: a PUT on each shard answers X-L2: ok" % iid)
    c.check(wait_for(lambda: l2(srv).get("shard_conns") == NSHARDS, WAIT),
            "%s: both shards' read connections are up (AUTH, SELECT %d)" % (iid, DB),
            repr(l2(srv)))
    return srv


def l2(srv):
    return stats(srv)["l2"]


def get(srv, key):
    return srv.request("GET", "/cache/" + key)


def get_pattern(key):
    name = (PREFIX + key).encode()
    return b"GET\r\n$%d\r\n%s\r\n" % (len(name), name)


def shard_items(srv, s):
    return stats(srv)["per_shard"][s]["items"]


def is_hit(r, body, xcache):
    return (not isinstance(r, Exception) and r.status == 200 and r.body == body and
            r.header("X-Cache") == xcache)


# --- the fast path ------------------------------------------------------------

def fast_path(c, redis, a):
    c.section("misses read on the shards' own connections")
    ks = keys_per_shard("fast-", NSHARDS, 2)
    before = l2(a)
    for s in range(NSHARDS):
        for k in ks[s]:
            redis.cmd("SET", PREFIX + k, "v-" + k)
            r = get(a, k)
            c.check(is_hit(r, ("v-" + k).encode(), "HIT-L2"),
                    "GET %s (only in Redis, db %d) -> 200 HIT-L2" % (k, DB), show(r))
            r = get(a, k)
            c.check(is_hit(r, ("v-" + k).encode(), "HIT"), "GET %s again -> HIT" % k, show(r))
    d = stats_delta(before, l2(a))
    n = 2 * NSHARDS
    c.check(d.get("shard_reads", 0) == n and d.get("redis_gets", 0) == n,
            "%d reads, all on the shards' connections (l2.shard_reads, redis_gets +%d)" % (n, n),
            repr(d))


# --- reads behind writes --------------------------------------------------------

def delete_then_get(c, redis, relay, a):
    c.section("DELETE and GET of a key, pipelined: the GET does not read back the deleted value")
    k, probe = keys_per_shard("pipe-", NSHARDS, 2)[0]
    redis.cmd("SET", PREFIX + k, "old")
    redis.cmd("SET", PREFIX + probe, "p")
    name = (PREFIX + k).encode()
    relay.hold_commands(b"DEL\r\n$%d\r\n%s\r\n" % (len(name), name))
    cn = Conn(a.port)
    try:
        cn.send(build_request("DELETE", "/cache/" + k) + build_request("GET", "/cache/" + k))
        c.check(wait_for(relay.holding, WAIT), "the write-through DEL reached the relay (held)")
        # a read of another key of the shard, after both requests were taken:
        # anything sent on the shard's read connection before it has been run
        r = get(a, probe)
        c.check(is_hit(r, b"p", "HIT-L2"), "meanwhile another key of the shard reads", show(r))
        c.eq(redis.cmd("GET", PREFIX + k), b"old", "Redis still holds the key (its DEL is held)")
        relay.release()
        r1, r2 = cn.read_response(), cn.read_response()
    finally:
        cn.close()
        relay.release()
    c.check(r1.status == 204 and r1.header("X-L2") == "ok", "DELETE -> 204, X-L2: ok", show(r1))
    c.check(r2.status == 404, "the GET pipelined behind it -> 404, not the deleted value", show(r2))
    r = get(a, k)
    c.check(r.status == 404, "and a GET afterwards -> 404", show(r))


def held_read(c, relay, a, key):
    """GET key on a fresh connection with its reply held by the relay until
    Redis has answered both GET and PTTL.  Returns the connection."""
    relay.hold_replies(get_pattern(key))
    cn = Conn(a.port)
    cn.send(build_request("GET", "/cache/" + key))
    c.check(wait_for(lambda: relay.held_replies() >= 2, WAIT),
            "the read of %s was answered by Redis, its reply held" % key)
    return cn


def overtaken(c, redis, relay, a, key, meanwhile, stored=b"v1"):
    """key = v1 only in Redis (stored as `stored`, a frame of v1); a GET of
    it on a whose reply (v1) is held while meanwhile() runs, then delivered:
    the GET must be answered with v1, what it read."""
    redis.cmd("SET", PREFIX + key, stored)
    cn = held_read(c, relay, a, key)
    try:
        meanwhile()
        relay.release()
        r = cn.read_response()
    finally:
        cn.close()
        relay.release()
    c.check(is_hit(r, b"v1", "HIT-L2"), "the read is answered with what it read", show(r))


def overtaken_by_delete(c, redis, relay, a):
    c.section("a read overtaken by a DELETE of its key on the same instance")
    k = keys_per_shard("odel-", NSHARDS, 1)[1][0]

    def delete():
        r = a.request("DELETE", "/cache/" + k)
        c.check(r.status == 204 and r.header("X-L2") == "ok", "DELETE meanwhile -> 204", show(r))
    overtaken(c, redis, relay, a, k, delete)
    r = get(a, k)
    c.check(r.status == 404, "but not kept: the next GET -> 404", show(r))


def probed(c, relay, iid, prefix, headers=None):
    """A new instance whose shard 0 holds two items, its probe key and j:
    once a message that drops j was handled there, so was every message
    before it.  Returns (instance, k, j), k another key of shard 0."""
    a = start(c, relay, iid, HOLD_FLAGS)
    k, j = keys_per_shard(prefix, NSHARDS, 2)[0]
    c.check(wait_for(lambda: shard_items(a, 0) == 1, WAIT), "shard 0 holds its probe key")
    r = a.request("PUT", "/cache/" + j, b"j", headers=headers)
    c.check(r.status in WRITE_OK, "PUT %s (same shard, kept in L1)" % j, show(r))
    c.check(wait_for(lambda: shard_items(a, 0) == 2, WAIT), "shard 0 holds 2 items")
    return a, k, j


def tagged(tag, value):
    """value as an RCV2 frame carrying one tag (docs/coherence.md)."""
    ext = b"\x02\x01" + bytes([len(tag)]) + tag.encode()
    return b"\0RCV2\n" + bytes([len(ext), 0]) + ext + value


def overtaken_by_invalidation(c, redis, relay):
    c.section("a read overtaken by an invalidation from elsewhere")
    a, k, j = probed(c, relay, "inval", "oinv-")

    def invalidate():
        redis.cmd("SET", PREFIX + k, "v2")
        redis.cmd("PUBLISH", CHANNEL, k)
        redis.cmd("PUBLISH", CHANNEL, j)
        # the shard handles its invalidations in order: once j is gone, so
        # was k's, before the held reply arrives
        c.check(wait_for(lambda: shard_items(a, 0) == 1, WAIT),
                "the invalidations reached shard 0 (%s dropped)" % j)
    overtaken(c, redis, relay, a, k, invalidate)
    r = get(a, k)
    c.check(is_hit(r, b"v2", "HIT-L2"), "but not kept: the next GET reads v2 from Redis",
            show(r))
    a.stop()


def across_lost_subscription(c, redis, relay, a):
    c.section("a read in flight while the subscription is lost")
    k = keys_per_shard("osub-", NSHARDS, 1)[0][0]

    def lose():
        flushes = l2(a)["flushes"]
        redis.cmd("CLIENT", "KILL", "TYPE", "pubsub")
        c.check(wait_for(lambda: l2(a)["flushes"] > flushes and l2(a)["subscribed"] == 1, WAIT),
                "the subscription was lost and is back (FLUSH sent)")
    overtaken(c, redis, relay, a, k, lose)
    r = get(a, k)
    c.check(is_hit(r, b"v1", "HIT-L2"),
            "but not kept (it may have missed an invalidation): the next GET reads again", show(r))


def overtaken_by_tag_purge(c, redis, relay):
    """A read in flight when a purge of a tag its key carries arrives must
    not be kept in L1: the purge deleted the key in Redis after the read
    took it, and no later message names the key.  Found by review: key
    invalidations supersede reads of their key, a tag: message did not."""
    c.section("a read overtaken by a tag purge (tag:<tag> message)")
    a, k, j = probed(c, relay, "tagp", "otag-", [("X-Cache-Tags", "otag")])

    def purge():
        redis.cmd("DEL", PREFIX + k)          # the purge's Redis part
        redis.cmd("PUBLISH", CHANNEL, "tag:otag")
        c.check(wait_for(lambda: shard_items(a, 0) == 1, WAIT),
                "the purge reached shard 0 (%s dropped)" % j)
    overtaken(c, redis, relay, a, k, purge, tagged("otag", b"v1"))
    r = get(a, k)
    c.check(r.status == 404, "but not kept: the next GET -> 404", show(r))
    a.stop()


def overtaken_by_own_purge(c, redis, relay):
    """The same on the instance that purges: its L1 part runs beside the
    Redis part, so a read that took the value before Redis deleted it lands
    after the L1 part.  The purge's own tag:<tag> message, published once
    Redis is purged, must drop it.  Found by review: own messages were
    skipped, the read's value stayed."""
    c.section("a read overtaken by this instance's own DELETE /tags/")
    a, k, j = probed(c, relay, "tagown", "oown-")

    def purge():
        redis.cmd("SADD", PREFIX + "tag:oown", k)
        own = l2(a)["invalidations_own"]
        r = a.request("DELETE", "/tags/oown")
        c.check(r.status == 200 and json.loads(r.body).get("l2_removed") == 1,
                "DELETE /tags/oown: deleted in Redis", show(r))
        c.check(wait_for(lambda: l2(a)["invalidations_own"] > own, WAIT),
                "its tag:oown message came back")
        redis.cmd("PUBLISH", CHANNEL, j)      # behind it on the shard
        c.check(wait_for(lambda: shard_items(a, 0) == 1, WAIT),
                "shard 0 handled the messages (%s dropped)" % j)
    overtaken(c, redis, relay, a, k, purge, tagged("oown", b"v1"))
    r = get(a, k)
    c.check(r.status == 404, "but not kept: the next GET -> 404", show(r))
    a.stop()


def lease_read_overtaken(c, redis, relay):
    """A lease GET reads Redis with one EVAL on the thread's connection, not
    as a read the key's invalidation can supersede: an invalidation that
    overtakes its reply must still keep the old value out of L1.  Found by
    review: the value it read was stored after the invalidation."""
    c.section("a lease read overtaken by an invalidation of its key")
    a, k, j = probed(c, relay, "leaseo", "olr-")
    redis.cmd("SET", PREFIX + k, "v1")
    relay.hold_replies((PREFIX + "lease:" + k).encode())
    cn = Conn(a.port)
    try:
        cn.send(build_request("GET", "/cache/" + k, headers=[("X-Cache-Fill", "lease")]))
        c.check(wait_for(lambda: relay.held_replies() >= 1, WAIT),
                "the lease read was answered by Redis, its reply held")
        redis.cmd("SET", PREFIX + k, "v2")
        redis.cmd("PUBLISH", CHANNEL, k)
        redis.cmd("PUBLISH", CHANNEL, j)
        c.check(wait_for(lambda: shard_items(a, 0) == 1, WAIT),
                "the invalidations reached shard 0 (%s dropped)" % j)
        relay.release()
        r = cn.read_response()
    finally:
        cn.close()
        relay.release()
    c.check(is_hit(r, b"v1", "HIT-L2"), "the lease read is answered with what it read", show(r))
    r = get(a, k)
    c.check(is_hit(r, b"v2", "HIT-L2"), "but not kept: the next GET reads v2 from Redis", show(r))
    a.stop()


# --- deadlines, breaker, a killed Redis ---------------------------------------------

def deadline_and_trip(c, redis, relay):
    c.section("replies held past --redis-timeout: timeouts, then the breaker")
    b = start(c, relay, "slow", ["--redis-timeout", "100"])
    ks = keys_per_shard("slow-", NSHARDS, 6)[1]
    for k in ks:
        redis.cmd("SET", PREFIX + k, "s")
    before = l2(b)
    relay.hold_replies(get_pattern(ks[0]))
    answers = []
    try:
        # breaker_failures is 5: the fifth timeout in a row on the shard's
        # connection drops it and opens the breaker
        for k in ks[:5]:
            r = get(b, k)
            answers.append((r.status, r.header("X-L2")))
    finally:
        relay.release()
    c.check(all(a == (404, "timeout") for a in answers),
            "5 reads whose replies are held -> 404, X-L2: timeout", repr(answers))
    d = stats_delta(before, l2(b))
    c.check(d.get("shard_trips", 0) >= 1 and d.get("breaker_opens", 0) >= 1 and
            d.get("timeouts", 0) >= 5,
            "the shard's connection tripped the breaker (shard_trips, breaker_opens, timeouts)",
            repr(d))
    c.check(wait_l2_ready(b, "slow", READY_TIMEOUT) is not None, "the link comes back")
    c.check(wait_for(lambda: l2(b)["shard_conns"] == NSHARDS, WAIT),
            "and the shard's read connection", repr(l2(b)))
    before = l2(b)
    r = get(b, ks[5])
    c.check(is_hit(r, b"s", "HIT-L2"), "a miss afterwards -> HIT-L2", show(r))
    c.eq(stats_delta(before, l2(b)).get("shard_reads", 0), 1, "read on the shard's connection")
    b.stop()


def killed_mid_read(c, redis, relay):
    c.section("Redis killed while a read's reply is held")
    b = start(c, relay, "killed", ["--redis-timeout", "30000"])
    k = keys_per_shard("kill-", NSHARDS, 1)[0][0]
    redis.cmd("SET", PREFIX + k, "v")
    cn = held_read(c, relay, b, k)
    try:
        redis.kill()
        r = cn.read_response()
    finally:
        cn.close()
        relay.release()
    c.check(r.status == 404 and r.header("X-L2") == "error",
            "the read is answered 404, X-L2: error (its connection ended; the deadline is 30 s)",
            show(r))
    redis.restart()
    c.check(wait_l2_ready(b, "killed", READY_TIMEOUT) is not None, "the link comes back")
    c.check(wait_for(lambda: l2(b)["shard_conns"] == NSHARDS, WAIT),
            "and both shards' read connections", repr(l2(b)))
    redis.cmd("SET", PREFIX + k, "again")
    before = l2(b)
    r = get(b, k)
    c.check(is_hit(r, b"again", "HIT-L2"), "a miss afterwards -> HIT-L2", show(r))
    c.eq(stats_delta(before, l2(b)).get("shard_reads", 0), 1, "read on the shard's connection")
    b.stop()


def main(c, redis, relay):
    a = start(c, relay, "a", HOLD_FLAGS)
    fast_path(c, redis, a)
    delete_then_get(c, redis, relay, a)
    overtaken_by_delete(c, redis, relay, a)
    across_lost_subscription(c, redis, relay, a)
    overtaken_by_invalidation(c, redis, relay)
    overtaken_by_tag_purge(c, redis, relay)
    overtaken_by_own_purge(c, redis, relay)
    lease_read_overtaken(c, redis, relay)
    deadline_and_trip(c, redis, relay)
    killed_mid_read(c, redis, relay)


if __name__ == "__main__":
    run_with_redis("test_l2_read", main, password=PASSWORD, db=DB, relay=True)
