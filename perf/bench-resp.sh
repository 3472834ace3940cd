#!/usr/bin/env bash
# bench-resp.sh - the RESP front end (issue 12): ringcached (one shard) and
# redis-server (io-threads off), each pinned to the same CPU, one after the
# other in the same run, under the same redis-benchmark load pinned to
# another CPU: `-t get,set -d 100 -c 64` at -P 1, -P 16 and -P 64.  Prints
# requests/s and each server's CPU time per request (utime+stime from
# /proc/PID/stat around each test, over its requests), the ratios
# ringcached/redis, and the issue's targets beside them.  With memcached and
# memcaslap (Debian: memcached, libmemcached-tools) it also runs memcached
# (one thread) under memcaslap's 9:1 get/set mix at -c 64: a different
# client, so only its CPU per request compares.  A benchmark, not a test:
# it passes no verdict.
#
# usage: perf/bench-resp.sh [path/to/ringcached]
# environment (defaults in brackets):
#   RINGCACHED   the binary                           [build-release/src/ringcached]
#   SERVER_CPU   CPU of every server                  [last CPU we may use]
#   CLIENT_CPU   CPU of the load generator            [first CPU we may use]
#   PIPELINES    redis-benchmark -P values            ["1 16 64"]
#   REQUESTS     requests per test at -P 1 / 16 / 64  ["300000 3000000 6000000"]
#                (by -P value: -P above 16 takes the third)
#   SERVERS      which servers                        ["ringcached redis memcached"]
#   RC_FLAGS     extra ringcached flags               []
#   ROUNDS       repetitions; the ratios' median      [1]
# Results also go to perf/out/bench-resp-<time>.txt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bench="bench-resp"
rc_bin=${1:-${RINGCACHED:-$root/build-release/src/ringcached}}
pipelines=${PIPELINES:-1 16 64}
read -r -a requests <<<"${REQUESTS:-300000 3000000 6000000}"
servers=${SERVERS:-ringcached redis memcached}
rounds=${ROUNDS:-1}

choose_cpus redis-benchmark
need_tools "apt-get install redis-server redis-tools util-linux python3 curl" \
	redis-benchmark redis-server redis-cli taskset python3 curl
case " $servers " in *" ringcached "*) need_ringcached ;; esac
bench_start

declare -A rps cpu_us

wait_resp() {	# port: until PING answers, at most 10 s
	for _ in $(seq 100); do
		[ "$(redis-cli -p "$1" PING 2>/dev/null || true)" = PONG ] && return 0
		sleep 0.1
	done
	echo "$bench: nothing answers PING on port $1" >&2
	return 1
}

start_rc() {
	resp_port=$(free_port)
	start_ringcached --resp-listen "127.0.0.1:$resp_port" --memory 256M
	wait_resp "$resp_port"
	srv_pid=$rc_pid
}

start_redis() {
	resp_port=$(free_port)
	taskset -c "$server_cpu" redis-server --port "$resp_port" --bind 127.0.0.1 --save "" \
		--appendonly no --io-threads 1 --dir "$tmp" >"$tmp/redis.log" 2>&1 &
	pids+=($!)
	srv_pid=$!
	wait_resp "$resp_port"
}

run_test() {	# server test pipeline requests
	local name=$1 t=$2 p=$3 n=$4 before after res secs
	before=$(cpu_ticks "$srv_pid")
	res=$(taskset -c "$client_cpu" redis-benchmark -p "$resp_port" -t "$t" -d 100 -c 64 \
		-P "$p" -n "$n" -r 100000 -q 2>&1 | tr '\r' '\n' | grep -E "^${t^^}: [0-9.]+ requests" | tail -1)
	after=$(cpu_ticks "$srv_pid")
	echo "--- $name $t -P $p: $res" >>"$out"
	secs=$(echo "$res" | awk '{ print $2 }')
	rps[$name,$t,$p]=$secs
	cpu_us[$name,$t,$p]=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$n" \
		'BEGIN { printf "%.3f", n ? t / hz / n * 1e6 : 0 }')
	log "$(printf '%-10s %-3s -P %-3s %12s req/s  %7s us CPU/request  (%s requests, %s CPU ticks)' \
		"$name" "$t" "$p" "$secs" "${cpu_us[$name,$t,$p]}" "$n" "$((after - before))")"
}

