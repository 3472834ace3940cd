#!/usr/bin/env python3
"""Warm restarts (--snapshot PATH) on an operator's bad day: what is found
at PATH and PATH.tmp, a disk that fills during the save, a read-only file
system, signals during the save, writes racing the stop, and a restart
with other settings.  The rule checked throughout: a start never serves a
truncated, corrupt or outdated file as if it were whole (a cold start with
a line that says why is right), and a failed save never destroys the file
at PATH.

- PATH.tmp is the save's own file: whatever is found there (a symlink or a
  hard link to someone's file, a file of another mode, a FIFO, a directory) is never
  written through or waited on; the snapshot is a new 0600 file;
- PATH a symlink (to a snapshot, or dangling), a directory, or a file the
  daemon (run as nobody) cannot open: never replaced;
- the disk fills during the save (a 2 MiB tmpfs), at several points of the
  save (blocks, table, header): "not saved", PATH left as it was (an older
  snapshot put there meanwhile is loaded whole by the next start), no
  PATH.tmp left behind; or saved, and then loaded whole;
- a read-only file system: a snapshot there could never be removed once
  loaded nor replaced at stop, so it is refused (else every clean restart
  would bring back what was deleted since);
- SIGTERM and SIGINT again during the save: one save, whole; SIGKILL during
  the save: the next start loads nothing half-written;
- PUTs on many connections racing the SIGTERM: after the restart every key
  holds a value that was written, whole, no older than its last
  acknowledged write;
- another --max-value (larger values skipped, counted) and a smaller
  --memory (no wrong value; the log and /stats agree on what is held; the
  newest items are the ones kept).

Needs to mount a tmpfs (root, and a system that allows it): exits 77 (skipped) otherwise.

usage: test_snapshot_hostile.py [path/to/ringcached]
"""

import contextlib
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

from harness import (WRITE_OK, Conn, ProtocolError, Server, binary_path, run_main, show, stats,
                     wait_for)

MAGIC = b"\x89RCSNAP\n"


def start(c, path, shards=2, memory="64M", extra=()):
    return Server(["--shards", str(shards), "--memory", memory, "--snapshot", path]
                  + list(extra), checks=c, hash_seed="random").start()


def stop(c, srv, what):
    rc = srv.stop()
    c.check(rc == 0, "%s: exit status 0 after SIGTERM" % what, "status %r" % rc)
    return srv.log_text()


def put(srv, key, value):
    return srv.request("PUT", "/cache/" + key, value)


def get(srv, key):
    return srv.request("GET", "/cache/" + key)


def snap_line(log, word):
    for ln in log.splitlines():
        if "snapshot" in ln and word in ln:
            return ln
    return None


def loads_line(srv, word, timeout=5.0):
    return wait_for(lambda: snap_line(srv.log_text(), word), timeout)


def value(key, n):
    """A value made from its key, so a torn or misplaced one shows."""
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (n // len(seed) + 1))[:n]


def put_all(c, srv, items, what):
    bad = [k for k, v in items.items() if put(srv, k, v).status not in WRITE_OK]
    c.check(not bad, "%s: every PUT stored" % what, bad[:5])


def served(srv, items):
    """The keys of `items` not served with exactly their value."""
    bad = []
    for k, v in items.items():
        r = get(srv, k)
        if r.status != 200 or r.body != v:
            bad.append((k, r.status, len(r.body)))
    return bad


def clear(*paths):
    """Removes whatever is at each path (file, link, FIFO, directory)."""
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.unlink(p)


def held_right(srv, items):
    """(keys served with a wrong value, keys served with their own)."""
    wrong, right = [], 0
    for k, v in items.items():
        r = get(srv, k)
        if r.status == 200 and r.body == v:
            right += 1
        elif r.status != 404:
            wrong.append((k, r.status, len(r.body)))
    return wrong, right


def read(path):
    with open(path, "rb") as f:
        return f.read()


@contextlib.contextmanager
def tmpfs(c, base, name, size):
    """A tmpfs of `size` mounted at base/name; unmounted on every way out,
    after the daemons that may have files open there."""
    d = os.path.join(base, name)
    os.mkdir(d)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", d],
                   check=True)
    try:
        yield d
    finally:
        for srv in c.servers:
            srv.stop()
        if subprocess.run(["umount", d]).returncode != 0:
            subprocess.run(["umount", "-l", d])
        os.rmdir(d)


