#!/usr/bin/env python3
"""Hostile clients against the cross-shard path (src/shard/fwd.c, route.c,
pipeline.c): a request for a key another shard owns is copied into a fwd,
crosses an SPSC ring to the owner and comes back with its answer.  Every
server here runs --shards 2 with --ring-size 2, so nearly every burst of
forwards overflows the rings into the per-peer backlogs.  Connections are
placed on a known shard (conn_on) and aim at keys of the other one.

 1. order: 240 pipelined requests (PUT, GET, HEAD, DELETE) on one
    connection, keys of both shards, distinct values of 0 B to 70 KiB (past
    the 16 KiB sent from the store and the 64 KiB of room an answer from
    another shard gets): every answer in request order, byte for byte, and
    every PUT's 201/204 and DELETE's 204/404 exactly as the writes applied
    in order predict (a GET of a value larger than its room followed by a
    write of its key may be 503, docs README);
 2. ring full: 16 connections x 64 pipelined requests at once, each
    connection's own keys (values distinct per connection), through rings
    of 2 slots: all answered, right, in order, nothing lost or hung;
 3. never read, then reset: clients pipeline GETs of a 20 KiB value and
    64 KiB PUTs, all for the other shard, read nothing, and reset (some at
    once, forwards still out; some once the server stopped reading them):
    connections, conn_memory and send_pins return to their baseline;
 4. large PUT bodies for the other shard cut short by a reset mid-body (the
    key is not stored) and mid-answer (the key holds the old value or the
    new one, whole);
 5. copies of requests held behind an answer still being made (a lease
    GET waiting for a fill): a client pipelining 1 MiB PUTs for the other
    shard behind it is stopped within the per-connection bound of the
    README, not at 1024 bodies (the defect: PUT bodies were not counted);
    once the fill comes, every PUT is answered in order and stored;
 6. a PUT/DELETE race on one key from two connections on different shards,
    each pipelining its writes: the final value is the last write of one
    of them, and a reader meanwhile sees only values that were written;
 7. (own server, --api-keys-file) SIGHUP removing a key while pipelines
    of cross-shard requests carrying it are in flight: answers are only
    2xx or 401, every request sent after the reload was logged is 401,
    the key that stays works, no crash;
 8. SIGTERM while forwards are in flight (cross-shard PUTs and GETs,
    clients that read nothing, and 300 lease GETs parked at the other shard,
    which the stop answers at once: 150 rings' worth on their way home):
    exit 0, the stop does not give up (it did: its teardown let one ring's
    worth cross per 20 ms round), no sanitizer report (harness).

Every wait is bounded; no timing thresholds.

usage: test_xshard_hostile.py [path/to/ringcached]
"""

import hashlib
import json
import os
import random
import select
import signal
import socket
import struct
import threading
import time

from harness import (IO_TIMEOUT, Conn, ProtocolError, Server, api_keys_file, build_request,
                     keys_per_shard, run_main, stats, wait_for)

KiB, MiB = 1 << 10, 1 << 20
NSHARDS = 2
MAX_VALUE = 1 * MiB
FLAGS = ["--shards", str(NSHARDS), "--memory", "128M", "--max-value", "1M", "--ring-size", "2",
         "--compress-threads", "0", "--lease-wait", "60000", "--lease-ttl", "60000"]
LEASE = [("X-Cache-Fill", "lease")]
WRITE_OK = {201, 204}

# README "Memory per connection" (src/shard/conn.h), for the defaults of
# --max-head and --recv-buffer-size and --max-value 1M
MAX_HEAD = 32 * KiB
RECV_BUFFER = 16 * KiB
OUT_MAX = 8 * MiB
CONN_BOUND = ((MAX_HEAD + MAX_VALUE + RECV_BUFFER) + OUT_MAX
              + (MAX_HEAD + MAX_VALUE + 64 * KiB + KiB) + (MAX_VALUE + KiB))
