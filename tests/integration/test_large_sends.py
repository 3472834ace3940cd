#!/usr/bin/env python3
"""Large values are sent from the store, not copied (issue 8): a client
still receiving a value gets exactly the value it asked for, even when the
key is overwritten, deleted, and its memory evicted and written over
meanwhile; and those writes are not held up by it.

A slow client (small receive buffer) pipelines GETs of two 4 MiB values,
one on each shard's key (so one is answered across the rings whichever
shard holds the connection).  While it has read only part of the first
answer, other connections overwrite and delete both keys and write enough
other values to evict everything the store held; all of those writes are
answered before the slow client is done, which shows they did not wait for
it.  Then it reads the rest: the first answer is byte for byte the value it
was receiving; the second, not begun when the writes came, may show them
(the value, the overwrite, or 404) but is never a mix.

The same runs with --send-zc-min (zero-copy sends, IORING_OP_SENDMSG_ZC):
the kernel reads the store's pages until its notification, so the pins are
held until then (/stats sends_zc shows the sends were zero-copy).  And a
client that resets mid-send of a zero-copy value while its key is
overwritten: its connection and every pin are let go (/stats send_pins
back to 0; under ASan no leak), and the server answers on; one that reads
nothing is let go after --idle-timeout, though it stays connected; one that
reads slowly but steadily gets every byte, though its connection ended.
Many clients resetting mid-send give back every pin and byte of
connection memory; a stop while pages are held is clean (ASan).

usage: test_large_sends.py [path/to/ringcached]
"""

import http.client
import json
import os
import signal
import socket

import struct
import tempfile
import threading
import time

from harness import (Server, build_request, keys_per_shard, request, run_main, stats,
                     wait_for)
from resp_harness import RespServer

NSHARDS = 2
VALUE = 4 << 20
ZC = ["--send-zc-min", "64K"]


def body(c, zc):
    c.section("a slow reader's value through overwrite, delete and eviction%s"
              % (", sent zero-copy" if zc else ""))
    # 48 MiB a shard: a quarter of its segments (store_pin's bound) holds a
    # 4 MiB value, so it is sent from the store, not copied
    flags = ["--shards", str(NSHARDS), "--memory", "96M", "--max-value", "4M"] + (ZC if zc else [])
    with Server(flags, checks=c).start() as srv:
        keys = keys_per_shard("big-", NSHARDS, 1)
        values = {s: os.urandom(VALUE) for s in keys}
        for s, ks in keys.items():
            c.eq(srv.request("PUT", "/cache/" + ks[0], values[s], timeout=30).status, 201,
                 "PUT 4 MiB at %s (shard %d)" % (ks[0], s))

        slow = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        # zero-copy sends into a 16 KiB window crawl on loopback (~150 KB/s
        # here: 50 s for the two values), so that variant reads through a
        # wider one; 4 MiB values still take many sends either way
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, (256 if zc else 16) << 10)
        slow.sendall(b"".join(build_request("GET", "/cache/" + ks[0]) for ks in keys.values()))
        got = bytearray()
        while len(got) < 64 << 10:          # a little of the first answer
            got += slow.recv(16 << 10)
        c.check(wait_for(lambda: stats(srv)["total"]["send_pins"] > 0, 10),
                "the value being sent is pinned in its store (sent by reference)")

        other = os.urandom(VALUE)
        filler = os.urandom(1 << 20)
        acked = 0
        for s, ks in keys.items():
            acked += srv.request("PUT", "/cache/" + ks[0], other, timeout=30).status == 204
            acked += srv.request("DELETE", "/cache/" + ks[0], timeout=30).status == 204
        for i in range(200):                 # 200 MiB through a 96 MiB store
            acked += srv.request("PUT", "/cache/fill-%d" % i, filler, timeout=30).status == 201
        doc = stats(srv)
        c.eq(acked, 2 * NSHARDS + 200, "every overwrite, delete and filler PUT answered while "
             "the slow client has read only %d KiB" % (len(got) >> 10))
        c.check(doc["total"]["evictions"] > 0, "the store evicted meanwhile",
                "evictions %d" % doc["total"]["evictions"])

        slow.settimeout(30)
        answers = read_answers(slow, bytes(got), 2)
        slow.close()
        c.eq([st for st, _ in answers][:1], [200], "the answer being received is a 200")
        order = list(keys)
        if answers:
            c.check(answers[0][1] == values[order[0]],
                    "it is byte for byte the value asked for, though its key was overwritten, "
                    "deleted and its memory evicted meanwhile")
        if len(answers) == 2:
            st, b2 = answers[1]
            c.check((st == 200 and b2 in (values[order[1]], other)) or st == 404,
                    "the next one (not begun when the writes came) is the value, the "
                    "overwrite, or 404: never a mix", "%d, %d bytes" % (st, len(b2)))
        else:
            c.check(False, "both answers arrive", repr([(st, len(b)) for st, b in answers]))
        doc = stats(srv)
        if zc:
            c.check(doc["total"]["sends_zc"] > 0, "the values were sent zero-copy",
                    "sends_zc %d" % doc["total"]["sends_zc"])
        else:
            c.eq(doc["total"]["sends_zc"], 0, "no zero-copy send without --send-zc-min")
        c.check(wait_for(lambda: stats(srv)["total"]["send_pins"] == 0, 10),
                "every pin is let go once the answers are read",
                "send_pins %d" % stats(srv)["total"]["send_pins"])