# --- PATH.tmp ------------------------------------------------------------------

def saved_fresh(c, path, what):
    if not c.check(os.path.lexists(path), "%s: PATH exists after the stop" % what):
        return
    st = os.lstat(path)
    c.check(stat.S_ISREG(st.st_mode) and read(path)[:8] == MAGIC,
            "%s: PATH is a regular file holding a snapshot" % what)
    c.check(stat.S_IMODE(st.st_mode) & 0o077 == 0,
            "%s: the snapshot is readable by its owner only (mode %o)"
            % (what, stat.S_IMODE(st.st_mode)))
    c.check(not os.path.lexists(path + ".tmp"), "%s: no PATH.tmp is left" % what)


def test_tmp_leftovers(c, d):
    c.section("whatever is found at PATH.tmp is never written through nor waited on")
    path = os.path.join(d, "l1.snap")
    tmp = path + ".tmp"
    items = {"t%d" % i: value("t%d" % i, 300) for i in range(20)}

    # a symlink to someone's file: the save must not write into it
    victim = os.path.join(d, "victim")
    with open(victim, "wb") as f:
        f.write(b"somebody's data\n")
    os.symlink(victim, tmp)
    a = start(c, path)
    put_all(c, a, items, "symlink at PATH.tmp")
    log = stop(c, a, "symlink at PATH.tmp")
    c.eq(read(victim), b"somebody's data\n",
         "a symlink at PATH.tmp: its target is left as it was")
    c.check(snap_line(log, "saved 20 items") is not None, "symlink at PATH.tmp: saved",
            log[-1500:])
    saved_fresh(c, path, "symlink at PATH.tmp")
    b = start(c, path)
    c.check(loads_line(b, "loaded 20 items"), "symlink at PATH.tmp: the snapshot loads",
            b.log_text()[-1500:])
    c.check(not served(b, items), "symlink at PATH.tmp: every value comes back")
    stop(c, b, "after the symlink")

    # a hard link to someone's file: the save must not truncate it
    clear(path, tmp)
    os.link(victim, tmp)
    victim_img = read(victim)
    a = start(c, path)
    put_all(c, a, items, "hard link at PATH.tmp")
    stop(c, a, "hard link at PATH.tmp")
    c.eq(read(victim), victim_img, "a hard link at PATH.tmp: its other name keeps its data")
    saved_fresh(c, path, "a hard link at PATH.tmp")

    # a leftover readable by all: the snapshot still gets 0600
    clear(path, tmp)
    with open(tmp, "wb") as f:
        f.write(b"x" * 10000)
    os.chmod(tmp, 0o644)
    a = start(c, path)
    put_all(c, a, items, "0644 file at PATH.tmp")
    stop(c, a, "0644 file at PATH.tmp")
    saved_fresh(c, path, "a 0644 file left at PATH.tmp")

    # a FIFO: opening it for writing would wait for a reader forever
    clear(path, tmp)
    os.mkfifo(tmp, 0o600)
    a = start(c, path)
    put_all(c, a, items, "FIFO at PATH.tmp")
    log = stop(c, a, "FIFO at PATH.tmp (the stop must not wait on it)")
    c.check(snap_line(log, "saved 20 items") is not None, "FIFO at PATH.tmp: saved",
            log[-1500:])
    saved_fresh(c, path, "a FIFO at PATH.tmp")

    # a directory: cannot be replaced; nothing saved, PATH left as it was
    clear(tmp)
    if not os.path.exists(path):
        a = start(c, path)
        put_all(c, a, items, "for the directory at PATH.tmp")
        stop(c, a, "saving for the directory at PATH.tmp")
    before = read(path)
    os.mkdir(tmp)
    with open(os.path.join(tmp, "inside"), "wb") as f:
        f.write(b"kept")
    b = start(c, path)
    c.check(loads_line(b, "loaded 20 items"), "directory at PATH.tmp: PATH loads",
            b.log_text()[-1500:])
    put(b, "new", b"1")
    # put PATH back (it was used once): a failed save must leave it
    with open(path, "wb") as f:
        f.write(before)
    log = stop(c, b, "directory at PATH.tmp")
    c.check(snap_line(log, "not saved") is not None, "directory at PATH.tmp: not saved, "
            "said", log[-1500:])
    c.eq(read(path), before, "directory at PATH.tmp: PATH is left as it was")
    c.eq(read(os.path.join(tmp, "inside")), b"kept",
         "directory at PATH.tmp: its contents are left as they were")
    clear(tmp, path, victim)


