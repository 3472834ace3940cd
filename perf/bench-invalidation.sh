#!/usr/bin/env bash
# bench-invalidation.sh - the L2 figures of issue 5 (docs/coherence.md,
# docs/benchmarks.md): two ringcached instances, A and B, on one
# redis-server, all on loopback.
#   - invalidation propagation: time from a DELETE's response on A to B
#     answering 404, p50/p99 over KEYS keys;
#   - miss latency through L2 (B's L1 miss answered from Redis) next to a
#     direct GET of the same key from Redis, in the same run, over HTTP and
#     again over RESP (B's --resp-listen: the same client code for both);
#   - idle CPU: B's utime+stime over IDLE_SECONDS with nothing to do but
#     keep its Redis connections (issue 8: no spinning when idle).
# The measuring is done by perf/bench-invalidation.py.  A benchmark, not a
# test: it passes no verdict.
#
# usage: perf/bench-invalidation.sh [path/to/ringcached]
# environment (defaults in brackets):
#   RINGCACHED   the binary                      [build-release/src/ringcached]
#   KEYS         keys per figure                 [1000]
#   RC_FLAGS     extra flags for both instances  [--shards 1 --memory 64M --hugepages off]
#   REDIS_SERVER redis-server binary             [redis-server]
#   REDIS_CPU    pin redis-server to this CPU    [unset: not pinned]
#                (with RC_FLAGS' --cpuset: Redis beside or away from B's shard)
#   IDLE_SECONDS how long the idle CPU is measured [10]
# Results also go to perf/out/bench-invalidation-<time>.txt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bench="bench-invalidation"
rc_bin=${1:-${RINGCACHED:-$root/build-release/src/ringcached}}
keys=${KEYS:-1000}
rc_flags=${RC_FLAGS:---shards 1 --memory 64M --hugepages off}
redis_server=${REDIS_SERVER:-redis-server}

need_tools "" "$redis_server" curl python3
need_ringcached
# grep reads all of --help: with -q it could exit at the match while the
# daemon still writes, and pipefail would then report the daemon's SIGPIPE
"$rc_bin" --help 2>&1 | grep -- '--redis' >/dev/null ||
	{ echo "bench-invalidation: $rc_bin has no --redis flag" >&2; exit 1; }

bench_start

wait_redis() {	# port: until it answers PING, at most 10 s
	for _ in $(seq 100); do
		python3 - "$1" <<-'EOF' && return 0
			import socket, sys
			try:
			    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
			    s.sendall(b"PING\r\n")
			    sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
			except OSError:
			    sys.exit(1)
		EOF
		sleep 0.1
	done
	echo "bench-invalidation: redis-server on port $1 did not answer within 10 s" >&2
	return 1
}

redis_port=$(free_port)
${REDIS_CPU:+taskset -c "$REDIS_CPU"} "$redis_server" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
	>"$tmp/redis.log" 2>&1 &
pids+=($!)
wait_redis "$redis_port" || { cat "$tmp/redis.log" >&2; exit 1; }

start_instance() {	# name: starts it, sets port_<name>, resp_<name> and pid_<name>
	local name=$1 port resp
	port=$(free_port)
	resp=$(free_port)
	# shellcheck disable=SC2086
	"$rc_bin" --listen "127.0.0.1:$port" --resp-listen "127.0.0.1:$resp" \
		--redis "redis://127.0.0.1:$redis_port" \
		--instance-id "bench-$name" $rc_flags >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	wait_http "http://127.0.0.1:$port/health" || { cat "$tmp/$name.log" >&2; exit 1; }
	eval "port_$name=$port resp_$name=$resp pid_$name=$!"
}
start_instance a
start_instance b
# both subscribed and registered before the first measurement
for _ in $(seq 100); do
	code=$(curl -s -o "$tmp/cluster.json" -w '%{http_code}' --max-time 1 \
		"http://127.0.0.1:$port_a/cluster" || true)
	[ "$code" = 200 ] && grep -q bench-b "$tmp/cluster.json" && break
	sleep 0.1
done

log "bench-invalidation: $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs, $keys keys"
log "ringcached $("$rc_bin" --version 2>&1 | head -1), flags: $rc_flags; $("$redis_server" --version | cut -d' ' -f1-3)${REDIS_CPU:+, pinned to CPU $REDIS_CPU}"
python3 "$here/bench-invalidation.py" --a "127.0.0.1:$port_a" --b "127.0.0.1:$port_b" \
	--redis "127.0.0.1:$redis_port" --keys "$keys" --b-resp "127.0.0.1:$resp_b" | tee -a "$out"

run_ns() {	# pid: time its threads have run, in ns (schedstat: finer than ticks)
	cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%d", t }'
}
idle=${IDLE_SECONDS:-10}
sleep 1		# past the shards' spin and the coherence thread's
t0=$(cpu_ticks "$pid_b") n0=$(run_ns "$pid_b")
sleep "$idle"
t1=$(cpu_ticks "$pid_b") n1=$(run_ns "$pid_b")
log "$(awk -v t="$((t1 - t0))" -v n="$((n1 - n0))" -v hz="$hz" -v s="$idle" 'BEGIN {
	printf "idle CPU of B (--redis, connected) over %d s: utime+stime %d ticks = %.0f ms " \
	       "(%.2f%% of one CPU); its threads ran %.2f ms (schedstat)",
	       s, t, t * 1000 / hz, t * 100 / hz / s, n / 1e6 }')"
log "results: $out"