ASKER = 256 * KiB        # what the connections asking /stats may hold meanwhile
WAIT_CONNS, WAIT_PER_CONN = 5, 60   # lease GETs parked at the other shard at the stop


def reset(s):
    """Closes a socket (or a Conn) with a reset (SO_LINGER 0), not a FIN."""
    s = getattr(s, "sock", s)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def doc_of(admin):
    r = admin.roundtrip("GET", "/stats")
    if r.status != 200:
        raise ProtocolError("GET /stats -> %d" % r.status)
    return json.loads(r.body)


def per_shard(admin, field="connections"):
    return [p[field] for p in doc_of(admin)["per_shard"]]


def conn_on(srv, admin, shard, timeout=IO_TIMEOUT):
    """A connection that shard `shard` accepted (SO_REUSEPORT chooses: the
    others are closed and the connect tried again)."""
    for _ in range(60):
        before = per_shard(admin)
        conn = Conn(srv.port, timeout)
        wait_for(lambda: per_shard(admin) != before, 5, 0.01)
        if per_shard(admin)[shard] == before[shard] + 1:
            return conn
        conn.close()
        wait_for(lambda: per_shard(admin) == before, 5, 0.01)
    raise RuntimeError("no connection on shard %d" % shard)


def settled(c, srv, admin, what):
    """Only `admin` is left, nothing pinned, the connections' memory (and
    the fwds counted in it) back to what `admin` holds."""
    last = {}

    def done():
        t = doc_of(admin)["total"]
        last.update(t)
        return t["connections"] == 1 and t["send_pins"] == 0 and t["conn_memory"] < ASKER

    ok = wait_for(done, 30, 0.1)
    c.check(ok, "%s: connections freed, nothing pinned, conn_memory back to the asker's" % what,
            "connections %s (1: the asker), send_pins %s, conn_memory %s"
            % (last.get("connections"), last.get("send_pins"), last.get("conn_memory")))
    c.check(srv.healthy(), "%s: the server still answers" % what)


def sender(sock, data, errors):
    """Sends data from a thread (blocking, long timeout) while the caller
    reads: the server stops reading a client that does not read."""
    def run():
        try:
            sock.settimeout(60)
            sock.sendall(data)
        except OSError as e:
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# --- 1: order across shards ----------------------------------------------------

SIZES = (0, 7, 300, 5000, 20 * KiB, 70 * KiB)


