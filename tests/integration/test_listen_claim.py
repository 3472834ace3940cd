#!/usr/bin/env python3
"""Two ringcached started at the same moment on one port: exactly one serves
(issue 11, defect 2).

The shards bind with SO_REUSEPORT, so a busy-port check made before they bind
could pass in both processes and both would listen, each taking part of the
connections with its own cache (8 of 40 tries before the fix).  The port is
now claimed atomically before the check and held for the life of the process.
Also: the claim dies with its process, so a restart after SIGKILL works; and
a clean stop lets go of the port before it exits, so a restart right after
it works.

usage: test_listen_claim.py [path/to/ringcached]
"""

import signal
import subprocess
import time
import urllib.request

from harness import binary_path, free_port, hash_seed_flags, run_main, wait_for

ROUNDS = 20
RESTARTS = 10
FLAGS = ["--shards", "2", "--memory", "8M"]


def healthy(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


def spawn(port):
    return subprocess.Popen([binary_path(), "--listen", "127.0.0.1:%d" % port]
                            + hash_seed_flags() + FLAGS,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.stdout.read().decode(errors="replace")


def race(c):
    both = 0
    for i in range(ROUNDS):
        port = free_port()
        procs = [spawn(port), spawn(port)]
        # settled: one has exited, or both have had time to start
        wait_for(lambda: any(p.poll() is not None for p in procs), 2.0)
        time.sleep(0.2)
        alive = [p for p in procs if p.poll() is None]
        up = healthy(port)
        outs = [stop(p) for p in procs]
        if len(alive) != 1:
            both += 1
            c.check(False, "round %d: exactly one of two simultaneous starts runs" % i,
                    "alive: %d; logs: %r" % (len(alive), [o[-200:] for o in outs]))
            continue
        loser = procs[0] if procs[0] not in alive else procs[1]
        out = outs[procs.index(loser)]
        if loser.returncode != 1 or "in use" not in out or not up:
            c.check(False, "round %d: the other exits 1 saying the port is in use" % i,
                    "status %r, healthy %r: %r" % (loser.returncode, up, out[-300:]))
            both += 1
    c.eq(both, 0, "%d rounds of two simultaneous starts on one port: one server each time"
         % ROUNDS)


def restart_after_kill(c):
    port = free_port()
    p = spawn(port)
    c.check(wait_for(lambda: healthy(port), 5.0), "a daemon starts on port %d" % port)
    p.kill()
    p.wait()
    p.stdout.read()
    # the kernel ends a killed process's io_uring (and the listeners it
    # holds) asynchronously, ~0.1 s here: retry until the port is free
    deadline, out, ok = time.time() + 5.0, "", False
    while not ok and time.time() < deadline:
        q = spawn(port)
        ok = wait_for(lambda: healthy(port) or q.poll() is not None, 5.0) and q.poll() is None
        out = stop(q)
    c.check(ok, "after SIGKILL, a new daemon claims the same port (within 5 s)", out[-300:])


def restart_after_stop(c):
    """A clean stop frees the port before the process exits: the next start
    (systemctl restart, an upgrade) must not find the old listener still
    there, held by the ring's asynchronous teardown (failed 4 of 5 times)."""
    port = free_port()
    p = spawn(port)
    c.check(wait_for(lambda: healthy(port), 5.0), "a daemon starts on port %d" % port)
    failed = 0
    for i in range(RESTARTS):
        out = stop(p)
        if p.returncode != 0:
            c.check(False, "restart %d: the daemon stops with status 0" % i, out[-300:])
        p = spawn(port)
        wait_for(lambda: healthy(port) or p.poll() is not None, 5.0)
        if p.poll() is not None:
            failed += 1
            c.check(False, "restart %d: a start right after the stop serves" % i,
                    "status %r: %s" % (p.returncode, stop(p)[-300:]))
            p = spawn(port)
            wait_for(lambda: healthy(port) or p.poll() is not None, 5.0)
    stop(p)
    c.eq(failed, 0, "%d starts each right after a SIGTERM stop on the same port" % RESTARTS)


def body(c):
    race(c)
    restart_after_kill(c)
    restart_after_stop(c)


if __name__ == "__main__":
    run_main("test_listen_claim", body)
