#!/usr/bin/env python3
"""Warm restarts (--snapshot PATH, docs/operations.md), with the real daemon:
saved at SIGTERM, loaded at start, and refused when it must be.

- what comes back: values (empty, binary keys, a value larger than a
  snapshot block), Content-Types (built-in and custom), the br and gzip
  variants with negotiation (the same encoded bytes, not made again), ETags
  (same content half; the write's stamp is new after a reload), TTLs that
  kept counting while the daemon was down, and expired items gone; loaded
  into another shard count under another (random) hash seed;
- a snapshot is used once: removed after the load, so a daemon killed later
  does not come back with data it had since deleted;
- refused, with a message, and the daemon starts empty: a corrupt file (one
  byte changed in a block), a truncated one, a foreign one (never replaced
  at stop either).

usage: test_snapshot.py [path/to/ringcached]
"""

import os
import re
import shutil
import tempfile
import time

from harness import WRITE_OK, Server, run_main, show, stats, wait_for
from content_codings import json_value, settle

MAGIC = b"\x89RCSNAP\n"


def flags(path, shards):
    return ["--shards", str(shards), "--memory", "64M", "--snapshot", path]


def start(c, path, shards):
    # a random key hash seed per start: items must reach their new owner
    return Server(flags(path, shards), checks=c, hash_seed="random").start()


def stop(c, srv, what):
    """SIGTERM; checks a clean exit and returns the log."""
    rc = srv.stop()
    c.check(rc == 0, "%s: exit status 0 after SIGTERM" % what, "status %r" % rc)
    return srv.log_text()


def put(srv, key, value, ctype=None, query=""):
    h = [("Content-Type", ctype)] if ctype else []
    return srv.request("PUT", "/cache/" + key + query, value, h)


def get(srv, key, ae=None):
    h = [("Accept-Encoding", ae)] if ae else []
    return srv.request("GET", "/cache/" + key, headers=h)


def max_age(r):
    m = re.search(r"max-age=(\d+)", r.header("Cache-Control") or "")
    return int(m.group(1)) if m else None


def content_half(tag):
    """The content-hash half of an ETag with its coding suffix, without the
    write's stamp (docs/store.md)."""
    return tag[:9] + tag[17:] if tag else tag


def log_line(log, word):
    for ln in log.splitlines():
        if "snapshot" in ln and word in ln:
            return ln
    return None


# key -> (value, Content-Type or None, query)
def dataset():
    big = bytes((i * 7 + 3) & 0xff for i in range(3 << 20))   # > one 1 MiB block
    d = {
        "plain": (b"hello", None, ""),
        "empty": (b"", None, ""),
        "json": (json_value(20000), "application/json", ""),
        "custom-type": (b"<x>" * 200, "text/x-custom; version=2", ""),
        "bin%00key%FF": (b"\x00\x01\x02", "application/octet-stream", ""),
        "big": (big, None, ""),
        "ttl-long": (b"counts down", None, "?ttl=300"),
        "ttl-short": (b"gone after the restart", None, "?ttl=1"),
    }
    for i in range(500):
        d["k%d" % i] = (b"value-%d" % i * (1 + i % 7), None, "")
    return d


