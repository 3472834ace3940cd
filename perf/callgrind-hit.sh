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
# usage: [PROTO=http|resp] perf/callgrind-hit.sh BINARY [N] [extra ringcached flags...]
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
gets 64         # warm-up, not counted
callgrind_control -z $vp >/dev/null
gets "$n"
callgrind_control -d $vp >/dev/null
sleep 1
kill -9 $vp 2>/dev/null
f=$(ls -t $out.* 2>/dev/null | head -1)
tot=$(callgrind_annotate $f 2>/dev/null | grep 'PROGRAM TOTALS' | awk '{gsub(",","",$1); print $1}')
echo "$(basename $bin) $proto $* : $((tot / n)) instructions/request (load only, n=$n) file=$f"
