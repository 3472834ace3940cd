#!/usr/bin/env python3
"""Differential test of the RESP front end (issue 12): the same command
sequences go to a real redis-server (7.0, --databases 1 so that SELECT means
the same) and to ringcached, and every reply must be the same bytes, errors
included.  What cannot be the same is left out and said why: HELLO's map (a
client id and a version), INFO, COMMAND's tables, CLIENT ID, and TTLs taken
while a second may turn (checked with a tolerance in test_resp.py).

Each sequence runs on a fresh connection to each server after FLUSHALL, so
one sequence's state does not reach the next.  At the end the test prints
which commands were compared and how many replies.

Usage: test_resp_diff.py [path/to/ringcached]
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import free_port, run_main
from resp_harness import Client, RespServer, encode

LONG = "x" * 200

# (name, [command, ...]); a command is a tuple of arguments, or raw bytes
# sent as they are (inline commands, protocol errors: the last of a sequence).
SEQUENCES = [
    ("connection", [
        ("PING",), ("PING", "hello"), ("PING", "a", "b"), ("ECHO", "x\r\ny"), ("ECHO",),
        ("SELECT", "0"), ("SELECT", "1"), ("SELECT", "abc"), ("SELECT",), ("SELECT", "-1"),
        ("QUIT",),
    ]),
    ("unknown", [
        ("FOO",), ("FOO", "a", "b"), ("foo", LONG, LONG), (LONG,), ("", "x"),
        ("GET\r\nX", "a"), ("FOO", "a\x00b", "c"), ("CLIENT",), ("CLIENT", "FOO"),
        ("CLIENT", "SETNAME"), ("CLIENT", "SETNAME", "a b"), ("CLIENT", "SETNAME", "x", "y"),
        ("CLIENT", "SETNAME", "app"), ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", ""),
        ("CLIENT", "GETNAME"), ("CLIENT", "GETNAME", "x"), ("COMMAND", "FOO"),
        ("COMMAND", "COUNT", "x"),
    ]),
    ("hello-auth", [
        ("HELLO", "4"), ("HELLO", "abc"), ("HELLO", "1"), ("HELLO", "3", "FOO"),
        ("HELLO", "2", "AUTH", "someone", "x"), ("HELLO", "2", "SETNAME", "a b"),
        ("AUTH", "x"), ("AUTH", "someone", "x"), ("AUTH", "a", "b", "c"), ("AUTH",),
        ("AUTH", "default", "anything"),
    ]),
    ("set-get", [
        ("SET", "a", "1"), ("GET", "a"), ("GET", "missing"), ("SET", "a", "2", "NX"),
        ("SET", "a", "3", "XX"), ("GET", "a"), ("SET", "a", "4", "NX", "XX"),
        ("SET", "a", "5", "GET"), ("SET", "b", "6", "NX", "GET"), ("SET", "b", "7", "NX", "GET"),
        ("SET", "c", "8", "XX", "GET"), ("SET", "a", "v", "EX", "0"), ("SET", "a", "v", "EX", "-5"),
        ("SET", "a", "v", "EX", "abc"), ("SET", "a", "v", "PX", "0"), ("SET", "a", "v", "EXAT", "0"),
        ("SET", "a", "v", "KEEPTTL", "EX", "10"), ("SET", "a", "v", "EX", "10", "PX", "10"),
        ("SET", "a", "v", "FOO"), ("SET", "a", "v", "EX"), ("SET",), ("SET", "a"),
        ("SET", "a", "v", "EX", "9223372036854775"), ("SET", "a", "v", "PX", "9223372036854775807"),
        ("SET", "a", "v", "EX", "1.5"), ("SET", "a", "v", "ex", "100", "nx"), ("GET", "a"),
        ("SET", "a", "v", "KEEPTTL"), ("SET", "gone", "v", "EXAT", "1"), ("GET", "gone"),
        ("SET", "gone", "v", "PXAT", "1000", "GET"), ("GET", "gone"), ("SET", "e", ""),
        ("GET", "e"), ("SET", "bin", "a\x00b\r\nc"), ("GET", "bin"), ("GET",), ("GET", "a", "b"),
    ]),
    ("getdel-getex", [
        ("SET", "a", "1"), ("GETDEL", "a"), ("GETDEL", "a"), ("GETDEL",), ("GETDEL", "a", "b"),
        ("GETEX", "missing"), ("GETEX", "missing", "EX", "abc"), ("GETEX", "missing", "EX", "0"),
        ("SET", "c", "x"), ("GETEX", "c", "EX", "abc"), ("GETEX", "c", "EX", "0"),
        ("GETEX", "c", "PERSIST"), ("GETEX", "c", "NX"), ("GETEX", "c", "EX", "10", "PX", "10"),
        ("GETEX", "c", "PERSIST", "EX", "10"), ("GETEX", "c", "EX", "10"), ("GETEX", "c"),
        ("GETEX", "c", "PERSIST"), ("TTL", "c"), ("GETEX", "c", "EXAT", "1"), ("GET", "c"),
        ("GETEX",),
    ]),
    ("counters", [
        ("INCR", "i"), ("INCR", "i"), ("INCRBY", "i", "10"), ("INCRBY", "i", "abc"),
        ("INCRBY", "i", "1.5"), ("DECR", "i"), ("DECRBY", "i", "5"),
        ("DECRBY", "i", "-9223372036854775808"), ("INCRBY", "i", "-9223372036854775808"),
        ("SET", "big", "9223372036854775807"), ("INCR", "big"), ("DECR", "big"),
        ("SET", "neg", "-9223372036854775808"), ("DECR", "neg"), ("INCR", "neg"),
        ("SET", "s", "abc"), ("INCR", "s"), ("SET", "z", "007"), ("INCR", "z"),
        ("SET", "sp", " 1"), ("INCR", "sp"), ("SET", "mz", "-0"), ("INCR", "mz"),
        ("SET", "e", ""), ("INCR", "e"), ("INCR",), ("INCRBY", "i"), ("DECR", "a", "b"),
        ("GET", "i"),
    ]),
    ("append-strlen", [
        ("APPEND", "ap", "x"), ("APPEND", "ap", "yz"), ("GET", "ap"), ("STRLEN", "ap"),
        ("STRLEN", "missing"), ("APPEND", "ap", ""), ("APPEND",), ("STRLEN",),
        ("SET", "n", "12"), ("APPEND", "n", "3"), ("INCR", "n"),
    ]),
    ("multi", [
        ("MSET", "k1", "v1", "k2", "v2", "k3", "v3"), ("MGET", "k1", "k2", "missing", "k3"),
        ("MSET", "k1"), ("MSET", "k1", "v", "k2"), ("MGET",), ("EXISTS", "k1", "k2", "k1", "no"),
        ("DEL", "k1", "k1", "no"), ("UNLINK", "k2", "k3"), ("EXISTS", "k1", "k2", "k3"),
        ("DEL",), ("EXISTS",), ("UNLINK",), ("MSET", "a", "1", "a", "2"), ("GET", "a"),
        ("DBSIZE",), ("DBSIZE", "x"),
    ]),
    ("expire", [
        ("MSET", "k1", "v1", "k2", "v2"), ("EXPIRE", "k1", "100"), ("EXPIRE", "missing", "10"),
        ("EXPIRE", "k1", "abc"), ("EXPIRE", "k1", "10", "FOO"), ("EXPIRE", "k1", "10", "NX", "XX"),
        ("EXPIRE", "k1", "10", "GT", "LT"), ("EXPIRE", "k1", "10", "NX"),
        ("EXPIRE", "k1", "1000", "XX"), ("EXPIRE", "k1", "10", "GT"),
        ("EXPIRE", "k2", "10", "XX"), ("EXPIRE", "k2", "10", "GT"), ("EXPIRE", "k2", "10", "LT"),
        ("EXPIRE", "k1", "9223372036854775807"), ("PEXPIRE", "k1", "9223372036854775807"),
        ("EXPIREAT", "k1", "9223372036854775807"), ("PEXPIREAT", "k1", "abc"),
        ("EXPIRE", "k1", "-9223372036854775808"), ("EXPIREAT", "k1", "1"), ("GET", "k1"),
        ("PERSIST", "k2"), ("PERSIST", "missing"), ("PEXPIRE", "k2", "100000"),
        ("PERSIST", "k2"), ("TTL", "k2"), ("TTL", "missing"), ("PTTL", "missing"),
        ("PTTL", "k2"), ("EXPIRE", "k2", "-1"), ("EXISTS", "k2"), ("EXPIRE",), ("TTL",),
        ("PERSIST",), ("EXPIRE", "k"), ("PEXPIREAT", "k"),
    ]),
    ("flush", [
        ("SET", "a", "1"), ("FLUSHALL",), ("DBSIZE",), ("SET", "a", "1"), ("FLUSHALL", "ASYNC"),
        ("FLUSHALL", "SYNC"), ("FLUSHALL", "FOO"), ("FLUSHALL", "SYNC", "x"), ("FLUSHDB",),
        ("FLUSHDB", "async"), ("DBSIZE",),
    ]),
    ("resp3", [
        ("HELLO", "3"), ("GET", "missing"), ("MGET", "missing", "missing"), ("SET", "a", "1"),
        ("SET", "a", "2", "NX"), ("SET", "a", "3", "GET"), ("GETDEL", "missing"),
        ("GETEX", "missing"), ("INCR", "i"), ("CLIENT", "GETNAME"), ("PING",), ("FOO",),
        ("HELLO", "2"), ("GET", "missing"),
    ]),
    ("inline", [
        b"PING\r\n", b"SET x \"a b\\x41\\n\"\r\n", b"GET x\r\n", b"ECHO 'it\\'s'\n",
        b"\r\n", b"  set y  z \r\n", b"GET y\r\n", b"INCR y\r\n", b"FOO bar\r\n",
        b"ECHO \"no end\r\n",
    ]),
    ("protocol-multibulk-len", [("PING",), b"*abc\r\n"]),
    ("protocol-bulk-len", [("PING",), b"*1\r\n$abc\r\n"]),
    ("protocol-bulk-negative", [("PING",), b"*1\r\n$-1\r\n"]),
    ("protocol-expected-dollar", [("PING",), b"*1\r\n:1\r\n"]),
    ("protocol-empty", [b"*0\r\n", b"*-1\r\n", ("PING",)]),
]

# Sent to both, replies not compared: (sequence, command) and why.
NOT_COMPARED = {
    ("resp3", ("HELLO", "3")): "HELLO's map has the client id and the server version",
    ("resp3", ("HELLO", "2")): "the same",
}


class RedisServer:
    """A redis-server with one database, no persistence."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ringcache-diff-redis-")
        self.port = None
        self.proc = None

    def start(self):
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found")
        for _ in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--databases", "1", "--dir", self.dir],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with Client(self.port, timeout=1) as r:
                        if r.cmd("PING") == b"PONG":
                            return self
                except OSError:
                    time.sleep(0.05)
            self.kill()
        raise RuntimeError("redis-server did not start")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def dump_log(self):
        pass

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def replies(port, seq_name, cmds):
    """The raw reply to every command of the sequence on one connection, and
    whether the server closed the connection at the end."""
    out = []
    with Client(port) as r:
        r.cmd("FLUSHALL")
        for cmd in cmds:
            if isinstance(cmd, bytes):
                r.send(cmd)
                if cmd.strip() in (b"", b"*0", b"*-1"):
                    out.append(b"")     # an empty command has no answer
                    continue
            else:
                r.send(encode(*cmd))
            try:
                out.append(r.read_raw())
            except (ConnectionError, OSError) as e:
                out.append(("no reply", type(e).__name__))
                break
        closed = r.closed_by_server(timeout=0.5)
    return out, closed


