#!/usr/bin/env python3
"""The RESP front end over raw sockets (issue 12, docs/resp.md): one key
space with HTTP, pipelining across shards in the client's order, inline
commands, RESP3, AUTH, the protocol errors and their bounds, commands of
many keys past the connection's bounds, values sent from the store.

Usage: test_resp.py [path/to/ringcached]
"""

import os
import socket
import time

from harness import api_keys_file, keys_per_shard, run_main, stats, wait_for
from resp_harness import Client, RespError, RespServer, Verbatim, encode

NSHARDS = 2


def one_key_space(c, srv):
    c.section("a key written over RESP is the same key over HTTP")
    with srv.client() as r:
        c.eq(r.cmd("SET", "shared", "from-resp"), b"OK", "SET shared over RESP")
        h = srv.request("GET", "/cache/shared")
        c.check(h.status == 200 and h.body == b"from-resp", "GET /cache/shared over HTTP -> 200",
                h)
        srv.request("PUT", "/cache/from-http", b"hello\x00world")
        c.eq(r.cmd("GET", "from-http"), b"hello\x00world", "PUT over HTTP, GET over RESP")
        # a value PUT with a Content-Type and variants: RESP reads its bytes
        body = b"compressible " * 100
        srv.request("PUT", "/cache/typed", body, [("Content-Type", "text/plain")])
        c.eq(r.cmd("GET", "typed"), body, "a value stored with br/gzip variants reads as itself")
        c.eq(r.cmd("DEL", "shared"), 1, "DEL over RESP")
        c.eq(srv.request("GET", "/cache/shared").status, 404, "then HTTP misses it")


def basics(c, srv):
    c.section("commands and their answers")
    with srv.client() as r:
        c.eq(r.cmd("PING"), b"PONG", "PING")
        c.eq(r.cmd("PING", "hi"), b"hi", "PING message")
        c.eq(r.cmd("ECHO", "x\r\ny"), b"x\r\ny", "ECHO keeps CRLF in a bulk string")
        c.eq(r.cmd("GET", "nope"), None, "GET of a missing key: nil")
        c.eq(r.cmd("SET", "k", "v", "NX"), b"OK", "SET NX on a new key")
        c.eq(r.cmd("SET", "k", "w", "NX"), None, "SET NX on an existing key: nil")
        c.eq(r.cmd("SET", "k", "w", "XX", "GET"), b"v", "SET XX GET answers the old value")
        c.eq(r.cmd("GET", "k"), b"w", "and wrote the new one")
        c.eq(r.cmd("INCR", "n"), 1, "INCR of a missing key")
        c.eq(r.cmd("INCRBY", "n", 41), 42, "INCRBY")
        c.eq(r.cmd("DECRBY", "n", 2), 40, "DECRBY")
        c.eq(r.cmd("INCR", "k"), RespError("ERR value is not an integer or out of range"),
             "INCR of a non-integer")
        r.cmd("SET", "big", "9223372036854775807")
        c.eq(r.cmd("INCR", "big"), RespError("ERR increment or decrement would overflow"),
             "INCR past INT64_MAX")
        c.eq(r.cmd("APPEND", "k", "xyz"), 4, "APPEND answers the new length")
        c.eq(r.cmd("STRLEN", "k"), 4, "STRLEN")
        c.eq(r.cmd("GETDEL", "k"), b"wxyz", "GETDEL")
        c.eq(r.cmd("EXISTS", "k"), 0, "GETDEL deleted")
        c.eq(r.cmd("SET", "t", "v", "EX", 100), b"OK", "SET EX")
        c.eq(r.cmd("TTL", "t"), 100, "TTL right after SET EX 100")
        c.within(r.cmd("PTTL", "t"), set(range(99000, 100001)), "PTTL in milliseconds")
        c.eq(r.cmd("EXPIRE", "t", 50, "GT"), 0, "EXPIRE GT with a smaller TTL: 0")
        c.eq(r.cmd("EXPIRE", "t", 500, "GT"), 1, "EXPIRE GT with a larger TTL: 1")
        c.within(r.cmd("TTL", "t"), {499, 500}, "TTL after EXPIRE 500")
        h = srv.request("GET", "/cache/t")
        c.check(h.status == 200 and h.header("Cache-Control") in
                ("max-age=500", "max-age=499"), "HTTP sees the TTL as max-age", h)
        c.eq(r.cmd("PERSIST", "t"), 1, "PERSIST")
        c.eq(r.cmd("TTL", "t"), -1, "no TTL after PERSIST")
        c.eq(r.cmd("TTL", "missing"), -2, "TTL of a missing key: -2")
        c.eq(r.cmd("GETEX", "t", "PX", 20000), b"v", "GETEX PX")
        c.within(r.cmd("TTL", "t"), {19, 20}, "GETEX set the TTL")
        c.eq(r.cmd("EXPIRE", "t", -1), 1, "EXPIRE in the past")
        c.eq(r.cmd("GET", "t"), None, "deletes the key")
        c.eq(r.cmd("SET", "gone", "v", "PXAT", 1), b"OK", "SET PXAT in the past: OK")
        c.eq(r.cmd("EXISTS", "gone"), 0, "and no key")
        c.eq(r.cmd("SELECT", 0), b"OK", "SELECT 0")
        c.eq(r.cmd("SELECT", 1), RespError("ERR DB index is out of range"), "SELECT 1")
        c.eq(r.cmd("CLIENT", "SETNAME", "app-1"), b"OK", "CLIENT SETNAME")
        c.eq(r.cmd("CLIENT", "GETNAME"), b"app-1", "CLIENT GETNAME")
        c.check(isinstance(r.cmd("CLIENT", "ID"), int), "CLIENT ID is an integer")
        c.eq(r.cmd("CLIENT", "SETINFO", "LIB-NAME", "mylib"), b"OK", "CLIENT SETINFO")
        c.eq(r.cmd("FOO", "a", "b"),
             RespError("ERR unknown command 'FOO', with args beginning with: 'a' 'b' "),
             "an unknown command: Redis's words")
        c.eq(r.cmd("GET"), RespError("ERR wrong number of arguments for 'get' command"),
             "wrong arity")
        c.eq(r.cmd("SET", "a", "b", "NX", "XX"), RespError("ERR syntax error"), "SET NX XX")
        c.eq(r.cmd("SET", "a", "b", "EX", 0),
             RespError("ERR invalid expire time in 'set' command"), "SET EX 0")
        c.check(b"redis_version:" in r.cmd("INFO"), "INFO has redis_version")
        # every argument names a section, as in Redis: keyspace as the 20th
        info = r.cmd("INFO", *(["nosuch"] * 19 + ["keyspace"]))
        c.check(b"# Keyspace" in info and b"# Server" not in info,
                "INFO with keyspace as its 20th argument: that section alone", info[:80])
        c.check(isinstance(r.cmd("COMMAND", "COUNT"), int), "COMMAND COUNT")
        docs = r.cmd("COMMAND", "DOCS", "get")
        c.check(isinstance(docs, list) and docs[:1] == [b"get"], "COMMAND DOCS get", docs)
        c.eq(r.cmd("KEY" * 60), RespError("ERR unknown command '%s', with args beginning with: "
                                          % ("KEY" * 60)[:128]), "a long unknown name is cut at 128")
        long_key = "x" * 1025
        c.check(isinstance(r.cmd("SET", long_key, "v"), RespError),
                "a key over 1024 bytes is refused")
        c.eq(r.cmd("QUIT"), b"OK", "QUIT answers OK")
        c.check(r.closed_by_server(), "and closes")