def order(c, srv, admin, keys):
    c.section("1. 240 pipelined requests on keys of both shards: order, bytes, statuses")
    rng = random.Random(1)
    model = {}
    for shard in range(NSHARDS):
        conn = conn_on(srv, admin, shard, timeout=30)
        reqs, expect = [], []
        for i in range(120):
            k = rng.choice(keys[0] + keys[1])
            op = rng.choice(["PUT", "PUT", "GET", "GET", "HEAD", "DELETE"])
            path = "/cache/" + k
            if op == "PUT":
                v = b"<%d:%d:%s>" % (shard, i, k.encode()) + os.urandom(rng.choice(SIZES))
                reqs.append(build_request("PUT", path, v))
                expect.append((op, k, {204} if k in model else {201}, None))
                model[k] = v
            elif op == "DELETE":
                reqs.append(build_request("DELETE", path))
                expect.append((op, k, {200, 204} if k in model else {404}, None))
                model.pop(k, None)
            else:
                reqs.append(build_request(op, path))
                expect.append((op, k, {200} if k in model else {404}, model.get(k)))
        errors = []
        t = sender(conn.sock, b"".join(reqs), errors)
        bad, n503 = [], 0
        for i, (op, k, statuses, body) in enumerate(expect):
            r = conn.read_response(head_only=(op == "HEAD"))
            later_write = any(e[0] in ("PUT", "DELETE") and e[1] == k for e in expect[i + 1:])
            if (r.status == 503 and op == "GET" and body is not None and len(body) > 63 * KiB
                    and later_write and r.header("Retry-After") is not None):
                n503 += 1       # too large to hold behind a later write of its key
            elif r.status not in statuses:
                bad.append("#%d %s %s: %d, want %s" % (i, op, k, r.status, sorted(statuses)))
            elif op == "GET" and body is not None and r.body != body:
                bad.append("#%d GET %s: %d bytes %r, want %d %r"
                           % (i, k, len(r.body), r.body[:24], len(body), body[:24]))
            elif op == "HEAD" and body is not None and r.header("Content-Length") != str(len(body)):
                bad.append("#%d HEAD %s: Content-Length %s" % (i, k, r.header("Content-Length")))
        t.join(30)
        c.check(not bad and not errors, "connection on shard %d: 120 answers in request order, "
                "byte for byte, statuses as the writes applied in order predict" % shard,
                "; ".join(bad[:4]) + repr(errors))
        if n503:
            c.note("%d GETs of a large value refused 503 (a later write of the key)" % n503)
        c.check(conn.still_open(), "connection on shard %d: nothing after the last answer"
                % shard)
        conn.close()
    bad = []
    with srv.connect() as conn:
        for k in keys[0] + keys[1]:
            r = conn.roundtrip("GET", "/cache/" + k)
            if (r.status, r.body if r.status == 200 else None) != (
                    (200, model[k]) if k in model else (404, None)):
                bad.append((k, r.status))
    c.eq(bad, [], "afterwards every key holds the last value written to it (or none)")


# --- 2: rings full ---------------------------------------------------------------

def ring_full(c, srv, admin):
    c.section("2. 16 connections x 64 pipelined requests through rings of 2 slots")
    nconn, depth = 16, 64
    conns = [srv.connect(timeout=30) for _ in range(nconn)]
    plans = []
    for j, conn in enumerate(conns):
        ks = keys_per_shard("rf%d-" % j, NSHARDS, 4)
        mine = ks[0] + ks[1]
        vals = {k: b"%s=" % k.encode() + os.urandom(100 + 37 * n) for n, k in enumerate(mine)}
        reqs, want = [], []
        for k in mine:
            reqs.append(build_request("PUT", "/cache/" + k, vals[k]))
            want.append((201, None))
        rng = random.Random(j)
        for _ in range(depth - len(mine)):
            k = rng.choice(mine)
            reqs.append(build_request("GET", "/cache/" + k))
            want.append((200, vals[k]))
        plans.append((b"".join(reqs), want))
    errors = []
    threads = [sender(conn.sock, data, errors) for conn, (data, _) in zip(conns, plans)]
    bad = 0
    for conn, (_, want) in zip(conns, plans):
        for status, body in want:
            try:
                r = conn.read_response()
            except (OSError, ProtocolError) as e:
                errors.append(e)
                bad += 1
                break
            if r.status != status or (body is not None and r.body != body):
                bad += 1
    for t in threads:
        t.join(30)
    c.check(bad == 0 and not errors, "%d x %d answers, each its request's, in order"
            % (nconn, depth), "%d wrong; %r" % (bad, errors[:3]))
    for conn in conns:
        conn.close()
    settled(c, srv, admin, "2. after the ring-full load")


# --- 3: never read, then reset -----------------------------------------------------

def fill(pairs, until_idle=1.0, limit=30.0):
    """Sends each (socket, data) of pairs as far as the server reads it;
    returns, per socket, whether the server stopped reading it (no progress
    for until_idle seconds) before all of it went."""
    socks = [s for s, _ in pairs]
    views = {s: memoryview(data) for s, data in pairs}
    for s in socks:
        s.setblocking(False)
    idle_since, deadline = time.monotonic(), time.monotonic() + limit
    while (any(views.values()) and time.monotonic() - idle_since < until_idle
           and time.monotonic() < deadline):
        _, w, _ = select.select([], [s for s in socks if views[s]], [], 0.1)
        for s in w:
            try:
                views[s] = views[s][s.send(views[s][:1 << 20]):]
                idle_since = time.monotonic()
            except BlockingIOError:
                pass
    return [len(views[s]) > 0 for s in socks]


