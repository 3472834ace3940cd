#!/bin/sh
# bench-memory.sh - resident memory per key, ringcached next to redis-server.
#
#   perf/bench-memory.sh [BUILDDIR] [KEYS]      (defaults: build, 1000000)
#
# Both get KEYS keys key:0..key:N-1 with 100-byte values: ringcached over
# HTTP (pipelined PUTs from perf/load-keys.py, --hugepages off so the RSS
# counts only touched 4 KiB pages), redis-server with DEBUG POPULATE.  The
# figure is the growth of VmRSS across the load divided by KEYS.
#
# ringcached's receive buffers (--recv-buffers x --recv-buffer-size per
# shard) fill as traffic arrives, independent of what is stored, so a
# warm-up of pipelined GETs for missing keys runs before the baseline is
# taken; what remains is the store's growth.  Redis' growth has no network
# part: DEBUG POPULATE runs inside the server.
set -eu

BUILDDIR=${1:-build}
KEYS=${2:-1000000}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$BUILDDIR/src/ringcached
[ -x "$BIN" ] || { echo "bench-memory: $BIN not found (build it first)" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "bench-memory: redis-server not installed" >&2; exit 2; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
wait_port() {
	python3 - "$1" <<'EOF'
import socket, sys, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
EOF
}

RC_PID= ; REDIS_PID=
cleanup() {
	[ -n "$RC_PID" ] && kill "$RC_PID" 2>/dev/null || true
	[ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# --- ringcached ---------------------------------------------------------
PORT=$(free_port)
"$BIN" --listen "127.0.0.1:$PORT" --shards 1 --memory 512M --hugepages off \
	>/tmp/bench-memory-ringcached.log 2>&1 &
RC_PID=$!
wait_port "$PORT" || { echo "bench-memory: ringcached did not start" >&2; cat /tmp/bench-memory-ringcached.log; exit 1; }
python3 - "$PORT" <<'EOF'
import socket, sys
# Warm-up: batches of 8000 pipelined GETs for a missing key (400 KB
# each, so the kernel fills whole receive buffers) cycle through the
# shard's buffer ring and touch every page of it.
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
n = 8000
req = b"GET /cache/warmup-missing-key HTTP/1.1\r\nHost: w\r\n\r\n" * n
for _ in range(100):
    s.sendall(req)
    got, tail = 0, b""
    while got < n:
        buf = tail + s.recv(1 << 20)
        got += buf.count(b"HTTP/1.1 ")
        tail = buf[-8:]
s.close()
EOF
RC0=$(rss_kib "$RC_PID")
python3 "$HERE/load-keys.py" --port "$PORT" -n "$KEYS" --prefix key: --size 100 --verify 100
RC1=$(rss_kib "$RC_PID")
kill "$RC_PID"; wait "$RC_PID" 2>/dev/null || true; RC_PID=

# --- redis-server -------------------------------------------------------
PORT=$(free_port)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
	--enable-debug-command yes --daemonize no >/tmp/bench-memory-redis.log 2>&1 &
REDIS_PID=$!
wait_port "$PORT" || { echo "bench-memory: redis-server did not start" >&2; exit 1; }
RD0=$(rss_kib "$REDIS_PID")
redis-cli -p "$PORT" DEBUG POPULATE "$KEYS" key 100 >/dev/null
RD1=$(rss_kib "$REDIS_PID")
RDVER=$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')

awk -v n="$KEYS" -v rc0="$RC0" -v rc1="$RC1" -v rd0="$RD0" -v rd1="$RD1" -v rdv="$RDVER" 'BEGIN {
	printf "%-22s %12s %12s %14s\n", "server", "RSS before", "RSS after", "bytes per key"
	printf "%-22s %10d K %10d K %14.1f\n", "ringcached (1 shard)", rc0, rc1, (rc1 - rc0) * 1024 / n
	printf "%-22s %10d K %10d K %14.1f\n", "redis-server " rdv, rd0, rd1, (rd1 - rd0) * 1024 / n
	printf "%d keys key:N with 100-byte values; target for ringcached: <= 134 bytes per key\n", n
}'
