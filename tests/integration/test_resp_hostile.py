#!/usr/bin/env python3
"""The RESP front end against hostile clients (docs/resp.md): regression
tests for what such clients found, each named after what it guards.

  - a value answered by the command that deletes it (GETDEL, GETEX with a
    past expiry), sent to a client that reads slowly while other keys are
    written: the answer is the value, not the bytes of later writes
  - an empty value answered from a shard that had built none before (SET
    ... GET, GETDEL): its bulk string ends with CRLF, the next reply intact
  - AUTH with --api-keys-file: a wrong password is refused also on a
    connection that has authenticated before (AUTH, HELLO ... AUTH), and
    nothing but AUTH, HELLO and QUIT works before it (CLIENT included)
  - before AUTH, Redis's bounds on a command (10 arguments, bulk strings
    of 16 KiB): a client without a key cannot make its connection hold a
    command's worth of input (--max-value), nor a few dozen of them the
    --conn-memory that every client shares
  - HELLO's options past the 16th are read like the first ones
  - commands of hundreds of keys on both shards (MGET, DEL, EXISTS, MSET)
    cut short by clients that reset the connection mid-answer: every
    connection and the memory it held are freed
  - COMMAND INFO / COMMAND DOCS of the same name many times: an answer of
    up to --max-value, then an error, not one of a hundred times the
    command's size

Every server here runs with two shards, so keys live on both and commands
travel between them.

Usage: test_resp_hostile.py [path/to/ringcached]
"""

import socket
import struct

from harness import api_keys_file, keys_per_shard, run_main, stats, wait_for
from resp_harness import RespError, RespServer, encode

NSHARDS = 2


def empty_values_on_fresh_shards(c):
    c.section("an empty value answered from a shard that built no value before")
    # a fresh server: no shard has built or copied a value for a RESP
    # command yet, so the copy of an empty one has no address at all
    with RespServer(checks=c) as srv, srv.client() as r:
        keys = keys_per_shard("empty-", NSHARDS, 2)
        for shard in range(NSHARDS):
            k_get, k_del = keys[shard]
            r.cmd("SET", k_get, "")
            r.cmd("SET", k_del, "")
            r.send(encode("SET", k_get, "x", "GET") + encode("PING"))
            want = b"$0\r\n\r\n+PONG\r\n"
            c.eq(received(r, len(want)), want, "shard %d: SET ... GET of an empty value: $0, "
                 "its CRLF, then the next reply" % shard)
            r.send(encode("GETDEL", k_del) + encode("PING"))
            c.eq(received(r, len(want)), want, "shard %d: GETDEL of an empty value: $0, its "
                 "CRLF, then the next reply" % shard)


def received(r, n, timeout=2.0):
    """The next n bytes client r receives, or fewer if no more come within
    `timeout` (a reply shorter than it should be is seen as such)."""
    r.sock.settimeout(timeout)
    try:
        while len(r.buf) < n:
            d = r.sock.recv(65536)
            if not d:
                break
            r.buf += d
    except socket.timeout:
        pass
    out, r.buf = r.buf[:n], r.buf[n:]
    return out


