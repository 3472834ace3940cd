#!/usr/bin/env python3
"""Every byte from Redis is hostile (docs/coherence.md, "Limits on what
Redis sends"): ringcached against a fake Redis that gets it connected and
then misbehaves, on the shards' own read connections (src/shard/l2read.c,
src/coherence/read.c) and on the coherence thread's connections
(src/coherence/: command connection, subscription).

The fake (FakeRedis below) answers AUTH, SELECT, PING, SUBSCRIBE and the
registry's commands as Redis does, keeps SET values, forwards PUBLISH, and
answers a GET of a key given a behaviour with hostile bytes instead:
malformed lengths (-5, 2^63, not a number), nesting 1000 deep, the wrong
type (an array, a status, an integer, an error where a bulk string is
due), RESP3 types, a reply too many, a reply sent a byte at a time or after
the deadline, a value far over --max-value, an error line that never ends,
no answer at all, a close in the middle of a reply.  Each is met on both
shards' read connections and, through a pipelined DELETE + GET (the GET
then goes behind the DEL, l2.c), on the coherence thread's command
connection.  The fake also pushes anything down the subscription, answers
where nothing was asked, refuses SUBSCRIBE, and accepts connections
without ever answering.

For each, ringcached must answer the request that met it (a miss, 404 with
X-L2 saying why, never a 200 made of garbage; within the deadline), keep
serving, drop the connection where the docs say so, and reconnect and
serve again once the fake behaves: reads in flight on a connection that
fails are all answered, a client gone mid-read costs nothing, writes made
while Redis was mute are replayed, a stop with a read out is clean, and no
file descriptor or connection is left behind.  run_main's checks at the end
look for sanitizer reports (ASan/UBSan/LSan builds) and a clean stop.

A real redis-server then holds values of exactly --max-value bytes (served
HIT-L2) and one byte more (404, X-L2: bad-data, l2_refused).

Regression (defect found here): an error line that never ended, sent in
pieces, was scanned again from its start by hiredis at every receive, so a
shard's loop spent seconds per iteration once some tens of MiB had come and
its L1 hits waited behind it, long before the 512 MiB reply bound; the
shard's read connection now refuses a line over 64 KiB (read.c).

usage: test_l2_hostile.py [path/to/ringcached]
"""

import os
import socket
import struct
import threading
import time

from harness import Server, keys_per_shard, run_main, show, stats, stats_delta, wait_for
from redis_harness import PREFIX, LoopbackHelper, Redis

NSHARDS = 2
MAX_VALUE = 65536
TIMEOUT_MS = 1000           # --redis-timeout: a stalled read costs this much
WAIT = 10.0                 # every bounded wait for a state
REQ_TIMEOUT = 5.0           # no request may take longer: a hung client fails here
FLAGS = ["--shards", str(NSHARDS), "--memory", "64M", "--max-value", str(MAX_VALUE),
         "--redis-timeout", str(TIMEOUT_MS)]
P = PREFIX.encode()


# --- the fake Redis ----------------------------------------------------------

def bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


def message(channel, payload):
    return b"*3\r\n$7\r\nmessage\r\n" + bulk(channel) + bulk(payload)


class _FConn:
    """One connection to the fake.  role: "sub" once it subscribed, "cmd"
    once it sent a command only the coherence thread's command connection
    sends (a shard's read connection sends AUTH, SELECT, PING, GET, PTTL
    and nothing else), else None."""

    def __init__(self, sock, mute):
        self.sock = sock
        self.lock = threading.Lock()
        self.role = None
        self.mute = mute        # reads and drops, answers nothing
        self.swallow = 0        # commands whose replies were already sent
        self.closed = False
        self.stream = None      # ("closed" | "sent", bytes) of a stream
        self.late_sent = False  # a "late" reply went out

    def send(self, data):
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            # first, without the lock: it ends a sendall() blocked under it
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with self.lock:
            self.sock.close()


def parse_commands(buf):
    """The complete commands (lists of bytes) at the start of buf, and how
    many bytes they took.  ringcached sends arrays of bulk strings only."""
    out, off = [], 0
    while off < len(buf):
        end = buf.find(b"\r\n", off)
        if end < 0 or buf[off:off + 1] != b"*":
            break
        p, args = end + 2, []
        for _ in range(int(buf[off + 1:end])):
            e = buf.find(b"\r\n", p)
            if e < 0:
                return out, off
            n = int(buf[p + 1:e])
            if len(buf) < e + 2 + n + 2:
                return out, off
            args.append(bytes(buf[e + 2:e + 2 + n]))
            p = e + 2 + n + 2
        out.append(args)
        off = p
    return out, off