# --- PATH ------------------------------------------------------------------------

def test_path_kinds(c, d):
    c.section("PATH a symlink (to a snapshot, dangling) or a directory")
    path = os.path.join(d, "l1.snap")
    items = {"p%d" % i: value("p%d" % i, 500) for i in range(30)}
    a = start(c, path)
    put_all(c, a, items, "snapshot for a symlink")
    stop(c, a, "daemon saving for a symlink")
    elsewhere = os.path.join(d, "elsewhere.snap")
    os.rename(path, elsewhere)
    img = read(elsewhere)
    os.symlink(elsewhere, path)
    b = start(c, path)
    c.check(loads_line(b, "loaded 30 items"), "PATH a symlink to a snapshot: loaded",
            b.log_text()[-1500:])
    c.check(not served(b, items), "PATH a symlink: every value comes back")
    c.check(not os.path.lexists(path), "PATH a symlink: removed once loaded (used once: a "
            "daemon killed now starts cold)")
    b.request("DELETE", "/cache/p0")
    stop(c, b, "daemon loaded through a symlink")
    c.eq(read(elsewhere), img, "PATH a symlink: the save does not write through it into "
         "its target")
    c.check(stat.S_ISREG(os.lstat(path).st_mode), "PATH a symlink: the save is a regular file")
    b = start(c, path)
    c.check(get(b, "p0").status == 404 and get(b, "p1").body == items["p1"],
            "the next start serves the new save, not the symlink's target (DELETEd key gone)")
    stop(c, b, "daemon after the symlink")
    os.unlink(elsewhere)

    # dangling: nothing to load, and the save does not create its target
    os.unlink(path)
    gone = os.path.join(d, "no-such-target")
    os.symlink(gone, path)
    b = start(c, path)
    c.check(loads_line(b, "none yet"), "PATH a dangling symlink: starts empty",
            b.log_text()[-1500:])
    put(b, "x", b"y")
    log = stop(c, b, "dangling symlink at PATH")
    c.check(snap_line(log, "saved 1 items") is not None, "dangling symlink: saved", log[-1500:])
    c.check(not os.path.lexists(gone) and stat.S_ISREG(os.lstat(path).st_mode),
            "dangling symlink: replaced by the snapshot, its target not created")
    os.unlink(path)

    # a directory: not ours, never replaced
    os.mkdir(path)
    b = start(c, path)
    c.check(loads_line(b, "not a regular file"), "PATH a directory: refused, said",
            b.log_text()[-1500:])
    put(b, "x", b"y")
    log = stop(c, b, "directory at PATH")
    c.check(snap_line(log, "not saved") is not None and os.path.isdir(path) and
            not os.path.lexists(path + ".tmp"),
            "PATH a directory: not saved, left as it was", log[-1500:])
    os.rmdir(path)


