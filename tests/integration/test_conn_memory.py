#!/usr/bin/env python3
"""Memory held for connections (issue 11, defects 3 and 4), on the real
daemon with 2 shards:

 1. churn: 8 clients each loop connect; pipeline up to 300 GET/PUT/DELETE
    (PUT bodies: JSON up to 70 KB) over keys of both shards; read a little
    or nothing; close, 70% of the time with a reset.  Then:
    a. the server does not hold on to connections whose client is gone:
       once the clients have left, at most one per client (the one it just
       reset) is still held, however much forwarded work they left behind
       (how many at a sample during the load is printed, not judged: it
       depends on the machine's speed);
    b. once the clients are gone, the `connections` gauge returns to 0;
    c. RSS returns to its level before the load (plus the receive buffer
       rings and allocator slack) within 10 s of the load's end;
    d. the same without sampling: a connection whose forwarded GET is
       outstanding at the owner (held there by a stopped Redis) is let go
       when it resets, before the GET is answered (an order, not a time).
    e. a client that half-closes (FIN) while answers wait for it to read
       costs its shard nothing meanwhile (the poll for a reset, re-armed
       after the FIN, completed at once, for ever: ~10^5 loop iterations a
       second against a handful), and once it resets the connection is let
       go (the abort cancels that poll, which would otherwise stay armed).
 2. 10 clients that pipeline PUTs of 4 MiB and GETs of 1 MiB values (keys
    on both shards) and never read: once the server has stopped reading
    them, RSS stays under the baseline plus 10 x the per-connection bound
    (conn_bound() below, which must be the README's formula), and the
    server still answers others.

The RSS checks are skipped (reported as SKIP, never as passed) on builds
with a sanitizer that keeps shadow memory (ASan): its shadow and
quarantine would be measured, not the server.

Every wait is bounded; the 10 s of 1c is the issue's definition of "after
the load", and a faster return passes as soon as it is seen.

usage: test_conn_memory.py [path/to/ringcached]
"""

import json
import os
import random
import select
import socket
import struct
import threading
import time

from harness import (IO_TIMEOUT, ProtocolError, Server, build_request, free_port, keys_per_shard,
                     run_binary, run_main, shadow_sanitizers, stats, wait_for)
from redis_harness import Redis

MiB = 1 << 20
NSHARDS = 2
# Flags of every server here; the receive rings are spelled out because
# the RSS bounds count them.
RECV_BUFFERS = 1024
RECV_BUFFER_SIZE = 16 << 10
COMPRESS_THREADS = 1     # the default, spelled out: the slack below counts them
BASE_FLAGS = ["--shards", str(NSHARDS), "--memory", "64M", "--prefault",
              "--recv-buffers", str(RECV_BUFFERS), "--recv-buffer-size", "16K",
              "--compress-threads", str(COMPRESS_THREADS)]
# The receive rings are touched as traffic cycles through them: RSS that
# the load may add for good (per shard, recv-buffers x recv-buffer-size).
RECV_RINGS = NSHARDS * RECV_BUFFERS * RECV_BUFFER_SIZE
# Allocator slack per thread that allocates, each in its own glibc arena:
# free() gives back an arena's top only past M_TRIM_THRESHOLD (16 MiB,
# compress_tune_malloc(), which keeps the compressors' working memory
# mapped between writes), and an idle shard's malloc_trim() runs only once
# its connections freed 8 MiB (src/shard/shard.c).  The shards' arenas and
# the compression workers' (CI once saw 138.4 MiB against the 135 MiB that
# counted the shards' alone: 1c, zip_pending 0, conn_memory 0).
SLACK = (NSHARDS + COMPRESS_THREADS) * 16 * MiB

CHURN_CLIENTS = 8
CHURN_SECONDS = 6
MAX_PIPELINE = 300
MAX_JSON = 70 * 1024
RST_SHARE = 0.7
AFTER_LOAD = 10          # seconds: the "RSS 10 s after load ends"

STALL_CLIENTS = 10
STALL_PUT = 4 * MiB
STALL_GET = 1 * MiB
STALL_MAX_VALUE = 4 * MiB  # --max-value of that server
MAX_HEAD = 32 << 10        # --max-head (the default)
STALL_GETS = 8           # GETs of the 1 MiB value per round and shard