def never_read(c, srv, admin, keys, mid):
    c.section("3. pipelines for the other shard that are never read, then reset")
    put_body = os.urandom(64 * KiB)
    socks = []
    for shard in range(NSHARDS):
        other = keys[1 - shard]
        stream = b"".join(build_request("GET", "/cache/" + other[0]) +
                          (build_request("PUT", "/cache/" + other[1 + i % 3], put_body)
                           if i % 8 == 0 else b"")
                          for i in range(4000))
        # reset at once, forwards still out at the other shard
        for _ in range(2):
            conn = conn_on(srv, admin, shard)
            conn.sock.sendall(stream[:256 * KiB])
            reset(conn)
        for _ in range(2):
            conn = conn_on(srv, admin, shard)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            socks.append((conn, stream))
    stopped = fill([(conn.sock, stream) for conn, stream in socks])
    c.eq(stopped, [True] * len(socks), "the server stopped reading every client that reads "
         "nothing (its answers and forwards at their bound)")
    t = doc_of(admin)["total"]
    c.check(t["send_pins"] > 0, "the answers wait pinned in the other shard's store",
            "send_pins %d" % t["send_pins"])
    for conn, _ in socks:
        reset(conn)
    settled(c, srv, admin, "3. after the resets")
    with srv.connect() as conn:
        r = conn.roundtrip("GET", "/cache/" + keys[1][0])
    c.check(r.status == 200 and r.body == mid, "the value they read is intact")


# --- 4: large bodies cut short ---------------------------------------------------

def cut_short(c, srv, admin, keys):
    c.section("4. 1 MiB PUTs for the other shard cut short by a reset")
    for shard in range(NSHARDS):
        k = keys[1 - shard][5]
        conn = conn_on(srv, admin, shard)
        body = os.urandom(MAX_VALUE)
        conn.sock.sendall(build_request("PUT", "/cache/" + k, body)[:600 * KiB])
        wait_for(lambda: doc_of(admin)["total"]["conn_memory"] > 512 * KiB, 10, 0.02)
        reset(conn)
        settled(c, srv, admin, "4. shard %d, reset mid-body" % shard)
        c.eq(srv.request("GET", "/cache/" + k).status, 404,
             "4. shard %d: a PUT reset mid-body stores nothing" % shard)

        old, new = os.urandom(MAX_VALUE), os.urandom(MAX_VALUE)
        c.eq(srv.request("PUT", "/cache/" + k, old, timeout=30).status, 201,
             "4. shard %d: PUT the old value" % shard)
        conn = conn_on(srv, admin, shard)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * KiB)
        conn.sock.sendall(build_request("PUT", "/cache/" + k, new) +
                          build_request("GET", "/cache/" + k) * 4)
        conn.sock.recv(4 * KiB)         # the PUT's answer and part of the first GET's
        reset(conn)
        settled(c, srv, admin, "4. shard %d, reset mid-answer" % shard)
        r = srv.request("GET", "/cache/" + k, timeout=30)
        c.check(r.status == 200 and r.body in (old, new),
                "4. shard %d: after a reset mid-answer the key holds one value, whole" % shard,
                "%d, %d bytes" % (r.status, len(r.body)))


# --- 5: request copies held behind a waiting answer (the defect) ------------------

