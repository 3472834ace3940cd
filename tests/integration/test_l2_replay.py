#!/usr/bin/env python3
"""The replay after a Redis outage (docs/coherence.md, "The replay queue";
src/coherence/ops.c: REPLAY_WINDOW, replay_more, replay_supersede), made
deterministic with a relay (redis_harness.Relay) in front of Redis.

Writes made while Redis is away are queued, one per key, and replayed once
the link is back with at most 256 in flight; each answer sends the next.  A
write made after the reconnect goes out at once, beside the replay; if an
older write of the same key still waits in the queue, it must be dropped,
or Redis would receive it after the new one and keep the old value.

Arranged without timing:

  - Redis killed: 300 PUTs of distinct keys (v1) answered X-L2: skipped,
    queued for replay (l2.replay_pending 300);
  - the relay told to hold the replies of the connection that sends the
    first replayed write, then Redis restarted (empty): the first 256
    writes reach Redis, their replies are held, so the window stays full
    and the last 44 stay queued (exactly 256 keys in Redis, pending 44);
  - a PUT of v2 for the first key still queued: it reaches Redis at once
    (read there directly), its answer is held behind the replay's;
  - everything released, the queue drains; a PUT answered afterwards on the
    same connection proves every replayed write has been answered.  Redis
    holds v2 for that key and v1 for the 299 others; 299 were replayed.

Without replay_supersede()'s body the queued v1 is replayed after v2 and
Redis ends with v1 (and 300 replayed): both checks fail.

usage: test_l2_replay.py [path/to/ringcached]
"""

from harness import WRITE_OK, Conn, Server, build_request, show, stats, stats_delta, wait_for
from redis_harness import PREFIX, run_with_redis, wait_l2_ready

NSHARDS = 2
NKEYS = 300             # more than the window: some stay queued
WINDOW = 256            # REPLAY_WINDOW in ops.c, documented in docs/coherence.md
KEY_PREFIX = "replay-"
WAIT = 15.0             # any condition below; reconnect backoff is at most 2 s
# Replies are held for seconds: no deadline may pass meanwhile, or the
# replayed writes would time out and trip the breaker.
REDIS_TIMEOUT_MS = 30000
V1, V2 = b"v1", b"v2"


def l2(srv):
    return stats(srv)["l2"]


def frame(body):
    """The stored value of a PUT without Content-Type (docs/coherence.md)."""
    return b"\0RCV1\n" + body


def in_redis(redis, keys):
    """How many of keys Redis holds, asked directly (not through the relay)."""
    return redis.cmd("EXISTS", *[PREFIX + k for k in keys])