# The per-connection constants of src/shard/conn.c that the bound uses.
OUT_MAX = 8 * MiB        # answers queued per connection before input waits
ANSWER_HEAD = 1024       # most bytes of an answer besides its value
ROOM = 64 * 1024         # the room an answer made elsewhere holds


def conn_bound(max_head, max_value, recv_buffer_size):
    """The most memory one connection may hold, whatever its client does
    (README "Memory per connection", src/shard/conn.h): buffered input up to
    one request plus one receive buffer, OUT_MAX of everything produced for it
    and not yet sent (answers, the send in flight, the room reserved for
    answers being made elsewhere, the copies of requests sent there), the
    last request parsed past OUT_MAX (its copy and room, or its answer), and
    one answer made again for room."""
    return ((max_head + max_value + recv_buffer_size) + OUT_MAX
            + (max_head + max_value + ROOM + ANSWER_HEAD) + (max_value + ANSWER_HEAD))


# --- observing the server -------------------------------------------------------

def rss(srv):
    try:
        with open("/proc/%d/status" % srv.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def gauge(srv, timeout=IO_TIMEOUT):
    """The `connections` gauge summed over shards, not counting the
    connection that asks; None if /stats does not answer."""
    try:
        r = srv.request("GET", "/stats", timeout=timeout)
        return json.loads(r.body)["total"]["connections"] - 1
    except (OSError, ProtocolError, ValueError, KeyError):
        return None


def _socket_inodes(pid):
    out = {}
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out[fd] = link[8:-1]
    return out


def _tcp_inodes():
    live = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9:
                        live.add(fields[9])
        except OSError:
            pass
    return live


def dead_sockets(srv):
    """Sockets the server still holds whose TCP connection the kernel has
    torn down (reset): they are in no TCP table any more.  Descriptors
    closed while we looked are not counted."""
    pid = srv.proc.pid
    before = _socket_inodes(pid)
    live = _tcp_inodes()
    after = _socket_inodes(pid)
    return sum(1 for fd, ino in before.items() if ino not in live and after.get(fd) == ino)


def rss_skip_reason(srv):
    sanitizers = shadow_sanitizers(srv.binary)
    if sanitizers:
        return "%s build: RSS includes the sanitizer's shadow and quarantine" % "/".join(sanitizers)
    return None


# --- 1: churn -------------------------------------------------------------------

def json_body(rng, size):
    recs, n = [], 2
    while n < size:
        s = json.dumps({"id": rng.randrange(1 << 30), "name": "user-%08x" % rng.randrange(1 << 32),
                        "score": rng.random(), "tags": ["t%d" % rng.randrange(100)
                                                        for _ in range(3)]})
        recs.append(s)
        n += len(s) + 1
    return ("[" + ",".join(recs) + "]").encode()


def pipelines(rng, keys, n):
    """n request streams of 1..MAX_PIPELINE requests: GET 50%, PUT 35% (JSON
    up to MAX_JSON), DELETE 15%."""
    bodies = [json_body(rng, rng.randint(100, MAX_JSON)) for _ in range(8)]
    out = []
    for _ in range(n):
        reqs = []
        for _ in range(rng.randint(1, MAX_PIPELINE)):
            path, p = "/cache/" + rng.choice(keys), rng.random()
            if p < 0.5:
                reqs.append(build_request("GET", path))
            elif p < 0.85:
                reqs.append(build_request("PUT", path, rng.choice(bodies),
                                          [("Content-Type", "application/json")]))
            else:
                reqs.append(build_request("DELETE", path))
        out.append(b"".join(reqs))
    return out


class ChurnClient(threading.Thread):
    """One churning client until `deadline` (time.monotonic).  Also what
    perf/churn.py runs, one per process."""

    def __init__(self, idx, port, keys, deadline):
        super().__init__(daemon=True)
        self.rng = random.Random(idx)
        self.streams = pipelines(self.rng, keys, 6)
        self.port, self.deadline = port, deadline
        self.conns = self.resets = self.errors = self.sent = self.received = 0

    def one(self):
        rng = self.rng
        data = rng.choice(self.streams)
        s = socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT)
        off, got = 0, 0
        try:
            s.setblocking(False)
            want = rng.choice([0, 0, 0, 4096, 1 << 16, 1 << 20])
            give_up = time.monotonic() + 2.0   # a server that stopped reading: leave
            while (off < len(data) or got < want) and time.monotonic() < give_up:
                r, w, _ = select.select([s], [s] if off < len(data) else [], [], 0.1)
                if r:
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        break
                    got += len(chunk)
                if w:
                    off += s.send(data[off:off + (1 << 16)])
        except OSError:
            self.errors += 1
        self.sent += off
        self.received += got
        if rng.random() < RST_SHARE:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.resets += 1
        s.close()
        self.conns += 1

    def run(self):
        while time.monotonic() < self.deadline:
            try:
                self.one()
            except OSError:
                self.errors += 1
                time.sleep(0.05)


