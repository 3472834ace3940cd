#!/usr/bin/env python3
"""--listen unix:PATH (issue 10): local clients over a Unix socket.

The daemon serves HTTP on a TCP address and a Unix socket at once, and RESP
on a socket (--resp-listen unix:PATH) to real Redis clients (redis-py and
redis-cli).  Checks: the same keys on both; every shard serves the socket
(connections are dealt out, not all left to the shard the kernel woke); the
file's mode and group (--listen-mode, --listen-group); a stale file from a
killed daemon is replaced, a live one or a file that is not a socket is
refused and left alone; the file goes at stop, but not a file someone else
put there since.

usage: test_unix_socket.py [path/to/ringcached]
"""

import os
import shutil
import socket
import stat
import subprocess
import tempfile

from harness import (Conn, Server, hash_seed_flags, request, run_binary, run_main, show,
                     stats)
from resp_harness import redis_py

FLAGS = ["--shards", "2", "--memory", "16M"]


def unix_server(c, path, extra=()):
    return Server(FLAGS + ["--listen", "unix:" + path] + list(extra), checks=c)


def serves_both(c, d):
    c.section("one daemon, a TCP address and a Unix socket: the same keys")
    path = os.path.join(d, "http.sock")
    with unix_server(c, path) as srv:
        c.check(stat.S_ISSOCK(os.lstat(path).st_mode), "the socket file is made")
        c.eq(oct(stat.S_IMODE(os.lstat(path).st_mode)), oct(0o660),
             "its mode is --listen-mode's default, 0660")
        r = request(path, "PUT", "/cache/over-unix", b"written on the socket")
        c.eq(r.status, 201, "PUT over the socket")
        r = request(srv.port, "GET", "/cache/over-unix")
        c.eq((r.status, r.body), (200, b"written on the socket"), "read back over TCP")
        request(srv.port, "PUT", "/cache/over-tcp", b"written on TCP")
        r = request(path, "GET", "/cache/over-tcp")
        c.eq((r.status, r.body), (200, b"written on TCP"), "and the other way round")
        # pipelined, on keys of both shards
        with Conn(path) as conn:
            keys = ["k%d" % i for i in range(32)]
            conn.send(b"".join(b"PUT /cache/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d"
                               b"\r\n\r\n%s" % (k.encode(), len(k), k.encode())
                               for k in keys))
            got = [conn.read_response().status for _ in keys]
            c.eq(set(got), {201}, "32 pipelined PUTs over the socket")
            conn.send(b"".join(b"GET /cache/%s HTTP/1.1\r\nHost: x\r\n\r\n" % k.encode()
                               for k in keys))
            bodies = [conn.read_response().body for _ in keys]
            c.eq(bodies, [k.encode() for k in keys], "read back pipelined, in order")
        r = request(path, "DELETE", "/cache/over-tcp")
        c.eq(r.status, 204, "DELETE over the socket")

        c.section("connections on the socket are spread over the shards")
        conns = []
        try:
            for _ in range(40):
                conn = Conn(path)
                conns.append(conn)
                r = conn.roundtrip("GET", "/health")
                if r.status != 200:
                    c.check(False, "a connection on the socket is served", show(r))
                    break
            per = [s["connections"] for s in stats(srv)["per_shard"]]
        finally:
            for conn in conns:
                conn.close()
        # the stats request itself is one TCP connection more on one shard
        c.check(sum(per) >= 40 and max(per) - min(per) <= 3,
                "40 connections on the socket: every shard holds its share",
                "per shard %r" % per)

        c.section("curl --unix-socket, as the README shows")
        c.check(shutil.which("curl") is not None, "curl is installed (tools/deps.sh)")
        if shutil.which("curl"):
            out = subprocess.run(["curl", "-sS", "--max-time", "5", "--unix-socket", path,
                                  "http://localhost/cache/over-unix"],
                                 capture_output=True, timeout=10)
            c.eq(out.stdout, b"written on the socket", "curl reads the key")
    c.check(not os.path.exists(path), "the socket file is removed at stop")


def mode_and_group(c, d):
    c.section("--listen-mode and --listen-group")
    path = os.path.join(d, "modes.sock")
    gid = 65534 if os.getgid() != 65534 else 1
    with unix_server(c, path, ["--listen-mode", "0600", "--listen-group", str(gid)]):
        st = os.lstat(path)
        c.eq(oct(stat.S_IMODE(st.st_mode)), oct(0o600), "mode 0600")
        if os.geteuid() == 0:
            c.eq(st.st_gid, gid, "group %d" % gid)
        else:
            c.skip("--listen-group to another group", "not root: chown would be refused")
    rc, out = run_binary(FLAGS + ["--listen", "unix:" + path, "--listen-group",
                                  "no-such-group-xyz"] + hash_seed_flags())
    c.check(rc == 2 and "--listen-group" in out and "no such group" in out,
            "an unknown group is refused, naming the flag", "status %r: %r" % (rc, out[-300:]))


