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
#   children_ticks        utime+stime of this shell's ended, waited-for
#                         children (a load generator run in the foreground)
#   busy_ticks            CPU time of the whole machine (all CPUs), idle and
#                         iowait excepted: less the server's and the client's,
#                         what other people's load took
#   hz                    clock ticks per second
#   body                  the 100-byte value servers serve and ringcached holds
#   find_wrk2             sets wrk2_bin from WRK2, else `wrk2` on PATH; exits
#                         saying how to get it when there is none
#   choose_load           the load generator for RATE: sets load_bin and
#                         load_args (wrk2 and -R RATE when RATE is set, else
#                         Debian's wrk, closed loop and no args) and load_name
#   read_summary FILE     sets sum[KEY] from the summary: line summary.lua
#                         printed (requests, p50, ..., in microseconds)
#   start_ringcached [FLAG...]
#                         one shard on $server_cpu, --memory 64M, $RC_FLAGS
#                         and FLAGs; logs to $tmp/ringcached.log; preloads
#                         /cache/bench with $body, or with the file
#                         $value_file if set; sets rc_pid, rc_url
#   start_nginx [ROOT [SOCKET]]
#                         one worker on $server_cpu; serves $body with
#                         `return 200`, or with ROOT the files under ROOT
#                         (/cache/bench is ROOT/cache/bench) with sendfile
#                         and an open-file cache; listens on loopback and,
#                         with SOCKET, on that Unix socket too; sets
#                         ng_pid, ng_url (the TCP one)

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

children_ticks() {	# utime+stime of this shell's ended and waited-for children
	local s rest
	s=$(cat /proc/$$/stat)
	rest=${s##*) }
	set -- $rest
	echo $((${14} + ${15}))	# fields 16 and 17: cutime, cstime
}

busy_ticks() {	# all CPUs, every state but idle and iowait
	local _cpu user nice sys idle iowait rest
	read -r _cpu user nice sys idle iowait rest </proc/stat
	set -- $rest
	echo $((user + nice + sys + ${1:-0} + ${2:-0} + ${3:-0}))	# + irq softirq steal
}

# wrk2 (constant-rate wrk) is not packaged by Debian; docs/benchmarks.md
# ("Building wrk2") says how to build it.  Debian's wrk has no -R, so a
# binary is taken as wrk2 only if its usage mentions --rate.
find_wrk2() {
	local usage=
	wrk2_bin=${WRK2:-$(command -v wrk2 || true)}
	[ -z "$wrk2_bin" ] || [ ! -x "$wrk2_bin" ] || usage=$("$wrk2_bin" 2>&1 || true)
	case $usage in *--rate*) return 0 ;; esac
	if [ -n "${WRK2:-}" ]; then
		echo "$bench: WRK2=$WRK2 is not a wrk2 binary (missing, not executable, or no --rate option)" >&2
	else
		echo "$bench: wrk2 not found: set WRK2=/path/to/wrk2 or put it on PATH as wrk2" >&2
	fi
	echo "  wrk2 (constant-rate wrk) is not packaged by Debian; build it from its public repository" >&2
	echo "  as docs/benchmarks.md (\"Building wrk2\") says: apt-get install luajit libluajit-5.1-dev libssl-dev, then make" >&2
	exit 1
}

choose_load() {
	if [ -n "${RATE:-}" ]; then
		case $RATE in
		'' | *[!0-9]* | 0*)
			echo "$bench: RATE=$RATE: give requests per second as a positive integer" >&2
			exit 1
			;;
		esac
		find_wrk2
		load_bin=$wrk2_bin
		load_args=(-R "$RATE")
		load_name="wrk2 -R $RATE (constant rate; corrected latencies)"
	else
		need_tools "apt-get install wrk" wrk
		load_bin=wrk
		load_args=()
		load_name="wrk (closed loop)"
	fi
}

declare -A sum
read_summary() {	# file
	local line kv
	line=$(grep -m1 '^summary: ' "$1") ||
		{ echo "$bench: no summary: line in $1:" >&2; cat "$1" >&2; return 1; }
	sum=()
	for kv in ${line#summary: }; do
		sum[${kv%%=*}]=${kv#*=}
	done
}

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
	if [ -n "${value_file:-}" ]; then
		curl -s -o /dev/null -X PUT --data-binary "@$value_file" "$rc_url/cache/bench"
		curl -s --max-time 5 -o "$tmp/preloaded" "$rc_url/cache/bench"
		cmp -s "$tmp/preloaded" "$value_file"
	else
		curl -s -o /dev/null -X PUT --data-binary "$body" "$rc_url/cache/bench"
		[ "$(curl -s --max-time 2 "$rc_url/cache/bench")" = "$body" ]
	fi || { echo "$bench: could not preload /cache/bench" >&2; exit 1; }
}

start_nginx() {	# [root [socket]]
	local port serve="return 200 \"$body\";" unix=
	[ -z "${1:-}" ] || serve="root $1; sendfile on; tcp_nopush on; open_file_cache max=16; open_file_cache_valid 1h;"
	[ -z "${2:-}" ] || unix="listen unix:$2;"
	port=$(free_port)
	mkdir -p "$tmp/nginx/logs"
	cat >"$tmp/nginx/nginx.conf" <<-EOF
		worker_processes 1;
		daemon off;
		pid $tmp/nginx/nginx.pid;
		error_log $tmp/nginx/logs/error.log warn;
		events { worker_connections 4096; }
		http {
		    access_log off;
		    client_body_temp_path $tmp/nginx/body;
		    proxy_temp_path $tmp/nginx/proxy;
		    fastcgi_temp_path $tmp/nginx/fastcgi;
		    uwsgi_temp_path $tmp/nginx/uwsgi;
		    scgi_temp_path $tmp/nginx/scgi;
		    keepalive_requests 1000000000;
		    default_type application/octet-stream;
		    server {
		        listen 127.0.0.1:$port;
		        $unix
		        location / { $serve }
		    }
		}
	EOF
	taskset -c "$server_cpu" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/logs/error.log" \
		>"$tmp/nginx.log" 2>&1 &
	pids+=($!)
	ng_pid=$!
	ng_url=http://127.0.0.1:$port
	wait_http "$ng_url/cache/bench" || { cat "$tmp/nginx.log" "$tmp/nginx/logs/error.log" >&2; exit 1; }
}
