#!/usr/bin/env python3
"""churn.py - connections that come and go under pipelined load (issue 11,
defect 3): do closed connections leave the server, and does its memory go
back to the system once the load ends?

Starts the real ringcached on a free loopback port (--memory 256M, --shards
N), then runs --clients client processes for --seconds.  Each one loops
(ChurnClient of tests/integration/test_conn_memory.py, the one definition
of this workload):

  connect; pipeline 1..300 requests (GET 50%, PUT 35% with a JSON body of
  up to 70 KB, DELETE 15%) over keys owned by every shard, reading and
  discarding whatever answers arrive meanwhile, and leaving after 2 s if
  the server stops reading; close, 70% of the time with a reset
  (SO_LINGER 0), else with a FIN.

Once a second it samples the server: the `connections` gauge of GET /stats
(the sum over shards, minus the sampling connection itself), the sockets on
the port seen by `ss -tn` (with their TCP states), and VmRSS.  After the
load it samples every second for --after seconds (10: the issue's "RSS 10 s
after load ends") and prints a summary.  Each sample also shows the
server's socket descriptors and the CPU of each of its threads (main, then
the shards).  With --malloc-stats gdb calls malloc_stats() in the server at
the end (per arena: bytes mapped, bytes in use); with --malloc-trim it calls
malloc_trim(0) and prints RSS again (what malloc held free).

A reproducer, not a test: it passes no verdict (tests/integration/
test_conn_memory.py asserts).

usage: perf/churn.py [--binary PATH] [--shards N] [--seconds S] [--clients N]
                     [--server-cpus LIST]
                     [--after S] [--drain S] [--malloc-stats] [--malloc-trim] [--hold S]
                     [-- extra ringcached flags]
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from harness import Server, keys_per_shard  # noqa: E402
from test_conn_memory import ChurnClient  # noqa: E402

KEYS_PER_SHARD = 64


def client(idx, port, keys, deadline, queue):
    """One client process: the churn loop of test_conn_memory (the same
    workload, written once there) until `deadline` (time.monotonic)."""
    cl = ChurnClient(idx, port, keys, deadline)
    cl.run()
    queue.put({"conns": cl.conns, "rst": cl.resets, "fin": cl.conns - cl.resets,
               "errors": cl.errors, "sent": cl.sent, "received": cl.received})


def rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def gauge(srv):
    """`connections` summed over shards (the sampling connection excluded),
    and per shard; None while the server does not answer in 2 s."""
    try:
        r = srv.request("GET", "/stats", timeout=2.0)
        doc = json.loads(r.body)
        return doc["total"]["connections"] - 1, [p["connections"] for p in doc["per_shard"]]
    except (OSError, ValueError, KeyError):
        return None, None


def ss_states(port):
    """{TCP state: count} of the server's sockets on `port` (not the
    listeners)."""
    try:
        out = subprocess.run(["ss", "-tanH", "sport = :%d" % port], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        st = line.split()[0]
        if st != "LISTEN":
            states[st] = states.get(st, 0) + 1
    return states


def socket_fds(pid):
    """Descriptors of the server that are sockets (listeners included)."""
    n = 0
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
            except OSError:
                pass
    except OSError:
        pass
    return n


def cpu_seconds(path):
    """utime + stime from a /proc stat file, in seconds."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def thread_cpu(pid):
    """{tid: CPU seconds} of the server's threads."""
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
    except OSError:
        return {}
    return {t: cpu_seconds("/proc/%d/task/%d/stat" % (pid, t)) for t in tids}


class Sampler:
    def __init__(self, srv):
        self.srv = srv
        self.t0 = time.monotonic()
        self.last = (self.t0, thread_cpu(srv.proc.pid))

    def __call__(self, label):
        srv = self.srv
        total, per = gauge(srv)
        states = ss_states(srv.port)
        pid = srv.proc.pid
        rss = rss_mib(pid)
        now, cpu = time.monotonic(), thread_cpu(pid)
        dt = max(now - self.last[0], 1e-3)
        # per thread (main first, then the shards in start order), % of a CPU
        busy = [100 * (cpu[t] - self.last[1].get(t, 0.0)) / dt for t in sorted(cpu)]
        self.last = (now, cpu)
        print("%6.1f s %-6s connections %-5s %-12s fds %5d ss %5d %-30s RSS %7.1f MiB  "
              "CPU%% %s" % (now - self.t0, label, total, per, socket_fds(pid),
                            sum(states.values()),
                            " ".join("%s=%d" % kv for kv in sorted(states.items())), rss,
                            "/".join("%.0f" % b for b in busy)), flush=True)
        return {"connections": total, "ss": sum(states.values()), "states": states, "rss": rss}