def churn(c):
    srv = Server(BASE_FLAGS, checks=c).start()
    skip = rss_skip_reason(srv)
    keys = [k for ks in keys_per_shard("churn-", NSHARDS, 32).values() for k in ks]
    rss0 = rss(srv)
    c.note("RSS before the load: %.1f MiB (the store prefaulted)" % (rss0 / MiB))

    deadline = time.monotonic() + CHURN_SECONDS
    clients = [ChurnClient(i, srv.port, keys, deadline) for i in range(CHURN_CLIENTS)]
    for t in clients:
        t.start()
    dead_max = gauge_max = 0
    while any(t.is_alive() for t in clients):
        dead_max = max(dead_max, dead_sockets(srv))
        g = gauge(srv)
        gauge_max = max(gauge_max, g or 0)
        time.sleep(0.2)
    for t in clients:
        t.join(10)
    end = time.monotonic()
    dead_end = dead_sockets(srv)
    nconns = sum(t.conns for t in clients)
    c.note("%d connections in %d s (%d reset), %d client errors; peak `connections` %d, "
           "reset connections held: at most %d at a sample, %d at the end; RSS now %.1f MiB"
           % (nconns, CHURN_SECONDS, sum(t.resets for t in clients),
              sum(t.errors for t in clients), gauge_max, dead_max, dead_end, rss(srv) / MiB))
    c.check(nconns >= CHURN_CLIENTS, "the clients made connections")
    # How many reset connections are held at a sample during the load depends
    # on how fast the server runs (a sanitizer build, a loaded machine): it is
    # reported, not judged.  What is judged: none is kept once the clients
    # have left (below and 1b), and 1d's order of events.
    c.note("1a. reset connections held during the load: at most %d at a sample (%d clients)"
           % (dead_max, CHURN_CLIENTS))
    c.check(dead_end <= CHURN_CLIENTS,
            "1a. when the clients have left, at most %d reset connections held" % CHURN_CLIENTS,
            "%d held" % dead_end)

    ok = wait_for(lambda: gauge(srv) == 0, 30, 0.2)
    c.note("`connections` 0 after %.1f s" % (time.monotonic() - end) if ok else
           "`connections` still %r 30 s after the load" % gauge(srv))
    c.check(ok, "1b. `connections` returns to 0 once the clients are gone")

    bound = rss0 + RECV_RINGS + SLACK
    what = ("1c. RSS within %d s of the load's end is back under the level before it + the "
            "receive rings + slack (%.0f MiB)" % (AFTER_LOAD, bound / MiB))
    if skip:
        c.skip(what, skip)
    else:
        left = AFTER_LOAD - (time.monotonic() - end)
        ok = wait_for(lambda: rss(srv) <= bound, max(left, 0), 0.2)
        try:            # what still holds memory, for a failure's reader
            t = stats(srv)["total"]
            held = "zip_pending %s, conn_memory %s" % (t.get("zip_pending"), t.get("conn_memory"))
        except ProtocolError as e:
            held = "no /stats: %s" % e
        c.check(ok, what, "RSS %.1f MiB %.1f s after the load (%s)"
                % (rss(srv) / MiB, time.monotonic() - end, held))
    c.check(srv.healthy(), "server healthy after the churn")
    srv.stop()


