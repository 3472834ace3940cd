"""The harness of the L2 (Redis) integration tests, on top of harness.py: a
real redis-server on a free loopback port, a raw RESP client, ringcached
instances pointed at it, and a way to prove an invalidation has arrived.

Why a RESP client of our own instead of redis-py: the tests must run with
the standard library only, and they need the exact bytes Redis holds (the
stored frame starts with a NUL byte).  RESP2 is small: five reply types.

Every wait is a bounded poll.  The redis-server is killed on every exit
path (a test failure, an exception, SIGTERM from meson's timeout):
run_with_redis() runs the test through harness.run_main() with Redis as
one of its helpers.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

from harness import (WRITE_OK, Server, TcpClient, free_port, keys_per_shard, run_main, show,
                     wait_for)

REDIS_START_TIMEOUT = 10.0
REDIS_IO_TIMEOUT = 5.0
NSHARDS = 2


# --- RESP ----------------------------------------------------------------------

class RespError(Exception):
    """An error reply ("-ERR ...", "-WRONGTYPE ...") as a value."""


def resp_encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a).encode()
        elif isinstance(a, str):
            a = a.encode("latin-1")
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Resp(TcpClient):
    """One connection to Redis.  cmd() sends a command and returns its
    reply: bytes, int, None (nil), list, or a RespError instance (error
    replies are values, not exceptions, so a test can check them).  With a
    password it authenticates first, with a db it selects it."""

    def __init__(self, port, timeout=REDIS_IO_TIMEOUT, password=None, db=0):
        super().__init__(port, timeout)
        for args in ((("AUTH", password),) if password else ()) + ((("SELECT", db),) if db else ()):
            r = self.cmd(*args)
            if isinstance(r, RespError):
                raise ConnectionError("%s: %s" % (args[0], r))

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln, self.buf = self.buf[:i], self.buf[i + 2:]
                return ln
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n + 2:]
        return out

    def read(self):
        ln = self._line()
        t, rest = ln[:1], ln[1:]
        if t == b"+":
            return rest
        if t == b"-":
            return RespError(rest.decode("latin-1"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError("bad RESP line %r" % ln)

    def cmd(self, *args):
        self.sock.sendall(resp_encode(*args))
        return self.read()


def info(r, section):
    """INFO <section> as {name: value string}."""
    text = r.cmd("INFO", section)
    out = {}
    for ln in text.decode("latin-1").splitlines():
        if ln and not ln.startswith("#") and ":" in ln:
            k, _, v = ln.partition(":")
            out[k] = v
    return out


def command_calls(r, name):
    """Calls of one command since Redis started (INFO commandstats)."""
    v = info(r, "commandstats").get("cmdstat_" + name.lower())
    if v is None:
        return 0
    for part in v.split(","):
        k, _, n = part.partition("=")
        if k == "calls":
            return int(n)
    return 0


# --- redis-server --------------------------------------------------------------

class Redis:
    """A redis-server on 127.0.0.1, no persistence.  restart() brings it
    back on the same port (empty).  kill() is idempotent and also works on a
    paused process.  With a password, it is required (--requirepass) and
    the harness's own clients authenticate; with a db, they select it."""

    def __init__(self, password=None, db=0):
        self.port = None
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="ringcache-redis-")
        self.logpath = os.path.join(self.dir, "redis.log")
        self.paused = False
        self.password = password
        self.db = db

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def start(self, port=None):
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found in PATH")
        last = None
        for _ in range(3 if port is None else 20):
            self.port = port or free_port()
            log = open(self.logpath, "ab")
            auth = ["--requirepass", self.password] if self.password else []
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"] + auth,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            self.paused = False
            if self._wait_ping():
                return self
            last = "redis-server on port %d did not answer PING within %.0f s" % (
                self.port, REDIS_START_TIMEOUT)
            self.kill()
            if port is not None:
                # the old socket may still be closing: retry the same port
                time.sleep(0.25)
        raise RuntimeError(last)

    def _wait_ping(self):
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with Resp(self.port, 1.0, self.password) as r:
                    if r.cmd("PING") == b"PONG":
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def client(self, timeout=REDIS_IO_TIMEOUT):
        return Resp(self.port, timeout, self.password, self.db)

    def cmd(self, *args):
        """One command on a fresh connection."""
        with self.client() as r:
            return r.cmd(*args)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None
        self.paused = False

    def restart(self):
        """Kills it (if running) and starts a new one on the same port."""
        port = self.port
        self.kill()
        return self.start(port)

    def dump_log(self, n=4000):
        try:
            with open(self.logpath, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return
        print("---- redis-server log (%s) ----" % self.logpath)
        print(text[-n:], end="" if text.endswith("\n") else "\n")
        print("---- end of log ----", flush=True)

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- ringcached instances --------------------------------------------------------

def l2_flags(redis, instance_id, extra=()):
    return ["--shards", str(NSHARDS), "--memory", "64M", "--redis", redis.url(),
            "--instance-id", instance_id] + list(extra)


def start_instance(c, redis, instance_id, extra=()):
    return Server(l2_flags(redis, instance_id, extra), checks=c).start()


def probe_keys(instance_id):
    """One key per shard, so a write on each proves every shard of the
    instance has drained its ring up to that reply."""
    ks = keys_per_shard("l2probe-%s-" % instance_id, NSHARDS, 1)
    return [ks[s][0] for s in range(NSHARDS)]


def l2_ready(srv, instance_id):
    """True when a PUT on every shard of srv answers X-L2: ok."""
    for k in probe_keys(instance_id):
        try:
            r = srv.request("PUT", "/cache/" + k, b"probe")
        except OSError:
            return False
        if r.status not in WRITE_OK or r.header("X-L2") != "ok":
            return False
    return True


def wait_l2_ready(srv, instance_id, timeout):
    """Polls l2_ready() for up to `timeout` s; returns the seconds it took,
    or None."""
    t0 = time.monotonic()
    if wait_for(lambda: l2_ready(srv, instance_id), timeout, interval=0.1):
        return time.monotonic() - t0
    return None


def run_with_redis(name, body, password=None, db=0, relay=False):
    """Runs a test module that needs Redis: body(c, redis) with a fresh
    redis-server, through harness.run_main(), which stops and checks the
    ringcached instances while Redis is still up (so a clean stop can
    remove its registry entry), then kills Redis, on every exit path.
    relay: body(c, redis, relay) with a Relay in front of that Redis."""
    redis = Redis(password, db)
    helpers = [redis] + ([Relay(redis)] if relay else [])

    def with_redis(c):
        redis.start()
        print("redis-server on 127.0.0.1:%d" % redis.port, flush=True)
        try:
            body(c, *helpers)
        finally:
            if redis.paused:
                redis.resume()

    run_main(name, with_redis, helpers=helpers)


# --- what the L2 tests do to an instance ---------------------------------------------

def put_settled(c, redis, a, b, key, body, headers=None, query=""):
    """PUT on a (checked: 201/204 with X-L2: ok), then wait until a and b
    have handled every invalidation published so far (a's own included),
    so that a read on b afterwards cannot race with the invalidation of
    this write."""
    m = Marker(redis, [a, b])
    r = a.request("PUT", "/cache/" + key + query, body, headers)
    c.check(r.status in WRITE_OK and r.header("X-L2") == "ok",
            "PUT /cache/%s%s on a -> 201/204 with X-L2: ok" % (key, query), show(r))
    c.check(m.fire(), "a and b handled the invalidation of PUT %s" % key)
    return r


def l1_on(c, srv, key, body, name):
    """Checks that srv holds key = body in L1: the second of two GETs is a
    200 HIT with the value."""
    srv.request("GET", "/cache/" + key)
    r = srv.request("GET", "/cache/" + key)
    return c.check(r.status == 200 and r.body == body and r.header("X-Cache") == "HIT",
                   "%s holds %s = %r in L1 (second GET -> HIT)" % (name, key, body[:40]), show(r))


# --- proving an invalidation arrived ------------------------------------------------

PREFIX = "ringcache:"
CHANNEL = PREFIX + "invalidate"
_marker_seq = [0]


class Marker:
    """Makes "every invalidation published before now has been applied"
    observable.  At creation a key is put straight into Redis and read
    twice on every instance, so each holds it in L1.  fire() deletes it from
    Redis and publishes it bare; once an instance answers 404 for it, every
    message published on the channel before (Redis delivers a channel's
    messages to a subscriber in order) has been handled by that instance."""

    def __init__(self, redis, servers):
        _marker_seq[0] += 1
        self.key = "marker-%d" % _marker_seq[0]
        self.redis = redis
        self.servers = servers
        redis.cmd("SET", PREFIX + self.key, "m")
        self.ready = True
        for srv in servers:
            srv.request("GET", "/cache/" + self.key)
            r = srv.request("GET", "/cache/" + self.key)
            if r.status != 200 or r.header("X-Cache") != "HIT":
                self.ready = False

    def fire(self, timeout=2.0):
        """True when every instance dropped the marker within `timeout`."""
        if not self.ready:
            return False
        self.redis.cmd("DEL", PREFIX + self.key)
        self.redis.cmd("PUBLISH", CHANNEL, self.key)
        return all(wait_for(lambda s=srv: s.request("GET", "/cache/" + self.key).status == 404,
                            timeout, interval=0.01)
                   for srv in self.servers)


def poll_get(srv, key, done, timeout, interval=0.01, headers=None):
    """GETs /cache/<key> until done(response) or `timeout` s.  Returns
    (last response, every distinct (status, X-Cache, body) seen in order,
    seconds).  A request that fails is recorded as its exception."""
    seen = []
    t0 = time.monotonic()
    deadline = t0 + timeout
    r = None
    while True:
        try:
            r = srv.request("GET", "/cache/" + key, headers=headers)
            sig = (r.status, r.header("X-Cache"), r.body[:60])
        except Exception as e:  # noqa: BLE001 - recorded for the report
            r, sig = e, ("exception", repr(e))
        if not seen or seen[-1] != sig:
            seen.append(sig)
        if (not isinstance(r, Exception) and done(r)) or time.monotonic() >= deadline:
            return r, seen, time.monotonic() - t0
        time.sleep(interval)


# --- a relay in front of Redis, to decide when bytes arrive ---------------------------

def resp_replies(data):
    """How many complete RESP replies data starts with (a bulk string's
    bytes are skipped by its length, so they may hold anything)."""
    n, off = 0, 0

    def one(off):
        end = data.find(b"\r\n", off)
        if end < 0:
            return None
        t, rest = data[off:off + 1], data[off + 1:end]
        off = end + 2
        if t in (b"+", b"-", b":"):
            return off
        if t == b"$":
            ln = int(rest)
            return off if ln < 0 else (off + ln + 2 if len(data) >= off + ln + 2 else None)
        if t == b"*":
            for _ in range(max(int(rest), 0)):
                off = one(off)
                if off is None:
                    return None
            return off
        raise ValueError("not RESP: %r" % data[off - 2 - len(rest) - 1:off])

    while True:
        nxt = one(off)
        if nxt is None:
            return n
        n, off = n + 1, nxt


class _Link:
    """One connection through the relay: downstream (ringcached's side) and
    upstream (Redis).  Held bytes wait here."""

    def __init__(self, down, up):
        self.down, self.up = down, up
        self.hold_down = False      # replies to ringcached held
        self.held_down = bytearray()
        self.hold_up = False        # commands to Redis held
        self.held_up = bytearray()
        self.closed = False


class LoopbackHelper:
    """What Relay and a test's fake Redis share: a listener on a free
    loopback port (self.port) and the helper protocol of run_with_redis
    (dump_log, cleanup).  A subclass accepts on self.lsock and closes its
    own connections in close_conns()."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]

    def dump_log(self):
        pass

    def close_conns(self):
        pass

    def cleanup(self):
        try:
            self.lsock.close()
        except OSError:
            pass
        self.close_conns()


class Relay(LoopbackHelper):
    """A TCP relay on a free loopback port in front of a Redis: ringcached
    is pointed at it, so a test can decide when a command reaches Redis or
    when a reply reaches ringcached.  Every byte is the real redis-server's;
    the relay only forwards, or holds:

      hold_replies(pattern): the next connection whose commands contain
          pattern has its replies held from then on (that command still
          reaches Redis at once, so Redis answers it now);
      hold_commands(pattern): the next connection whose commands contain
          pattern has its commands held from that one on;
      held_replies(): complete replies held so far; holding(): whether a
          connection matched; release(): sends what is held, stops holding.

    A connection Redis closes is closed on the other side too (held replies
    are dropped with it), so a Redis killed mid-read looks the same through
    the relay.  Patterns must arrive in one recv() (a command of a few
    dozen bytes on loopback does)."""

    def __init__(self, redis):
        super().__init__()
        self.redis = redis
        self.lock = threading.Lock()
        self.links = []
        self.want_down = self.want_up = None
        self.matched = None
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self):
        pw = self.redis.password
        auth = ":%s@" % urllib.parse.quote(pw, safe="") if pw else ""
        db = "/%d" % self.redis.db if self.redis.db else ""
        return "redis://%s127.0.0.1:%d%s" % (auth, self.port, db)

    def _accept(self):
        while True:
            try:
                down, _ = self.lsock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.redis.port), timeout=5)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            for sk in (down, up):
                sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(down, up)
            with self.lock:
                self.links.append(link)
            threading.Thread(target=self._pump, args=(link, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(link, False), daemon=True).start()

    def _pump(self, link, commands):
        src, dst = (link.down, link.up) if commands else (link.up, link.down)
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            with self.lock:
                if commands:
                    if self.want_down is not None and self.want_down in data:
                        self.want_down, self.matched, link.hold_down = None, link, True
                    if self.want_up is not None and self.want_up in data:
                        self.want_up, self.matched, link.hold_up = None, link, True
                    if link.hold_up:
                        link.held_up += data
                        continue
                elif link.hold_down:
                    link.held_down += data
                    continue
                try:
                    dst.sendall(data)
                except OSError:
                    break
        self._close(link)

    def _close(self, link):
        with self.lock:
            if link.closed:
                return
            link.closed = True
        for sk in (link.down, link.up):
            try:
                sk.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sk.close()

    def hold_replies(self, pattern):
        with self.lock:
            self.matched, self.want_down = None, pattern

    def hold_commands(self, pattern):
        with self.lock:
            self.matched, self.want_up = None, pattern

    def holding(self):
        with self.lock:
            return self.matched is not None

    def held_replies(self):
        with self.lock:
            return resp_replies(bytes(self.matched.held_down)) if self.matched else 0

    def release(self):
        with self.lock:
            link, self.matched = self.matched, None
            self.want_down = self.want_up = None
            if link is None or link.closed:
                return
            try:
                if link.held_up:
                    link.up.sendall(bytes(link.held_up))
                if link.held_down:
                    link.down.sendall(bytes(link.held_down))
            except OSError:
                pass
            link.held_up, link.held_down = bytearray(), bytearray()
            link.hold_up = link.hold_down = False

    def close_conns(self):
        for link in list(self.links):
            self._close(link)
