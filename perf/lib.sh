# perf/lib.sh - shell helpers shared by the bash benchmark scripts
# (bench-http.sh, bench-invalidation.sh, bench-write-stall.sh).  Not run on
# its own: a script sources it after `set -euo pipefail` with
#     . "$(dirname "$0")/lib.sh"
#
# Before calling these, a script sets:
#   bench    its name, for messages and file names ("bench-http")
#   rc_bin   the ringcached binary (for need_ringcached, start_ringcached)
#
# What it provides:
#   here, root            the absolute paths of perf/ and of the repository
#   choose_cpus WHO       sets server_cpu, client_cpu from SERVER_CPU/CLIENT_CPU
#                         or the first and last CPU we may use; warns (naming
#                         WHO, the client side) when they are the same
#   need_tools HINT T...  exits unless every tool T is on PATH; HINT, if not
#                         empty, is added to the message in parentheses
#   need_ringcached       exits unless $rc_bin is executable
#   bench_start           sets tmp (a fresh directory under /tmp), out
#                         (perf/out/$bench-<time>.txt) and pids (empty), and
#                         installs the traps: on exit every process in pids
#                         is stopped and $tmp removed; INT/TERM exit 130
#   pids                  processes to stop on exit: `pids+=($!)` after `&`
#   stop_pid PID          TERM, up to 5 s, then KILL; waits; then the same
#                         for the children it had; forgets it
#   forget_pid PID        drops from pids a process that has ended
#   log TEXT...           prints a line and appends it to $out
#   free_port             prints a free TCP port on 127.0.0.1
#   wait_http URL         until URL answers 200, at most 10 s
#   cpu_ticks PID         utime+stime, in clock ticks, of PID and its child
#                         processes (nginx's worker); 0 for one that is gone
#   hz                    clock ticks per second
#   body                  the 100-byte value servers serve and ringcached holds
#   start_ringcached [FLAG...]
#                         one shard on $server_cpu, --memory 64M, $RC_FLAGS
#                         and FLAGs; logs to $tmp/ringcached.log; preloads
#                         /cache/bench with $body; sets rc_pid, rc_url

# shellcheck shell=bash disable=SC2034,SC2154  # globals of the sourcing script

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

choose_cpus() {	# who: what shares the server's CPU, for the warning
	local allowed
	allowed=$(python3 -c 'import os; print(" ".join(map(str, sorted(os.sched_getaffinity(0)))))')
	server_cpu=${SERVER_CPU:-${allowed##* }}
	client_cpu=${CLIENT_CPU:-${allowed%% *}}
	[ "$server_cpu" != "$client_cpu" ] ||
		echo "warning: server and $1 share CPU $server_cpu; set SERVER_CPU/CLIENT_CPU" >&2
}

need_tools() {	# hint tool...
	local hint=${1:+ ($1)} tool
	shift
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "$bench: $tool not found$hint" >&2; exit 1; }
	done
}

need_ringcached() {
	[ -x "$rc_bin" ] || {
		echo "$bench: no ringcached at $rc_bin" >&2
		echo "  build one: meson setup build-release --buildtype=release && ninja -C build-release src/ringcached" >&2
		exit 1
	}
}

bench_start() {
	tmp=$(mktemp -d "/tmp/$bench.XXXXXX")
	mkdir -p "$here/out"
	out="$here/out/$bench-$(date +%Y%m%d-%H%M%S).txt"
	pids=()
	trap cleanup EXIT
	trap 'exit 130' INT TERM
}

stop_pid() {	# stops one process we started, then what it started, and forgets it
	local kids k
	# A `f &` subshell dies on TERM but leaves its child running (wrk under
	# timeout, which has its own process group): its children are stopped
	# too once it has gone, if they are still there (nginx's worker is not).
	kids=$(pgrep -P "$1" || true)
	term_kill "$1"
	wait "$1" 2>/dev/null || true
	for k in $kids; do term_kill "$k"; done
	forget_pid "$1"
}

term_kill() {	# pid: TERM, up to 5 s to end, then KILL
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
}

forget_pid() {	# a process that has ended
	local p keep=()
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}

cleanup() {
	local p
	for p in "${pids[@]}"; do
		stop_pid "$p"
	done
	rm -rf "$tmp"
}

log() { echo "$*" | tee -a "$out"; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() {	# url: until it answers 200, at most 10 s
	for _ in $(seq 100); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" || true)" = 200 ] && return 0
		sleep 0.1
	done
	echo "$bench: $1 did not answer 200 within 10 s" >&2
	return 1
}

cpu_ticks() {	# pid: utime+stime of it and its children, in clock ticks
	local total=0 p s rest
	for p in "$1" $(pgrep -P "$1"); do
		s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		rest=${s##*) }	# fields after "(comm)": field 3 is the first
		set -- $rest
		total=$((total + ${12} + ${13}))	# fields 14 and 15: utime, stime
	done
	echo "$total"
}
hz=$(getconf CLK_TCK)

body=$(printf 'x%.0s' $(seq 100))

start_ringcached() {	# extra flags...
	local port
	port=$(free_port)
	taskset -c "$server_cpu" "$rc_bin" --listen "127.0.0.1:$port" --shards 1 \
		--cpuset "$server_cpu" --memory 64M ${RC_FLAGS:-} "$@" >"$tmp/ringcached.log" 2>&1 &
	pids+=($!)
	rc_pid=$!
	rc_url=http://127.0.0.1:$port
	wait_http "$rc_url/health" || { cat "$tmp/ringcached.log" >&2; exit 1; }
	curl -s -o /dev/null -X PUT --data-binary "$body" "$rc_url/cache/bench"
	[ "$(curl -s --max-time 2 "$rc_url/cache/bench")" = "$body" ] ||
		{ echo "$bench: could not preload /cache/bench" >&2; exit 1; }
}