def test_round_trip(c, path):
    c.section("save at SIGTERM, load at start: 2 shards -> 3, new hash seed")
    data = dataset()
    a = start(c, path, 2)
    for k, (v, ct, q) in data.items():
        r = put(a, k, v, ct, q)
        if r.status not in WRITE_OK:
            c.check(False, "PUT %s" % k, show(r))
    # the variants are made off the shard, after the PUT's answer (docs/fastlane.md)
    c.check(settle(a), "the compression workers made every variant")
    before = {}
    for k in data:
        for ae in (None, "br", "gzip"):
            before[(k, ae)] = get(a, k, ae)
    t_put = time.monotonic()
    age0 = max_age(before[("ttl-long", None)])
    c.check(before[("json", "br")].header("Content-Encoding") == "br" and
            before[("json", "gzip")].header("Content-Encoding") == "gzip",
            "the JSON value has br and gzip variants before the restart",
            show(before[("json", "br")]))
    items0 = stats(a)["total"]["items"]
    log = stop(c, a, "first daemon")
    line = log_line(log, "saved")
    m = re.search(r"saved (\d+) items", line or "")
    # all it held, but for the 1 s TTL item if that expired meanwhile
    c.check(m is not None and int(m.group(1)) in (items0, items0 - 1),
            "the log says it saved the %d items it held" % items0, line or log[-2000:])
    with open(path, "rb") as f:
        c.check(f.read(8) == MAGIC, "%s holds a snapshot" % path)
    c.check(not os.path.exists(path + ".tmp"), "no temporary file is left")

    # the 1 s TTL passes while the daemon is down (given 1 s, it lives at
    # most 2): wait for that condition, not for a speed
    while time.monotonic() < t_put + 2.5:
        time.sleep(0.1)
    b = start(c, path, 3)
    # everything but the 1 s TTL item (gone at the save or at the load)
    want = "loaded %d items" % (len(data) - 1)
    c.check(wait_for(lambda: log_line(b.log_text(), want), 5.0),
            "the log says it loaded every item but the expired one", b.log_text()[-2000:])
    c.check(not os.path.exists(path), "the snapshot is removed once loaded (used once)")
    bad = []
    for k, (v, ct, q) in data.items():
        if k == "ttl-short":
            continue
        for ae in (None, "br", "gzip"):
            r0, r = before[(k, ae)], get(b, k, ae)
            if (r.status != 200 or r.body != r0.body or r.header("X-Cache") != "HIT" or
                    r.header("Content-Type") != r0.header("Content-Type") or
                    r.header("Content-Encoding") != r0.header("Content-Encoding") or
                    content_half(r.header("ETag")) != content_half(r0.header("ETag"))):
                bad.append((k, ae, show(r)[:200], show(r0)[:200]))
    c.check(not bad, "every value comes back from L1 (HIT) with the same bytes, Content-Type, "
            "coding and ETag content hash, for identity, br and gzip (%d keys)" % (len(data) - 1),
            bad[:3])
    r = get(b, "plain")
    r0 = before[("plain", None)]
    c.check(r.header("ETag") != r0.header("ETag"),
            "a value without variants: the ETag's stamp half is new after the reload "
            "(docs/store.md)", show(r))
    r = get(b, "json", "br")
    r0 = before[("json", "br")]
    c.check(r.header("ETag") == r0.header("ETag"),
            "a value with variants keeps its whole ETag: the write's stamp travels in its "
            "blob (docs/fastlane.md)", show(r))
    r = get(b, "ttl-short")
    c.check(r.status == 404, "the item whose TTL passed while the daemon was down is gone",
            show(r))
    r = get(b, "ttl-long")
    down = time.monotonic() - t_put
    age = max_age(r)
    c.check(r.status == 200 and age is not None and age0 is not None and
            age <= age0 - int(down) + 1 and age > 0,
            "the TTL kept counting while the daemon was down: max-age %r then, %r after %.1f s"
            % (age0, age, down), show(r))
    c.eq(stats(b)["total"]["items"], len(data) - 1, "/stats counts the loaded items")
    return b, data


def test_used_once(c, path, b, data):
    c.section("a snapshot is used once: a daemon killed later starts empty")
    r = b.request("DELETE", "/cache/plain")
    c.check(r.status == 204, "DELETE plain after the load", show(r))
    b.kill()            # no save: a crash
    c.check(not os.path.exists(path), "nothing was saved by the killed daemon")
    d = start(c, path, 2)
    c.check(wait_for(lambda: log_line(d.log_text(), "none yet"), 5.0),
            "the next start finds no snapshot", d.log_text()[-1500:])
    r = get(d, "plain")
    c.check(r.status == 404, "the deleted key does not come back", show(r))
    r = get(d, "k1")
    c.check(r.status == 404, "nothing comes back", show(r))
    for k in ("k1", "k2", "k3"):
        put(d, k, data[k][0])
    log = stop(c, d, "daemon after the crash")
    c.check(log_line(log, "saved 3 items") is not None, "it saved the 3 items it held",
            log[-1500:])