def reset_mid_send(c):
    c.section("a client resets mid-send of a zero-copy value: its pins are let go")
    flags = ["--shards", "1", "--memory", "96M", "--max-value", "4M"] + ZC
    with Server(flags, checks=c).start() as srv:
        value = os.urandom(VALUE)
        c.eq(srv.request("PUT", "/cache/big", value, timeout=30).status, 201, "PUT 4 MiB")
        for round in range(3):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(build_request("GET", "/cache/big") * 2)
            got = 0
            while got < 64 << 10:
                got += len(s.recv(16 << 10))
            c.check(wait_for(lambda: stats(srv)["total"]["send_pins"] > 0, 10),
                    "round %d: the value being sent is pinned" % round)
            srv.request("PUT", "/cache/big", os.urandom(VALUE), timeout=30)
            # SO_LINGER 0: close() sends a reset, not a FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            c.check(wait_for(lambda: stats(srv)["total"]["connections"] == 1, 10),  # /stats own
                    "round %d: the reset connection is freed" % round,
                    "connections %d" % stats(srv)["total"]["connections"])
            c.eq(stats(srv)["total"]["send_pins"], 0, "round %d: no pin left" % round)
        doc = stats(srv)
        c.check(doc["total"]["sends_zc"] > 0, "the values were sent zero-copy",
                "sends_zc %d" % doc["total"]["sends_zc"])
        r = srv.request("GET", "/cache/big", timeout=30)
        c.eq(r.status, 200, "the server answers on")