def as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def test_unreadable(c, d):
    c.section("a file at PATH the daemon cannot open is not known to be ours: never replaced")
    state = os.path.join(d, "nobody")
    os.mkdir(state)
    os.chmod(d, 0o755)
    os.chown(state, 65534, 65534)
    path = os.path.join(state, "l1.snap")
    with open(path, "wb") as f:
        f.write(b"root's file\n")
    os.chmod(path, 0o600)
    # nobody may not reach the build's binary (a checkout under a 0700
    # directory, as a CI's fresh clone in mktemp -d): a copy it can run
    bindir = os.path.join(d, "bin")
    os.mkdir(bindir, 0o755)
    binary = os.path.join(bindir, "ringcached")
    shutil.copy2(binary_path(), binary)
    os.chmod(binary, 0o755)
    s = Server(["--shards", "1", "--memory", "16M", "--snapshot", path], checks=c,
               binary=binary, preexec_fn=as_nobody, hash_seed="random").start()
    c.check(loads_line(s, "cannot open it: Permission denied"),
            "unreadable PATH (daemon as nobody): the start says it cannot open it",
            s.log_text()[-1500:])
    put(s, "x", b"y")
    log = stop(c, s, "daemon as nobody, PATH unreadable")
    c.check(snap_line(log, "not saved") is not None, "unreadable PATH: not saved, said",
            log[-1500:])
    c.eq(read(path), b"root's file\n", "unreadable PATH: the file is left as it was")
    c.check(not os.path.lexists(path + ".tmp"), "unreadable PATH: no PATH.tmp left")
    shutil.rmtree(state)
    shutil.rmtree(bindir)


# --- a full disk -------------------------------------------------------------------

def test_disk_full(c, base):
    c.section("the disk fills during the save (a 2 MiB tmpfs)")
    with tmpfs(c, base, "full", "2m") as d:
        path = os.path.join(d, "l1.snap")
        old = {"old%d" % i: value("old%d" % i, 200) for i in range(10)}
        a = start(c, path)
        put_all(c, a, old, "older snapshot")
        stop(c, a, "daemon saving the older snapshot")
        old_img = read(path)
        os.unlink(path)

        big = {"big%d" % i: value("big%d" % i, 100000) for i in range(40)}   # 4 MB
        b = start(c, path)
        put_all(c, b, big, "4 MB into a daemon saving on 2 MiB")
        # an older snapshot at PATH when the stop comes (a prewarm copied in)
        with open(path, "wb") as f:
            f.write(old_img)
        log = stop(c, b, "save on a full disk")
        line = snap_line(log, "not saved")
        c.check(line is not None and "No space left" in line,
                "a full disk: the log says the snapshot was not saved, and why", log[-1500:])
        c.eq(read(path), old_img, "a full disk: the older snapshot at PATH is left as it was")
        c.check(not os.path.lexists(path + ".tmp"),
                "a full disk: the partial PATH.tmp is removed (its room given back)")
        s = start(c, path)
        c.check(loads_line(s, "loaded 10 items"), "the next start loads the older snapshot "
                "whole", s.log_text()[-1500:])
        c.check(not served(s, old) and get(s, "big0").status == 404,
                "its values, and none of the unsaved daemon's")
        stop(c, s, "daemon that loaded the older snapshot")
        os.unlink(path)

        # the disk fills at each point of the save.  One value larger than a
        # block, one shard: the file is [header page][block][16-byte table],
        # and tmpfs counts whole pages (512 of them here).  The blocks are
        # written first, then the table, then the header (page 0): choosing
        # where the block ends picks which write meets the full disk.
        key = "one"
        cal = os.urandom(100000)
        a = start(c, path, shards=1, extra=["--max-value", "4M"])
        put(a, key, cal)
        stop(c, a, "daemon saving one value to measure the file")
        # file = 4096 + block header 32 + record header 12 + key + blob + table 16
        over = os.path.getsize(path) - len(cal) - 4096 - 32 - 12 - len(key) - 16
        os.unlink(path)
        base = 4096 + 32 + 12 + len(key) + over      # the block ends at base + len(value)
        page, limit = 4096, 2 << 20
        cases = [
            ("the disk exactly full", limit - 16 - base, True),
            ("the header's page one too many", limit - 16 - base + 1, False),
            ("the table's last bytes one page too many", limit + page - 8 - base, False),
            ("the block one byte too many", limit + page + 1 - base, False),
        ]
        for what, n, fits in cases:
            v = os.urandom(n)
            b = start(c, path, shards=1, extra=["--max-value", "4M"])
            c.check(put(b, key, v).status in WRITE_OK, "%s: PUT %d bytes" % (what, n))
            log = stop(c, b, what)
            if fits:
                c.check(snap_line(log, "saved 1 items") is not None, "%s: saved" % what,
                        log[-1500:])
                s = start(c, path, shards=1, extra=["--max-value", "4M"])
                r = get(s, key)
                c.check(loads_line(s, "loaded 1 items") and r.status == 200 and r.body == v,
                        "%s: loaded whole" % what, s.log_text()[-1500:])
            else:
                line = snap_line(log, "not saved")
                c.check(line is not None and "No space left" in line and
                        not os.path.lexists(path) and not os.path.lexists(path + ".tmp"),
                        "%s: not saved (ENOSPC, said), nothing left behind" % what,
                        log[-1500:])
                s = start(c, path, shards=1, extra=["--max-value", "4M"])
                c.check(loads_line(s, "none yet") and get(s, key).status == 404,
                        "%s: the next start is cold" % what, s.log_text()[-1500:])
            stop(c, s, "daemon after: %s" % what)
            clear(path, path + ".tmp")