# --- 1d: a reset connection whose forwarded request is outstanding ----------------

L2_TIMEOUT_MS = 60000    # --redis-timeout: the held read never times out meanwhile


def per_shard(doc, field):
    return [p[field] for p in doc["per_shard"]]


def stats_via(conn):
    r = conn.roundtrip("GET", "/stats")
    if r.status != 200:
        raise ProtocolError("GET /stats -> %d" % r.status)
    return json.loads(r.body)


def conns_on_shard(srv, admin, shard, n):
    """n connections that shard `shard` accepted (SO_REUSEPORT picks the
    shard: the others are closed and the connect tried again)."""
    out = []
    for _ in range(40 * n):
        if len(out) == n:
            break
        before = per_shard(stats_via(admin), "connections")
        conn = srv.connect(timeout=30)
        wait_for(lambda: per_shard(stats_via(admin), "connections") != before, 5, 0.02)
        if per_shard(stats_via(admin), "connections")[shard] == before[shard] + 1:
            out.append(conn)
        else:
            conn.close()
            wait_for(lambda: per_shard(stats_via(admin), "connections") == before, 5, 0.02)
    if len(out) < n:
        raise RuntimeError("could not get %d connections on shard %d" % (n, shard))
    return out


def l2_answered(doc):
    l2 = doc["l2"]
    return l2["get_hits"] + l2["get_misses"] + l2["timeouts"] + l2["errors"] + l2["skipped"]


def reset_behind_work(c):
    """A connection on shard A sends a GET for a key of shard B that is in
    neither L1 nor Redis, and resets.  Its GET is forwarded to B, which
    reads Redis for it; Redis is stopped (SIGSTOP) and --redis-timeout is a
    minute, so the GET stays outstanding at B for as long as Redis is
    stopped.  The connection must be let go (A's `connections` drops) while
    it is: not after its GET is answered to nobody.  This is an order,
    not a time: Redis resumes only after the check."""
    redis = Redis().start()
    srv = Server(BASE_FLAGS + ["--redis", redis.url(), "--instance-id", "conn-memory-1d",
                               "--redis-timeout", str(L2_TIMEOUT_MS)], checks=c).start()
    admin = srv.connect(timeout=30)
    victim = None
    try:
        c.check(wait_for(lambda: stats_via(admin)["l2"]["shard_conns"] == NSHARDS, 30, 0.05),
                "1d. every shard's Redis read connection is up")
        a = per_shard(stats_via(admin), "connections").index(1)
        b = 1 - a
        victim = conns_on_shard(srv, admin, a, 1)[0]
        key = keys_per_shard("held-", NSHARDS, 1)[b][0]
        doc0 = stats_via(admin)
        redis.pause()
        victim.send(build_request("GET", "/cache/" + key))
        sent = wait_for(lambda: stats_via(admin)["l2"]["gets"] > doc0["l2"]["gets"], 30, 0.01)
        c.check(sent, "1d. shard %d asked Redis for the key of its forwarded GET" % b)
        victim.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        victim.close()
        victim = None
        seen = {}

        def released():
            doc = stats_via(admin)
            seen["doc"] = doc
            return per_shard(doc, "connections")[a] <= 1    # the admin connection

        ok = wait_for(released, 60, 0.01)
        doc = seen["doc"]
        c.check(ok and l2_answered(doc) == l2_answered(doc0),
                "1d. a reset connection is let go while its forwarded GET is outstanding "
                "(Redis stopped, nothing answered)",
                "let go: %s; Redis answers %d -> %d" % (ok, l2_answered(doc0), l2_answered(doc)))
    finally:
        if redis.paused:
            redis.resume()
        admin.close()
        if victim is not None:
            victim.close()
    # the late answer goes to nobody; the shards go on
    c.check(wait_for(lambda: l2_answered(stats(srv)) > l2_answered(doc0), 30, 0.05),
            "1d. once Redis resumes, the held GET is answered (to nobody)")
    c.check(wait_for(srv.healthy, 30), "server healthy after the held GET")
    srv.stop()
    redis.cleanup()