run_memcached() {
	local port before after res tps ops
	command -v memcached >/dev/null && command -v memcaslap >/dev/null || {
		log "memcached: skipped (apt-get install memcached libmemcached-tools)"
		return
	}
	port=$(free_port)
	taskset -c "$server_cpu" memcached -p "$port" -l 127.0.0.1 -t 1 -m 256 -U 0 \
		-u "$(id -un)" >"$tmp/memcached.log" 2>&1 &
	pids+=($!)
	srv_pid=$!
	sleep 0.5
	before=$(cpu_ticks "$srv_pid")
	res=$(taskset -c "$client_cpu" memcaslap -s "127.0.0.1:$port" -T 1 -c 64 -X 100 -t 10s 2>&1 || true)
	after=$(cpu_ticks "$srv_pid")
	echo "--- memcached: $res" >>"$out"
	ops=$(echo "$res" | awk '/^Run time:/ { for (i = 1; i <= NF; i++) if ($i == "Ops:") print $(i + 1) }')
	tps=$(echo "$res" | awk '/^Run time:/ { for (i = 1; i <= NF; i++) if ($i == "TPS:") print $(i + 1) }')
	if [ -n "$ops" ] && [ "$ops" -gt 0 ]; then
		log "$(printf '%-10s 9:1 get/set (memcaslap -c 64) %12s req/s  %7s us CPU/request' "memcached" \
			"$tps" "$(awk -v t=$((after - before)) -v hz="$hz" -v n="$ops" \
				'BEGIN { printf "%.3f", t / hz / n * 1e6 }')")"
	else
		log "memcached: memcaslap gave no figures (see $out)"
	fi
	stop_pid "$srv_pid"
}

log "bench-resp: $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs"
log "servers on CPU $server_cpu, redis-benchmark on CPU $client_cpu: -d 100 -c 64 -r 100000"
log "ringcached: $rc_bin $("$rc_bin" --version 2>/dev/null || true)"
log "redis: $(redis-server --version)"
log ""

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A ratio_rps ratio_cpu
for round in $(seq "$rounds"); do
	[ "$rounds" -gt 1 ] && log "== round $round"
	for p in $pipelines; do
		# REQUESTS names the counts for -P 1, 16 and 64, whichever run
		case $p in 1) n=${requests[0]} ;; 16) n=${requests[1]:-${requests[-1]}} ;;
		*) n=${requests[2]:-${requests[-1]}} ;; esac
		for srv in $servers; do
			case $srv in
			ringcached) start_rc ;;
			redis) start_redis ;;
			memcached) continue ;;
			*) echo "$bench: unknown server $srv" >&2; exit 1 ;;
			esac
			run_test "$srv" set "$p" "$n"
			run_test "$srv" get "$p" "$n"
			stop_pid "$srv_pid"
		done
		for t in get set; do
			r=${rps[ringcached,$t,$p]:-} d=${rps[redis,$t,$p]:-}
			[ -n "$r" ] && [ -n "$d" ] || continue
			ratio_rps[$t,$p]+=" $(awk -v r="$r" -v d="$d" 'BEGIN { printf "%.2f", r / d }')"
			ratio_cpu[$t,$p]+=" $(awk -v r="${cpu_us[ringcached,$t,$p]}" -v d="${cpu_us[redis,$t,$p]}" \
				'BEGIN { printf "%.2f", (d > 0) ? r / d : 0 }')"
		done
	done
	case " $servers " in *" memcached "*) run_memcached ;; esac
done

log ""
log "ringcached/redis (median of rounds); targets: -P 64 >= 1.5x req/s, CPU/request <= 0.67x at -P 16, <= 0.85x at -P 1"
for p in $pipelines; do
	for t in get set; do
		[ -n "${ratio_rps[$t,$p]:-}" ] || continue
		log "$(printf -- '-P %-3s %-3s %sx requests/s, %sx CPU per request  (rounds:%s |%s)' "$p" "$t" \
			"$(echo "${ratio_rps[$t,$p]}" | median)" "$(echo "${ratio_cpu[$t,$p]}" | median)" \
			"${ratio_rps[$t,$p]}" "${ratio_cpu[$t,$p]}")"
	done
done
log "full output: $out"