def multi_keys(c, srv):
    c.section("commands of many keys, keys on every shard, answers in the client's order")
    ks = keys_per_shard("mk", NSHARDS, 4)
    keys = [k for i in range(4) for s in range(NSHARDS) for k in [ks[s][i]]]
    with srv.client() as r:
        c.eq(r.cmd("FLUSHALL"), b"OK", "FLUSHALL")
        c.eq(r.cmd("DBSIZE"), 0, "DBSIZE after FLUSHALL")
        args = []
        for i, k in enumerate(keys):
            args += [k, "v%d" % i]
        c.eq(r.cmd("MSET", *args), b"OK", "MSET of %d keys on %d shards" % (len(keys), NSHARDS))
        got = r.cmd("MGET", *(keys + ["absent"]))
        c.eq(got, [b"v%d" % i for i in range(len(keys))] + [None], "MGET in the client's order")
        c.eq(r.cmd("EXISTS", *(keys + keys[:2] + ["absent"])), len(keys) + 2,
             "EXISTS counts repeated keys")
        c.eq(r.cmd("DBSIZE"), len(keys), "DBSIZE")
        c.eq(r.cmd("DEL", *(keys[:3] + keys[:1] + ["absent"])), 3, "DEL counts what it deleted")
        c.eq(r.cmd("UNLINK", *keys[3:]), len(keys) - 3, "UNLINK")
        c.eq(r.cmd("DBSIZE"), 0, "nothing left")
        c.eq(r.cmd("MSET", "a"), RespError("ERR wrong number of arguments for 'mset' command"),
             "MSET with an odd count")

        # pipelined: reads after writes on other shards see them, in order
        batch = b"".join(encode("SET", k, "p%d" % i) + encode("GET", k)
                         for i, k in enumerate(keys))
        r.send(batch)
        out = [r.read() for _ in range(2 * len(keys))]
        c.eq(out, [x for i in range(len(keys)) for x in (b"OK", b"p%d" % i)],
             "SET then GET pipelined on %d keys over both shards" % len(keys))
        r.send(encode("DEL", *keys) + encode("MGET", *keys) + encode("DBSIZE"))
        c.eq([r.read() for _ in range(3)], [len(keys), [None] * len(keys), 0],
             "DEL, MGET and DBSIZE pipelined see the DEL")

    c.section("a command of 20,000 keys passes the connection's bounds in steps")
    n = 20000
    keys = ["big%d" % i for i in range(n)]
    with srv.client(timeout=30) as r:
        args = []
        for k in keys:
            args += [k, k]
        c.eq(r.cmd("MSET", *args), b"OK", "MSET of %d keys" % n)
        got = r.cmd("MGET", *keys)
        c.check(got == [k.encode() for k in keys], "MGET of %d keys, every value in order" % n)
        c.eq(r.cmd("EXISTS", *keys), n, "EXISTS of %d keys" % n)
        c.eq(r.cmd("DEL", *keys), n, "DEL of %d keys" % n)
        c.eq(r.cmd("PING"), b"PONG", "the connection goes on")