def body(c, redis):
    srv = RespServer(checks=c).start()
    compared = {}
    for name, cmds in SEQUENCES:
        c.section(name)
        want, want_closed = replies(redis.port, name, cmds)
        got, got_closed = replies(srv.resp_port, name, cmds)
        for i, cmd in enumerate(cmds):
            what = cmd if isinstance(cmd, bytes) else " ".join(a[:40] for a in cmd)
            if not isinstance(cmd, bytes) and (name, cmd) in NOT_COMPARED:
                c.note("not compared: %s (%s)" % (what, NOT_COMPARED[(name, cmd)]))
                continue
            if i >= len(want):
                break
            g = got[i] if i < len(got) else ("no reply",)
            c.eq(g, want[i], "%s: %r" % (name, what))
            if isinstance(cmd, bytes):
                key = "(protocol)" if name.startswith("protocol") else "(inline)"
            else:
                key = cmd[0].upper() if cmd[0].isalpha() and len(cmd[0]) < 20 else "(unknown)"
            compared[key] = compared.get(key, 0) + 1
        c.eq(got_closed, want_closed, "%s: connection %s at the end" %
             (name, "closed" if want_closed else "open"))
    c.section("coverage")
    c.note("%d replies compared byte for byte, by command: %s" % (
        sum(compared.values()), ", ".join("%s %d" % kv for kv in sorted(compared.items()))))
    srv.stop()


def main():
    redis = RedisServer()

    def with_redis(c):
        redis.start()
        body(c, redis)

    run_main("test_resp_diff", with_redis, helpers=[redis])


if __name__ == "__main__":
    main()
