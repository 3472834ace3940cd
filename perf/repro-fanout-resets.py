#!/usr/bin/env python3
"""Load that made a shard turn slowly (once, on an ASan build): many RESP
clients send fan-outs of 100-300 keys (MGET, EXISTS, DEL, MSET, 20 KB
values: a 2 MB request) over both shards and reset their connections
(SO_LINGER 0) mid-answer, in a loop.  Meanwhile /stats is polled and its
latency and the per-shard connections / forwarded_requests / conn_memory
printed, so a stall shows.

Usage: repro-fanout-resets.py HTTP_PORT RESP_PORT [workers] [seconds] [burst]
  Each worker opens `burst` connections, sends each its commands (giving up
  on a send after 50 ms), then resets them all.  Start ringcached first:
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
    ASAN_OPTIONS=detect_leaks=0 build-asan/src/ringcached \
        --listen 127.0.0.1:18481 --resp-listen 127.0.0.1:18482 --shards 2 --memory 256M
    python3 perf/repro-fanout-resets.py 18481 18482 16 55 150
  A shard's turns: perf stat -e syscalls:sys_enter_io_uring_enter -t TID
  (TID of rc-shard-0, `ps -L`).  With burst 150 (~800 connections a shard,
  conn_memory at its --conn-memory share) the ASan build turned ~14 times a
  second, the release build ~300; with burst 1 neither slowed.
"""

import json
import socket
import struct
import sys
import threading
import time
import urllib.request


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


KEYS = [b"fan-%d" % i for i in range(300)]
BIG = b"f" * 20000


def request(i):
    n = 100 + (i * 37) % 201
    part = (KEYS[i % 300:] + KEYS[:i % 300])[:n]
    return (encode("MGET", *part) + encode("EXISTS", *part) + encode("DEL", *part[:100]) +
            encode("MSET", *[x for k in part[:100] for x in (k, BIG)]) + encode("MGET", *part))


REQS = [request(i) for i in range(64)]


def worker(port, stop, wid, counts, burst):
    """Opens `burst` connections, sends each its commands, reads part of
    some answers, then resets them all; again until stopped."""
    i = wid
    while not stop.is_set():
        socks = []
        for _ in range(burst):
            i += 1
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                time.sleep(0.01)
                continue
            socks.append((i, s))
            s.settimeout(0.05)      # a server that stops reading: reset it as it is
            try:
                s.sendall(REQS[i % 64])
            except OSError:
                pass
        for j, s in socks:
            try:
                if j % 3:
                    s.recv(1000 * (j % 50) + 1)     # part of the first answer read
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            s.close()
            counts[wid] += 1


def stats(port, timeout):
    t0 = time.monotonic()
    with urllib.request.urlopen("http://127.0.0.1:%d/stats" % port, timeout=timeout) as r:
        doc = json.load(r)
    return time.monotonic() - t0, doc


def main():
    http_port, resp_port = int(sys.argv[1]), int(sys.argv[2])
    nworkers = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 60
    burst = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    s = socket.create_connection(("127.0.0.1", resp_port))
    s.sendall(encode("MSET", *[x for k in KEYS for x in (k, BIG)]))
    s.recv(100)
    s.close()
    stop = threading.Event()
    counts = [0] * nworkers
    threads = [threading.Thread(target=worker, args=(resp_port, stop, w, counts, burst), daemon=True)
               for w in range(nworkers)]
    for t in threads:
        t.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            dt, doc = stats(http_port, 120)
            sh = doc.get("per_shard", [])
            print("%7.1fs  /stats %.3fs  cmds %d  conns %s  fwd %s  conn_mem %s" % (
                seconds - (end - time.monotonic()), dt, sum(counts),
                [x.get("connections") for x in sh],
                [x.get("forwarded_requests") for x in sh],
                [x.get("conn_memory") for x in sh]), flush=True)
        except OSError as e:
            print("stats failed: %s" % e, flush=True)
        time.sleep(1)
    stop.set()
    for t in threads:
        t.join(10)


if __name__ == "__main__":
    main()