class FakeRedis(LoopbackHelper):
    """A Redis on a free loopback port that plays by the rules until told
    otherwise.  hostile[key] = (kind, payload) makes a GET of key (the
    read's GET + PTTL pair) answered by:

      ("raw", bytes)       those bytes instead of both replies;
      ("bytewise", bytes)  those bytes, one per send, 1 ms apart;
      ("stall",)           nothing, ever again, on that connection;
      ("close", bytes[, s]) (after s seconds) those bytes, then the
                           connection closed;
      ("late", (s, bytes)) those bytes after s seconds (what the connection
                           is sent meanwhile waits behind them);
      ("stream", (head, total))  head, then `total` bytes of "E" in 64 KiB
                           sends, and nothing else on that connection; its
                           `stream` says how it ended (closed by the peer,
                           or all sent).

    mute_new: connections accepted from now on are never answered.
    refuse_subscribe: SUBSCRIBE is answered with an error.
    log: (connection, key) of every GET answered."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.conns = []
        self.data = {}
        self.hostile = {}
        self.mute_new = False
        self.refuse_subscribe = False
        self.log = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fc = _FConn(s, self.mute_new)
            with self.lock:
                self.conns.append(fc)
            threading.Thread(target=self._serve, args=(fc,), daemon=True).start()

    def _serve(self, fc):
        buf = bytearray()
        while True:
            try:
                d = fc.sock.recv(1 << 16)
            except OSError:
                d = b""
            if not d:
                break
            if fc.mute:
                continue
            buf += d
            cmds, used = parse_commands(buf)
            del buf[:used]
            for cmd in cmds:
                if fc.mute or fc.closed:
                    break
                self._command(fc, cmd)
        fc.close()
        with self.lock:
            if fc in self.conns:
                self.conns.remove(fc)

    def live(self, role="any"):
        with self.lock:
            return [c for c in self.conns if not c.closed and (role == "any" or c.role == role)]

    def _command(self, fc, cmd):
        name = cmd[0].upper()
        if fc.swallow:
            fc.swallow -= 1
            return
        if name not in (b"AUTH", b"SELECT", b"PING", b"GET", b"PTTL", b"SUBSCRIBE"):
            fc.role = fc.role or "cmd"
        if name in (b"AUTH", b"SELECT"):
            fc.send(b"+OK\r\n")
        elif name == b"PING":
            if fc.role == "sub":
                fc.send(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
            else:
                fc.send(b"+PONG\r\n")
        elif name == b"SUBSCRIBE" and self.refuse_subscribe:
            fc.send(b"-ERR no subscriptions today\r\n")
        elif name == b"SUBSCRIBE":
            fc.role = "sub"
            fc.send(b"*3\r\n$9\r\nsubscribe\r\n" + bulk(cmd[1]) + b":1\r\n")
        elif name == b"GET":
            self.log.append((fc, cmd[1]))
            h = self.hostile.get(cmd[1])
            if h is None:
                v = self.data.get(cmd[1])
                fc.send(b"$-1\r\n" if v is None else bulk(v))
            else:
                self._hostile(fc, h)
        elif name == b"PTTL":
            fc.send(b":-1\r\n" if cmd[1] in self.data else b":-2\r\n")
        elif name == b"SET":
            self.data[cmd[1]] = cmd[2]
            fc.send(b"+OK\r\n")
        elif name == b"DEL":
            fc.send(b":%d\r\n" % sum(self.data.pop(k, None) is not None for k in cmd[1:]))
        elif name == b"PUBLISH":
            fc.send(b":%d\r\n" % self.publish_raw(message(cmd[1], cmd[2])))
        elif name in (b"HSET", b"HDEL", b"EXISTS"):
            fc.send(b":0\r\n")
        elif name in (b"HKEYS", b"HGETALL"):
            fc.send(b"*0\r\n")
        else:
            fc.send(b"-ERR unknown command\r\n")

    def _hostile(self, fc, h):
        kind = h[0]
        fc.swallow += 1         # the PTTL behind the GET: answered here, or never
        if kind == "raw":
            fc.send(h[1])
        elif kind == "bytewise":
            for i in range(len(h[1])):
                if not fc.send(h[1][i:i + 1]):
                    break
                time.sleep(0.001)
        elif kind == "stall":
            fc.mute = True
        elif kind == "close":
            time.sleep(h[2] if len(h) > 2 else 0)
            fc.send(h[1])
            fc.close()
        elif kind == "late":
            time.sleep(h[1][0])
            fc.late_sent = fc.send(h[1][1])
        elif kind == "stream":
            fc.mute = True      # nothing else may end the line
            threading.Thread(target=self._stream, args=(fc,) + h[1], daemon=True).start()

    @staticmethod
    def _stream(fc, head, total):
        block = b"E" * (1 << 16)
        sent = 0
        ok = fc.send(head)
        while ok and sent < total:
            ok = fc.send(block)
            sent += len(block) if ok else 0
        fc.stream = ("sent" if ok else "closed", sent)

    def publish_raw(self, data):
        subs = self.live("sub")
        for c in subs:
            c.send(data)
        return len(subs)

    def close_where(self, pred):
        for c in self.live():
            if pred(c):
                c.close()

    def close_conns(self):
        self.close_where(lambda c: True)


# --- helpers -----------------------------------------------------------------

class Keys:
    """Fresh keys per shard (the daemon hashes with harness's seed)."""

    def __init__(self, prefix):
        self.ks = keys_per_shard(prefix, NSHARDS, 200)
        self.i = [0] * NSHARDS

    def next(self, shard):
        k = self.ks[shard][self.i[shard]]
        self.i[shard] += 1
        return k


def l2(srv):
    return stats(srv)["l2"]


def fd_count(srv):
    try:
        return len(os.listdir("/proc/%d/fd" % srv.proc.pid))
    except OSError:
        return -1


def fd_floor(srv, looks=5):
    """The fewest file descriptors srv holds over a few looks 50 ms apart:
    a client connection of ours may still be closing at one of them."""
    seen = []
    for _ in range(looks):
        seen.append(fd_count(srv))
        time.sleep(0.05)
    return min(seen)


def get(srv, key):
    return srv.request("GET", "/cache/" + key, timeout=REQ_TIMEOUT)


def answered(r):
    return "%d %s X-L2: %s" % (r.status, r.header("X-Cache"), r.header("X-L2"))


def serves_again(c, srv, fake, keys, shard, what):
    """A sane value on `shard` is read from L2 again within WAIT."""
    k = keys.next(shard)
    fake.data[P + k.encode()] = b"sane-" + k.encode()
    ok = wait_for(lambda: get(srv, k).body == b"sane-" + k.encode(), WAIT, 0.02)
    return c.check(ok, "%s: shard %d serves a value from L2 again" % (what, shard))


def settle(c, srv):
    """Waits for the link (breaker closed) and both shards' read
    connections."""
    def ok():
        s = l2(srv)
        return s["breaker_open"] == 0 and s["shard_conns"] == NSHARDS
    return c.check(wait_for(ok, WAIT), "link up, both shards' read connections ready",
                   repr(l2(srv)))


def get_via_thread(srv, key):
    """A miss read through the coherence thread: a DELETE and a GET of the
    key pipelined, so the GET finds the key's DEL in flight and goes to the
    thread, behind the DEL on its command connection (l2.c).  Returns the
    GET's answer."""
    with srv.connect(REQ_TIMEOUT) as conn:
        conn.send(b"DELETE /cache/%s HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /cache/%s HTTP/1.1\r\nHost: x\r\n\r\n" % (key.encode(), key.encode()))
        conn.read_response()
        return conn.read_response()


# --- hostile replies to a read -----------------------------------------------

V = b"$5\r\nhello\r\n"

# (name, behaviour, X-L2 answers allowed, connection dropped).  RESP3 types
# are protocol errors to hiredis 0.14 (Debian bookworm's); a later hiredis
# parses them, and then the reply is of the wrong type (bad data) and the
# replies after it answer nothing (the connection is dropped): either way a
# miss, never a value.
READ_CASES = [
    ("bulk length -5", ("raw", b"$-5\r\n"), {"error"}, True),
    ("bulk length 2^63", ("raw", b"$9223372036854775808\r\nabc\r\n:-1\r\n"), {"error"}, True),
    ("bulk length 10^23", ("raw", b"$99999999999999999999999\r\nabc\r\n:-1\r\n"), {"error"}, True),
    ("bulk length not a number", ("raw", b"$1x\r\na\r\n:-1\r\n"), {"error"}, True),
    ("arrays nested 1000 deep", ("raw", b"*1\r\n" * 1000 + b":1\r\n:-1\r\n"), {"error"}, True),
    ("an array of 2^31 elements", ("raw", b"*2147483648\r\n"), {"error"}, True),
    ("an array for the value", ("raw", b"*2\r\n$1\r\na\r\n$1\r\nb\r\n:-1\r\n"), {"bad-data"},
     False),
    ("a status for the value", ("raw", b"+hello\r\n:-1\r\n"), {"bad-data"}, False),
    ("an integer for the value", ("raw", b":5\r\n:-1\r\n"), {"bad-data"}, False),
    ("an error for the value", ("raw", b"-ERR boom\r\n:-1\r\n"), {"error"}, False),
    ("WRONGTYPE", ("raw", b"-WRONGTYPE Operation against a key\r\n:-1\r\n"), {"bad-data"}, False),
    ("PTTL answered with a bulk", ("raw", V + b"$2\r\n10\r\n"), {"error"}, False),
    ("PTTL of 10^23", ("raw", V + b":99999999999999999999999\r\n"), {"error"}, True),
    ("RESP3 attribute", ("raw", b"|1\r\n+a\r\n+b\r\n" + V + b":-1\r\n"), {"error", "bad-data"},
     True),
    ("RESP3 push", ("raw", b">2\r\n$1\r\na\r\n$1\r\nb\r\n" + V + b":-1\r\n"),
     {"error", "bad-data"}, True),
    ("RESP3 map", ("raw", b"%1\r\n+a\r\n+b\r\n:-1\r\n"), {"error", "bad-data"}, True),
    ("RESP3 double", ("raw", b",1.5\r\n:-1\r\n"), {"error", "bad-data"}, True),
    ("unknown type byte", ("raw", b"!5\r\nhello\r\n:-1\r\n"), {"error"}, True),
    ("a framed value with a bad frame", ("raw", bulk(b"\0RCV1" + b"t" * 300) + b":-1\r\n"),
     {"bad-data"}, False),
    ("RCV2 extension longer than the value", ("raw", bulk(b"\0RCV2\n\xff\xff" + b"x" * 10)
                                              + b":-1\r\n"), {"bad-data"}, False),
    ("a value 32 x --max-value", ("raw", bulk(b"x" * (32 * MAX_VALUE)) + b":-1\r\n"),
     {"bad-data"}, False),
    ("no answer", ("stall",), {"timeout"}, False),
    ("a bulk of 2^31 bytes, 3 sent", ("raw", b"$2147483648\r\nabc"), {"timeout"}, False),
    ("closed in the middle of a bulk", ("close", b"$100\r\nabc"), {"error"}, True),
    ("closed before any reply", ("close", b""), {"error"}, True),
]


def served_by(fake, key):
    """The fake's connections that answered a GET of key."""
    return [fc for fc, k in fake.log if k == P + key.encode()]


def read_cases(c, srv, fake, keys, thread):
    """READ_CASES on the shards' read connections (thread False), both
    shards in turn, or through the coherence thread (thread True).  The
    connection that met the case is closed afterwards (some are left stuck
    in the middle of a reply), so each case starts on fresh connections."""
    want_role = "cmd" if thread else None
    for i, (name, beh, allowed, dropped) in enumerate(READ_CASES):
        shard = i % NSHARDS
        where = "thread" if thread else "shard %d" % shard
        k = keys.next(shard)
        fake.hostile[P + k.encode()] = beh
        r = get_via_thread(srv, k) if thread else get(srv, k)
        via = served_by(fake, k)
        c.check(r.status == 404 and r.header("X-Cache") == "MISS" and r.header("X-L2") in allowed
                and len(via) == 1 and via[0].role == want_role,
                "%s (%s): %s" % (name, where, answered(r)),
                "want 404 MISS, X-L2 in %s, read on a %r connection; got %s, read on %r"
                % (sorted(allowed), want_role, show(r), [fc.role for fc in via]))
        if dropped and via:
            c.check(wait_for(lambda: via[0].closed, WAIT),
                    "%s (%s): ringcached dropped that connection" % (name, where))
        fake.close_where(lambda fc: fc in via)
        settle(c, srv)
        serves_again(c, srv, fake, keys, shard, "after %s (%s)" % (name, where))


def good_in_pieces(c, srv, fake, keys):
    """Replies that are fine but arrive oddly: byte by byte, and followed
    by one reply too many (that one drops the connection; the value before
    it is served)."""
    for shard in range(NSHARDS):
        k = keys.next(shard)
        fake.hostile[P + k.encode()] = ("bytewise", bulk(b"\0RCV1text/plain\nbyte by byte")
                                        + b":5000\r\n")
        r = get(srv, k)
        c.check(r.status == 200 and r.header("X-Cache") == "HIT-L2" and r.body == b"byte by byte"
                and r.header("Content-Type") == "text/plain",
                "shard %d: a reply a byte at a time -> 200 HIT-L2 with its type" % shard, show(r))
        k = keys.next(shard)
        fake.hostile[P + k.encode()] = ("raw", V + b":-1\r\n+EXTRA\r\n")
        before = l2(srv)
        r = get(srv, k)
        c.check(r.status == 200 and r.body == b"hello",
                "shard %d: a value followed by a reply too many -> 200 with the value" % shard,
                show(r))
        c.check(wait_for(lambda: stats_delta(before, l2(srv)).get("connects", 0) >= 1, WAIT),
                "shard %d: ... and the connection was dropped and made again" % shard,
                repr(stats_delta(before, l2(srv))))
        settle(c, srv)


def late_and_in_flight(c, srv, fake, keys):
    """A reply that comes after the deadline is read and dropped: the next
    read on that connection gets its own value, not the late one.  A
    connection closed with several reads in flight on it: every one of
    them is answered (404, X-L2: error), none waits for ever."""
    for shard in range(NSHARDS):
        k = keys.next(shard)
        fake.hostile[P + k.encode()] = ("late", (2 * TIMEOUT_MS / 1000.0, V + b":-1\r\n"))
        before = l2(srv)
        r = get(srv, k)
        c.check(r.status == 404 and r.header("X-L2") == "timeout",
                "shard %d: a reply later than the deadline -> 404, X-L2: timeout" % shard, show(r))
        # the next read is sent once the late reply is on its way, so its
        # own reply is not held behind it past its deadline
        c.check(wait_for(lambda: any(fc.late_sent for fc in served_by(fake, k)), WAIT),
                "shard %d: the late reply was sent" % shard)
        k2 = keys.next(shard)
        fake.data[P + k2.encode()] = b"mine-" + k2.encode()
        r = get(srv, k2)
        c.check(r.status == 200 and r.body == b"mine-" + k2.encode(),
                "shard %d: the next read gets its own value, not the late one" % shard, show(r))
        d = stats_delta(before, l2(srv))
        c.check(d.get("connects", 0) == 0 and d.get("shard_reads", 0) == 2,
                "shard %d: ... on the same connection" % shard, repr(d))
    for shard in range(NSHARDS):
        k = keys.next(shard)
        fake.hostile[P + k.encode()] = ("close", b"$100\r\nabc", 0.3)
        behind = [keys.next(shard) for _ in range(3)]
        for b in behind:
            fake.data[P + b.encode()] = b"behind"
        with srv.connect(REQ_TIMEOUT) as conn:
            conn.send(b"".join(b"GET /cache/%s HTTP/1.1\r\nHost: x\r\n\r\n" % x.encode()
                               for x in [k] + behind))
            rs = [conn.read_response() for _ in range(4)]
        c.check(all(r.status == 404 and r.header("X-L2") == "error" for r in rs),
                "shard %d: 4 reads in flight on a connection closed mid-reply: all 404, "
                "X-L2: error" % shard, "; ".join(answered(r) for r in rs))
        settle(c, srv)
        serves_again(c, srv, fake, keys, shard, "after reads in flight lost")


def completed(before, after):
    d = stats_delta(before, after)
    return sum(d.get(k, 0) for k in ("get_hits", "get_misses", "timeouts", "errors"))


def gone_and_coalesced(c, srv, fake, keys):
    """A client that resets its connection while its read is out: the read
    still completes (late value, close, deadline) and the daemon is none
    the worse.  20 clients missing one key whose reply never comes: one
    read, 20 answers at its deadline."""
    for i, (beh, thread) in enumerate([
            (("late", (0.3, bulk(b"v" * 1000) + b":-1\r\n")), False),
            (("close", b"$100\r\nabc", 0.3), True),
            (("stall",), False)]):
        shard = i % NSHARDS
        k = keys.next(shard)
        fake.hostile[P + k.encode()] = beh
        before = l2(srv)
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=REQ_TIMEOUT)
        get_k = b"GET /cache/%s HTTP/1.1\r\nHost: x\r\n\r\n" % k.encode()
        s.sendall((b"DELETE /cache/%s HTTP/1.1\r\nHost: x\r\n\r\n" % k.encode() + get_k)
                  if thread else get_k)
        wait_for(lambda: served_by(fake, k), WAIT, 0.01)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()       # a reset
        c.check(wait_for(lambda: completed(before, l2(srv)) >= 1, WAIT),
                "a client gone while its read (%s, %s) was out: the read completed"
                % (beh[0], "thread" if thread else "shard %d" % shard),
                repr(stats_delta(before, l2(srv))))
        fake.close_where(lambda fc: fc in served_by(fake, k))
        settle(c, srv)
        serves_again(c, srv, fake, keys, shard, "after a client gone mid-read")
    k = keys.next(0)
    fake.hostile[P + k.encode()] = ("stall",)
    out = []
    threads = [threading.Thread(target=lambda: out.append(answered(get(srv, k))))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(REQ_TIMEOUT + 1)
    c.check(out == ["404 MISS X-L2: timeout"] * 20 and len(served_by(fake, k)) == 1,
            "20 misses of a key whose reply never comes: one read, 20 timeouts",
            "%r, %d reads" % (out, len(served_by(fake, k))))
    fake.close_where(lambda fc: fc.mute)
    settle(c, srv)


def unasked_replies(c, srv, fake, keys):
    """A reply on a connection where nothing was asked: each shard's read
    connection is dropped and made again; the command connection too."""
    before = l2(srv)
    for fc in fake.live():
        if fc.role is None:
            fc.send(b"+SURPRISE\r\n")
    c.check(wait_for(lambda: stats_delta(before, l2(srv)).get("connects", 0) >= NSHARDS, WAIT),
            "a reply to nothing on each idle read connection: both made again",
            repr(stats_delta(before, l2(srv))))
    settle(c, srv)
    before = l2(srv)
    for fc in fake.live("cmd"):
        fc.send(b"$3\r\nabc\r\n")
    c.check(wait_for(lambda: stats_delta(before, l2(srv)).get("breaker_opens", 0) >= 1, WAIT),
            "a reply to nothing on the command connection: dropped (breaker opened)",
            repr(stats_delta(before, l2(srv))))
    settle(c, srv)
    for shard in range(NSHARDS):
        serves_again(c, srv, fake, keys, shard, "after replies to nothing")


def endless_line(c, srv, fake, keys, thread):
    """Regression: an error line that never ends, streamed.  hiredis looks
    for a line's end from its start at every receive, so before the fix the
    shard's loop scanned tens of MiB per 16 KiB received (its L1 hits waited
    seconds) and the connection stayed until 512 MiB had come; the
    coherence thread read 174 MB in 20 s before its breaker tripped.  Now a
    connection refuses a line over 64 KiB (conn.c): it is closed while the
    fake has sent at most that plus what the sockets' buffers hold.  On the
    shards' read connections (thread False), or on the coherence thread's
    command connection (thread True: the read goes behind a DELETE)."""
    total = 64 << 20
    for shard in range(1 if thread else NSHARDS):
        where = "thread" if thread else "shard %d" % shard
        k = keys.next(shard)
        fake.hostile[P + k.encode()] = ("stream", (b"-ERR ", total))
        r = get_via_thread(srv, k) if thread else get(srv, k)
        c.check(r.status == 404 and r.header("X-L2") in ("error", "timeout"),
                "%s: an endless error line -> 404, X-L2 error or timeout: %s"
                % (where, answered(r)), show(r))
        conns = served_by(fake, k)
        ended = wait_for(lambda: all(fc.stream for fc in conns), 20.0, 0.05)
        how = [fc.stream for fc in conns]
        c.check(ended and conns and all(s[0] == "closed" and s[1] < total for s in how),
                "%s: ringcached closed the connection before %d MiB of the line came"
                % (where, total >> 20), "streams: %r (ended within 20 s: %s)" % (how, ended))
        fake.close_where(lambda fc: fc in conns)
        settle(c, srv)
        serves_again(c, srv, fake, keys, shard, "after an endless line (%s)" % where)


# --- the subscription ----------------------------------------------------------

def read_into_l1(c, srv, fake, k, what):
    """k read from the fake into L1 as v1, then changed to v2 there: L1
    keeps v1 until an invalidation drops it."""
    fake.data[P + k.encode()] = b"v1"
    c.check(wait_for(lambda: get(srv, k).header("X-Cache") == "HIT", WAIT, 0.02),
            "%s: a value read into L1" % what)
    fake.data[P + k.encode()] = b"v2"


def subscription(c, srv, fake, keys):
    """Hostile messages on the subscription: ignored and counted, or (a
    protocol error, a reply to nothing) the subscription is dropped, made
    again, and every shard FLUSHed.  Invalidations work afterwards."""
    big = 8 << 20
    cases = [
        ("an 8 MiB payload", message(P + b"invalidate", b"k" * big),
         {"invalidations_bad": 1}),
        ("an 8 MiB binary channel", message(b"\xff\0" * (big // 2), b"\0RCI1x"),
         {"invalidations_bad": 1}),
        ("an integer payload", b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n:5\r\n",
         {"invalidations_bad": 1}),
        ("an array payload", b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n*1\r\n:5\r\n",
         {"invalidations_bad": 1}),
        ("an empty payload", message(b"c", b""), {"invalidations_bad": 1}),
        ("a framed message without its NUL", message(b"c", b"\0RCI1abc"),
         {"invalidations_bad": 1}),
        ("a status nobody asked for", b"+OK\r\n", {"flushes": 1}),
        ("a message of 2 elements", b"*2\r\n$7\r\nmessage\r\n$1\r\nc\r\n", {"flushes": 1}),
        ("a RESP3 push", b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nk\r\n", {"flushes": 1}),
        ("arrays nested 1000 deep", b"*1\r\n" * 1000, {"flushes": 1}),
        ("a bulk of length -5", b"$-5\r\n", {"flushes": 1}),
    ]
    for name, data, moved in cases:
        settle(c, srv)
        before = l2(srv)
        c.check(fake.publish_raw(data) == 1, "%s: sent on the subscription" % name)
        key, want = next(iter(moved.items()))
        c.check(wait_for(lambda: stats_delta(before, l2(srv)).get(key, 0) >= want, WAIT),
                "subscription, %s: %s" % (name, key), repr(stats_delta(before, l2(srv))))
        settle(c, srv)
        # an invalidation still arrives: a key read into L1, changed, published
        k = keys.next(len(name) % NSHARDS)
        read_into_l1(c, srv, fake, k, "after %s" % name)
        fake.publish_raw(message(P + b"invalidate", k.encode()))
        c.check(wait_for(lambda: get(srv, k).body == b"v2", WAIT, 0.02),
                "after %s: an invalidation still drops the key" % name)

    # A well-formed invalidation on a channel we did not subscribe to (or
    # ours in other case) is not ours to act on: counted, the key stays.
    for chan in (b"other", (P + b"invalidate").upper()):
        settle(c, srv)
        k = keys.next(len(chan) % NSHARDS)
        read_into_l1(c, srv, fake, k, "channel %r" % chan)
        before = l2(srv)
        c.check(fake.publish_raw(message(chan, k.encode())) == 1,
                "channel %r: an invalidation sent on it" % chan)
        c.check(wait_for(lambda: stats_delta(before, l2(srv)).get("invalidations_bad", 0) >= 1,
                         WAIT), "channel %r: counted in invalidations_bad" % chan,
                repr(stats_delta(before, l2(srv))))
        r = get(srv, k)
        c.check(r.header("X-Cache") == "HIT" and r.body == b"v1",
                "channel %r: the key stays in L1" % chan, show(r))


# --- a Redis that accepts and never answers -------------------------------------

def mute(c, srv, fake, keys):
    """Every connection dropped; new ones accepted and never answered: the
    breaker stays open, misses answer at once (X-L2: skipped), writes are
    kept for replay; once the fake answers again everything comes back and
    the writes reach it."""
    fake.mute_new = True
    fake.close_where(lambda fc: True)
    c.check(wait_for(lambda: l2(srv)["breaker_open"] == 1, WAIT), "mute Redis: breaker open")
    before = l2(srv)
    writes = []
    for i in range(6):
        k = keys.next(i % NSHARDS)
        r = get(srv, k)
        c.check(r.status == 404 and r.header("X-L2") == "skipped",
                "mute Redis: a miss on shard %d -> 404, X-L2: skipped" % (i % NSHARDS), show(r))
        w = srv.request("PUT", "/cache/w" + k, b"kept", timeout=REQ_TIMEOUT)
        c.check(w.status == 201 and w.header("X-L2") == "skipped",
                "mute Redis: a PUT -> 201, X-L2: skipped", show(w))
        writes.append(P + b"w" + k.encode())
    # the handshakes that never end are given up on and tried again
    c.check(wait_for(lambda: stats_delta(before, l2(srv)).get("connect_failures", 0) >= 4, WAIT),
            "mute Redis: handshakes time out and are retried",
            repr(stats_delta(before, l2(srv))))
    fake.mute_new = False
    fake.close_where(lambda fc: True)
    settle(c, srv)
    c.check(wait_for(lambda: l2(srv)["replay_pending"] == 0
                     and all(w in fake.data for w in writes), WAIT),
            "Redis answering again: the writes made meanwhile were replayed to it")
    for shard in range(NSHARDS):
        serves_again(c, srv, fake, keys, shard, "after a mute Redis")


def subscribe_refused(c, srv, fake, keys):
    """SUBSCRIBE answered with an error: the link stays down (misses
    X-L2: skipped) and the subscription is tried again until it is taken."""
    fake.refuse_subscribe = True
    before = l2(srv)
    fake.close_where(lambda fc: fc.role == "sub")
    c.check(wait_for(lambda: stats_delta(before, l2(srv)).get("connect_failures", 0) >= 2, WAIT),
            "SUBSCRIBE refused: the subscription is tried again",
            repr(stats_delta(before, l2(srv))))
    r = get(srv, keys.next(0))
    c.check(r.status == 404 and r.header("X-L2") == "skipped",
            "SUBSCRIBE refused: a miss -> 404, X-L2: skipped", show(r))
    fake.refuse_subscribe = False
    settle(c, srv)
    c.check(stats_delta(before, l2(srv)).get("flushes", 0) == 1,
            "SUBSCRIBE taken again: one FLUSH for the subscription lost",
            repr(stats_delta(before, l2(srv))))
    for shard in range(NSHARDS):
        serves_again(c, srv, fake, keys, shard, "after SUBSCRIBE refused")


# --- values of --max-value through a real redis-server ---------------------------

def real_max_value(c, redis):
    srv = Server(FLAGS + ["--redis", redis.url(), "--instance-id", "hostile-real"],
                 checks=c).start()
    c.check(wait_for(lambda: l2(srv)["shard_conns"] == NSHARDS and l2(srv)["breaker_open"] == 0,
                     WAIT), "real Redis: link and both read connections up")
    cases = [
        ("plain", b"", "application/octet-stream"),
        ("framed", b"\0RCV1text/plain\n", "text/plain"),
        ("framed, a 255-byte type", b"\0RCV1" + b"t" * 255 + b"\n", "t" * 255),
    ]
    for i, (name, head, ctype) in enumerate(cases):
        k = "maxv-%d" % i
        value = bytes((j * 7 + i) & 0xff for j in range(MAX_VALUE))
        redis.cmd("SET", PREFIX + k, head + value)
        r = get(srv, k)
        c.check(r.status == 200 and r.header("X-Cache") == "HIT-L2" and r.body == value
                and r.header("Content-Type") == ctype,
                "real Redis, %s value of exactly --max-value bytes -> 200 HIT-L2, intact" % name,
                show(r))
        r = get(srv, k)
        c.check(r.status == 200 and r.header("X-Cache") == "HIT" and r.body == value,
                "... then an L1 HIT", show(r))
        before = stats(srv)["total"].get("l2_refused", 0)
        k1 = k + "-over"
        redis.cmd("SET", PREFIX + k1, head + value + b"!")
        r = get(srv, k1)
        c.check(r.status == 404 and r.header("X-L2") == "bad-data" and not r.body,
                "real Redis, %s value of --max-value + 1 bytes -> 404, X-L2: bad-data" % name,
                show(r))
        c.eq(stats(srv)["total"].get("l2_refused", 0) - before, 1, "... counted in l2_refused")
        r = get(srv, k1)
        c.check(r.status == 404 and r.header("X-L2") == "bad-data",
                "... and again (never kept in L1)", show(r))
    srv.stop()


# --- main ----------------------------------------------------------------------

def main(c, redis, fake):
    srv = Server(FLAGS + ["--redis", fake.url(), "--instance-id", "hostile"], checks=c).start()
    keys = Keys("hostile-")
    c.section("the shards' read connections")
    settle(c, srv)
    fds = fd_floor(srv)
    read_cases(c, srv, fake, keys, thread=False)
    good_in_pieces(c, srv, fake, keys)
    late_and_in_flight(c, srv, fake, keys)
    gone_and_coalesced(c, srv, fake, keys)
    unasked_replies(c, srv, fake, keys)
    endless_line(c, srv, fake, keys, thread=False)

    c.section("the coherence thread's command connection")
    read_cases(c, srv, fake, keys, thread=True)
    endless_line(c, srv, fake, keys, thread=True)

    c.section("the subscription")
    subscription(c, srv, fake, keys)

    subscribe_refused(c, srv, fake, keys)

    c.section("a Redis that accepts and never answers")
    mute(c, srv, fake, keys)

    settle(c, srv)
    c.check(wait_for(lambda: 0 < fd_count(srv) <= fds, WAIT),
            "file descriptors back to %d (no connection left behind)" % fds,
            "now %d" % fd_count(srv))
    c.check(wait_for(lambda: len(fake.live()) == 2 + NSHARDS, WAIT),
            "the fake Redis holds %d connections: command, subscription, one per shard"
            % (2 + NSHARDS), "%r" % [fc.role for fc in fake.live()])
    s = l2(srv)
    c.check(s["backlog"] == 0 and s["replay_pending"] == 0, "nothing left queued", repr(s))

    # SIGTERM while a client waits for a read Redis never answers: the
    # daemon stops (run_main checks how), the client is not left hanging
    k = keys.next(1)
    fake.hostile[P + k.encode()] = ("stall",)
    with srv.connect(REQ_TIMEOUT) as conn:
        conn.send(b"GET /cache/%s HTTP/1.1\r\nHost: x\r\n\r\n" % k.encode())
        c.check(wait_for(lambda: served_by(fake, k), WAIT, 0.01), "a read left unanswered")
        srv.stop()
        c.check(conn.closed_by_peer(REQ_TIMEOUT) or conn.read_response().status == 404,
                "stopped with that read out: its client answered 404 or closed")

    c.section("values of --max-value through a real redis-server")
    real_max_value(c, redis)


def run():
    """harness.run_main with a redis-server and the fake as helpers: both
    outlive the daemons (which talk to them while they stop) and are
    cleaned up on every exit path."""
    redis, fake = Redis(), FakeRedis()

    def body(c):
        redis.start()
        main(c, redis, fake)

    run_main("test_l2_hostile", body, helpers=[redis, fake])


if __name__ == "__main__":
    run()
