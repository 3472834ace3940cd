#!/bin/bash
# callgrind-hit.sh - instructions per pipelined GET hit of a ringcached
# binary, load only: the daemon runs under valgrind --tool=callgrind
# (--shards 1 --spin-us 0), gets a 100-byte value and a warm-up round, its
# counters are zeroed (callgrind_control -z), N GETs go 16 per write on one
# connection, and the counters are dumped (callgrind_control -d) and divided
# by N.  Stable to a few instructions from run to run, unlike timings on a
# shared VM: compare two builds side by side (issue 11's regression check).
# The daemon is then killed: under callgrind its main thread may never leave
# the start barrier, so it would not stop on SIGTERM (valgrind only).
#
# With PROTO=resp the GETs are RESP's (`GET bench`, on --resp-listen).
#
# With LOAD=redis-benchmark (RESP only), the load is instead issue 12's
# unpipelined one: `redis-benchmark -t OP -d 100 -c 64 -r 1000 -P 1 -n N`
# (OP=get, the default, after a SET warm-up of the same keys; or OP=set),
# so the count includes what one request per receive and per send costs.
# It varies a few percent from run to run (how many requests each loop turn
# finds); the pipelined count does not.
#
# usage: [PROTO=http|resp] [LOAD=redis-benchmark [OP=get|set]]
#        perf/callgrind-hit.sh BINARY [N] [extra ringcached flags...]
# prints: "<binary> <flags> : <instructions>/request (load only, n=N) file=<dump>"
bin=$1; n=${2:-20000}; shift 2 || shift $#
proto=${PROTO:-http}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); rport=$(free_port)
out=/tmp/callgrind-hit.$$.out
resp=(); [ "$proto" = resp ] && resp=(--resp-listen "127.0.0.1:$rport")
valgrind --tool=callgrind --callgrind-out-file=$out $bin --listen 127.0.0.1:$port "${resp[@]}" --shards 1 --memory 64M --spin-us 0 "$@" >/tmp/callgrind-hit.$$.log 2>&1 &
vp=$!
for i in $(seq 600); do curl -s -o /dev/null http://127.0.0.1:$port/health && break; sleep 0.1; done
curl -s -o /dev/null -X PUT --data-binary "$(printf 'x%.0s' $(seq 100))" http://127.0.0.1:$port/cache/bench
gets() {	# N: GETs of the value, 16 per write on one connection, every answer read
	python3 - "$port" "$rport" "$proto" "$1" <<'PY'
import socket, sys
port, rport, proto, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if proto == "resp":
    port, req, ans = rport, b"*2\r\n$3\r\nGET\r\n$5\r\nbench\r\n", b"$100\r\n"
else:
    req, ans = b"GET /cache/bench HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200"
s = socket.create_connection(("127.0.0.1", port))
for i in range(0, n, 16):
    s.sendall(req * 16); buf = b""
    while buf.count(ans) < 16: buf += s.recv(1 << 20)
PY
}
load=${LOAD:-pipelined}; op=${OP:-get}
bench() {	# OP N: redis-benchmark's unpipelined load, 64 connections
	timeout 600 redis-benchmark -p "$rport" -t "$1" -d 100 -c 64 -r 1000 -n "$2" -P 1 -q >/dev/null 2>&1
}
if [ "$load" = redis-benchmark ]; then
	[ "$proto" = resp ] || { echo "LOAD=redis-benchmark needs PROTO=resp" >&2; kill -9 $vp; exit 2; }
	bench set 5000  # warm-up, not counted: the keys GET reads
	callgrind_control -z $vp >/dev/null
	bench "$op" "$n"
else
	gets 64         # warm-up, not counted
	callgrind_control -z $vp >/dev/null
	gets "$n"
fi
callgrind_control -d $vp >/dev/null
sleep 1
kill -9 $vp 2>/dev/null
f=$(ls -t $out.* 2>/dev/null | head -1)
tot=$(callgrind_annotate $f 2>/dev/null | grep 'PROGRAM TOTALS' | awk '{gsub(",","",$1); print $1}')
what=$proto; [ "$load" = redis-benchmark ] && what="$proto redis-benchmark -P1 $op"
echo "$(basename $bin) $what $* : $((tot / n)) instructions/request (load only, n=$n) file=$f"
