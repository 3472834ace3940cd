"""Pieces the L2 (Redis) integration tests share, on top of harness.py: a
real redis-server on a free loopback port, a raw RESP client, and a pair of
ringcached instances pointed at it.

Why a RESP client of our own instead of redis-py: the tests must run with
the standard library only, and they need the exact bytes Redis holds (the
stored frame starts with a NUL byte).  RESP2 is small: five reply types.

Every wait is a bounded poll.  The redis-server is killed on every exit
path (a test failure, an exception, SIGTERM from meson's timeout): run()
wraps the test body the way harness.run_main() does, and stops the
ringcached instances and Redis in a finally block.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import SANITIZER_RE, Checks, Server, free_port, keys_per_shard, wait_for

REDIS_START_TIMEOUT = 10.0
REDIS_IO_TIMEOUT = 5.0
NSHARDS = 2
WRITE_OK = {201, 204}


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


class Resp:
    """One connection to Redis.  cmd() sends a command and returns its
    reply: bytes, int, None (nil), list, or a RespError instance (error
    replies are values, not exceptions, so a test can check them)."""

    def __init__(self, port, timeout=REDIS_IO_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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
    paused process."""

    def __init__(self):
        self.port = None
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="ringcache-redis-")
        self.logpath = os.path.join(self.dir, "redis.log")
        self.paused = False

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
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"],
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
                with Resp(self.port, timeout=1.0) as r:
                    if r.cmd("PING") == b"PONG":
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def client(self, timeout=REDIS_IO_TIMEOUT):
        return Resp(self.port, timeout)

    def cmd(self, *args):
        """One command on a fresh connection."""
        with Resp(self.port) as r:
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


def kill9(c, srv):
    """SIGKILL a ringcached and take it off the list the checks stop at the
    end (it did not fail: the test killed it)."""
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(5.0)
    srv.stop_status = srv.proc.returncode
    if srv.log is not None:
        srv.log.close()
        srv.log = None
    if srv in c.servers:
        c.servers.remove(srv)
    c.killed.append(srv)


def timed(fn, *args, **kw):
    """(result or exception, seconds)."""
    t0 = time.monotonic()
    try:
        out = fn(*args, **kw)
    except Exception as e:  # noqa: BLE001 - returned for the check to report
        out = e
    return out, time.monotonic() - t0


# --- running a test -----------------------------------------------------------------

def _log_lines(srv):
    try:
        return srv.log_text().splitlines()
    except OSError:
        return []


# harness.SANITIZER_RE does not match ThreadSanitizer's "WARNING:" lines.
def _reports(srv):
    return [ln for ln in _log_lines(srv)
            if SANITIZER_RE.search(ln) or "WARNING: ThreadSanitizer" in ln]


def run(name, body):
    """Like harness.run_main(), with a redis-server: body(c, redis).  Redis
    and every ringcached are stopped on any exit, SIGTERM included."""
    c = Checks(name)
    c.killed = []
    redis = Redis()

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        try:
            redis.start()
            print("redis-server on 127.0.0.1:%d" % redis.port, flush=True)
            body(c, redis)
        except Exception as e:  # noqa: BLE001 - any escape is a test failure
            import traceback
            traceback.print_exc()
            c.failed.append("exception: %r" % (e,))
        if redis.paused:
            redis.resume()
        # Stop the instances while Redis is still up, so a clean stop can
        # remove its registry entry; c.exit() then checks how they stopped
        # and their logs.  The killed ones, which c.exit() does not see,
        # get the sanitizer check here.
        for srv in c.servers:
            srv.stop()
        for srv in c.servers + c.killed:
            rep = _reports(srv)
            c.check(not rep, "%s%s: no sanitizer or ThreadSanitizer reports in its log"
                    % (srv.describe(), " (killed by the test)" if srv in c.killed else ""),
                    "; ".join(rep[:3]))
        if c.failed:
            for srv in c.killed:
                srv.dump_log()
            redis.dump_log()
        else:
            for srv in c.killed:
                srv.remove_log()
    except SystemExit:
        for srv in c.servers:
            srv.stop()
        redis.cleanup()
        raise
    redis.cleanup()
    c.exit()
    sys.exit(1)


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


def show(r):
    """A response as the reports print it: status, the headers, the body."""
    if isinstance(r, Exception):
        return repr(r)
    return "%d %s %s body=%r" % (r.status, r.reason,
                                 " ".join("%s: %s;" % hv for hv in r.headers), r.body[:120])


def l2_stats(srv):
    """The coherence counters of GET /stats ("l2"), or {} when absent."""
    import json
    try:
        doc = json.loads(srv.request("GET", "/stats").body)
    except (OSError, ValueError):
        return {}
    v = doc.get("l2") if isinstance(doc, dict) else None
    return v if isinstance(v, dict) else {}


def stats_delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after
            if isinstance(after[k], int) and after[k] != before.get(k, 0)}