# --- a read-only file system ---------------------------------------------------------

def test_read_only(c, base):
    c.section("a snapshot on a read-only file system is refused: it could never be "
              "removed nor replaced")
    with tmpfs(c, base, "ro", "8m") as d:
        path = os.path.join(d, "l1.snap")
        items = {"r%d" % i: value("r%d" % i, 100) for i in range(5)}
        a = start(c, path)
        put_all(c, a, items, "snapshot to be made read-only")
        stop(c, a, "daemon saving before the remount")
        img = read(path)
        subprocess.run(["mount", "-o", "remount,ro", d], check=True)
        b = start(c, path)
        c.check(loads_line(b, "refused (it could not be removed once loaded"),
                "read-only: the start refuses the snapshot and says why", b.log_text()[-1500:])
        c.eq(get(b, "r1").status, 404, "read-only: nothing of it is served")
        b.request("DELETE", "/cache/r0")
        c.eq(get(b, "r0").status, 404, "read-only: r0 deleted while the daemon runs")
        log = stop(c, b, "daemon on a read-only snapshot")
        c.check(snap_line(log, "not saved") is not None, "read-only: the stop says it did not "
                "save", log[-1500:])
        c.eq(read(path), img, "read-only: the file is as it was")
        s = start(c, path)
        r = get(s, "r0")
        c.eq(r.status, 404, "a key deleted while the daemon ran does not come back after a "
             "clean restart (the read-only snapshot is not loaded again)")
        stop(c, s, "second daemon on a read-only snapshot")
        subprocess.run(["mount", "-o", "remount,rw", d], check=True)


# --- signals during the save -------------------------------------------------------------

def fill_big(c, srv, n, what):
    items = {"m%d" % i: value("m%d" % i, 1 << 20) for i in range(n)}
    put_all(c, srv, items, what)
    return items


def during_save(srv, path):
    """SIGTERM, then waits until the save has created PATH.tmp."""
    srv.proc.send_signal(signal.SIGTERM)
    return wait_for(lambda: os.path.exists(path + ".tmp") or srv.proc.poll() is not None,
                    5.0, interval=0.0005)