def many_resets(c):
    """Many clients each ask for zero-copy values (both shards' keys,
    pipelined), read a little and reset: every connection, pin and byte of
    connection memory they held is let go (zero-copy holds keep buffers
    past the sends' completions; /stats conn_memory counts them)."""
    c.section("many clients reset mid-send of zero-copy values: pins and memory return to 0")
    flags = ["--shards", str(NSHARDS), "--memory", "96M", "--max-value", "4M"] + ZC
    with Server(flags, checks=c).start() as srv:
        keys = keys_per_shard("big-", NSHARDS, 1)
        for s, ks in keys.items():
            c.eq(srv.request("PUT", "/cache/" + ks[0], os.urandom(VALUE), timeout=30).status,
                 201, "PUT 4 MiB at %s (shard %d)" % (ks[0], s))
        # conn_memory is published per sweep: the PUTs' connections first go
        c.check(wait_for(lambda: stats(srv)["total"]["conn_memory"] == 0, 10),
                "no connection memory held before")
        base = stats(srv)["total"]
        socks = []
        for i in range(24):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(b"".join(build_request("GET", "/cache/" + ks[0])
                               for ks in keys.values()) * 2)
            socks.append(s)
        for s in socks:
            s.settimeout(30)
            got = 0
            while got < 32 << 10:
                got += len(s.recv(16 << 10))
        held = lambda t: t["send_pins"] > 0 and t["conn_memory"] > 0
        c.check(wait_for(lambda: held(stats(srv)["total"]), 10),     # conn_memory: per sweep
                "the values being sent are pinned, and their connections hold memory",
                repr({k: stats(srv)["total"][k] for k in ("send_pins", "conn_memory")}))
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

        def back():
            t = stats(srv)["total"]
            return t["connections"] == 1 and t["send_pins"] == 0 and t["conn_memory"] == 0
        c.check(wait_for(back, 15), "every connection, pin and byte of connection memory is "
                "let go", repr({k: (base[k], stats(srv)["total"][k])
                                for k in ("connections", "send_pins", "conn_memory")}))
        c.check(stats(srv)["total"]["sends_zc"] > base["sends_zc"], "the sends were zero-copy")
        c.eq(srv.request("GET", "/cache/" + keys[0][0], timeout=30).status, 200,
             "the server answers on")