def gdb_call(srv, expr):
    """gdb attaches to the server and evaluates `expr` (a call) in it;
    returns what the server wrote to its log meanwhile."""
    before = len(srv.log_text())
    subprocess.run(["gdb", "-batch", "-p", str(srv.proc.pid), "-ex", "call " + expr],
                   capture_output=True, timeout=60)
    time.sleep(0.2)
    return srv.log_text()[before:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.environ.get("RINGCACHED",
                    os.path.join(HERE, "..", "build", "src", "ringcached")))
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--after", type=int, default=10, help="seconds sampled after the load")
    ap.add_argument("--server-cpus", default="",
                    help="re-pin every server thread to these CPUs (taskset list) after start, "
                         "so the clients outrun the shards as in the issue's report")
    ap.add_argument("--drain", type=float, default=0,
                    help="after the load, first wait up to this many seconds for connections to be 0")
    ap.add_argument("--malloc-stats", action="store_true",
                    help="at the end, print the server's malloc_stats() (through gdb)")
    ap.add_argument("--malloc-trim", action="store_true",
                    help="at the end, call malloc_trim(0) in the server (gdb) and print RSS")
    ap.add_argument("--hold", type=float, default=0,
                    help="keep the server running this many seconds at the end (to inspect it)")
    ap.add_argument("extra", nargs="*", help="more ringcached flags (after --)")
    a = ap.parse_args()

    srv = Server(["--shards", str(a.shards), "--memory", "256M"] + a.extra,
                 binary=os.path.abspath(a.binary)).start()
    try:
        if a.server_cpus:
            subprocess.run(["taskset", "-a", "-p", "-c", a.server_cpus, str(srv.proc.pid)],
                           check=True, stdout=subprocess.DEVNULL)
        keys = [k for ks in keys_per_shard("churn-", a.shards, KEYS_PER_SHARD).values()
                for k in ks]
        print("ringcached %s on port %d, pid %d; %d clients for %.0f s"
              % (" ".join(srv.flags), srv.port, srv.proc.pid, a.clients, a.seconds), flush=True)
        sample = Sampler(srv)
        base = sample("idle")
        deadline = time.monotonic() + a.seconds
        q = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=client, args=(i, srv.port, keys, deadline, q))
                 for i in range(a.clients)]
        for p in procs:
            p.start()
        load = []
        while time.monotonic() < deadline:
            time.sleep(1.0)
            load.append(sample("load"))
        totals = {}
        for _ in procs:
            for k, v in q.get(timeout=60).items():
                totals[k] = totals.get(k, 0) + v
        for p in procs:
            p.join(10)
        print("clients: %(conns)d connections (%(rst)d reset, %(fin)d FIN), %(errors)d "
              "errors, %(sent)d bytes sent, %(received)d read" % totals, flush=True)
        if a.drain:
            # how long the server takes to let go of every connection (the
            # queued work of clients that are gone), before the after-phase
            t = time.monotonic()
            while time.monotonic() - t < a.drain and gauge(srv)[0] != 0:
                time.sleep(0.2)
            print("drained: connections %s, %.1f s after the load" % (gauge(srv)[0], time.monotonic() - t),
                  flush=True)
        after = []
        for _ in range(a.after):
            time.sleep(1.0)
            after.append(sample("after"))
        peak_c = max((s["connections"] or 0) for s in load + after)
        peak_rss = max(s["rss"] for s in load + after)
        last = after[-1] if after else load[-1]
        print("summary: shards %d, peak connections %d, peak RSS %.0f MiB; %d s after the "
              "load: connections %s, ss %d, RSS %.0f MiB (idle %.0f MiB)"
              % (a.shards, peak_c, peak_rss, a.after, last["connections"], last["ss"],
                 last["rss"], base["rss"]), flush=True)
        if a.malloc_stats:
            print(gdb_call(srv, "(void)malloc_stats()"), flush=True)
        if a.malloc_trim:
            # what of the RSS is memory malloc holds free: give it back, measure
            gdb_call(srv, "(int)malloc_trim(0)")
            print("after malloc_trim(0): RSS %.0f MiB" % rss_mib(srv.proc.pid), flush=True)
        print("server alive: %s" % srv.alive(), flush=True)
        if a.hold:
            print("holding pid %d for %.0f s" % (srv.proc.pid, a.hold), flush=True)
            time.sleep(a.hold)
    finally:
        srv.stop()
        srv.remove_log()


if __name__ == "__main__":
    main()