def test_signals(c, d):
    c.section("SIGTERM and SIGINT again during the save; SIGKILL during the save")
    path = os.path.join(d, "l1.snap")
    a = start(c, path, memory="128M")
    items = fill_big(c, a, 40, "40 MB")
    held = stats(a)["total"]["items"]
    during_save(a, path)
    a.proc.send_signal(signal.SIGTERM)
    a.proc.send_signal(signal.SIGINT)
    a.proc.send_signal(signal.SIGTERM)
    log = stop(c, a, "SIGTERM, SIGINT, SIGTERM again during the save")
    c.check(snap_line(log, "saved %d items" % held) is not None,
            "signals during the save: one whole save", log[-1500:])
    b = start(c, path, memory="128M")
    c.check(loads_line(b, "loaded %d items" % held, 20.0), "it loads whole (%d items)" % held,
            b.log_text()[-1500:])
    wrong, right = held_right(b, items)
    c.check(not wrong and right == held, "each of the %d 1 MB values held comes back exactly"
            % held, wrong[:3])

    # SIGKILL as soon as PATH.tmp exists
    during_save(b, path)
    b.kill()
    if os.path.exists(path):
        c.note("the save had finished before the SIGKILL: PATH must then be whole")
        s = start(c, path, memory="128M")
        c.check(loads_line(s, "loaded %d items" % held, 20.0) and
                held_right(s, items) == ([], held),
                "SIGKILL after the save ended: the file loads whole", s.log_text()[-1500:])
    else:
        c.note("killed during the save: PATH.tmp %s" %
               ("left behind" if os.path.exists(path + ".tmp") else "not there"))
        s = start(c, path, memory="128M")
        c.check(loads_line(s, "none yet"), "SIGKILL during the save: the half-written file "
                "is not loaded; the next start is cold", s.log_text()[-1500:])
        c.eq(stats(s)["total"]["items"], 0, "SIGKILL during the save: nothing served")
    put(s, "after", b"kill")
    log = stop(c, s, "daemon after the SIGKILL")
    c.check(snap_line(log, "saved") is not None and not os.path.lexists(path + ".tmp"),
            "the next save replaces what the killed one left", log[-1500:])
    os.unlink(path)


# --- writes racing the stop ---------------------------------------------------------------

def racing_value(key, ver):
    head = b"%s:%d:" % (key.encode(), ver)
    return head + value(key + str(ver), 1500 + ver % 500)


def parse_racing(key, body):
    m = re.match(rb"([^:]+):(\d+):", body)
    if not m or m.group(1) != key.encode():
        return None
    ver = int(m.group(2))
    return ver if body == racing_value(key, ver) else None


def test_racing_writes(c, d):
    c.section("PUTs on 6 connections racing the SIGTERM: every value whole, none older "
              "than its last acknowledged write")
    path = os.path.join(d, "l1.snap")
    a = start(c, path, shards=3)
    nthreads, nkeys = 6, 40
    acked, sent = {}, {}
    go_deadline = [0.0]
    lock = threading.Lock()
    go = threading.Event()
    started = threading.Barrier(nthreads + 1)

    def writer(t):
        keys = ["w%d-%d" % (t, j) for j in range(nkeys)]
        ver = 0
        try:
            conn = Conn(a.port)
        except OSError:
            started.wait()
            return
        started.wait()
        try:
            while True:
                for k in keys:
                    ver += 1
                    with lock:
                        sent[k] = ver
                    r = conn.roundtrip("PUT", "/cache/" + k, racing_value(k, ver))
                    if r.status in WRITE_OK:
                        with lock:
                            acked[k] = ver
                    if go.is_set() and time.monotonic() > go_deadline[0]:
                        return
        except (OSError, ProtocolError):
            return
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(nthreads)]
    for th in threads:
        th.start()
    started.wait()
    # every key written at least once, then the stop, in the middle of the writes
    wait_for(lambda: len(acked) == nthreads * nkeys, 10.0)
    go_deadline[0] = time.monotonic() + 10.0
    a.proc.send_signal(signal.SIGTERM)
    go.set()
    for th in threads:
        th.join(15.0)
    c.check(not any(th.is_alive() for th in threads), "every writer ended with the stop")
    log = stop(c, a, "daemon stopped under writes")
    c.check(snap_line(log, "saved") is not None, "saved under writes", log[-1500:])
    b = start(c, path, shards=2)
    c.check(loads_line(b, "loaded"), "loaded", b.log_text()[-1500:])
    bad = []
    for k, ver in sorted(sent.items()):
        r = get(b, k)
        low = acked.get(k, 0)
        got = parse_racing(k, r.body) if r.status == 200 else None
        if (low and r.status != 200) or (r.status == 200 and (got is None or
                                                               not low <= got <= ver)):
            bad.append((k, r.status, got, low, ver))
    c.check(not bad, "%d keys: each holds a whole value it was sent, no older than the last "
            "acknowledged one" % len(sent), bad[:5])
    c.note("%d keys had a write unacknowledged at the stop" %
           sum(1 for k in sent if sent[k] != acked.get(k)))
    stop(c, b, "daemon after the racing writes")
    os.unlink(path)


