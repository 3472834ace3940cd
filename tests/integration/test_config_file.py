#!/usr/bin/env python3
"""--config FILE and --check-config (issue 10): a daemon configured by a
file, flags over the file, --check-config's effective configuration and
exit status, and bad files named by FILE:LINE and the key, for the check and
for a start alike.  The file's format is docs/operations.md's.

usage: test_config_file.py [path/to/ringcached]
"""

import os
import tempfile

from harness import Server, free_port, run_binary, run_main, stats


class Files:
    """Files written into one temporary directory (removed by the caller)."""

    def __init__(self, path):
        self.path = path

    def file(self, name, data):
        p = os.path.join(self.path, name)
        with open(p, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return p


def served_from_file(c, tmp):
    c.section("a daemon configured by a file, one flag over it")
    path = tmp.file("ringcached.conf",
                    "# test\n"
                    "shards = 1\n"
                    "memory = 48M\n"
                    "max-value = 1K\n"
                    "listen = 127.0.0.1:1\n")
    # Server passes --listen (a free port) and --hash-seed: flags, over the file
    srv = Server(["--config", path, "--shards", "2"], checks=c).start()
    doc = stats(srv)
    c.eq(doc.get("shards"), 2, "--shards 2 on the command line wins over 'shards = 1'")
    arena = doc.get("total", {}).get("arena_bytes", 0)
    c.check(0 < arena <= 48 << 20, "the arena is within the file's 'memory = 48M'",
            "arena_bytes %r" % arena)
    r = srv.request("PUT", "/cache/big", b"x" * 2048)
    c.eq(r.status, 413, "a 2 KiB value is refused: the file's 'max-value = 1K' is in force")
    r = srv.request("PUT", "/cache/small", b"x" * 1000)
    c.within(r.status, {201, 204}, "a 1000-byte value is stored")
    srv.stop()


def check_config(c, tmp):
    c.section("--check-config: the effective configuration, status 0")
    port = free_port()
    path = tmp.file("check.conf",
                    "\ufeffmemory = 48M\r\n"          # a BOM and CRLF line ends
                    "shards = 1\r\n"
                    "redis = redis://app:hunter2@127.0.0.1:6379/1\r\n"
                    "listen = 127.0.0.1:%d\r\n" % port)
    rc, out = run_binary(["--config", path, "--shards", "2", "--check-config"])
    c.eq(rc, 0, "a valid file and flags: --check-config exits 0")
    lines = out.splitlines()
    c.check("memory = 48M" in lines, "prints 'memory = 48M' from the file", out[:600])
    c.check("shards = 2" in lines, "prints 'shards = 2': the flag over the file", out[:600])
    c.check("coherence-cpu = auto" in lines, "prints computed defaults as 'auto'", out[:600])
    c.check("listen = 127.0.0.1:%d" % port in lines, "prints the file's listen", out[:600])
    c.check("hunter2" not in out, "does not print the Redis password")
    c.check(path in lines[0], "its first line names the file", lines[:1])
    c.check(not any("listening" in ln for ln in lines), "and starts nothing", out[:600])

    rc, out = run_binary(["--check-config", "--memory", "2G"])
    c.eq(rc, 0, "--check-config without a file exits 0")
    c.check("memory = 2G" in out.splitlines(), "  ... printing the flag's value", out[:300])


BAD_FILES = [
    # (what, file bytes, text the message must hold)
    ("an unknown key", b"memory = 48M\n\nfrobnicate = 3\n", ":3: unknown key 'frobnicate'"),
    ("a bad value", b"# c\nmemory = lots\n", ":2: memory: invalid value 'lots'"),
    ("a duplicate key", b"memory = 1G\nshards = 2\nmemory = 2G\n",
     ":3: memory: already set on line 1"),
    ("a NUL byte", b"memory = 1G\nshards = 2\x00\n", ":2: NUL byte"),
    ("a comment after a value", b"redis-prefix = app: # mine\n", ":1: redis-prefix: a comment"),
    ("a line without '='", b"memory 1G\n", ":1: expected KEY = VALUE"),
    ("a cross-field rule", b"max-request-line = 64K\n", ":1: max-request-line:"),
    ("a file over 64 KiB", b"#" * 70000 + b"\n", "larger than 65536 bytes"),
    ("a line over 4 KiB", b"instance-id = " + b"x" * 5000 + b"\n", ":1: longer than 4096"),
]


def bad_files(c, tmp):
    c.section("bad files: FILE:LINE and the key, status 2, for --check-config and a start")
    for i, (what, data, needle) in enumerate(BAD_FILES):
        path = tmp.file("bad%d.conf" % i, data)
        for mode in ("--check-config", "start"):
            args = ["--config", path, "--listen", "127.0.0.1:%d" % free_port()]
            if mode == "--check-config":
                args.append(mode)
            rc, out = run_binary(args)
            c.eq(rc, 2, "%s, %s: exit status 2" % (what, mode))
            want = needle if needle.startswith("larger") else path + needle
            c.check(want in out, "%s, %s: the message says %r" % (what, mode, want), out[-300:])
    rc, out = run_binary(["--config", os.path.join(tmp.path, "missing.conf"), "--check-config"])
    c.eq(rc, 2, "a missing file: exit status 2")
    c.check("missing.conf" in out and "No such file" in out, "  ... naming it", out[-300:])
    keys = tmp.file("keys", "ok-key\nbad key\n")
    conf = tmp.file("keys.conf", "api-keys-file = %s\n" % keys)
    rc, out = run_binary(["--config", conf, "--check-config"])
    c.eq(rc, 2, "--check-config with an API keys file that does not load: status 2")
    c.check("line 2" in out, "  ... naming the key file's bad line", out[-300:])


def help_text(c):
    c.section("--help: words for computed defaults, the file flags")
    rc, out = run_binary(["--help"])
    c.eq(rc, 0, "--help exits 0")
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  --")}
    for flag in ("--shards", "--coherence-cpu"):
        c.check(lines.get(flag, "").endswith("[auto]"), "%s shows [auto]" % flag,
                lines.get(flag))
    c.check("4294967295" not in out, "no sentinel number in --help")
    for flag in ("--config", "--check-config"):
        c.check(flag in lines, "--help lists %s" % flag)


def body(c):
    with tempfile.TemporaryDirectory(prefix="ringcached-conf-") as d:
        tmp = Files(d)
        served_from_file(c, tmp)
        check_config(c, tmp)
        bad_files(c, tmp)
        help_text(c)


if __name__ == "__main__":
    run_main("test_config_file", body)