def replay_superseded(c, redis, relay):
    c.section("a write after the reconnect drops its key's older write from the replay queue")
    iid = "replay"
    a = Server(["--shards", str(NSHARDS), "--memory", "64M", "--redis", relay.url(),
                "--instance-id", iid, "--redis-timeout", str(REDIS_TIMEOUT_MS)],
               checks=c).start()
    if not c.check(wait_l2_ready(a, iid, WAIT) is not None,
                   "a PUT on each shard answers X-L2: ok (through the relay)"):
        return
    keys = ["%s%03d" % (KEY_PREFIX, i) for i in range(NKEYS)]

    redis.kill()
    if not c.check(wait_for(lambda: l2(a).get("breaker_open") == 1, WAIT),
                   "Redis killed: the breaker opens", repr(l2(a))):
        return
    before = l2(a)
    # One at a time: each is queued before the next reaches the coherence
    # thread, so the queue is in this order (docs: the order the thread
    # first saw the writes).
    bad = []
    with Conn(a.port) as cn:
        for k in keys:
            r = cn.roundtrip("PUT", "/cache/" + k, V1)
            if r.status not in WRITE_OK or r.header("X-L2") != "skipped":
                bad.append("PUT %s: %s" % (k, show(r)))
    c.check(not bad, "down: %d PUTs of distinct keys -> 201/204, X-L2: skipped" % NKEYS,
            "%d bad, first: %s" % (len(bad), bad[:1]))
    c.eq(l2(a).get("replay_pending"), NKEYS, "down: l2.replay_pending %d" % NKEYS)

    # The connection that sends the first replayed write has its replies
    # held from then on; its commands still reach Redis.
    relay.hold_replies((PREFIX + KEY_PREFIX).encode())
    try:
        redis.restart()
        tail = NKEYS - WINDOW
        up = wait_for(lambda: relay.holding() and l2(a).get("breaker_open") == 0 and
                      l2(a).get("replay_pending") == tail, WAIT)
        c.check(up, "Redis restarted: the link is up, the replay's replies are held, "
                "%d writes still queued (l2.replay_pending)" % tail, repr(l2(a)))
        # Nothing answered, so the window cannot move: exactly the first
        # WINDOW writes reach Redis, and no more.
        wait_for(lambda: in_redis(redis, keys) >= WINDOW, WAIT)
        c.eq(in_redis(redis, keys), WINDOW,
             "the first %d replayed writes reached Redis, no more (the window)" % WINDOW)
        c.eq(in_redis(redis, keys[:WINDOW]), WINDOW, "they are the first %d queued" % WINDOW)
        target = keys[WINDOW]    # the next the window would send
        c.eq(redis.cmd("GET", PREFIX + target), None,
             "%s waits in the replay queue (not in Redis)" % target)

        cn = Conn(a.port, timeout=WAIT)
        try:
            # Sent at once, beside the replay; its answer is held behind the
            # replay's, so it is read after the release.
            cn.send(build_request("PUT", "/cache/" + target, V2))
            got = wait_for(lambda: redis.cmd("GET", PREFIX + target) == frame(V2), WAIT)
            c.check(got, "the new write of %s reached Redis while its old one is queued"
                    % target, "Redis holds %r" % (redis.cmd("GET", PREFIX + target),))
            relay.release()
            r = cn.read_response()
            c.check(r.status in WRITE_OK and r.header("X-L2") == "ok",
                    "PUT %s (v2) -> 201/204, X-L2: ok once the replies flow" % target, show(r))
            c.check(wait_for(lambda: l2(a).get("replay_pending") == 0, WAIT),
                    "the replay queue drains (l2.replay_pending 0)", repr(l2(a)))
            # Every queued write is in the output buffer ahead of this one,
            # on the same connection: once it is answered, Redis has run
            # every replayed write.
            r = cn.roundtrip("PUT", "/cache/barrier", b"b")
            c.check(r.status in WRITE_OK and r.header("X-L2") == "ok",
                    "a PUT after the replay -> X-L2: ok", show(r))
        finally:
            cn.close()
    finally:
        relay.release()

    names = [PREFIX + k for k in keys]
    held = dict(zip(keys, redis.cmd("MGET", *names)))
    c.eq(held[target], frame(V2), "Redis holds v2 for %s: its queued v1 was not replayed after it"
         % target)
    wrong = ["%s=%r" % (k, v) for k, v in held.items() if k != target and v != frame(V1)]
    c.check(not wrong, "Redis holds v1 for the other %d keys" % (NKEYS - 1),
            "%d wrong, first: %s" % (len(wrong), wrong[:3]))
    d = stats_delta(before, l2(a))
    c.eq(d.get("replay_queued", 0), NKEYS, "l2.replay_queued +%d" % NKEYS)
    c.eq(d.get("replayed", 0), NKEYS - 1,
         "l2.replayed +%d: the superseded write was dropped, not sent" % (NKEYS - 1))
    r = a.request("GET", "/cache/" + target)
    c.check(r.status == 200 and r.body == V2, "a serves v2 for %s" % target, show(r))
    a.stop()


def main(c, redis, relay):
    replay_superseded(c, redis, relay)


if __name__ == "__main__":
    run_with_redis("test_l2_replay", main, relay=True)