# --- 1e: a half-closed client whose answers wait ---------------------------------

HALF_GETS = 16           # GETs of a 1 MiB value: more than the socket buffers hold
QUIET_WINDOW = 1.0       # seconds the idle shards are watched
QUIET_MAX = 100          # busy loop iterations allowed in it (a spin makes ~10^5)


def loop_busy(doc):
    return doc["total"]["latency_ns"]["loop_busy"]["count"]


def half_closed_waiting(c):
    srv = Server(BASE_FLAGS, checks=c).start()
    key = keys_per_shard("half-", NSHARDS, 1)[0][0]
    big = os.urandom(1 << 20)
    c.within(srv.request("PUT", "/cache/" + key, big, timeout=30).status, {201, 204},
             "1e. PUT a 1 MiB value")
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=IO_TIMEOUT)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(build_request("GET", "/cache/" + key) * HALF_GETS)
        s.shutdown(socket.SHUT_WR)
        # the server reads the FIN and keeps its answers: it has sent what
        # the socket buffers take and waits for the client to read
        c.check(wait_for(lambda: stats(srv)["total"]["sent_bytes"] > 0, 10, 0.05),
                "1e. the server began sending")
        before = loop_busy(stats(srv))
        time.sleep(QUIET_WINDOW)        # the window watched, not a wait for a condition
        busy = loop_busy(stats(srv)) - before
        c.check(busy < QUIET_MAX, "1e. a half-closed connection whose answers wait costs its "
                "shard nothing: under %d busy loop iterations in %.0f s" % (QUIET_MAX,
                                                                          QUIET_WINDOW),
                "%d iterations" % busy)
        # 1, once the server has seen the close of the /stats connections
        # just used (each counts until then; under ASan this check failed once)
        c.check(wait_for(lambda: gauge(srv) == 1, 10, 0.05),
                "1e. the connection is held while its client may still read",
                "connections %r" % gauge(srv))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()
    c.check(wait_for(lambda: gauge(srv) == 0, 30, 0.05),
            "1e. once it resets, the connection is let go", "connections %r" % gauge(srv))
    c.check(srv.healthy(), "server healthy after the half-closed client")
    srv.stop()


# --- 2: clients that never read -------------------------------------------------

class Piece:
    """A request stream as pieces (heads and shared bodies), so ten
    clients' tens of MiB need not be joined in memory."""

    def __init__(self, pieces):
        self.pieces, self.i, self.off = pieces, 0, 0

    def send_some(self, s):
        """Sends what the socket takes now; False when it took nothing."""
        sent = False
        while self.i < len(self.pieces):
            p = self.pieces[self.i]
            try:
                n = s.send(memoryview(p)[self.off:self.off + (1 << 20)])
            except BlockingIOError:
                return sent
            sent = True
            self.off += n
            if self.off == len(p):
                self.i, self.off = self.i + 1, 0
        return sent


