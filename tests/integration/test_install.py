#!/usr/bin/env python3
"""`meson install --destdir` (issue 10): the binary, the systemd unit, the
defaults file, the docs, the man page ringcached(8) and the example config
file land where the build's options say; the unit starts the installed
binary with the installed defaults file; the man page and --help list the
same flags (both come from the flags' table); the example config file is
exactly the defaults; and a reinstall keeps an edited defaults file.

usage: test_install.py MESON BUILD_ROOT
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

from harness import run_main

MESON, BUILD = sys.argv[1], sys.argv[2]
sys.argv[1:] = []      # harness.binary_path() must not take MESON for the daemon


def build_options():
    out = subprocess.run([MESON, "introspect", BUILD, "--buildoptions"], check=True,
                         capture_output=True, text=True).stdout
    opts = {o["name"]: o["value"] for o in json.loads(out)}
    project = json.loads(subprocess.run([MESON, "introspect", BUILD, "--projectinfo"],
                                        check=True, capture_output=True, text=True).stdout)
    return opts, project["version"]


def under(prefix, d):
    return d if os.path.isabs(d) else os.path.join(prefix, d)


def install(destdir):
    p = subprocess.run([MESON, "install", "-C", BUILD, "--destdir", destdir, "--no-rebuild"],
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def unit_values(text, key):
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(key + "=")]


def help_flags(text):
    return {m.group(1) for m in re.finditer(r"^  --([a-z0-9-]+)", text, re.M)}


def man_flags(text):
    """The flags of the OPTIONS entries: '.TP' then '.B \\-\\-x' or '.BI "\\-\\-x" ...'."""
    return {m.group(1).replace("\\-", "-")
            for m in re.finditer(r'^\.TP\n\.BI? "?\\-\\-((?:[a-z0-9]|\\-)+)', text, re.M)}


def body(c):
    opts, version = build_options()
    prefix = opts["prefix"]
    bindir = under(prefix, opts["bindir"])
    sysconfdir = under(prefix, opts["sysconfdir"])
    docdir = os.path.join(under(prefix, opts["datadir"]), "doc", "ringcache")
    mandir = under(prefix, opts["mandir"])
    unitdir = os.path.join(prefix, "lib", "systemd", "system")
    dest = tempfile.mkdtemp(prefix="ringcached-install-")

    def d(path):
        return dest + path

    try:
        c.section("meson install --destdir %s" % dest)
        rc, out = install(dest)
        if not c.eq(rc, 0, "meson install --destdir exits 0", ):
            c.note(out[-2000:])
            return
        binary = d(os.path.join(bindir, "ringcached"))
        want = {
            "the binary": binary,
            "the unit": d(os.path.join(unitdir, "ringcached.service")),
            "the sysusers.d file": d(os.path.join(prefix, "lib", "sysusers.d", "ringcached.conf")),
            "the defaults file": d(os.path.join(sysconfdir, "default", "ringcached")),
            "the man page": d(os.path.join(mandir, "man8", "ringcached.8")),
            "the example config file": d(os.path.join(docdir, "ringcached.conf.example")),
        }
        # every page of docs/: the installed README and pages point at each other
        src_docs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs")
        for doc in ["README.md"] + sorted(f for f in os.listdir(src_docs) if f.endswith(".md")):
            want["docs: " + doc] = d(os.path.join(docdir, doc))
        # operations.md shows the dashboard's picture by a relative link
        want["docs: img/dashboard.png"] = d(os.path.join(docdir, "img", "dashboard.png"))
        for what, path in want.items():
            c.check(os.path.isfile(path), "%s: %s" % (what, path[len(dest):]))
        c.check(os.access(binary, os.X_OK), "the binary is executable")
        mode = stat.S_IMODE(os.stat(want["the defaults file"]).st_mode)
        c.eq(oct(mode), oct(0o644), "the defaults file is mode 0644")

        p = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        c.check(p.returncode == 0 and version in p.stdout,
                "the installed binary runs: --version says %s" % version, p.stdout)

        c.section("the unit points at what was installed")
        with open(want["the unit"]) as f:
            unit = f.read()
        c.eq(unit_values(unit, "ExecStart"), [os.path.join(bindir, "ringcached") +
                                              " $RINGCACHED_ARGS"],
             "ExecStart= runs the installed binary")
        c.eq(unit_values(unit, "EnvironmentFile"),
             ["-" + os.path.join(sysconfdir, "default", "ringcached")],
             "EnvironmentFile= is the installed defaults file")
        c.check("@" not in "".join(unit_values(unit, "ExecStart") +
                                   unit_values(unit, "Documentation")),
                "no @PLACEHOLDER@ left in the unit")
        docs = [u for v in unit_values(unit, "Documentation") for u in v.split()]
        files = [u[len("file://"):] for u in docs if u.startswith("file://")]
        c.check(files and all(os.path.isfile(d(f)) for f in files),
                "Documentation= file:// links are installed files", docs)
        c.check("man:ringcached(8)" in docs, "Documentation= names ringcached(8)", docs)
        # the group the unit runs in is the one the sysusers.d file declares
        with open(want["the sysusers.d file"]) as f:
            groups = [ln.split()[1] for ln in f if ln.split()[:1] == ["g"]]
        c.eq(unit_values(unit, "SupplementaryGroups"), ["ringcached"],
             "SupplementaryGroups=ringcached: secrets can be mode 0640 root:ringcached")
        c.eq(groups, ["ringcached"], "sysusers.d/ringcached.conf declares that group")

        c.section("the man page and --help come from one table")
        with open(want["the man page"]) as f:
            man = f.read()
        helptext = subprocess.run([binary, "--help"], capture_output=True, text=True,
                                  timeout=10).stdout
        hf, mf = help_flags(helptext), man_flags(man)
        c.check(len(hf) > 20, "--help lists the flags", sorted(hf))
        c.eq(sorted(hf - mf), [], "every flag of --help is in ringcached(8)")
        c.eq(sorted(mf - hf), [], "every flag of ringcached(8) is in --help")
        c.check("@OPTIONS@" not in man and "@VERSION@" not in man and version in man,
                "the man page's placeholders are filled in")
        c.check("4294967295" not in man, "no sentinel number in the man page")
        if shutil.which("groff"):
            p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", want["the man page"]],
                               capture_output=True, text=True, timeout=30)
            c.check(p.returncode == 0 and not p.stderr.strip(),
                    "groff -man -ww renders it without a warning", p.stderr[-500:])
        else:
            c.skip("groff -man -ww renders it without a warning", "groff is not installed")

        c.section("the example config file is the defaults")
        p = subprocess.run([binary, "--config", want["the example config file"],
                            "--check-config"], capture_output=True, text=True, timeout=10)
        c.eq(p.returncode, 0, "--check-config accepts the example")
        q = subprocess.run([binary, "--check-config"], capture_output=True, text=True,
                           timeout=10)

        def body_lines(text):
            return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]

        c.check(body_lines(p.stdout) == body_lines(q.stdout) and len(body_lines(q.stdout)) > 20,
                "its settings are exactly the defaults", p.stdout[:300])

        c.section("a reinstall keeps an edited defaults file")
        with open(want["the defaults file"], "a") as f:
            f.write('RINGCACHED_ARGS="--memory 2G"\n')
        rc, out = install(dest)
        c.eq(rc, 0, "meson install again exits 0")
        with open(want["the defaults file"]) as f:
            c.check(f.read().endswith('RINGCACHED_ARGS="--memory 2G"\n'),
                    "the edited defaults file is kept")
        c.check(os.path.isfile(want["the defaults file"] + ".dist"),
                "  ... and the new version is beside it (.dist)")
    finally:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    run_main("test_install", body)