def non_reader(srv, n):
    """A client that asks for /cache/big n times and reads nothing (a 4 KiB
    receive window)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.port))
    s.sendall(build_request("GET", "/cache/big") * n)
    return s


def pinned_by_non_reader(c, srv, n):
    """PUTs a 4 MiB value and returns the socket of a client that asked for
    it `n` times and reads nothing, once the value being sent is pinned."""
    c.eq(srv.request("PUT", "/cache/big", os.urandom(VALUE), timeout=30).status, 201,
         "PUT 4 MiB")
    s = non_reader(srv, n)
    c.check(wait_for(lambda: stats(srv)["total"]["send_pins"] > 0, 10),
            "the value being sent is pinned")
    return s


def stop_while_held(c):
    """SIGTERM while a client that reads nothing holds zero-copy sends'
    pages: the server stops cleanly (its notifications are abandoned with
    the ring, the holds freed; under ASan nothing leaks or is used after
    being freed)."""
    c.section("stop while zero-copy pages are held by a client that reads nothing")
    flags = ["--shards", "1", "--memory", "96M", "--max-value", "4M"] + ZC
    with Server(flags, checks=c).start() as srv:
        s = pinned_by_non_reader(c, srv, 2)
        rc = srv.stop()
        c.check(rc in (0, -signal.SIGTERM), "it stops on SIGTERM", "status %s" % rc)
        c.check(not srv.sanitizer_reports(), "no sanitizer report",
                "\n".join(srv.sanitizer_reports()[:5]))
        s.close()


def unix_copies(c):
    """A Unix socket cannot send zero-copy (the kernel says EOPNOTSUPP): its
    clients are sent the same bytes by a copying sendmsg, and that refusal
    does not turn zero-copy off for the TCP clients."""
    c.section("--send-zc-min with a Unix socket: its answers copy, TCP's stay zero-copy")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "http.sock")
        flags = ["--shards", "1", "--memory", "96M", "--max-value", "4M",
                 "--listen", "unix:" + path] + ZC
        with Server(flags, checks=c).start() as srv:
            value = os.urandom(1 << 20)
            c.eq(srv.request("PUT", "/cache/v", value, timeout=30).status, 201, "PUT 1 MiB")
            before = stats(srv)["total"]["sends_zc"]
            r = request(path, "GET", "/cache/v")
            c.check(r.status == 200 and r.body == value, "the value over the Unix socket",
                    "%d, %d bytes" % (r.status, len(r.body)))
            c.eq(stats(srv)["total"]["sends_zc"], before, "sent without zero-copy")
            r = srv.request("GET", "/cache/v", timeout=30)
            c.check(r.status == 200 and r.body == value, "the value over TCP")
            c.eq(stats(srv)["total"]["sends_zc"], before + 1, "sent zero-copy")
            c.check("send-zc-min" not in srv.log_text(), "nothing refused in the log")


def never_reads(c):
    """A client that asks for a value sent zero-copy and then reads nothing
    (its window shut) but stays connected: after --idle-timeout the server
    ends the connection, and since the kernel would keep the zero-copy pages
    for as long as the peer acknowledges its zero-window probes, the server
    drops what the socket holds; the connection and its pins are let go."""
    c.section("a client that never reads a zero-copy value: let go after --idle-timeout")
    flags = ["--shards", "1", "--memory", "96M", "--max-value", "4M", "--idle-timeout", "1"] + ZC
    with Server(flags, checks=c).start() as srv:
        s = pinned_by_non_reader(c, srv, 1)
        def gone():
            t = stats(srv)["total"]
            return t["send_pins"] == 0 and t["connections"] == 1    # /stats' own
        c.check(wait_for(gone, 15), "the connection and its pins are let go while the client "
                "is still connected", repr({k: stats(srv)["total"][k]
                                           for k in ("send_pins", "connections", "sends_zc")}))
        s.close()
        c.eq(srv.request("GET", "/cache/big", timeout=30).status, 200, "the server answers on")


def slow_reader_kept(c, close):
    """A client that reads a zero-copy answer slowly but steadily, taking
    longer than --idle-timeout (and the linger after "Connection: close")
    for what sits in the sockets after the last send completed: the
    connection is ended meanwhile, but its socket is not reset while the
    peer is still acknowledging bytes.  Copying sends behave so (a closed
    socket delivers what it holds), and a review found the sweep's reset
    cutting such a reader off --idle-timeout after the last send.

    The client reads at full speed until /stats sent_bytes shows the whole
    answer sent (minus /stats' own answers), so no send is in flight while
    it reads slowly (the --idle-timeout of a send in flight is another
    matter), then reads what is left over 4 s."""
    c.section("a slow but steady reader of a zero-copy answer gets all of it%s"
              % (" (Connection: close)" if close else ""))
    flags = ["--shards", "1", "--memory", "96M", "--max-value", "4M", "--idle-timeout", "1"] + ZC
    with Server(flags, checks=c).start() as srv:
        value = os.urandom(VALUE)
        c.eq(srv.request("PUT", "/cache/big", value, timeout=30).status, 201, "PUT 4 MiB")
        own = [0]

        def sent():
            # /stats counts the answers sent before this one
            r = srv.request("GET", "/stats")
            n = json.loads(r.body.decode())["total"]["sent_bytes"] - own[0]
            own[0] += len(r.raw_head) + len(r.body)
            return n
        base = sent()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
        s.connect(("127.0.0.1", srv.port))
        s.settimeout(30)
        s.sendall(build_request("GET", "/cache/big",
                                headers=[("Connection", "close")] if close else None))
        got, err = bytearray(), None
        head = None
        try:
            while head is None or sent() - base < head + VALUE:
                chunk = s.recv(64 << 10)
                if not chunk:
                    break
                got += chunk
                if head is None and b"\r\n\r\n" in got:
                    head = got.index(b"\r\n\r\n") + 4
            left = (head or 0) + VALUE - len(got)
            c.check(left > 0, "the answer is all sent while some of it is still to read",
                    "%d bytes left" % left)
            pause = 4.0 * (16 << 10) / max(left, 1)
            while len(got) < (head or 0) + VALUE:
                chunk = s.recv(16 << 10)
                if not chunk:
                    break
                got += chunk
                time.sleep(pause)
        except OSError as e:
            err = e
        s.close()
        whole = head is not None and got[head:head + VALUE] == value
        c.check(err is None and got.startswith(b"HTTP/1.1 200") and whole,
                "the whole value arrives, though the connection ended meanwhile",
                "%s after %d bytes" % (err, len(got)))
        c.check(wait_for(lambda: stats(srv)["total"]["send_pins"] == 0, 10),
                "its pins are let go once it has read", "send_pins %d"
                % stats(srv)["total"]["send_pins"])


def steady_reader_during_send(c):
    """A client reading a copied 4 MiB answer slowly but steadily, so that
    one send waits in the kernel for room longer than --idle-timeout (the
    kernel wakes a blocked send only when a good part of the send buffer is
    free): it is not cut off while it still acknowledges bytes.  A review
    found the sweep aborting it --idle-timeout after the last completed
    send."""
    c.section("a slow but steady reader while a send waits for room gets all of it")
    flags = ["--shards", "1", "--memory", "96M", "--max-value", "4M", "--idle-timeout", "1"]
    with Server(flags, checks=c).start() as srv:
        value = os.urandom(VALUE)
        c.eq(srv.request("PUT", "/cache/big", value, timeout=30).status, 201, "PUT 4 MiB")
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
        s.connect(("127.0.0.1", srv.port))
        s.settimeout(30)
        s.sendall(build_request("GET", "/cache/big"))
        got, err = bytearray(), None
        t0 = time.monotonic()
        try:
            while len(got) < VALUE:         # ~6 s for 4 MiB: 32 KiB per 50 ms
                chunk = s.recv(32 << 10)
                if not chunk:
                    break
                got += chunk
                time.sleep(0.05)
        except OSError as e:
            err = e
        took = time.monotonic() - t0
        head = got.find(b"\r\n\r\n") + 4
        while err is None and 3 < head and len(got) < head + VALUE:
            try:
                chunk = s.recv(64 << 10)
            except OSError as e:
                err = e
                break
            if not chunk:
                break
            got += chunk
        s.close()
        c.check(err is None and got.startswith(b"HTTP/1.1 200") and
                got[head:head + VALUE] == value,
                "the whole value arrives though reading it took %.1f s, over --idle-timeout 1"
                % took, "%s after %d bytes" % (err, len(got)))


def pin_bound(c):
    """A client that reads nothing cannot hold the store: its answers pin at
    most a quarter of the store's segments (larger ones are copied), so
    values written by others afterwards still fit (a review found one
    connection pinning 47 of 63 segments: 2 of 40 fresh values stayed)."""
    c.section("pins: a client that never reads holds at most a quarter of the store")
    with RespServer(["--shards", "1", "--memory", "64M"], checks=c).start() as srv:
        n = 52
        put = lambda k, v: srv.request("PUT", "/cache/" + k, v, timeout=20).status
        put("blocker", os.urandom(6 << 20))
        for i in range(n):                  # small values, spread over the segments
            put("s%d" % i, os.urandom(16 << 10))
            put("f%d" % i, os.urandom(1000 << 10))
        for i in range(n):
            srv.request("DELETE", "/cache/f%d" % i)
        a = socket.socket()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        a.connect(("127.0.0.1", srv.port))
        a.sendall(build_request("GET", "/cache/blocker") +
                  b"".join(build_request("GET", "/cache/s%d" % i) for i in range(n)))
        # its answers are made (the server writes what the socket takes)
        wait_for(lambda: stats(srv)["total"]["hits"] >= n + 1, 10)
        srv.request("DELETE", "/cache/blocker")
        for i in range(n):
            srv.request("DELETE", "/cache/s%d" % i)
        for i in range(40):
            put("g%d" % i, os.urandom(1000 << 10))
        kept = sum(srv.request("GET", "/cache/g%d" % i, timeout=20).status == 200
                   for i in range(40))
        c.check(kept >= 36, "of 40 values of 1000 KiB written after it, at least 36 stay "
                "(the store has 63 segments of 1 MiB; a quarter may be pinned)",
                "%d stayed" % kept)
        c.check(wait_for(lambda: stats(srv)["total"]["pins_refused"] > 0, 5),
                "/stats pins_refused counts the answers copied at the bound",
                "pins_refused %d" % stats(srv)["total"]["pins_refused"])
        # a new TTL rewrites the value from where it is, pinned, or from a
        # copy when the bound is full (it dereferenced the refused pin: SIGSEGV)
        refused = stats(srv)["total"]["pins_refused"]
        with srv.client() as r:
            for i in range(8):
                c.eq(r.cmd("EXPIRE", "g%d" % i, "1000"), 1, "EXPIRE g%d with the pin bound full" % i)
            c.check(0 < r.cmd("TTL", "g0") <= 1000, "its TTL is set")
        c.eq(srv.request("GET", "/cache/g7", timeout=20).status, 200, "the value is still served")
        c.check(wait_for(lambda: stats(srv)["total"]["pins_refused"] > refused, 5),
                "the EXPIREs found the bound full (pins_refused grew)")
        a.close()


def hot_readers(c, shards):
    """Many clients reading one large value, each answer's pin let go
    before the next is taken, never reach the bound: the value's segments
    count once against it, not once per pin (they did, and after a few
    answers most were copied: /stats pins_refused).  With 2 shards some
    connections are on the other shard: their answers are forwarded and
    their last unpins are not the owner's."""
    c.section("pins: readers of one hot 1 MiB value never fill the pin bound (%d shard%s)"
              % (shards, "s" if shards > 1 else ""))
    with Server(["--shards", str(shards), "--memory", "%dM" % (64 * shards)],
                checks=c).start() as srv:
        key = keys_per_shard("hot-", shards, 1)[shards - 1][0]
        value = os.urandom(1 << 20)
        c.eq(srv.request("PUT", "/cache/" + key, value, timeout=20).status, 201, "PUT 1 MiB")
        readers, rounds = 8, 40
        good, bad = [], []

        def read():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
                for _ in range(rounds):
                    conn.request("GET", "/cache/" + key)
                    r = conn.getresponse()
                    ok = r.status == 200 and r.read() == value
                    (good if ok else bad).append(r.status)
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                bad.append(repr(e))

        threads = [threading.Thread(target=read) for _ in range(readers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        c.check(not any(t.is_alive() for t in threads), "every reader finished")
        c.eq((len(good), bad[:3]), (readers * rounds, []),
             "%d answers of 1 MiB, each the value" % (readers * rounds))
        c.check(wait_for(lambda: stats(srv)["total"]["send_pins"] == 0, 10), "every pin let go")
        time.sleep(0.5)                     # pins_refused: published per sweep (250 ms)
        c.eq(stats(srv)["total"]["pins_refused"], 0, "no answer copied for want of a pin")


def read_answers(sock, buf, n):
    """n responses (status, body) from what was read and the socket."""
    out = []
    while len(out) < n:
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return out
            buf += chunk
            end = buf.find(b"\r\n\r\n")
        head = buf[:end].decode("latin-1")
        status = int(head.split(" ", 2)[1])
        length = 0
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v)
        while len(buf) < end + 4 + length:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return out
            buf += chunk
        out.append((status, buf[end + 4:end + 4 + length]))
        buf = buf[end + 4 + length:]
    return out


def main(c):
    body(c, False)
    body(c, True)
    reset_mid_send(c)
    many_resets(c)
    stop_while_held(c)
    unix_copies(c)
    never_reads(c)
    slow_reader_kept(c, False)
    slow_reader_kept(c, True)
    steady_reader_during_send(c)
    pin_bound(c)
    hot_readers(c, 1)
    hot_readers(c, 2)


if __name__ == "__main__":
    run_main("test_large_sends", main)
