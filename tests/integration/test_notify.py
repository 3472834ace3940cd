#!/usr/bin/env python3
"""systemd's notification protocol (issue 10), read from a socket of the
test's own as $NOTIFY_SOCKET: READY=1 only once /health answers (also with
a --redis that is down, and to an abstract socket), never after a failed
start; STATUS= lines; RELOADING=1 and READY=1 around a SIGHUP; STOPPING=1 at
SIGTERM; and, with $WATCHDOG_USEC, WATCHDOG=1 at the documented pace while
every shard's loop turns (idle shards park, and still count as turning),
held while one shard is wedged and resumed when it turns again.

A wedged shard is made for real: the test stops one shard thread alone with
ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT on its thread id, found by the name
the daemon gives it, rc-shard-N), so one iteration of that shard's loop does
not end while the rest of the process runs.

usage: test_notify.py [path/to/ringcached]
"""

import ctypes
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time

from harness import (START_TIMEOUT, Server, free_port, hash_seed_flags, request, run_main,
                     wait_for)

FLAGS = ["--shards", "2", "--memory", "16M"]


class NotifySocket:
    """The service manager's end: a datagram socket bound to a path (or an
    abstract name), recording every message with its arrival time."""

    def __init__(self, abstract=False):
        self.dir = tempfile.mkdtemp(prefix="ringcached-notify-")
        if abstract:
            self.name = "@ringcache-test-%d-%d" % (os.getpid(), time.monotonic_ns())
            addr = "\0" + self.name[1:]
        else:
            self.name = addr = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(addr)
        self.msgs = []          # (monotonic time, {key: value} in order, raw text)

    def _recv(self, deadline):
        """One message received before `deadline`, recorded; None if none."""
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        text = data.decode("utf-8", "replace")
        fields = {}
        for line in text.split("\n"):
            k, _, v = line.partition("=")
            fields[k] = v
        self.msgs.append((time.monotonic(), fields, text))
        return self.msgs[-1]

    def poll(self, timeout):
        """Receives what arrives within `timeout` s; returns the new ones."""
        new = []
        deadline = time.monotonic() + timeout
        while True:
            m = self._recv(deadline)
            if m is None:
                return new
            new.append(m)

    def wait(self, pred, timeout):
        """The first message from now on for which pred(fields) holds,
        returned as soon as it arrives; None after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            m = self._recv(deadline)
            if m is None or pred(m[1]):
                return m

    def close(self):
        self.sock.close()
        try:
            os.unlink(os.path.join(self.dir, "notify"))
        except OSError:
            pass
        os.rmdir(self.dir)


class NotifiedServer(Server):
    """A Server started with $NOTIFY_SOCKET (and $WATCHDOG_USEC) that does
    not poll /health itself: the test waits for READY=1 instead."""

    def __init__(self, flags, checks, env):
        super().__init__(flags, checks=checks)
        self.env = dict(os.environ, **env)

    def start(self):
        self.port = free_port()
        fd, self.logpath = tempfile.mkstemp(prefix="ringcached-", suffix=".log")
        self.log = os.fdopen(fd, "w+b")
        argv = ([self.binary, "--listen", "127.0.0.1:%d" % self.port] + hash_seed_flags()
                + self.flags)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env)
        return self


def health_now(port):
    """One GET /health, no retry: its status, or the error."""
    try:
        return request(port, "GET", "/health", timeout=5.0).status
    except OSError as e:
        return e


def is_ready(f):
    return f.get("READY") == "1"


# --- READY, STATUS, RELOADING, STOPPING ----------------------------------------

def ready_and_stop(c, abstract=False, extra=(), what="a daemon"):
    ns = NotifySocket(abstract)
    try:
        srv = NotifiedServer(FLAGS + list(extra), c, {"NOTIFY_SOCKET": ns.name}).start()
        m = ns.wait(is_ready, START_TIMEOUT)
        if not c.check(m is not None, "%s: READY=1 arrives" % what, srv.log_text()[-500:]):
            return
        # asked at once, the moment READY=1 is read: no retry, no wait
        c.eq(health_now(srv.port), 200, "%s: GET /health answers 200 the moment READY=1 "
             "arrives" % what)
        c.check("serving on 127.0.0.1:%d with 2 shards" % srv.port in m[1].get("STATUS", ""),
                "%s: READY=1 comes with STATUS=serving on ..." % what, m[2])
        c.eq([f for _, f, _ in ns.msgs if "WATCHDOG" in f], [],
             "%s: no WATCHDOG=1 without $WATCHDOG_USEC" % what)
        c.eq(sum(1 for _, f, _ in ns.msgs if is_ready(f)), 1, "%s: READY=1 once" % what)
        if not abstract and not extra:
            srv.proc.send_signal(signal.SIGHUP)
            r = ns.wait(lambda f: f.get("RELOADING") == "1", 10.0)
            c.check(r is not None and r[1].get("MONOTONIC_USEC", "").isdigit(),
                    "SIGHUP: RELOADING=1 with MONOTONIC_USEC", r and r[2])
            r = ns.wait(is_ready, 10.0)
            c.check(r is not None and "serving" in r[1].get("STATUS", ""),
                    "SIGHUP: then READY=1 and STATUS=serving ...", r and r[2])
        rc = srv.stop()     # SIGTERM, and the wait for the exit
        c.eq(rc, 0, "%s: SIGTERM: exits 0" % what)
        # sent before the exit, so queued by now
        m = ns.wait(lambda f: f.get("STOPPING") == "1", 5.0)
        c.check(m is not None, "%s: STOPPING=1 was sent" % what)
        if m:
            c.check("stopping" in m[1].get("STATUS", ""), "%s: with STATUS=stopping ..." % what,
                    m[2])
    finally:
        ns.close()


def failed_start(c):
    c.section("a start that fails: no READY=1, a STATUS= saying why")
    ns = NotifySocket()
    blocker = Server(FLAGS, checks=c).start()
    try:
        env = dict(os.environ, NOTIFY_SOCKET=ns.name)
        p = subprocess.run([blocker.binary, "--listen", "127.0.0.1:%d" % blocker.port] + FLAGS,
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
        c.eq(p.returncode, 1, "a second daemon on a port in use exits 1")
        ns.poll(0.5)   # what it sent is queued already: it has exited
        c.check(not any(is_ready(f) for _, f, _ in ns.msgs), "  ... without READY=1",
                [t for _, _, t in ns.msgs])
        c.check(any("failed to start" in f.get("STATUS", "") and "in use" in f.get("STATUS", "")
                    for _, f, _ in ns.msgs), "  ... with STATUS=failed to start: ... in use",
                [t for _, _, t in ns.msgs])
    finally:
        blocker.stop()
        ns.close()


# --- the watchdog ------------------------------------------------------------

USEC = 200000      # 200 ms: a check every 50 ms, shorter than an idle shard's 250 ms park


def watchdog_pace(c):
    c.section("WATCHDOG_USEC=%d on an idle daemon: pings at every check, parked shards "
              "count as turning" % USEC)
    ns = NotifySocket()
    try:
        srv = NotifiedServer(FLAGS, c, {"NOTIFY_SOCKET": ns.name,
                                        "WATCHDOG_USEC": str(USEC)}).start()
        if not c.check(ns.wait(is_ready, START_TIMEOUT) is not None, "READY=1 arrives",
                       srv.log_text()[-500:]):
            return
        tick = USEC / 4 / 1e6
        c.check(wait_for(lambda: "a check every 50 ms" in srv.log_text(), 5.0),
                "the log says: a check every 50 ms (WATCHDOG_USEC / 4)", srv.log_text()[-300:])
        want = 40
        pings = []
        deadline = time.monotonic() + 60
        while len(pings) < want and time.monotonic() < deadline:
            for t, f, _ in ns.poll(0.5):
                if f.get("WATCHDOG") == "1":
                    pings.append(t)
        if not c.check(len(pings) >= want, "%d pings arrive from an idle daemon" % want,
                       "got %d in 60 s" % len(pings)):
            return
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        # Not faster than the checks: the 39 gaps cannot sum to less than 39
        # ticks of the daemon's own timer (halved for the arrival jitter).
        c.check(pings[-1] - pings[0] >= (want - 1) * tick / 2,
                "the pings are not sent faster than one per check",
                "%.3f s for %d pings" % (pings[-1] - pings[0], want))
        # The manager restarts the daemon after WATCHDOG_USEC without one; an
        # idle shard is parked most of the time.  A daemon that counted parked
        # shards as stuck would ping only when both happened to wake on their
        # own (every 250 ms), gaps far above USEC / 2.
        med = statistics.median(gaps)
        c.check(med <= USEC / 2 / 1e6, "the median gap between pings is at most "
                "WATCHDOG_USEC / 2", "median %.3f s, max %.3f s" % (med, max(gaps)))
        stalls = [t for _, _, t in ns.msgs if "not turning" in t]
        c.eq(stalls, [], "no shard reported 'not turning' while idle")
        srv.stop()
    finally:
        ns.close()


class Ptrace:
    """Stops one thread alone (PTRACE_SEIZE, PTRACE_INTERRUPT) and lets it
    go (PTRACE_DETACH)."""
    SEIZE, INTERRUPT, DETACH = 0x4206, 0x4207, 17
    WALL = 0x40000000

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.restype = ctypes.c_long
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.tid = None

    def stop(self, tid):
        if self.libc.ptrace(self.SEIZE, tid, None, None) != 0:
            return os.strerror(ctypes.get_errno())
        self.tid = tid
        if self.libc.ptrace(self.INTERRUPT, tid, None, None) != 0:
            return os.strerror(ctypes.get_errno())
        _, status = os.waitpid(tid, self.WALL)
        return None if os.WIFSTOPPED(status) else "not stopped: status %#x" % status

    def release(self):
        if self.tid is not None:
            self.libc.ptrace(self.DETACH, self.tid, None, None)
            self.tid = None


def thread_named(pid, name):
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                if f.read().strip() == name:
                    return int(tid)
        except OSError:
            pass
    return None


def watchdog_wedge(c):
    c.section("one shard wedged (its thread stopped mid-iteration): pings held, "
              "then resumed")
    usec = 400000
    ns = NotifySocket()
    pt = Ptrace()
    try:
        srv = NotifiedServer(FLAGS, c, {"NOTIFY_SOCKET": ns.name,
                                        "WATCHDOG_USEC": str(usec)}).start()
        if not c.check(ns.wait(is_ready, START_TIMEOUT) is not None, "READY=1 arrives",
                       srv.log_text()[-500:]):
            return
        c.check(ns.wait(lambda f: f.get("WATCHDOG") == "1", 10.0) is not None,
                "pings arrive while both shards turn")
        tid = thread_named(srv.proc.pid, "rc-shard-1")
        if not c.check(tid is not None, "shard 1's thread is named rc-shard-1"):
            return
        why = pt.stop(tid)
        if why and "not permitted" in why:
            c.skip("a wedged shard holds the pings", "ptrace refused here: %s" % why)
            return
        if not c.check(why is None, "shard 1's thread alone is stopped", why):
            return
        m = ns.wait(lambda f: "shard 1 not turning" in f.get("STATUS", ""), 15.0)
        c.check(m is not None, "STATUS= says shard 1 is not turning",
                [t for _, _, t in ns.msgs[-5:]])
        c.check("shard 1 not turning" in srv.log_text(), "  ... and so does the log")
        # a window of three WATCHDOG_USEC after the report: no ping at all
        window = ns.poll(3 * usec / 1e6)
        c.eq([t for _, f, t in window if f.get("WATCHDOG") == "1"], [],
             "no WATCHDOG=1 while shard 1 does not turn (%d ms observed)" % (3 * usec // 1000))
        pt.release()
        m = ns.wait(lambda f: "serving" in f.get("STATUS", ""), 15.0)
        c.check(m is not None, "released, it turns again: STATUS=serving ...")
        c.check(ns.wait(lambda f: f.get("WATCHDOG") == "1", 10.0) is not None,
                "  ... and the pings resume")
        c.eq(health_now(srv.port), 200, "the daemon serves")
        srv.stop()
    finally:
        pt.release()
        ns.close()


def body(c):
    c.section("READY=1, STATUS=, RELOADING=1, STOPPING=1 (path socket)")
    ready_and_stop(c)
    c.section("an abstract socket (@name)")
    ready_and_stop(c, abstract=True, what="abstract socket")
    c.section("--redis at a port where nothing listens: READY=1 does not wait for Redis")
    ready_and_stop(c, extra=["--redis", "redis://127.0.0.1:%d" % free_port()],
                   what="--redis down")
    failed_start(c)
    watchdog_pace(c)
    watchdog_wedge(c)


if __name__ == "__main__":
    run_main("test_notify", body)
