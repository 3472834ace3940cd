"""Shared pieces of the integration tests: start the real ringcached on a
free loopback port, talk to it over raw sockets, record checks, run a test
module (run_main) or the binary alone (run_binary), read /stats (stats).

The tests need exact bytes on the wire (pipelining, split requests, garbage
input), so the client side is raw sockets with a small response reader
rather than http.client.  Every socket operation has a timeout and every
wait is a bounded poll for a condition: a broken server makes a test fail,
never hang.

Binary: argv[1], else $RINGCACHED, else build/src/ringcached.
"""

import collections
import contextlib
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

IO_TIMEOUT = 5.0        # seconds any single socket operation may take
START_TIMEOUT = 10.0    # seconds for the daemon to answer /health
STOP_TIMEOUT = 5.0      # seconds between SIGTERM and SIGKILL
RUN_TIMEOUT = 10.0      # seconds run_binary() waits for the daemon to exit

DEFAULT_FLAGS = ["--shards", "2", "--memory", "64M"]
WRITE_OK = {201, 204}   # a PUT stored a new key (201) or replaced one (204)


def binary_path():
    if len(sys.argv) > 1 and sys.argv[1]:
        return os.path.abspath(sys.argv[1])
    if os.environ.get("RINGCACHED"):
        return os.path.abspath(os.environ["RINGCACHED"])
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(os.path.join(here, "..", "..", "build", "src", "ringcached"))


def free_port():
    """A port nobody listens on right now: bind port 0 and give it back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# --- checks ----------------------------------------------------------------

class Checks:
    """Prints every check as it runs; exit() turns failures into status 1.

    There is no "warning" kind: behaviour the daemon implements is checked,
    and what it does not implement is not checked at all (a comment at the
    test says why)."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = []
        self.skipped = []
        self.servers = []

    def check(self, cond, what, detail=None):
        if cond:
            self.passed += 1
            print("ok    %s" % what, flush=True)
        else:
            self.failed.append(what)
            print("FAIL  %s" % what, flush=True)
            if detail is not None:
                print("      %s" % detail, flush=True)
        return bool(cond)

    def eq(self, got, want, what):
        return self.check(got == want, what, "got %s, want %s" % (_short(got), _short(want)))

    def within(self, got, allowed, what):
        return self.check(got in allowed, what,
                          "got %s, want one of %s" % (_short(got), sorted(allowed)))

    def skip(self, what, why):
        """A check that does not apply to this run: printed with the reason
        and listed at the end, counted neither as passed nor as failed."""
        self.skipped.append("%s (%s)" % (what, why))
        print("SKIP  %s" % what, flush=True)
        print("      not checked: %s" % why, flush=True)

    def note(self, text):
        print("      %s" % text, flush=True)

    def section(self, title):
        print("\n== %s" % title, flush=True)

    def stop_servers(self):
        """Stops every server the test started and checks how each ended:
        one that died by itself, did not stop on SIGTERM, or had a
        sanitizer report in its log (ASan/UBSan builds) is a failure even
        if every request was answered.  A server the test killed
        (Server.kill) is only checked for sanitizer reports.  The logs are
        printed when a check failed, else removed."""
        for srv in self.servers:
            if srv.proc is None:
                continue
            rc = srv.stop()
            if srv.killed:
                what = "%s (killed by the test)" % srv.describe()
            else:
                what = srv.describe()
                self.check(not srv.exited_early, "%s was running until the test stopped it"
                           % what, "exit status %r" % rc)
                if not srv.exited_early:
                    self.check(rc in (0, -signal.SIGTERM), "%s stopped cleanly on SIGTERM" % what,
                               "exit status %r" % rc)
            reports = srv.sanitizer_reports()
            self.check(not reports, "%s: no sanitizer reports in its log" % what,
                       "; ".join(reports[:3]))
        for srv in self.servers:
            if self.failed:
                srv.dump_log()
            else:
                srv.remove_log()

    def exit(self):
        """Prints the summary and exits: status 1 when a check failed."""
        print("\n%s: %d passed, %d failed%s"
              % (self.name, self.passed, len(self.failed),
                 ", %d not applicable (skipped)" % len(self.skipped) if self.skipped else ""),
              flush=True)
        for f in self.failed:
            print("  failed: %s" % f)
        for s in self.skipped:
            print("  skipped: %s" % s)
        sys.exit(1 if self.failed else 0)


SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|"
                          r"SUMMARY: UndefinedBehaviorSanitizer|WARNING: ThreadSanitizer")

# Sanitizer runtimes that hold memory of their own in the process (shadow
# memory, quarantine of freed blocks, allocator metadata), by the entry point
# their instrumentation calls: an import (.dynstr) when the runtime is a
# shared library (gcc), a symbol when it is linked in (clang).
SHADOW_SANITIZERS = ((b"__asan_init", "AddressSanitizer"),
                     (b"__hwasan_init", "HWAddressSanitizer"),
                     (b"__msan_init", "MemorySanitizer"),
                     (b"__tsan_init", "ThreadSanitizer"))


def shadow_sanitizers(binary):
    """The names of the sanitizers in SHADOW_SANITIZERS built into `binary`
    (empty for a normal build; UBSan alone holds no memory of note)."""
    with open(binary, "rb") as f:
        data = f.read()
    return [name for sym, name in SHADOW_SANITIZERS if b"\0" + sym + b"\0" in data]


def _short(v, n=200):
    s = repr(v)
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


def run_main(name, body, helpers=()):
    """Runs a test module: body(checks), then stops and checks every server
    it started (Checks.stop_servers), prints the summary and exits 1 when a
    check failed.  An exception from body is a failure.

    helpers: other processes the test runs (redis_harness.Redis), objects
    with dump_log() and cleanup().  They outlive the servers (a server may
    talk to them while it stops), print their logs when a check failed, and
    are cleaned up on every exit path.  SIGTERM (meson's timeout) and SIGINT
    end the test the same way, so no process is left behind."""
    c = Checks(name)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        try:
            body(c)
        except Exception as e:  # noqa: BLE001 - any escape is a test failure
            traceback.print_exc()
            c.failed.append("exception: %r" % (e,))
        c.stop_servers()
        if c.failed:
            for h in helpers:
                h.dump_log()
    finally:
        for srv in c.servers:
            srv.stop()
        for h in helpers:
            h.cleanup()
    c.exit()


@contextlib.contextmanager
def api_keys_file(*keys):
    """A --api-keys-file holding these keys, one per line, mode 0600 (the
    daemon refuses a file others can read); removed on the way out."""
    fd, path = tempfile.mkstemp(prefix="ringcache-keys-")
    try:
        os.write(fd, b"".join(_b(k) + b"\n" for k in keys))
        os.close(fd)
        os.chmod(path, 0o600)
        yield path
    finally:
        os.unlink(path)


