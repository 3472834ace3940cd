"""The harness of the RESP front end's integration tests (issue 12), on top of
harness.py: ringcached with --resp-listen on a free port, and a raw RESP
client that reads RESP2 and RESP3 replies either as values or as the exact
bytes the server sent (for the byte-for-byte comparison with redis-server).

Standard library only.  Every socket operation has a timeout.
"""

import os
import socket

from harness import IO_TIMEOUT, Server, TcpClient, free_port
from redis_harness import resp_encode as encode


class RespError(Exception):
    """An error reply ("-ERR ...") as a value."""

    def __eq__(self, other):
        return isinstance(other, RespError) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


class Verbatim(bytes):
    """A RESP3 verbatim string (its "txt:" prefix removed)."""


class Client(TcpClient):
    """One connection.  cmd() sends a command and returns its reply as a
    value: bytes, int, None, list, dict, set, or a RespError instance.
    raw_cmd() returns the reply's exact bytes instead.  (redis_harness.Resp
    reads RESP2 only and keeps no bytes.)"""

    def __init__(self, port, timeout=IO_TIMEOUT):
        super().__init__(port, timeout)
        self.raw = []     # bytes of the reply being read, when recording

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln, self.buf = self.buf[:i], self.buf[i + 2:]
                self.raw.append(ln + b"\r\n")
                return ln
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n + 2:]
        self.raw.append(out + b"\r\n")
        return out

    def read(self):
        ln = self._line()
        t, rest = ln[:1], ln[1:]
        if t == b"+":
            return rest
        if t == b"-":
            return RespError(rest.decode("latin-1"))
        if t == b":":
            return int(rest)
        if t == b"_":
            return None
        if t == b"#":
            return rest == b"t"
        if t == b",":
            return float(rest)
        if t in (b"$", b"="):
            n = int(rest)
            if n < 0:
                return None
            v = self._exact(n)
            return Verbatim(v[4:]) if t == b"=" else v
        if t in (b"*", b"~"):
            n = int(rest)
            if n < 0:
                return None
            items = [self.read() for _ in range(n)]
            return set(items) if t == b"~" and all(not isinstance(i, list) for i in items) \
                else items
        if t == b"%":
            n = int(rest)
            return {self._key(self.read()): self.read() for _ in range(n)}
        raise ConnectionError("bad RESP line %r" % ln)

    @staticmethod
    def _key(k):
        return tuple(k) if isinstance(k, list) else k

    def read_raw(self):
        """The next reply's bytes, exactly as sent."""
        self.raw = []
        self.read()
        out = b"".join(self.raw)
        self.raw = []
        return out

    def cmd(self, *args):
        self.send(encode(*args))
        return self.read()

    def raw_cmd(self, *args):
        self.send(encode(*args))
        return self.read_raw()

    def closed_by_server(self, timeout=IO_TIMEOUT):
        """True when the server closes the connection (EOF or reset) with
        nothing more than what is already buffered."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


class RespServer(Server):
    """ringcached with --resp-listen on a free port (self.resp_port)."""

    def __init__(self, flags=None, checks=None, **kw):
        self.resp_port = free_port()
        base = ["--shards", "2", "--memory", "64M"] if flags is None else list(flags)
        super().__init__(base + ["--resp-listen", "127.0.0.1:%d" % self.resp_port],
                         checks=checks, **kw)

    def client(self, timeout=IO_TIMEOUT):
        return Client(self.resp_port, timeout)

    def describe(self):
        return "ringcached (RESP) %s" % " ".join(self.flags)


def redis_py():
    """Debian's python3-redis (tools/deps.sh), or None.  Its module lives in
    the system's dist-packages, which another python3 may not search."""
    try:
        import redis  # noqa: F401
        return redis
    except ImportError:
        pass
    import sys
    for d in ("/usr/lib/python3/dist-packages",):
        if os.path.isdir(os.path.join(d, "redis")) and d not in sys.path:
            sys.path.append(d)
    try:
        import redis  # noqa: F401
        return redis
    except ImportError:
        return None