# --- other settings -----------------------------------------------------------------------

def test_settings(c, d):
    c.section("restarted with a smaller --max-value, a smaller --memory")
    path = os.path.join(d, "l1.snap")
    small = {"s%d" % i: value("s%d" % i, 10000) for i in range(20)}
    mid = {"mid%d" % i: value("mid%d" % i, 200000) for i in range(5)}
    huge = {"huge%d" % i: value("huge%d" % i, 2 << 20) for i in range(2)}
    a = start(c, path, extra=["--max-value", "4M"])
    put_all(c, a, dict(small, **mid, **huge), "values up to 2 MB")
    stop(c, a, "daemon with --max-value 4M")
    b = start(c, path, extra=["--max-value", "64K"])
    line = loads_line(b, "loaded 20 items")
    c.check(line and "7 over --max-value" in line, "--max-value 64K: the 20 small items "
            "load, the 7 larger are skipped and counted", b.log_text()[-1500:])
    c.check(not served(b, small), "--max-value 64K: the small values come back")
    c.check(all(get(b, k).status == 404 for k in list(mid) + list(huge)),
            "--max-value 64K: the larger ones are not served")
    stop(c, b, "daemon with --max-value 64K")

    many = {"n%05d" % i: value("n%05d" % i, 50000) for i in range(800)}   # 40 MB
    a = start(c, path, extra=["--max-value", "1M"])
    for k, v in many.items():      # in order: n00799 is the newest
        put(a, k, v)
    saved = stats(a)["total"]["items"]
    stop(c, a, "daemon holding 40 MB")
    b = start(c, path, memory="16M", extra=["--max-value", "1M"])
    line = loads_line(b, "items held")
    m = re.search(r"; (\d+) items held", line or "")
    held = stats(b)["total"]["items"]
    c.check(m is not None and int(m.group(1)) == held and 0 < held < saved,
            "--memory 16M: the log says how many items it holds (%s), as /stats does (%d "
            "of %d)" % (m and m.group(1), held, saved), b.log_text()[-1500:])
    wrong = [k for k, v in many.items()
             if (lambda r: r.status != 404 and (r.status != 200 or r.body != v))(get(b, k))]
    c.check(not wrong, "--memory 16M: every key served holds its own value", wrong[:5])
    # the file holds each shard's items oldest first, and its table lists
    # the blocks by age across the shards: the load stores the newest last
    newest = ["n%05d" % i for i in range(760, 800)]
    missing = [k for k in newest if get(b, k).status != 200]
    c.check(not missing, "--memory 16M: the newest items are kept (the last 40 written, "
            "2 MB of the %d held)" % held, missing[:5])
    stop(c, b, "daemon with --memory 16M")
    os.unlink(path)


def main(c):
    d = tempfile.mkdtemp(prefix="ringcache-snaph-")
    try:
        test_tmp_leftovers(c, d)
        test_path_kinds(c, d)
        test_unreadable(c, d)
        test_disk_full(c, d)
        test_read_only(c, d)
        test_signals(c, d)
        test_racing_writes(c, d)
        test_settings(c, d)
    finally:
        for srv in c.servers:
            srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def can_mount():
    """Whether this process may mount a tmpfs (root in a container may not)."""
    d = tempfile.mkdtemp(prefix="snap-mount-probe-")
    try:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d],
                          capture_output=True).returncode != 0:
            return False
        subprocess.run(["umount", d])
        return True
    finally:
        os.rmdir(d)


if __name__ == "__main__":
    if os.geteuid() != 0 or not can_mount():
        print("test_snapshot_hostile: needs to mount a tmpfs (root, outside a container "
              "that forbids it): skipped")
        sys.exit(77)
    run_main("snapshot_hostile", main)