def run_binary(args, timeout=RUN_TIMEOUT):
    """Runs ringcached with `args` to completion (for flags it must refuse):
    (exit status, or None when it was still running after `timeout` s and
    was killed; stdout and stderr together)."""
    p = subprocess.Popen([binary_path()] + args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        return None, out.decode("utf-8", "replace")
    return p.returncode, out.decode("utf-8", "replace")


# --- the daemon ------------------------------------------------------------

class Server:
    """One ringcached process on a free 127.0.0.1 port.

    stdout and stderr go to one log file, printed by dump_log() when a test
    fails.  stop() is idempotent: SIGTERM, then SIGKILL after STOP_TIMEOUT.
    preexec_fn runs in the child before the exec (to set a resource limit,
    say)."""

    def __init__(self, flags=None, binary=None, checks=None, preexec_fn=None,
                 hash_seed=None):
        self.binary = binary or binary_path()
        # key_shard() below mirrors the daemon's key hash, which needs its
        # seed; "random" leaves the daemon's own secret seed in place.
        self.hash_seed = hash_seed
        self.flags = list(DEFAULT_FLAGS if flags is None else flags)
        self.preexec_fn = preexec_fn
        self.port = None
        self.proc = None
        self.log = None
        self.logpath = None
        self.stop_status = None
        self.exited_early = False
        self.killed = False
        if checks is not None:
            checks.servers.append(self)

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError("ringcached not found or not executable: %s" % self.binary)
        # The port is free when we look; another process could take it before
        # the daemon binds, so retry a few times on a startup failure.
        last = None
        for _ in range(3):
            self.port = free_port()
            self.stop_status = None
            self.exited_early = False
            fd, self.logpath = tempfile.mkstemp(prefix="ringcached-", suffix=".log")
            self.log = os.fdopen(fd, "w+b")
            argv = ([self.binary, "--listen", "127.0.0.1:%d" % self.port]
                    + hash_seed_flags(self.hash_seed) + self.flags)
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=subprocess.STDOUT,
                                         preexec_fn=self.preexec_fn)
            try:
                self._wait_healthy()
                return self
            except RuntimeError as e:
                last = e
                self.stop()
                self.dump_log()
                if "exited" not in str(e) or "in use" not in self.log_text():
                    break
                self.remove_log()
        raise last

    def _wait_healthy(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ringcached exited with status %d during startup"
                                   % self.proc.returncode)
            try:
                r = request(self.port, "GET", "/health", timeout=1.0)
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("ringcached did not answer GET /health with 200 within %.0f s"
                           % START_TIMEOUT)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def healthy(self):
        """True when the process runs and answers GET /health with 200.
        False, not an exception, when the connection is refused or closed
        before an answer (over --max-conns while a previous connection is
        still being freed), so wait_for(srv.healthy, ...) retries."""
        if not self.alive():
            return False
        try:
            return request(self.port, "GET", "/health", timeout=IO_TIMEOUT).status == 200
        except (OSError, ProtocolError):
            return False

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; returns the exit status
        (negative: killed by that signal; -9 means SIGTERM was not enough).
        exited_early tells whether the process had ended before this."""
        if self.proc is None or self.stop_status is not None:
            return self.stop_status
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        else:
            self.exited_early = True
        self.stop_status = self.proc.returncode
        if self.log is not None:
            self.log.close()
            self.log = None
        return self.stop_status

    def kill(self):
        """SIGKILL, as a crash or an operator would: the end of the test
        then expects no clean exit from it, but still reads its log."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)
        self.killed = True
        self.stop_status = self.proc.returncode
        if self.log is not None:
            self.log.close()
            self.log = None

    def rss(self):
        """The process's resident set (VmRSS) in bytes; 0 once it is gone."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def describe(self):
        return "ringcached %s" % " ".join(self.flags)

    def remove_log(self):
        if self.logpath is not None:
            try:
                os.unlink(self.logpath)
            except OSError:
                pass

    def log_text(self):
        if self.logpath is None:
            return ""
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def sanitizer_reports(self):
        """The lines of its log in which a sanitizer reports an error."""
        return [ln for ln in self.log_text().splitlines() if SANITIZER_RE.search(ln)]

    def dump_log(self):
        if self.logpath is None:
            return
        print("---- ringcached %s log (%s) ----" % (" ".join(self.flags), self.logpath))
        text = self.log_text()
        print(text[-8000:] if len(text) > 8000 else text, end="" if text.endswith("\n") else "\n")
        print("---- end of log ----", flush=True)

    def connect(self, timeout=IO_TIMEOUT):
        return Conn(self.port, timeout)

    def request(self, method, path, body=None, headers=None, timeout=IO_TIMEOUT):
        return request(self.port, method, path, body, headers, timeout)

    def __enter__(self):
        # "with Server(...).start() as srv" and "with Server(...) as srv"
        # both start it once: a second start() would leave the first
        # process running, unowned, after the test
        if self.proc is not None and self.stop_status is None:
            return self
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --- the client side ---------------------------------------------------------

class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value) as sent
        self.body = body
        self.raw_head = raw_head

    def header(self, name):
        """Value of the last header called `name` (any case), or None."""
        name = name.lower()
        val = None
        for k, v in self.headers:
            if k.lower() == name:
                val = v
        return val

    def has_token(self, name, token):
        v = self.header(name)
        return v is not None and token.lower() in [t.strip().lower() for t in v.split(",")]

    def __repr__(self):
        return "<%s %d %s, %d body bytes: %s>" % (self.version, self.status, self.reason,
                                                 len(self.body), _short(self.body, 80))


class ProtocolError(Exception):
    pass


class TcpClient:
    """A loopback TCP connection (Nagle off, every operation bounded by
    `timeout`) with a receive buffer; a context manager that closes it.
    `port` may also be the path of a Unix socket (--listen unix:PATH).
    The base of the HTTP client here and of the RESP client of
    redis_harness.py."""

    def __init__(self, port, timeout):
        if isinstance(port, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(port)
            except OSError:
                self.sock.close()
                raise
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Conn(TcpClient):
    """A client connection with its own receive buffer, so pipelined
    responses that arrive in one segment are read one at a time."""

    def __init__(self, port, timeout=IO_TIMEOUT):
        super().__init__(port, timeout)
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def send_slowly(self, data, pause=0.002):
        """One byte per send, with a pause, so each byte is its own segment."""
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(pause)

    def _fill(self):
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(1 << 16)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out, self.buf = self.buf[:i + len(sep)], self.buf[i + len(sep):]
                return out
            if not self._fill():
                raise ProtocolError("connection closed before %r (have %r)" % (sep, self.buf[:200]))

    def _read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ProtocolError("connection closed after %d of %d body bytes"
                                    % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head_only=False):
        """Reads one response.  head_only: a response to HEAD (or a 1xx),
        which has no body whatever Content-Length says.  A response without
        Content-Length or chunked coding is read until the server closes."""
        raw = self._read_until(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise ProtocolError("bad status line %r" % lines[0])
        version, status, reason = m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1")
        headers = []
        for ln in lines[1:]:
            name, sep, value = ln.partition(b":")
            if not sep:
                raise ProtocolError("bad header line %r" % ln)
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        resp = Response(version, status, reason, headers, b"", raw)
        if head_only or 100 <= status < 200 or status in (204, 304):
            return resp
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if te is not None and "chunked" in te.lower():
            resp.body = self._read_chunked()
        elif cl is not None:
            resp.body = self._read_exact(int(cl))
        else:
            resp.body = self.read_until_close()
        return resp

    def _read_chunked(self):
        body = b""
        while True:
            size = int(self._read_until(b"\r\n").split(b";")[0].strip(), 16)
            if size == 0:
                while self._read_until(b"\r\n") != b"\r\n":
                    pass
                return body
            body += self._read_exact(size)
            self._read_until(b"\r\n")

    def read_until_close(self, timeout=IO_TIMEOUT):
        """Everything the server sends until it closes.  Raises
        socket.timeout if it has not closed within `timeout`."""
        self.sock.settimeout(timeout)
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def closed_by_peer(self, timeout=IO_TIMEOUT):
        """True when the server closes (EOF or reset) within `timeout`
        without sending anything more; False if it sends bytes or stays
        open.  Any bytes that did arrive are left in self.buf."""
        self.sock.settimeout(timeout)
        if self.buf:
            return False
        try:
            return not self._fill()
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(IO_TIMEOUT)

    def still_open(self):
        """Non-blocking probe: True when the peer has neither closed nor sent
        anything."""
        self.sock.setblocking(False)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
            return False
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(IO_TIMEOUT)

    def roundtrip(self, method, path, body=None, headers=None):
        self.send(build_request(method, path, body, headers))
        return self.read_response(head_only=(method == "HEAD"))


def build_request(method, path, body=None, headers=None, version="HTTP/1.1"):
    """A request with Host and, for a body, Content-Length (unless the
    caller's headers give Content-Length or Transfer-Encoding)."""
    if isinstance(path, str):
        path = path.encode("latin-1")
    head = [b"%s %s %s" % (method.encode(), path, version.encode()), b"Host: 127.0.0.1"]
    names = set()
    for k, v in (headers or []):
        names.add(k.lower())
        head.append(b"%s: %s" % (_b(k), _b(v)))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + (body or b"")


def _b(v):
    return v if isinstance(v, bytes) else str(v).encode("latin-1")


def request(port, method, path, body=None, headers=None, timeout=IO_TIMEOUT):
    """One request on a fresh connection."""
    with Conn(port, timeout) as c:
        return c.roundtrip(method, path, body, headers)


def show(r):
    """A response as failure details print it: the head as sent, the body
    size and its start; an exception (a request that failed) as itself."""
    if isinstance(r, Exception):
        return repr(r)
    return "%r + %d body bytes: %r" % (r.raw_head, len(r.body), r.body[:120])


# --- /stats ------------------------------------------------------------------------

def strip_clock(raw):
    """A head with the parts that follow the clock blanked: the remaining
    max-age and the Date line (a GET and its HEAD may straddle a second)."""
    raw = re.sub(rb"max-age=\d+", b"max-age=N", raw)
    return re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: D", raw)


def stats(srv, conn=None, headers=None):
    """The GET /stats document (docs/stats.md) as a dict, asked on a fresh
    connection to srv or on `conn`.  Raises ProtocolError when the answer
    is not 200 with a JSON object: a test that checks /stats itself reads
    the response instead."""
    if conn is not None:
        r = conn.roundtrip("GET", "/stats", headers=headers)
    else:
        r = srv.request("GET", "/stats", headers=headers)
    if r.status != 200:
        raise ProtocolError("GET /stats -> %s" % show(r))
    try:
        doc = json.loads(r.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError("GET /stats is not JSON (%s): %s" % (e, show(r)))
    if not isinstance(doc, dict):
        raise ProtocolError("GET /stats is not a JSON object: %s" % show(r))
    return doc


def stats_delta(before, after):
    """How the integer fields of one level of two /stats documents moved
    (stats(...)["total"], or ["l2"]): a Counter, 0 for a field that did not
    move; only the moved ones print."""
    return collections.Counter({k: v - before.get(k, 0) for k, v in after.items()
                                if isinstance(v, int) and v != before.get(k, 0)})


def chunked(body, sizes=(7, 1, 4096)):
    """body in chunked coding, cut into the given chunk sizes in turn."""
    out, i, k = [], 0, 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        k += 1
        piece = body[i:i + n]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        i += n
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def pct(key):
    """Percent-encodes every byte of key (bytes or str): the path segment
    that decodes back to exactly these bytes."""
    if isinstance(key, str):
        key = key.encode()
    return "".join("%%%02X" % b for b in key)


def wait_for(cond, timeout, interval=0.05):
    """Polls cond() until it is true or `timeout` seconds pass; returns its
    last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def raise_nofile(want):
    """Raises the soft RLIMIT_NOFILE toward `want` (up to the hard limit);
    returns the soft limit now in force."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError) as e:
            if getattr(e, "errno", None) not in (errno.EPERM, None):
                raise
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft


# --- key partitioning, mirrored from src/core/hash.c ---------------------------
# The tests use it to choose keys that land on given shards.  If hash.c
# changes, test_pipeline still passes (the keys just spread differently) but
# reports that its keys no longer cover every shard.

_M64 = (1 << 64) - 1
_K0 = 0x9e3779b97f4a7c15
_K1 = 0xbf58476d1ce4e5b9
_K2 = 0x94d049bb133111eb
_K3 = 0xd6e8feb86659fd93
# The seed of the daemon's key hash.  Today's binary always hashes with
# this one; once it draws a random seed per process (issue 11: --hash-seed
# N), every Server passes this one (hash_seed_flags) so the mirror below
# still computes the daemon's shards.
HASH_KEY_SEED = 0x72696e6763616368


def hash_seed_flags(seed=None):
    """The flags that make a ringcached hash keys with `seed` (default
    HASH_KEY_SEED, which key_shard() mirrors; "random" for the daemon's own
    secret seed).  Every Server.start() passes them."""
    return ["--hash-seed", str(HASH_KEY_SEED) if seed is None else seed]


def _fold(a, b):
    r = a * b
    return (r & _M64) ^ (r >> 64)


def hash_bytes(data, seed=HASH_KEY_SEED):
    n = len(data)
    h = seed ^ _K0 ^ ((n * _K1) & _M64)
    p = 0
    while n >= 16:
        a = int.from_bytes(data[p:p + 8], "little")
        b = int.from_bytes(data[p + 8:p + 16], "little")
        h = _fold(a ^ _K1, b ^ h ^ _K2)
        p += 16
        n -= 16
    if n >= 8:
        h = _fold(int.from_bytes(data[p:p + 8], "little") ^ _K3, h ^ _K2)
        p += 8
        n -= 8
    if n > 0:
        t = int.from_bytes(data[p:p + n], "little")
        h = _fold(t ^ _K1 ^ ((n << 56) & _M64), h ^ _K3)
    return _fold(h ^ _K0, h ^ _K2 ^ (h >> 32))


def key_shard(key, nshards):
    if isinstance(key, str):
        key = key.encode()
    return ((hash_bytes(key) >> 32) * nshards) >> 32


def keys_per_shard(prefix, nshards, per_shard):
    """{shard: [keys]} with `per_shard` keys (str) for every shard."""
    out = {s: [] for s in range(nshards)}
    i = 0
    while any(len(v) < per_shard for v in out.values()):
        k = "%s%d" % (prefix, i)
        s = key_shard(k, nshards)
        if len(out[s]) < per_shard:
            out[s].append(k)
        i += 1
    return out
