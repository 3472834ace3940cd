#!/usr/bin/env python3
"""SIGHUP reloads --api-keys-file (issue 10; systemd's ExecReload=): the new
keys take effect without a restart and L1 is kept; a file that does not
load (a bad line, no key, missing) keeps the keys in force and the log says
why; reloads under load, with requests checking keys on every shard while
the set is swapped, answer only 200 or 401 and leave no sanitizer report (a
key set freed while a shard still read it would be a use-after-free under
ASan); and a daemon started without --api-keys-file stays open after a
SIGHUP.

usage: test_reload.py [path/to/ringcached]
"""

import os
import secrets
import shutil
import signal
import tempfile
import threading

from harness import Server, run_main, wait_for

FLAGS = ["--shards", "2", "--memory", "16M"]


def new_key(tag):
    return "%s-%s" % (tag, secrets.token_hex(12))


class KeyFile:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ringcached-reload-")
        self.path = os.path.join(self.dir, "keys")

    def replace(self, text):
        """Written aside and renamed over, as an editor or a deploy tool does."""
        tmp = self.path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.rename(tmp, self.path)

    def rewrite(self, text):
        """Truncated and written in place."""
        with open(self.path, "w") as f:
            f.write(text)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def status(srv, key, path="/cache/a"):
    return srv.request("GET", path, headers=[("X-API-Key", key)] if key else None).status


def hup(c, srv, needle, what):
    """SIGHUP, then wait for one more log line holding `needle`."""
    before = srv.log_text().count(needle)
    srv.proc.send_signal(signal.SIGHUP)
    return c.check(wait_for(lambda: srv.log_text().count(needle) > before, 10.0),
                   "%s: the log says '%s'" % (what, needle), srv.log_text()[-400:])


def reloads(c, kf):
    c.section("keys changed by SIGHUP, L1 kept")
    k1, k2, k3, k4 = new_key("one"), new_key("two"), new_key("three"), new_key("four")
    kf.replace(k1 + "\n")
    srv = Server(FLAGS + ["--api-keys-file", kf.path], checks=c).start()
    r = srv.request("PUT", "/cache/a", b"kept value", [("X-API-Key", k1)])
    c.within(r.status, {201, 204}, "PUT with the first key")
    c.eq(status(srv, k2), 401, "the second key is refused before the reload")

    kf.replace("# rotated\n%s\n%s\n" % (k2, k3))
    hup(c, srv, "reloaded --api-keys-file", "file renamed over")
    c.check("2 keys" in srv.log_text().splitlines()[-1], "  ... with 2 keys",
            srv.log_text().splitlines()[-1])
    c.eq(status(srv, k1), 401, "the old key is refused after the reload")
    r = srv.request("GET", "/cache/a", headers=[("X-API-Key", k2)])
    c.check(r.status == 200 and r.body == b"kept value",
            "a new key reads the value stored before the reload (L1 kept)", repr(r))
    c.eq(status(srv, k3), 200, "the other new key is accepted")
    r = srv.request("GET", "/cache/a", headers=[("Authorization", "Bearer " + k3)])
    c.eq(r.status, 200, "  ... as a Bearer token too")

    kf.rewrite(k4 + "\n")
    hup(c, srv, "reloaded --api-keys-file", "file rewritten in place")
    c.eq((status(srv, k4), status(srv, k2)), (200, 401), "the in-place file's key, not the last")

    c.section("a file that does not load keeps the keys in force")
    good = new_key("good")
    bad_cases = [
        ("a bad line", "%s\nnot a key\n" % good, "line 2 is not a valid key"),
        ("a file with no key", "# nothing\n\n", "no keys in the file"),
        ("a file of 1025 keys", "".join("k%d\n" % i for i in range(1024)) + good + "\n",
         "more than 1024 keys"),
    ]
    for what, text, needle in bad_cases:
        kf.replace(text)
        hup(c, srv, needle, what)
        c.check("stay in force" in srv.log_text().splitlines()[-1],
                "%s: the log says the keys loaded before stay in force" % what,
                srv.log_text().splitlines()[-1])
        c.eq(status(srv, k4), 200, "%s: the key in force still works" % what)
        c.eq(status(srv, good), 401, "%s: nothing of the bad file was taken" % what)
    os.unlink(kf.path)
    hup(c, srv, "No such file", "a missing file")
    c.eq(status(srv, k4), 200, "a missing file: the key in force still works")
    c.check(srv.alive(), "the daemon ran through every reload")
    srv.stop()


def under_load(c, kf):
    c.section("30 reloads while 4 clients check keys on both shards (1024 keys of 200 bytes)")
    ka, kb = new_key("a"), new_key("b")
    # The most keys a file may hold, long ones: each check then takes long
    # enough that a set freed too early would be freed under a shard's feet.
    filler = "".join("%s\n" % ("f%03d" % i + secrets.token_hex(98)) for i in range(1023))

    def keys(k):
        return filler + k + "\n"

    kf.replace(keys(ka))
    srv = Server(FLAGS + ["--api-keys-file", kf.path], checks=c).start()
    for i in range(8):
        srv.request("PUT", "/cache/k%d" % i, b"v", [("X-API-Key", ka)])
    stop = threading.Event()
    seen = {}
    errors = []
    lock = threading.Lock()

    def client(n):
        i = 0
        while not stop.is_set():
            key = (ka, kb)[i % 2]
            try:
                with srv.connect() as conn:
                    for _ in range(20):
                        r = conn.roundtrip("GET", "/cache/k%d" % (i % 8),
                                           headers=[("X-API-Key", key)])
                        with lock:
                            seen[r.status] = seen.get(r.status, 0) + 1
            except OSError as e:   # noqa: PERF203 - a failed request is the finding
                with lock:
                    errors.append(repr(e))
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        ok = True
        for i in range(30):
            kf.replace(keys(kb if i % 2 == 0 else ka))
            ok &= hup(c, srv, "reloaded --api-keys-file", "reload %d" % (i + 1)) or False
            if not ok:
                break
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    c.check(sum(seen.values()) > 0, "the clients were answered", seen)
    c.eq(set(seen) - {200, 401}, set(), "every answer was 200 or 401")
    c.eq(errors, [], "no request failed")
    c.check(srv.healthy(), "the daemon serves after 30 reloads under load")
    srv.stop()      # then run_main checks its log for sanitizer reports


def without_keys(c, kf):
    c.section("started without --api-keys-file: SIGHUP adds no keys")
    kf.replace(new_key("x") + "\n")
    srv = Server(FLAGS, checks=c).start()
    c.eq(srv.request("PUT", "/cache/open", b"v").status, 201, "PUT without a key")
    hup(c, srv, "no --api-keys-file", "SIGHUP")
    c.eq(srv.request("GET", "/cache/open").status, 200, "still open after SIGHUP")
    srv.stop()


def body(c):
    kf = KeyFile()
    try:
        reloads(c, kf)
        under_load(c, kf)
        without_keys(c, kf)
    finally:
        kf.remove()


if __name__ == "__main__":
    run_main("test_reload", body)
