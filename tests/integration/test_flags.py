#!/usr/bin/env python3
"""Command line: bad flags exit 2 naming the flag, --help, --version, and
the startup log (one line per shard).

usage: test_flags.py [path/to/ringcached]   ($RINGCACHE_VERSION: expected version)
"""

import os
import re

from harness import WRITE_OK, Server, free_port, run_binary, run_main

# (arguments, text the message must contain)
BAD = [
    (["--shards", "x"], "--shards"),
    (["--shards", "-1"], "--shards"),
    (["--memory", "lots"], "--memory"),
    (["--memory", "12Q"], "--memory"),
    (["--max-value", "huge"], "--max-value"),
    (["--cpuset", "5-2"], "--cpuset"),
    (["--cpuset", "a,b"], "--cpuset"),
    (["--listen", "nonsense"], "--listen"),
    (["--listen", "127.0.0.1:99999"], "--listen"),
    (["--idle-timeout", "soon"], "--idle-timeout"),
    (["--frobnicate"], "--frobnicate"),
    (["--frobnicate", "3"], "--frobnicate"),
    (["--memory"], "--memory"),
    (["stray"], "stray"),
]


def bad_flags(c):
    c.section("bad flags: exit status 2 and a message naming the flag")
    for args, name in BAD:
        # A valid --listen on a free port, so a value wrongly accepted makes
        # the daemon start (and time out here) instead of failing elsewhere.
        extra = [] if args[0] == "--listen" else ["--listen", "127.0.0.1:%d" % free_port()]
        rc, out = run_binary(extra + args)
        shown = " ".join(args)
        c.eq(rc, 2, "%s exits with status 2" % shown)
        c.check(name in out, "%s: message names %s" % (shown, name), repr(out[:300]))


def help_and_version(c):
    c.section("--help and --version")
    rc, out = run_binary(["--help"])
    c.eq(rc, 0, "--help exits 0")
    for flag in ("--listen", "--shards", "--cpuset", "--memory", "--max-value", "--idle-timeout",
                 "--request-timeout", "--max-request-line", "--max-head", "--help", "--version"):
        c.check(flag in out, "--help lists %s" % flag)
    rc, out = run_binary(["--version"])
    c.eq(rc, 0, "--version exits 0")
    want = os.environ.get("RINGCACHE_VERSION")
    if want:
        c.check(want in out, "--version prints %s" % want, repr(out))
    else:
        c.check(re.search(r"\d+\.\d+\.\d+", out), "--version prints a version number", repr(out))


def startup_log(c):
    c.section("startup log: one line per shard naming its CPU")
    for n in (1, 2):
        srv = Server(["--shards", str(n), "--memory", "16M"], checks=c).start()
        log = srv.log_text()
        srv.stop()
        lines = [ln for ln in log.splitlines() if re.search(r"\bshard\b", ln, re.I)]
        ids = set()
        for ln in lines:
            m = re.search(r"\bshard\s*#?\s*(\d+)", ln, re.I)
            if m:
                ids.add(int(m.group(1)))
        c.eq(ids, set(range(n)), "--shards %d: a line for each of shards 0..%d" % (n, n - 1))
        per_shard = [ln for ln in lines if re.search(r"\bshard\s*#?\s*\d+", ln, re.I)]
        c.eq(len(per_shard), n, "--shards %d: exactly %d shard lines" % (n, n))
        c.check(all(re.search(r"\bcpu\s*[:=]?\s*\d+", ln, re.I) for ln in per_shard),
                "--shards %d: each shard line names its CPU" % n, repr(per_shard))
        if n == 2:
            c.note("log: " + " | ".join(log.splitlines()[:6]))
    cpu = max(os.sched_getaffinity(0))
    srv = Server(["--shards", "1", "--cpuset", str(cpu), "--memory", "16M"], checks=c).start()
    log = srv.log_text()
    srv.stop()
    shard_lines = [ln for ln in log.splitlines() if re.search(r"\bshard\s*#?\s*0\b", ln, re.I)]
    c.check(shard_lines and re.search(r"\bcpu\s*[:=]?\s*%d\b" % cpu, shard_lines[0], re.I),
            "--cpuset %d: shard 0 is on CPU %d" % (cpu, cpu), repr(shard_lines))


def absent_cpu(c):
    c.section("--cpuset naming a CPU this machine does not have")
    cpu = os.cpu_count() + 7
    rc, out = run_binary(["--cpuset", str(cpu), "--listen", "127.0.0.1:%d" % free_port()])
    c.check(rc is not None and rc != 0, "--cpuset %d refuses to start" % cpu,
            "status %r: %r" % (rc, out[:300]))
    c.check("cpuset" in out.lower() or "cpu %d" % cpu in out.lower() or str(cpu) in out,
            "  ... and says which CPU", repr(out[:300]))


def port_in_use(c):
    c.section("--listen on a port another instance serves")
    srv = Server(["--shards", "2", "--memory", "16M"], checks=c).start()
    addr = "127.0.0.1:%d" % srv.port
    rc, out = run_binary(["--listen", addr, "--shards", "2", "--memory", "16M"])
    c.eq(rc, 1, "a second ringcached on %s exits with status 1 (SO_REUSEPORT would have let it "
         "take half of the connections)" % addr)
    c.check("--listen" in out and "in use" in out, "  ... saying --listen's address is in use",
            repr(out[-300:]))
    c.check(srv.healthy(), "the first instance still serves")
    for i in range(8):
        r = srv.request("PUT", "/cache/k%d" % i, b"v")
        c.check(r.status in WRITE_OK, "PUT /cache/k%d on the first instance" % i, repr(r))
    got = [srv.request("GET", "/cache/k%d" % i).status for i in range(8)]
    c.eq(got, [200] * 8, "every new connection reaches the first instance's cache")
    srv.stop()


def main(c):
    bad_flags(c)
    help_and_version(c)
    startup_log(c)
    absent_cpu(c)
    port_in_use(c)


if __name__ == "__main__":
    run_main("test_flags", main)
