#!/usr/bin/env python3
"""What a RESP connection holds through commands of many keys (docs/resp.md,
README "Memory per connection"), made deterministic with a relay
(redis_harness.Relay) that holds Redis's replies to the write-through, so
the parts of a gathered command (MSET, DEL of many keys: src/shard/keys.c)
stay out at Redis while the test looks.

  1. MSETs of two 250 KiB values, one key on each shard, pipelined by a
     client while their writes wait on Redis: each part is a copy of its
     key's value, kept until it is home.  The connection stops reading
     once its parts hold 8 MiB (plus the one sent past it), so /stats
     conn_memory stays within the per-connection bound B (conn_bound(), the
     README's formula) and at most 33 of the 96 values reach Redis; once
     Redis answers, every MSET is answered +OK and every value is in Redis.
     (The defect: only a part's parent was counted, so every MSET the
     client sent was read and copied, 24 MiB against B = 11.1 MiB, up to
     64 commands' worth (64 x (--max-head + --max-value)) per connection.)

  2. DELs of 40 keys each, pipelined while their deletes wait on Redis: at
     most 64 parts are out per connection (KEYS_PARTS_MAX, as the 64
     requests out of a connection of pipelined GETs), not 64 per command:
     exactly 64 keys are deleted in Redis until it answers, then all 160,
     each DEL answered 40.  (The defect: the next DEL was read as soon as
     the one before had sent all its parts, 64 commands x 64 parts out.)

"Until Redis answers" is an order, not a time; that the connection reads no
more is checked by giving it SETTLE seconds to do so (the defect does at
once), a wait that cannot fail a correct server.

usage: test_resp_memory.py [path/to/ringcached]
"""

import socket
import threading

from harness import keys_per_shard, stats, wait_for
from redis_harness import PREFIX, run_with_redis, wait_l2_ready
from resp_harness import RespServer, encode

KiB = 1 << 10
MiB = 1 << 20
NSHARDS = 2
MAX_VALUE = 1 * MiB
MAX_HEAD = 32 * KiB      # the default, spelled out: the bound counts it
RECV_BUFFER_SIZE = 16 * KiB
# The per-connection constants of src/shard/conn.h and keys.h.
OUT_MAX = 8 * MiB
ROOM = 64 * KiB
ANSWER_HEAD = 1024
PARTS_MAX = 64
WAIT = 20.0              # any condition below that must come
SETTLE = 3.0             # the chance given to read more than allowed
# Replies are held for seconds: no write may time out meanwhile.
REDIS_TIMEOUT_MS = 60000
IID = "respmem"

VALUE = 250 * KiB
NMSET = 48               # 96 values, 24 MiB: over twice B
NDEL, DEL_KEYS = 4, 40   # 160 keys: over twice PARTS_MAX


def conn_bound():
    """B of src/shard/conn.h and the README (test_conn_memory's conn_bound)."""
    return ((MAX_HEAD + MAX_VALUE + RECV_BUFFER_SIZE) + OUT_MAX
            + (MAX_HEAD + MAX_VALUE + ROOM + ANSWER_HEAD) + (MAX_VALUE + ANSWER_HEAD))


def conn_memory(srv):
    """conn_memory of every shard together: at least what the one hostile
    connection holds (the asking one holds a few KiB)."""
    return stats(srv)["total"]["conn_memory"]


def in_redis(redis, keys):
    """How many of keys Redis holds, asked directly (not through the relay)."""
    return redis.cmd("EXISTS", *[PREFIX + k for k in keys])


def recv_exactly(sock, n, timeout):
    sock.settimeout(timeout)
    got = b""
    try:
        while len(got) < n:
            chunk = sock.recv(n - len(got))
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    return got