def stale_and_live(c, d):
    c.section("a stale socket file is replaced; a live one is refused")
    path = os.path.join(d, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()       # the file stays, nobody listens: what a killed daemon leaves
    with unix_server(c, path) as srv:
        r = request(path, "GET", "/health")
        c.eq(r.status, 200, "the daemon serves on the path of a stale socket")
        c.check("replaced a stale socket file" in srv.log_text(), "and says so in its log")
        # a second daemon on the same path, while the first runs
        rc, out = run_binary(FLAGS + ["--listen", "unix:" + path] + hash_seed_flags())
        c.check(rc == 1 and "already in use" in out and "--listen" in out,
                "a second daemon on the same path is refused", "status %r: %r"
                % (rc, out[-300:]))
        c.eq(request(path, "GET", "/health").status, 200, "and the first still serves")

    live = os.path.join(d, "live.sock")
    other = socket.socket(socket.AF_UNIX)
    other.bind(live)
    other.listen(1)
    try:
        rc, out = run_binary(FLAGS + ["--listen", "unix:" + live] + hash_seed_flags())
        c.check(rc == 1 and "a server listens there" in out,
                "a socket another server listens on is refused", "status %r: %r"
                % (rc, out[-300:]))
        c.check(os.path.exists(live), "and left in place")
    finally:
        other.close()

    plain = os.path.join(d, "plain-file")
    with open(plain, "w") as f:
        f.write("data\n")
    rc, out = run_binary(FLAGS + ["--listen", "unix:" + plain] + hash_seed_flags())
    c.check(rc == 1 and "not a socket" in out, "a path that is a regular file is refused",
            "status %r: %r" % (rc, out[-300:]))
    with open(plain) as f:
        c.eq(f.read(), "data\n", "and the file is untouched")

    rc, out = run_binary(FLAGS + ["--listen", "unix:" + os.path.join(d, "no", "dir.sock")]
                         + hash_seed_flags())
    c.check(rc == 1 and "directory does not exist" in out,
            "a path in a missing directory is refused with the reason",
            "status %r: %r" % (rc, out[-300:]))
    rc, out = run_binary(FLAGS + ["--listen", "unix:relative.sock"])
    c.check(rc == 2 and "--listen" in out, "a relative path is a bad flag value",
            "status %r: %r" % (rc, out[-300:]))


def not_ours_at_stop(c, d):
    c.section("at stop, a file someone else put on the path stays")
    path = os.path.join(d, "moved.sock")
    with unix_server(c, path):
        os.unlink(path)
        with open(path, "w") as f:
            f.write("someone else's\n")
    c.check(os.path.isfile(path), "the other file is still there after the daemon stopped")


def resp_clients(c, d):
    c.section("RESP on a Unix socket, with real Redis clients")
    path = os.path.join(d, "resp.sock")
    with Server(FLAGS + ["--resp-listen", "unix:" + path], checks=c) as srv:
        redis = redis_py()
        if redis is None:
            c.check(False, "python3-redis is installed (tools/deps.sh)")
        else:
            r = redis.Redis(unix_socket_path=path, socket_timeout=5)
            try:
                c.eq(r.set("via-resp", b"v1"), True, "redis-py SET over the socket")
                c.eq(r.get("via-resp"), b"v1", "redis-py GET over the socket")
            finally:
                r.close()
        g = request(srv.port, "GET", "/cache/via-resp")
        c.eq((g.status, g.body), (200, b"v1"), "the key is the same over HTTP")
        c.check(shutil.which("redis-cli") is not None, "redis-cli is installed (tools/deps.sh)")
        if shutil.which("redis-cli"):
            out = subprocess.run(["redis-cli", "-s", path, "GET", "via-resp"],
                                 capture_output=True, timeout=10)
            c.eq(out.stdout.strip(), b"v1", "redis-cli -s reads it")
            info = subprocess.run(["redis-cli", "-s", path, "INFO", "server"],
                                  capture_output=True, timeout=10).stdout
            c.check(b"tcp_port:0\r\n" in info, "INFO says tcp_port:0 (a socket only)",
                    info[:300])


def body(c):
    d = tempfile.mkdtemp(prefix="ringcached-unix-")
    try:
        serves_both(c, d)
        mode_and_group(c, d)
        stale_and_live(c, d)
        not_ours_at_stop(c, d)
        resp_clients(c, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    run_main("test_unix_socket", body)