def never_reading(c):
    flags = BASE_FLAGS + ["--max-value", "4M", "--idle-timeout", "120"]
    srv = Server(flags, checks=c).start()
    skip = rss_skip_reason(srv)
    by_shard = keys_per_shard("nr-", NSHARDS, 1)
    big = os.urandom(STALL_GET)
    for sh, ks in by_shard.items():
        r = srv.request("PUT", "/cache/" + ks[0], big, timeout=30)
        c.within(r.status, {201, 204}, "PUT a 1 MiB value on shard %d" % sh)
    put_body = os.urandom(STALL_PUT)
    rss0 = rss(srv)
    bound_one = conn_bound(MAX_HEAD, STALL_MAX_VALUE, RECV_BUFFER_SIZE)
    c.note("RSS before: %.1f MiB; per-connection bound %.2f MiB" % (rss0 / MiB, bound_one / MiB))

    socks, streams = [], []
    for i in range(STALL_CLIENTS):
        # per round and shard: rewrite the 1 MiB value (so the 4 MiB writes
        # do not evict it), write 4 MiB, read the 1 MiB value STALL_GETS times
        pieces = []
        for j in range(16):
            for sh, ks in by_shard.items():
                pieces.append(build_request("PUT", "/cache/" + ks[0],
                                            headers=[("Content-Length", STALL_GET)]))
                pieces.append(big)
                pieces.append(build_request("PUT", "/cache/nr-put-%d-%d" % (i, sh),
                                            headers=[("Content-Length", STALL_PUT)]))
                pieces.append(put_body)
                pieces += [build_request("GET", "/cache/" + ks[0])] * STALL_GETS
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=IO_TIMEOUT)
        s.setblocking(False)
        socks.append(s)
        streams.append(Piece(pieces))
    peak = rss(srv)
    try:
        idle_since = time.monotonic()
        deadline = idle_since + 60
        while time.monotonic() - idle_since < 2.0 and time.monotonic() < deadline:
            _, w, _ = select.select([], [s for s, p in zip(socks, streams)
                                         if p.i < len(p.pieces)], [], 0.2)
            for s, p in zip(socks, streams):
                if s in w and p.send_some(s):
                    idle_since = time.monotonic()
            peak = max(peak, rss(srv))
        blocked = sum(1 for p in streams if p.i < len(p.pieces))
        sent = sum(sum(len(x) for x in p.pieces[:p.i]) + p.off for p in streams)
        c.note("sent %.0f MiB in all; %d of %d clients blocked in send" % (sent / MiB, blocked,
                                                                          STALL_CLIENTS))
        c.eq(blocked, STALL_CLIENTS, "2. every never-reading client is stopped by the server "
             "(it stops reading them)")
        peak = max(peak, rss(srv))
        bound = rss0 + STALL_CLIENTS * bound_one + RECV_RINGS + SLACK
        what = ("2. %d clients that never read: peak RSS (%.0f MiB) under the level before + "
                "%d x the per-connection bound + the receive rings + slack (%.0f MiB)"
                % (STALL_CLIENTS, peak / MiB, STALL_CLIENTS, bound / MiB))
        if skip:
            c.skip(what, skip)
        else:
            c.check(peak <= bound, what, "%.1f MiB per connection over the level before"
                    % ((peak - rss0) / MiB / STALL_CLIENTS))
        try:
            # the value may have been evicted by the 4 MiB writes: 404 then
            r = srv.request("GET", "/cache/" + by_shard[0][0], timeout=20)
            ok, detail = (r.status == 200 and r.body == big) or r.status == 404, repr(r)
        except (OSError, ProtocolError) as e:
            ok, detail = False, repr(e)
        c.check(ok, "2. meanwhile another client is served (GET of the 1 MiB value)", detail)
    finally:
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    c.check(wait_for(lambda: gauge(srv) == 0, 30, 0.2),
            "2. after they reset, `connections` returns to 0", "connections %r" % gauge(srv))
    c.check(srv.healthy(), "server healthy")
    srv.stop()


# --- 3: the cap over all connections -------------------------------------------

CAP_MAX_VALUE = 1 * MiB