def large_values(c, srv):
    c.section("large values: sent from the store, bulk framing intact")
    ks = keys_per_shard("lv", NSHARDS, 1)
    with srv.client(timeout=30) as r:
        for s in range(NSHARDS):
            v = os.urandom(1 << 20)
            c.eq(r.cmd("SET", ks[s][0], v), b"OK", "SET of 1 MiB (shard %d)" % s)
            r.send(encode("GET", ks[s][0]) * 3 + encode("PING"))
            got = [r.read() for _ in range(4)]
            c.check(got[:3] == [v, v, v] and got[3] == b"PONG",
                    "three pipelined GETs of 1 MiB then PING (shard %d)" % s)
        # a GET of a value over 64 KiB another shard holds, pipelined before
        # a write of the key: the value, or the documented TRYAGAIN (it
        # cannot be made again as it was); never the later value
        for s in range(NSHARDS):
            v = b"y" * 70000
            r.send(encode("SET", ks[s][0], v) + encode("GET", ks[s][0]) +
                   encode("SET", ks[s][0], "z") + encode("GET", ks[s][0]))
            got = [r.read() for _ in range(4)]
            c.check(got[0] == b"OK" and got[2:] == [b"OK", b"z"] and
                    (got[1] == v or got[1] == RespError(
                        "TRYAGAIN answer too large to hold behind later requests")),
                    "a large GET pipelined before an overwrite: the old value or TRYAGAIN "
                    "(shard %d)" % s, repr(got[1])[:60])


def inline_commands(c, srv):
    c.section("inline commands (telnet)")
    with srv.client() as r:
        r.send(b"SET inl \"a b\\x41\"\r\nGET inl\nPING\r\n\r\nECHO 'it\\'s'\r\n")
        c.eq([r.read() for _ in range(4)], [b"OK", b"a bA", b"PONG", b"it's"],
             "quotes, escapes, LF alone, a blank line skipped")
        r.send(b"ECHO \"unbalanced\r\n")
        c.eq(r.read(), RespError("ERR Protocol error: unbalanced quotes in request"),
             "unbalanced quotes: protocol error")
        c.check(r.closed_by_server(), "and the connection closes")


def protocol_errors(c, srv):
    c.section("protocol errors: answered, connection closed, others unaffected")
    cases = [
        (b"*abc\r\n", "ERR Protocol error: invalid multibulk length"),
        (b"*1048577\r\n", "ERR Protocol error: invalid multibulk length"),
        (b"*1\r\n$abc\r\n", "ERR Protocol error: invalid bulk length"),
        (b"*1\r\n$-5\r\n", "ERR Protocol error: invalid bulk length"),
        (b"*1\r\n:5\r\n", "ERR Protocol error: expected '$', got ':'"),
        (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16777217\r\n",    # over --max-value
         "ERR Protocol error: invalid bulk length"),
    ]
    with srv.client() as bystander:
        bystander.cmd("SET", "by", "stander")
        for data, want in cases:
            with srv.client() as r:
                r.send(encode("PING") + data)
                got = [r.read(), r.read()]
                c.eq(got, [b"PONG", RespError(want)], "%r -> %s" % (data[:24], want))
                c.check(r.closed_by_server(), "then the connection closes")
        c.eq(bystander.cmd("GET", "by"), b"stander", "another connection is served as before")

    c.section("bounds: nothing allocated from a length before its bytes")
    before = srv.rss()
    socks = []
    for _ in range(50):
        r = Client(srv.resp_port)
        # announces 1M arguments and a 1 MiB bulk, sends 6 bytes of it
        r.send(b"*1048576\r\n$1048576\r\nabcdef")
        socks.append(r)
    time.sleep(0.3)
    grew = srv.rss() - before
    c.check(grew < 32 << 20, "50 connections announcing 1M arguments of 1 MiB: RSS grew %d KiB"
            % (grew >> 10))
    for r in socks:
        r.close()
    with srv.client() as r:
        c.eq(r.cmd("PING"), b"PONG", "still serving")