def slow_reader(port):
    """A connection whose receive buffer is as small as the kernel allows:
    an answer of megabytes stays in the server's send for as long as this
    client does not read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    return s


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        d = s.recv(min(1 << 20, n - len(out)))
        if not d:
            break
        out += d
    return bytes(out)


def deleted_value_to_slow_reader(c, srv):
    c.section("a value answered by the command that deletes it, to a slow reader")
    # 8 MB: more than the server's socket send buffer (4 MB at most here)
    # and the client's receive buffer together, so most of the answer is
    # still read from where the value was when the writes below land
    size = 8 << 20
    victim_of = keys_per_shard("victim-", NSHARDS, 2)
    others = keys_per_shard("overwriter-", NSHARDS, 6)
    for shard in range(NSHARDS):
        for op, victim in zip(("GETDEL", "GETEX PXAT 1"), victim_of[shard]):
            with srv.client() as w:
                w.cmd("SET", victim, b"A" * size)
                s = slow_reader(srv.resp_port)
                try:
                    s.sendall(encode(*(op.split()[:1] + [victim] + op.split()[1:])))
                    gone = wait_for(lambda: w.cmd("EXISTS", victim) == 0, 10)
                    c.check(gone, "shard %d: %s deleted the key" % (shard, op))
                    # the store's room goes to other keys of the same shard
                    # (32 MB each): the deleted value's segments are reused
                    for k in others[shard]:
                        w.cmd("SET", k, b"B" * size)
                    head = b"$%d\r\n" % size
                    got = recv_exact(s, len(head) + size + 2)
                finally:
                    s.close()
                body = got[len(head):len(head) + size]
                c.check(got.startswith(head) and body == b"A" * size and got.endswith(b"\r\n"),
                        "shard %d: %s answered the value as it was, to a client that read "
                        "it after other keys were written" % (shard, op),
                        "%d of %d bytes received, %d of them not the value's"
                        % (len(got), len(head) + size + 2,
                           sum(1 for x in body if x != 0x41)))


WRONGPASS = RespError("WRONGPASS invalid username-password pair or user is disabled.")
NOAUTH = RespError("NOAUTH Authentication required.")


def auth_refusals(c):
    c.section("AUTH: a wrong password is refused whatever came before")
    with api_keys_file("hostile-key-1") as path:
        with RespServer(["--shards", str(NSHARDS), "--memory", "64M", "--api-keys-file", path],
                        checks=c) as srv:
            with srv.client() as r:
                for sub in (("SETNAME", "x"), ("GETNAME",), ("ID",), ("HELP",),
                            ("SETINFO", "LIB-NAME", "x")):
                    c.eq(r.cmd("CLIENT", *sub), NOAUTH, "CLIENT %s before AUTH: NOAUTH" % sub[0])
                c.eq(r.cmd("AUTH", "hostile-key-1"), b"OK", "AUTH with the key")
                c.eq(r.cmd("AUTH", "wrong"), WRONGPASS, "then AUTH with a wrong key: WRONGPASS")
                c.eq(r.cmd("AUTH", "default", "wrong"), WRONGPASS,
                     "AUTH default <wrong key>: WRONGPASS")
                c.eq(r.cmd("GET", "k"), None, "the connection stays authenticated (as in Redis)")
            with srv.client() as r:
                c.eq(r.cmd("HELLO", "3", "AUTH", "default", "hostile-key-1", "AUTH", "default",
                           "wrong"), WRONGPASS, "HELLO 3 AUTH <key> AUTH <wrong key>: WRONGPASS")
                r.send(encode("GET", "k"))
                c.eq(r.read_raw(), b"$-1\r\n", "and the protocol stays RESP2")
                c.eq(r.cmd("CLIENT", "SETNAME", "n1"), b"OK", "CLIENT after HELLO ... AUTH")
            unauthenticated_bounds(c, srv)


def unauthenticated_bounds(c, srv):
    c.section("before AUTH: at most 10 arguments, bulk strings of at most 16 KiB")
    refusals = [
        ("11 arguments", encode(*["GET"] * 11),
         b"-ERR Protocol error: unauthenticated multibulk length\r\n"),
        ("*11 alone, its arguments still to come", b"*11\r\n",
         b"-ERR Protocol error: unauthenticated multibulk length\r\n"),
        ("a bulk string of 16,385 bytes announced, none sent",
         b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$16385\r\n",
         b"-ERR Protocol error: unauthenticated bulk length\r\n"),
        ("a SET of 8 MB announced, 100 KB of it sent",
         b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8388608\r\n" + b"v" * 100000,
         b"-ERR Protocol error: unauthenticated bulk length\r\n"),
        ("a length that is none: Redis's error for it first", b"*2\r\n$3\r\nGET\r\n$abc\r\n",
         b"-ERR Protocol error: invalid bulk length\r\n"),
    ]
    for what, data, want in refusals:
        with srv.client() as r:
            try:
                r.send(data)
            except OSError:
                pass    # closed while the rest was being sent: read what came
            c.eq(received(r, len(want)), want, "%s: refused" % what)
            c.check(r.closed_by_server(), "%s: the connection closed" % what)
    with srv.client() as r:
        c.eq(r.cmd("MGET", *["k%d" % i for i in range(9)]), NOAUTH,
             "10 arguments: within the bound (NOAUTH)")
        c.eq(r.cmd("ECHO", "e" * 16384), NOAUTH, "a bulk string of 16 KiB: within it (NOAUTH)")
        c.eq(r.cmd("AUTH", "hostile-key-1"), b"OK", "AUTH")
        c.eq(r.cmd("ECHO", "e" * 100000), b"e" * 100000, "then 100 KB bulk strings pass")
        c.eq(r.cmd("MGET", *["k%d" % i for i in range(20)]), [None] * 20,
             "and commands of 21 arguments")


def hello_options(c, srv):
    c.section("HELLO: every option read, the 17th as the first")
    with srv.client() as r:
        c.eq(r.cmd("HELLO", "2", *(["SETNAME", "a"] * 8), "FOO"),
             RespError("ERR Syntax error in HELLO option 'FOO'"),
             "HELLO 2, 8 SETNAMEs, then FOO: a syntax error")
        c.check(isinstance(r.cmd("HELLO", "2", *(["SETNAME", "a"] * 8), "SETNAME", "last"), list),
                "HELLO 2 with 9 SETNAMEs: answered")
        c.eq(r.cmd("CLIENT", "GETNAME"), b"last", "the 9th SETNAME (argument 19) set the name")


def command_answers_bounded(c):
    c.section("COMMAND INFO and DOCS of many names: the answer held to --max-value")
    # "client" costs 12 bytes to ask and about 700 (INFO) or 1,000 (DOCS)
    # bytes to answer: 80,000 of them fit a command under --max-value 1M and
    # would be answered with 60-80 MB
    n = 80000
    with RespServer(["--shards", str(NSHARDS), "--memory", "64M", "--max-value", "1M"],
                    checks=c) as srv:
        for sub in ("INFO", "DOCS"):
            with srv.client(timeout=20) as r:
                c.check(isinstance(r.cmd("COMMAND", sub, "get", "client"), (list, dict)),
                        "COMMAND %s of two names: answered" % sub)
                r.send(encode("COMMAND", sub, *(["client"] * n)))
                first = r._line()
                c.eq(first, b"-ERR the answer of 'command|%s' is larger than --max-value: "
                     b"ask for fewer commands" % sub.lower().encode(),
                     "COMMAND %s of 'client' x %d: an error, not a 60 MB answer" % (sub, n))
                if first.startswith(b"-"):
                    c.eq(r.cmd("PING"), b"PONG", "the connection still serves after it")


def reset(sock):
    """Closes with a reset (SO_LINGER 0), as a client that crashes would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def fan_outs_cut_short(c, srv):
    c.section("commands of many keys on both shards, reset mid-answer: all freed")
    keys = ["fan-%d" % i for i in range(300)]
    big = b"f" * 20000     # sent from the store, pinned while the answer is out
    with srv.client() as r:
        c.eq(r.cmd("MSET", *[x for k in keys for x in (k, big)]), b"OK", "MSET of 300 keys")
    for i in range(30):
        r = srv.client()
        part = keys[i:] + keys[:i]
        r.send(encode("MGET", *part) + encode("EXISTS", *part) + encode("DEL", *part[:100]) +
               encode("MSET", *[x for k in part[:100] for x in (k, big)]) + encode("MGET", *part))
        if i % 3:
            r.sock.recv(1000 * i + 1)   # part of the first answer read
        reset(r.sock)

    def settled():
        t = stats(srv)["total"]
        return t["connections"] == 1 and t["conn_memory"] == 0   # the /stats request's own
    c.check(wait_for(settled, 20), "every connection freed, no connection memory held",
            stats(srv)["total"])
    with srv.client() as r:
        got = r.cmd("MGET", *keys)
        c.check(isinstance(got, list) and len(got) == 300 and
                all(v is None or v == big for v in got),
                "MGET of the 300 keys afterwards: each the value or nil")


def body(c):
    empty_values_on_fresh_shards(c)
    auth_refusals(c)
    command_answers_bounded(c)
    srv = RespServer(checks=c).start()
    hello_options(c, srv)
    fan_outs_cut_short(c, srv)
    deleted_value_to_slow_reader(c, srv)


if __name__ == "__main__":
    run_main("test_resp_hostile", body)
