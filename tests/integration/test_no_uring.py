#!/usr/bin/env python3
"""io_uring refused (seccomp answers EPERM, as in a locked-down container):
ringcached must exit non-zero, quickly, with a message that says io_uring is
not available and shows kernel.io_uring_disabled; never crash or hang.

usage: test_no_uring.py NO_URING RINGCACHED
(the listen port is never bound: the ring is set up first)
"""
import subprocess
import sys


def main():
    no_uring, binary = sys.argv[1], sys.argv[2]
    failed = 0
    try:
        p = subprocess.run([no_uring, binary, "--listen", "127.0.0.1:9", "--shards", "1",
                            "--memory", "16M"],
                           capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        print("FAIL  ringcached did not exit within 20 s with io_uring refused")
        print("0 passed, 1 failed")
        return 1
    checks = [
        (p.returncode not in (0, -6, -11) and p.returncode > 0,
         "exits with a failure status (got %d)" % p.returncode),
        ("io_uring is not available" in p.stderr, "says io_uring is not available"),
        ("kernel.io_uring_disabled" in p.stderr, "shows kernel.io_uring_disabled"),
        ("Operation not permitted" in p.stderr, "names the error (EPERM)"),
    ]
    for ok, what in checks:
        print(("ok    " if ok else "FAIL  ") + what)
        failed += not ok
    if failed:
        print("stderr was:", p.stderr)
    print("%d passed, %d failed" % (len(checks) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
