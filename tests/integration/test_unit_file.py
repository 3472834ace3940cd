#!/usr/bin/env python3
"""The systemd unit as installed (issue 10): `systemd-analyze verify` passes
on it without a warning (Documentation=man:ringcached(8) is looked up in
the installed man pages), it is Type=notify with a watchdog and a reload,
and its hardening is kept: `systemd-analyze security --offline` rates its
exposure no worse than the Type=exec unit it replaced (1.4).

The unit names the installed binary (under the build's prefix), which is
not on this machine; so the test installs into a temporary $DESTDIR and
verifies a copy whose ExecStart= names the binary there, and only that line
differs.

Exits 77 (skip, which meson counts as neither passed nor failed) when
systemd-analyze is not installed.

usage: test_unit_file.py MESON BUILD_ROOT
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from harness import run_main

MESON, BUILD = sys.argv[1], sys.argv[2]
sys.argv[1:] = []

# The exposure `systemd-analyze security` gave the Type=exec unit of before:
# what the hardening was.  In tenths, as --threshold takes it.
EXPOSURE_BEFORE = 14

HARDENING = ["DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
             "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes", "CapabilityBoundingSet=",
             "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute=yes",
             "SystemCallArchitectures=native"]


def body(c):
    analyze = shutil.which("systemd-analyze")
    dest = tempfile.mkdtemp(prefix="ringcached-unit-")
    try:
        p = subprocess.run([MESON, "install", "-C", BUILD, "--destdir", dest, "--no-rebuild"],
                           capture_output=True, text=True, timeout=300)
        if not c.eq(p.returncode, 0, "meson install --destdir exits 0"):
            c.note((p.stdout + p.stderr)[-2000:])
            return
        units = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs
                 if f == "ringcached.service"]
        if not c.check(len(units) == 1, "one ringcached.service is installed", units):
            return
        mans = [r for r, _, fs in os.walk(dest) for f in fs if f == "ringcached.8"]
        with open(units[0]) as f:
            text = f.read()
        m = re.search(r"^ExecStart=(\S+)", text, re.M)
        c.check(m is not None, "the unit has ExecStart=")
        binary = m.group(1)
        c.check(os.access(dest + binary, os.X_OK),
                "ExecStart= names the installed binary (%s)" % binary)
        for line in ("Type=notify", "NotifyAccess=main", "ExecReload=/bin/kill -HUP $MAINPID"):
            c.check(re.search("^" + re.escape(line) + "$", text, re.M),
                    "the unit says %s" % line)
        c.check(re.search(r"^WatchdogSec=\d+s$", text, re.M), "the unit sets WatchdogSec=")
        for line in HARDENING:
            c.check(re.search("^" + re.escape(line) + "$", text, re.M),
                    "hardening kept: %s" % line)

        # the copy systemd-analyze reads: only ExecStart's path differs
        work = os.path.join(dest, "verify")
        os.makedirs(work)
        copy = os.path.join(work, "ringcached.service")
        with open(copy, "w") as f:
            f.write(text.replace("ExecStart=" + binary, "ExecStart=" + dest + binary, 1))
        env = dict(os.environ, MANPATH=os.path.dirname(mans[0]) if mans else "",
                   SYSTEMD_LOG_COLOR="0")
        p = subprocess.run([analyze, "verify", copy], capture_output=True, text=True, env=env,
                           timeout=120)
        c.eq(p.returncode, 0, "systemd-analyze verify exits 0")
        c.eq((p.stdout + p.stderr).strip(), "", "  ... and prints no warning")
        p = subprocess.run([analyze, "security", "--offline=true",
                            "--threshold=%d" % EXPOSURE_BEFORE, copy],
                           capture_output=True, text=True, env=env, timeout=120)
        level = re.search(r"Overall exposure level for \S+: ([\d.]+)", p.stdout)
        c.check(p.returncode == 0 and level is not None,
                "systemd-analyze security: exposure at most %.1f (the Type=exec unit's)"
                % (EXPOSURE_BEFORE / 10), level.group(0) if level else p.stdout[-300:])
    finally:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    if not shutil.which("systemd-analyze"):
        print("SKIP: systemd-analyze is not installed (Debian package systemd): the unit "
              "was not verified")
        sys.exit(77)
    run_main("test_unit_file", body)