def held_behind_lease(c, srv, admin, keys):
    c.section("5. 1 MiB PUTs for the other shard held behind a lease GET that waits")
    nput = 32
    shard = 0
    lkey = keys[0][6]
    holder = srv.connect(timeout=30)
    r = holder.roundtrip("GET", "/cache/" + lkey, headers=LEASE)
    token = r.header("X-Cache-Lease")
    c.check(r.status == 404 and token, "the holder takes the fill lease of %s" % lkey)
    victim = conn_on(srv, admin, shard, timeout=60)
    waiters = doc_of(admin)["total"]["lease_waiters"]
    victim.send(build_request("GET", "/cache/" + lkey, headers=LEASE))
    c.check(wait_for(lambda: doc_of(admin)["total"]["lease_waiters"] == waiters + 1, 10, 0.02),
            "the victim's lease GET waits for the fill")
    base = doc_of(admin)["total"]
    pkeys = keys_per_shard("held-", NSHARDS, nput)[1 - shard]
    # under 1 MiB with the item's header: each fits one segment (docs/store.md)
    bodies = {k: os.urandom(MAX_VALUE - 16 * KiB) + b"%-64s" % k.encode() for k in pkeys}
    stream = b"".join(build_request("PUT", "/cache/" + k, bodies[k]) for k in pkeys)
    s = victim.sock
    s.setblocking(False)
    view = memoryview(stream)
    peak = 0
    idle_since, deadline = time.monotonic(), time.monotonic() + 60
    while view and time.monotonic() - idle_since < 2.0 and time.monotonic() < deadline:
        _, w, _ = select.select([], [s], [], 0.1)
        if w:
            try:
                view = view[s.send(view[:1 << 20]):]
                idle_since = time.monotonic()
            except BlockingIOError:
                pass
        peak = max(peak, doc_of(admin)["total"]["conn_memory"])
    stopped = len(view) > 0
    if not stopped:
        # all read: let the server do them all, and publish its memory
        # (conn_memory is refreshed every 250 ms), before the last look
        wait_for(lambda: doc_of(admin)["total"]["sets"] - base["sets"] == nput, 30, 0.05)
        wait_for(lambda: doc_of(admin)["total"]["conn_memory"] > CONN_BOUND + ASKER, 5, 0.05)
    peak = max(peak, doc_of(admin)["total"]["conn_memory"])
    done = doc_of(admin)["total"]["sets"] - base["sets"]
    c.note("%d of %d PUTs done behind the waiting GET; %.1f MiB of the stream unsent; "
           "conn_memory at most %.1f MiB" % (done, nput, len(view) / MiB, peak / MiB))
    c.check(stopped, "the server stops reading a client whose PUTs for the other shard pile "
            "up behind an answer still being made")
    c.check(peak <= CONN_BOUND + ASKER, "conn_memory stays within the per-connection bound "
            "(%.2f MiB) meanwhile" % (CONN_BOUND / MiB), "peak %.1f MiB" % (peak / MiB))
    # the fill comes: the waiter, then every PUT, answered in order
    errors = []
    t = sender(s, view.tobytes(), errors)
    r = holder.roundtrip("PUT", "/cache/" + lkey, b"filled", headers=[("X-Cache-Lease", token)])
    c.eq(r.status, 201, "the holder fills the key")
    s.settimeout(60)
    got = [victim.read_response()]
    got += [victim.read_response() for _ in pkeys]
    t.join(60)
    c.check(got[0].status == 200 and got[0].body == b"filled" and
            [g.status for g in got[1:]] == [201] * nput and not errors,
            "the waiter gets the fill, then the %d PUTs 201, in order" % nput,
            "%r %r" % ([g.status for g in got], errors))
    with srv.connect(timeout=30) as conn:
        bad = [k for k in pkeys[::4]
               if hashlib.sha256(conn.roundtrip("GET", "/cache/" + k).body).digest() !=
               hashlib.sha256(bodies[k]).digest()]
    c.eq(bad, [], "every PUT stored its own body")
    victim.close()
    holder.close()
    settled(c, srv, admin, "5. afterwards")


# --- 6: a write race from both shards ----------------------------------------------

