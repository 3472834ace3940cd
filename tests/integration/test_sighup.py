#!/usr/bin/env python3
"""SIGHUP does not kill the daemon (issue 11, defect 7).

Its default action ended the process at once (exit 129): no drain of the
requests in flight, no goodbye in the Redis registry.  It now reloads the
API keys file (test_reload.py); without --api-keys-file there is nothing to
reload, and it is logged and changes nothing.

usage: test_sighup.py [path/to/ringcached]
"""

import signal

from harness import Server, run_main, wait_for


def body(c):
    with Server(["--shards", "2", "--memory", "16M"], checks=c).start() as srv:
        c.eq(srv.request("PUT", "/cache/k", body=b"kept").status, 201, "PUT before SIGHUP")
        # one at a time: a signal sent while the same one is pending merges
        for i in range(1, 4):
            srv.proc.send_signal(signal.SIGHUP)
            c.check(wait_for(lambda: srv.log_text().count("SIGHUP") >= i, 5.0),
                    "SIGHUP %d is logged" % i, srv.log_text()[-300:])
        c.check(srv.alive(), "the daemon is still running after three SIGHUPs")
        r = srv.request("GET", "/cache/k")
        c.check(r.status == 200 and r.body == b"kept", "and still serves its cache (L1 kept)",
                repr(r))


if __name__ == "__main__":
    run_main("test_sighup", body)
