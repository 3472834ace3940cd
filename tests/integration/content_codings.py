"""Content codings for the integration tests (docs/fastlane.md): decoding
br and gzip bodies, values of a chosen compressibility, and waiting for the
variants the compression workers make after a PUT is answered.  The daemon
and the client side are harness.py's.

br bodies are decoded with the brotli command-line tool (Debian package
`brotli`), run with a timeout; gzip bodies with python's gzip module.
"""

import gzip
import json
import random
import shutil
import subprocess
import zlib

from harness import stats, wait_for

DECODE_TIMEOUT = 10.0


def brotli_cli():
    """Path of the brotli tool, or None when it is not installed."""
    return shutil.which("brotli")


def unbrotli(data):
    """The decoded bytes of a brotli stream; raises ValueError when the
    tool rejects it (the message carries its stderr)."""
    tool = brotli_cli()
    if tool is None:
        raise ValueError("the brotli command-line tool is not installed (apt-get install brotli)")
    p = subprocess.run([tool, "-d", "-c"], input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=DECODE_TIMEOUT)
    if p.returncode != 0:
        raise ValueError("brotli -d exited %d: %s"
                         % (p.returncode, p.stderr.decode("utf-8", "replace").strip()))
    return p.stdout


def gunzip(data):
    """The decoded bytes of one gzip member; raises ValueError if it is not
    valid gzip (bad magic, bad CRC, trailing bytes)."""
    if data[:2] != b"\x1f\x8b":
        raise ValueError("no gzip magic: %r" % data[:4])
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(data) + d.flush()
        if not d.eof:
            raise ValueError("gzip stream is truncated")
        if d.unused_data:
            raise ValueError("%d bytes after the gzip member" % len(d.unused_data))
        # gzip.decompress checks the CRC and length trailer as well
        if gzip.decompress(data) != out:
            raise ValueError("gzip and zlib disagree")
        return out
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError("not valid gzip: %s" % e)


def decode(body, coding):
    """body decoded per its Content-Encoding (None: identity)."""
    if coding is None:
        return body
    if coding.lower() == "br":
        return unbrotli(body)
    if coding.lower() in ("gzip", "x-gzip"):
        return gunzip(body)
    raise ValueError("unexpected Content-Encoding %r" % coding)


def json_value(size, seed=1):
    """A JSON document of exactly `size` bytes (size >= 4) that compresses
    well: an array of similar records, padded in a last string."""
    if size < 4:
        raise ValueError("json_value needs size >= 4")
    rnd = random.Random(seed)
    parts = []
    used = 2                            # the brackets
    i = 0
    while True:
        rec = json.dumps({"id": i, "name": "user-%d" % rnd.randrange(1000),
                          "email": "user%d@example.com" % rnd.randrange(1000),
                          "active": rnd.random() < 0.5,
                          "tags": ["alpha", "beta", "gamma"][:rnd.randrange(4)]},
                         separators=(",", ":")).encode()
        # room left for this record, its comma and a padding string ',""'
        if used + len(rec) + 1 + 3 > size:
            break
        parts.append(rec)
        used += len(rec) + (1 if len(parts) > 1 else 0)
        i += 1
    pad = size - used - (3 if parts else 2)
    parts.append(b'"' + b"x" * pad + b'"')
    body = b"[" + b",".join(parts) + b"]"
    assert len(body) == size, (len(body), size)
    return body


def text_value(size):
    """`size` bytes of repetitive ASCII text: compresses by far more than 10%."""
    unit = b"the quick brown fox jumps over the lazy dog; "
    return (unit * (size // len(unit) + 1))[:size]


def random_value(size, seed=7):
    """`size` bytes that no compressor shrinks (seeded, so reproducible)."""
    return random.Random(seed).randbytes(size)


def skewed_value(size, alphabet, seed):
    """`size` printable bytes drawn from `alphabet` symbols: between
    incompressible and very compressible, to find values where only one of
    the two codings saves 10 %."""
    rnd = random.Random(seed)
    return bytes(32 + rnd.randrange(alphabet) for _ in range(size))


SETTLE_TIMEOUT = 60.0


def zip_pending(srv):
    """Values the daemon has handed to its compression workers whose
    variants are not installed (or discarded) yet (/stats zip_pending)."""
    return stats(srv)["total"]["zip_pending"]


def settle(srv):
    """Waits until every value written so far has its br/gzip variants in
    place (or was found not to need them): a PUT is answered before they
    exist (issue 8).  Returns False if they are still pending after
    SETTLE_TIMEOUT seconds (the workers run at SCHED_IDLE, so a machine
    busy with other work slows them down)."""
    return wait_for(lambda: zip_pending(srv) == 0, SETTLE_TIMEOUT, 0.01)