def write_race(c, srv, admin, keys):
    c.section("6. PUT/DELETE race on one key from connections on both shards")
    k = keys[1][7]
    conns = [conn_on(srv, admin, shard, timeout=30) for shard in range(NSHARDS)]
    ops = {}
    for shard in range(NSHARDS):
        rng = random.Random(100 + shard)
        seq = []
        for i in range(300):
            if rng.random() < 0.3:
                seq.append(("DELETE", None))
            else:
                seq.append(("PUT", b"race-%d-%d-" % (shard, i) + b"." * rng.randrange(0, 3000)))
        seq.append(("PUT", b"race-%d-last" % shard) if shard == 0 else ("DELETE", None))
        ops[shard] = seq
    written = {v for seq in ops.values() for op, v in seq if op == "PUT"}
    errors = []
    threads = [sender(conns[sh].sock, b"".join(build_request(op, "/cache/" + k, v)
                                               for op, v in ops[sh]), errors)
               for sh in range(NSHARDS)]
    seen_bad = []
    with srv.connect() as reader:
        for _ in range(40):
            r = reader.roundtrip("GET", "/cache/" + k)
            if not (r.status == 404 or (r.status == 200 and r.body in written)):
                seen_bad.append((r.status, r.body[:30]))
    statuses = {sh: [] for sh in range(NSHARDS)}
    for sh in range(NSHARDS):
        for op, _ in ops[sh]:
            statuses[sh].append((op, conns[sh].read_response().status))
    for t in threads:
        t.join(30)
    c.eq(seen_bad, [], "a reader meanwhile sees only values that were written, or none")
    ok = all((op == "PUT" and st in WRITE_OK) or (op == "DELETE" and st in {200, 204, 404})
             for sh in statuses for op, st in statuses[sh])
    c.check(ok and not errors, "every write acknowledged (PUT 201/204, DELETE 204/404)",
            "%r" % errors)
    r = srv.request("GET", "/cache/" + k)
    final = r.body if r.status == 200 else None
    c.check(final in (ops[0][-1][1], ops[1][-1][1]),
            "the key ends as the last write of one of the two connections",
            "%d %r" % (r.status, r.body[:30]))
    for conn in conns:
        conn.close()


# --- 8: SIGTERM with forwards in flight ----------------------------------------------

def sigterm(c, srv, admin, keys):
    c.section("8. SIGTERM while forwards are in flight")
    lkey = keys[1][8]
    holder = srv.connect()
    r = holder.roundtrip("GET", "/cache/" + lkey, headers=LEASE)
    c.check(r.status == 404 and r.header("X-Cache-Lease"), "a client takes a fill lease")
    # Lease GETs parked at shard 1 from connections on shard 0: the stop
    # answers them all at once, and their way home is more than 100 rings
    # of 2.  The stop's teardown slept 20 ms between its rounds, woken by
    # nothing a peer did, so a ring's worth crossed per round and it gave
    # up after 100 rounds with the rest still out.
    n = doc_of(admin)["total"]["lease_waiters"]
    waiters = [conn_on(srv, admin, 0) for _ in range(WAIT_CONNS)]
    for w in waiters:
        w.send(build_request("GET", "/cache/" + lkey, headers=LEASE) * WAIT_PER_CONN)
    nw = WAIT_CONNS * WAIT_PER_CONN
    c.check(wait_for(lambda: doc_of(admin)["total"]["lease_waiters"] == n + nw, 20, 0.05),
            "%d lease GETs from shard 0 are parked at shard 1" % nw)
    body = os.urandom(256 * KiB)
    socks = []
    for shard in range(NSHARDS):
        other = keys[1 - shard]
        stream = b"".join(build_request("PUT", "/cache/" + other[9], body) +
                          build_request("GET", "/cache/" + other[0]) * 20 for _ in range(40))
        for _ in range(2):
            conn = conn_on(srv, admin, shard)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            conn.sock.setblocking(False)
            try:
                conn.sock.send(stream)
            except BlockingIOError:
                pass
            socks.append(conn)
    admin.close()
    rc = srv.stop()
    c.eq(rc, 0, "SIGTERM with forwards in flight: exit 0")
    c.check("stop gave up" not in srv.log_text(), "the stop freed every connection and "
            "every fwd without giving up", srv.log_text()[-400:])
    for s in socks + waiters + [holder]:
        s.close()