def conn_memory_cap(c):
    """--conn-memory: too small for two connections per shard at the bound is
    refused at start, naming the flag; a server at its cap stops reading
    (memory_pauses), keeps its memory under the cap, and serves again once
    the clients are gone."""
    bound = conn_bound(MAX_HEAD, CAP_MAX_VALUE, RECV_BUFFER_SIZE)
    rc, out = run_binary(["--listen", "127.0.0.1:%d" % free_port(), "--shards", "2",
                          "--max-value", "1M", "--conn-memory", "%dM" % (4 * bound // MiB - 1)])
    c.eq(rc, 2, "--conn-memory below 2 connections' bound per shard: refused (status 2)")
    c.check("--conn-memory" in out, "... and the message names the flag", out[-300:])

    cap = 6 * bound
    flags = BASE_FLAGS + ["--max-value", "1M", "--conn-memory", str(cap), "--idle-timeout", "120"]
    srv = Server(flags, checks=c).start()
    skip = rss_skip_reason(srv)
    by_shard = keys_per_shard("cap-", NSHARDS, 1)
    val = os.urandom(512 << 10)
    # answers below the size sent from the store (16 KiB) are copied into the
    # connection's memory: what the cap is about
    small = os.urandom(12 << 10)
    for sh, ks in by_shard.items():
        c.within(srv.request("PUT", "/cache/" + ks[0], small, timeout=30).status, {201, 204},
                 "PUT 12 KiB on shard %d" % sh)
    rss0 = rss(srv)
    socks, streams = [], []
    for i in range(STALL_CLIENTS):
        pieces = []
        for j in range(64):
            for sh, ks in by_shard.items():
                pieces.append(build_request("PUT", "/cache/cap-put-%d-%d" % (i, j % 4),
                                            headers=[("Content-Length", len(val))]))
                pieces.append(val)
                pieces += [build_request("GET", "/cache/" + ks[0])] * 16
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=IO_TIMEOUT)
        s.setblocking(False)
        socks.append(s)
        streams.append(Piece(pieces))
    peak = rss(srv)
    try:
        idle_since = time.monotonic()
        deadline = idle_since + 60
        while time.monotonic() - idle_since < 2.0 and time.monotonic() < deadline:
            _, w, _ = select.select([], [s for s, p in zip(socks, streams)
                                         if p.i < len(p.pieces)], [], 0.2)
            for s, p in zip(socks, streams):
                if s in w and p.send_some(s):
                    idle_since = time.monotonic()
            peak = max(peak, rss(srv))
        doc = stats(srv)
        c.note("memory_pauses %d, conn_memory %s, RSS peak %.1f MiB over %.1f before"
               % (doc["total"]["memory_pauses"], per_shard(doc, "conn_memory"), peak / MiB,
                  rss0 / MiB))
        c.check(doc["total"]["memory_pauses"] > 0,
                "3. %d never-reading clients reach the cap: the shards stopped reading"
                % STALL_CLIENTS)
        # README: beyond its share a shard holds at most, per connection, the
        # rest of a request and one answer made again, and what the kernel had
        # delivered into its receive buffers
        over = (STALL_CLIENTS * (MAX_HEAD + 2 * CAP_MAX_VALUE + ANSWER_HEAD)
                + NSHARDS * RECV_BUFFERS * RECV_BUFFER_SIZE)
        limit = rss0 + cap + over + RECV_RINGS + SLACK
        what = ("3. peak RSS under the level before + --conn-memory (%.0f MiB) + what may land "
                "past it (%.0f MiB) + the receive rings + slack: %.0f MiB"
                % (cap / MiB, over / MiB, limit / MiB))
        if skip:
            c.skip(what, skip)
        else:
            c.check(peak <= limit, what, "%.1f MiB" % (peak / MiB))
        acct = sum(per_shard(doc, "conn_memory"))
        c.check(acct <= cap + over, "3. /stats conn_memory (%.1f MiB) within the cap and what "
                "may land past it" % (acct / MiB))
    finally:
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    c.check(wait_for(lambda: gauge(srv) == 0, 30, 0.2),
            "3. after they reset, `connections` returns to 0", "connections %r" % gauge(srv))
    r = srv.request("GET", "/cache/" + by_shard[0][0], timeout=20)
    c.check(r.status == 200 and r.body == small, "3. then a new client is served at once",
            repr(r))
    srv.stop()


def main(c):
    for title, fn in (("1. churn: pipelines, then close (70%% reset), %d clients, %d s"
                       % (CHURN_CLIENTS, CHURN_SECONDS), churn),
                      ("1d. a reset connection whose forwarded GET is outstanding",
                       reset_behind_work),
                      ("1e. a client that half-closes while its answers wait", half_closed_waiting),
                      ("2. %d clients that pipeline 4 MiB PUTs and 1 MiB GETs and never read"
                       % STALL_CLIENTS, never_reading),
                      ("3. --conn-memory, the cap over all connections", conn_memory_cap)):
        c.section(title)
        try:
            fn(c)
        except Exception as e:  # noqa: BLE001 - reported as a failure, the next part runs
            import traceback
            traceback.print_exc()
            c.check(False, "%s: ran without an exception" % title, repr(e))


if __name__ == "__main__":
    run_main("test_conn_memory", main)