def cross_protocol(c, srv):
    c.section("an HTTP request on the RESP port is closed unanswered (as Redis does)")
    with srv.client() as r:
        r.send(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 14\r\n\r\nSET evil 1\r\n")
        c.check(r.closed_by_server() and r.buf == b"", "POST: closed, nothing answered")
    with srv.client() as r:
        c.eq(r.cmd("EXISTS", "evil"), 0, "the body's command was not run")


def resp3(c, srv):
    c.section("RESP3 after HELLO 3")
    with srv.client() as r:
        hello = r.cmd("HELLO", 3)
        c.check(isinstance(hello, dict) and hello.get(b"proto") == 3 and
                hello.get(b"server") == b"redis", "HELLO 3 answers a map with proto 3", hello)
        r.send(encode("GET", "missing"))
        c.eq(r.read_raw(), b"_\r\n", "nil is _ in RESP3")
        r.send(encode("MGET", "missing", "missing"))
        c.eq(r.read_raw(), b"*2\r\n_\r\n_\r\n", "MGET's nils too")
        info = r.cmd("INFO", "server")
        c.check(isinstance(info, Verbatim) and b"redis_version" in info,
                "INFO is a verbatim string", info[:40])
        c.eq(r.cmd("HELLO", 4), RespError("NOPROTO unsupported protocol version"), "HELLO 4")
        r.cmd("HELLO", 2)
        r.send(encode("GET", "missing"))
        c.eq(r.read_raw(), b"$-1\r\n", "back to RESP2 after HELLO 2")


def auth(c):
    c.section("AUTH with --api-keys-file")
    with api_keys_file("sekrit-key-1") as path:
        srv = RespServer(["--shards", "2", "--memory", "64M", "--api-keys-file", path],
                         checks=c).start()
        with srv.client() as r:
            c.eq(r.cmd("GET", "k"), RespError("NOAUTH Authentication required."),
                 "GET before AUTH: NOAUTH")
            c.eq(r.cmd("FOO"), RespError("ERR unknown command 'FOO', with args beginning with: "),
                 "an unknown command is refused as such first")
            c.eq(r.cmd("AUTH", "wrong"),
                 RespError("WRONGPASS invalid username-password pair or user is disabled."),
                 "a wrong key")
            c.eq(r.cmd("AUTH", "sekrit-key-1"), b"OK", "AUTH with a key of the file")
            c.eq(r.cmd("SET", "k", "v"), b"OK", "then commands work")
        with srv.client() as r:
            hello = r.cmd("HELLO", 3, "AUTH", "default", "sekrit-key-1")
            c.check(isinstance(hello, dict), "HELLO 3 AUTH default <key>", hello)
            c.eq(r.cmd("GET", "k"), b"v", "authenticated by HELLO")
        with srv.client() as r:
            c.eq(r.cmd("QUIT"), b"OK", "QUIT before AUTH")
        srv.stop()


def stats_counted(c, srv):
    c.section("RESP commands are counted like requests")
    before = stats(srv)["total"]
    with srv.client() as r:
        r.cmd("SET", "s1", "v")
        r.cmd("GET", "s1")
        r.cmd("GET", "s-missing")
        r.cmd("MGET", "s1", "s-missing", "s1")
    after = stats(srv)["total"]
    # and the GET /stats that read `after`
    c.eq(after["requests"] - before["requests"], 5, "4 commands (+ GET /stats) -> requests += 5")
    c.eq(after["hits"] - before["hits"], 3, "3 L1 hits (GET, MGET's two)")


def body(c):
    srv = RespServer(checks=c).start()
    one_key_space(c, srv)
    basics(c, srv)
    multi_keys(c, srv)
    large_values(c, srv)
    inline_commands(c, srv)
    protocol_errors(c, srv)
    cross_protocol(c, srv)
    resp3(c, srv)
    stats_counted(c, srv)
    auth(c)


if __name__ == "__main__":
    run_main("test_resp", body)