# --- 7: SIGHUP with keyed cross-shard pipelines in flight --------------------------------

def reload_in_flight(c):
    c.section("7. SIGHUP removes a key while cross-shard requests carrying it are in flight")
    old, keep = "old-" + os.urandom(12).hex(), "keep-" + os.urandom(12).hex()
    with api_keys_file(old, keep) as path:
        srv = Server(FLAGS + ["--api-keys-file", path], checks=c).start()
        keys = keys_per_shard("hup-", NSHARDS, 4)
        for ks in keys.values():
            for k in ks:
                srv.request("PUT", "/cache/" + k, b"v-" + k.encode(), [("X-API-Key", old)])
        admin = Conn(srv.port)
        admin_doc = lambda: admin.roundtrip("GET", "/stats", headers=[("X-API-Key", keep)])
        reloaded = threading.Event()
        after = {}
        before_statuses = {}
        errors = []
        lock = threading.Lock()

        def client(shard):
            conn = Conn(srv.port, timeout=30)
            other = keys[1 - shard] + keys[shard]
            batch = b"".join(build_request("GET", "/cache/" + k, headers=[("X-API-Key", old)])
                             for k in other) * 8
            try:
                while True:
                    late = reloaded.is_set()
                    conn.send(batch)
                    got = [conn.read_response().status for _ in range(len(other) * 8)]
                    with lock:
                        d = after if late else before_statuses
                        for st in got:
                            d[st] = d.get(st, 0) + 1
                    if late:
                        return
            except (OSError, ProtocolError) as e:
                errors.append(e)
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i % NSHARDS,), daemon=True)
                   for i in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: sum(before_statuses.values()) > 200, 20, 0.02)
        with open(path, "w") as f:
            f.write(keep + "\n")
        n = srv.log_text().count("reloaded --api-keys-file")
        srv.proc.send_signal(signal.SIGHUP)
        c.check(wait_for(lambda: srv.log_text().count("reloaded --api-keys-file") > n, 10),
                "the reload is logged")
        reloaded.set()
        for t in threads:
            t.join(60)
        c.eq(errors, [], "no client lost its connection")
        c.eq(set(before_statuses) - {200, 401}, set(), "in flight: only 200 or 401 (%d answers)"
             % sum(before_statuses.values()))
        c.eq(set(after), {401}, "every request sent after the reload with the removed key: 401")
        r = srv.request("GET", "/cache/" + keys[1][0], headers=[("X-API-Key", keep)])
        c.eq((r.status, r.body), (200, b"v-" + keys[1][0].encode()), "the kept key still works")
        c.eq(admin_doc().status, 200, "/stats with the kept key")
        admin.close()
        srv.stop()


def body(c):
    srv = Server(FLAGS, checks=c).start()
    admin = Conn(srv.port, timeout=30)
    keys = keys_per_shard("xs-", NSHARDS, 10)
    mid = os.urandom(20 * KiB)
    for ks in keys.values():
        c.eq(srv.request("PUT", "/cache/" + ks[0], mid).status, 201, "PUT 20 KiB at " + ks[0])
    order(c, srv, admin, {s: ks[1:5] for s, ks in keys.items()})
    ring_full(c, srv, admin)
    never_read(c, srv, admin, keys, mid)
    cut_short(c, srv, admin, keys)
    held_behind_lease(c, srv, admin, keys)
    write_race(c, srv, admin, keys)
    sigterm(c, srv, admin, keys)
    reload_in_flight(c)


if __name__ == "__main__":
    run_main("xshard_hostile", body)