def mset_parts_counted(c, srv, redis, relay):
    c.section("pipelined MSETs whose writes wait on Redis: the parts' values count, "
              "conn_memory stays within B")
    bound = conn_bound()
    keys = keys_per_shard("rm-", NSHARDS, NMSET)
    allk = keys[0] + keys[1]
    value = b"m" * VALUE
    frames = b"".join(encode("MSET", keys[0][i], value, keys[1][i], value)
                      for i in range(NMSET))
    # at most OUT_MAX of parts, and the one sent past it
    most = OUT_MAX // VALUE + 1

    relay.hold_replies((PREFIX + "rm-").encode())
    sock = socket.create_connection(("127.0.0.1", srv.resp_port))
    sock.settimeout(WAIT + SETTLE + 30)
    sent = []

    def send_all():
        try:
            sock.sendall(frames)        # blocks while the server does not read
            sent.append(True)
        except OSError as e:
            sent.append(e)

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    try:
        c.check(wait_for(relay.holding, WAIT), "the first write reached Redis: its replies "
                "are held from now on")
        c.check(wait_for(lambda: in_redis(redis, allk) >= OUT_MAX // VALUE, WAIT),
                "while nothing is answered, %d values reach Redis (8 MiB of parts)"
                % (OUT_MAX // VALUE), "in Redis: %d" % in_redis(redis, allk))
        peak = [0]

        def over():
            peak[0] = max(peak[0], conn_memory(srv))
            return peak[0] > bound
        wait_for(over, SETTLE)
        c.check(peak[0] <= bound, "conn_memory stays within B = %.2f MiB (peak %.2f MiB)"
                % (bound / MiB, peak[0] / MiB))
        n = in_redis(redis, allk)
        c.check(n <= most, "the connection stops reading: at most %d of the %d values reach "
                "Redis before it answers" % (most, 2 * NMSET), "in Redis: %d" % n)
    finally:
        relay.release()
    sender.join(WAIT)
    c.check(sent == [True], "once Redis answers, the server reads every MSET", repr(sent))
    want = b"+OK\r\n" * NMSET
    got = recv_exactly(sock, len(want), WAIT)
    c.check(got == want, "every MSET answered +OK", "%d bytes: %r" % (len(got), got[:80]))
    sock.close()
    c.eq(in_redis(redis, allk), 2 * NMSET, "all %d values in Redis" % (2 * NMSET))
    c.check(wait_for(lambda: conn_memory(srv) < MiB, WAIT),
            "conn_memory falls back once the client is gone", "%d" % conn_memory(srv))


def del_parts_per_connection(c, srv, redis, relay):
    c.section("pipelined DELs whose deletes wait on Redis: at most %d parts out per "
              "connection" % PARTS_MAX)
    keys = keys_per_shard("rp-", NSHARDS, NDEL * DEL_KEYS // NSHARDS)
    # both shards in every DEL
    allk = [k for pair in zip(keys[0], keys[1]) for k in pair]
    redis.cmd("MSET", *[x for k in allk for x in (PREFIX + k, "x")])

    def deleted():
        return len(allk) - in_redis(redis, allk)

    relay.hold_replies((PREFIX + "rp-").encode())
    try:
        with srv.client(timeout=WAIT) as cl:
            cl.send(b"".join(encode("DEL", *allk[i * DEL_KEYS:(i + 1) * DEL_KEYS])
                             for i in range(NDEL)))
            c.check(wait_for(relay.holding, WAIT), "the first delete reached Redis: its "
                    "replies are held from now on")
            c.check(wait_for(lambda: deleted() >= PARTS_MAX, WAIT),
                    "while nothing is answered, %d keys are deleted in Redis" % PARTS_MAX,
                    "deleted: %d" % deleted())
            wait_for(lambda: deleted() > PARTS_MAX, SETTLE)
            c.eq(deleted(), PARTS_MAX, "and no more: %d parts out on the connection, not %d "
                 "per DEL" % (PARTS_MAX, PARTS_MAX))
            relay.release()
            got = [cl.read() for _ in range(NDEL)]
            c.eq(got, [DEL_KEYS] * NDEL, "once Redis answers, each DEL answers %d" % DEL_KEYS)
    finally:
        relay.release()
    c.eq(deleted(), len(allk), "all %d keys deleted in Redis" % len(allk))


def body(c, redis, relay):
    srv = RespServer(["--shards", str(NSHARDS), "--memory", "64M",
                      "--max-value", str(MAX_VALUE), "--max-head", str(MAX_HEAD),
                      "--recv-buffer-size", str(RECV_BUFFER_SIZE), "--conn-memory", "256M",
                      "--redis", relay.url(), "--instance-id", IID,
                      "--redis-timeout", str(REDIS_TIMEOUT_MS)], checks=c).start()
    if not c.check(wait_l2_ready(srv, IID, WAIT) is not None,
                   "a PUT on each shard answers X-L2: ok (through the relay)"):
        return
    mset_parts_counted(c, srv, redis, relay)
    del_parts_per_connection(c, srv, redis, relay)


if __name__ == "__main__":
    run_with_redis("test_resp_memory", body, relay=True)