def refused_start(c, path, what, want):
    """Starts a daemon on a bad file: it must say `want`, serve, and be
    empty."""
    s = start(c, path, 2)
    c.check(wait_for(lambda: log_line(s.log_text(), want), 5.0),
            "%s: the log says %r" % (what, want), s.log_text()[-1500:])
    r = get(s, "k1")
    c.check(r.status == 404, "%s: the daemon serves, empty" % what, show(r))
    c.eq(stats(s)["total"]["items"], 0, "%s: /stats items" % what)
    return s


def test_refused(c, path):
    c.section("corrupt, truncated and foreign files are refused; the daemon starts empty")
    good = path + ".good"
    a = start(c, path, 2)
    for i in range(3000):
        put(a, "k%d" % i, b"x" * (100 + i % 900))
    stop(c, a, "daemon writing the file to damage")
    shutil.copyfile(path, good)
    size = os.path.getsize(good)

    # one byte of a block (the middle of the file) changed
    with open(good, "rb") as f:
        img = bytearray(f.read())
    img[size // 2] ^= 0x40
    with open(path, "wb") as f:
        f.write(img)
    s = refused_start(c, path, "a byte changed in a block", "refused (block")
    put(s, "after", b"1")
    log = stop(c, s, "daemon that refused a corrupt file")
    c.check(log_line(log, "saved 1 items") is not None,
            "at stop it replaces the corrupt file with its own", log[-1500:])
    with open(path, "rb") as f:
        c.check(f.read(8) == MAGIC, "the file is a snapshot again")

    # truncated
    with open(good, "rb") as f:
        img = f.read()
    with open(path, "wb") as f:
        f.write(img[:size * 2 // 3])
    s = refused_start(c, path, "a truncated file", "refused (truncated")
    stop(c, s, "daemon that refused a truncated file")

    # another format version (byte 8, the version, changed)
    img = bytearray(img)
    img[8] = 9
    with open(path, "wb") as f:
        f.write(img)
    s = refused_start(c, path, "a file of another format version", "format version 9")
    stop(c, s, "daemon that refused another version")

    # foreign: not ours, so never replaced
    foreign = b"# not a snapshot\nsomebody's file\n"
    with open(path, "wb") as f:
        f.write(foreign)
    s = refused_start(c, path, "a foreign file", "not a ringcached snapshot")
    put(s, "x", b"y")
    log = stop(c, s, "daemon that found a foreign file")
    c.check(log_line(log, "not saved") is not None, "at stop it says it does not save",
            log[-1500:])
    with open(path, "rb") as f:
        c.eq(f.read(), foreign, "the foreign file is left as it was")
    os.unlink(good)


def test_shards_count(c, path):
    c.section("a file saved by 3 shards loads into 1")
    a = start(c, path, 3)
    for i in range(2000):
        put(a, "s%d" % i, b"v%d" % i)
    stop(c, a, "3-shard daemon")
    b = start(c, path, 1)
    bad = [i for i in range(2000) if get(b, "s%d" % i).body != b"v%d" % i]
    c.check(not bad, "every key of the 3-shard daemon is served by the 1-shard one",
            bad[:5])
    stop(c, b, "1-shard daemon")


def main(c):
    d = tempfile.mkdtemp(prefix="ringcache-snap-")
    try:
        path = os.path.join(d, "l1.snap")
        b, data = test_round_trip(c, path)
        test_used_once(c, path, b, data)
        test_refused(c, path)
        os.unlink(path)
        test_shards_count(c, path)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    run_main("snapshot", main)
