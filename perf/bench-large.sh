#!/usr/bin/env bash
# bench-large.sh - GET hits of large values (issue 8): ringcached (1 shard)
# against nginx (1 worker) serving the same bytes as a static file with
# sendfile on, each pinned to the same CPU, one after the other, under the
# same wrk load pinned to another CPU.  Values are incompressible (random),
# so both send identity bytes.  Prints requests/s and each server's CPU time
# per request (utime+stime from /proc/PID/stat around the run, over the
# requests wrk completed), and the ratios.  A benchmark, not a test.
#
# ringcached runs twice: copying sendmsg (ringcached) and zero-copy sends
# (ringcached-zc: $ZC_FLAGS, IORING_OP_SENDMSG_ZC); each is compared with
# nginx of the same round, and the zero-copy run reports how many of its
# sends the kernel copied anyway (/stats sends_zc_copied).  Both report
# /stats pins_refused: answers copied because the store's pin bound was full.
#
# What loopback hides: the receiver copies anyway (a local TCP peer reads
# from the sender's socket buffer), and neither server's bytes cross a NIC.
# sendfile puts page-cache pages in the socket by reference; a zero-copy
# send does the same with the store's pages, but for a local receiver the
# kernel copies them when they reach its socket (skb_orphan_frags_rx), so
# on loopback it pays the copy plus its notification.  On a NIC with
# scatter-gather both skip the sender's copy: see docs/benchmarks.md.
#
# usage: perf/bench-large.sh [path/to/ringcached]
# environment (defaults in brackets):
#   RINGCACHED   the binary                      [build-release/src/ringcached]
#   SERVER_CPU   CPU of both servers             [last CPU we may use]
#   CLIENT_CPU   CPU of wrk                      [first CPU we may use]
#   WRK_ARGS     wrk load                        [-t1 -c16 -d5s]
#   SIZES        value sizes, bytes              ["65536 1048576"]
#   SERVERS      which servers                   ["ringcached ringcached-zc nginx"]
#   ZC_FLAGS     ringcached-zc's flags           [--send-zc-min 16K]
#   ROUNDS       repetitions; ratios' median     [1]
#   RC_FLAGS     extra ringcached flags          []
# Results also go to perf/out/bench-large-<time>.txt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bench="bench-large"
rc_bin=${1:-${RINGCACHED:-$root/build-release/src/ringcached}}
wrk_args=${WRK_ARGS:--t1 -c16 -d5s}
sizes=${SIZES:-65536 1048576}
servers=${SERVERS:-ringcached ringcached-zc nginx}
zc_flags=${ZC_FLAGS:---send-zc-min 16K}
rounds=${ROUNDS:-1}

choose_cpus wrk
need_tools "apt-get install wrk nginx-light util-linux curl python3" wrk nginx taskset curl python3
case " $servers " in *" ringcached"*) need_ringcached ;; esac
bench_start

declare -A rps cpu_us

run_wrk() {	# name size url pid
	local name=$1 size=$2 url=$3 pid=$4 before after wout reqs secs
	before=$(cpu_ticks "$pid")
	wout=$(taskset -c "$client_cpu" wrk $wrk_args "$url")
	after=$(cpu_ticks "$pid")
	{ echo "--- $name, $size bytes"; echo "$wout"; } >>"$out"
	reqs=$(echo "$wout" | awk '/requests in/ { print $1 }')
	secs=$(echo "$wout" | awk '/Requests\/sec:/ { print $2 }')
	if echo "$wout" | grep -q 'Non-2xx'; then
		log "warning: $name $size: $(echo "$wout" | grep 'Non-2xx')"
	fi
	rps[$name,$size]=$secs
	cpu_us[$name,$size]=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" \
		'BEGIN { printf "%.2f", n ? t / hz / n * 1e6 : 0 }')
	log "$(printf '%-13s %8s B %12s req/s  %8s us CPU/request  (%s requests, %s CPU ticks)' \
		"$name" "$size" "$secs" "${cpu_us[$name,$size]}" "$reqs" "$((after - before))")"
}

start_rc_large() {	# size [flag...]: ringcached with the value at /cache/large
	local port size=$1
	shift
	port=$(free_port)
	taskset -c "$server_cpu" "$rc_bin" --listen "127.0.0.1:$port" --shards 1 \
		--cpuset "$server_cpu" --memory 256M ${RC_FLAGS:-} "$@" >"$tmp/ringcached.log" 2>&1 &
	pids+=($!)
	rc_pid=$!
	rc_url=http://127.0.0.1:$port
	wait_http "$rc_url/health" || { cat "$tmp/ringcached.log" >&2; exit 1; }
	curl -s -o /dev/null -X PUT --data-binary "@$tmp/value-$size" "$rc_url/cache/large"
	cmp -s <(curl -s --max-time 5 "$rc_url/cache/large") "$tmp/value-$size" ||
		{ echo "$bench: could not preload /cache/large ($size bytes)" >&2; exit 1; }
}

# How the run's answers went out: pins_refused counts values copied into the
# connection's buffer because a quarter of the store was pinned (it should
# stay 0 here: one value); sends_zc_copied, zero-copy sends the kernel copied.
rc_sends_report() {	# name
	sleep 0.3	# pins_refused is published at the shard's sweep (250 ms)
	log "$(curl -s "$rc_url/stats" | python3 -c 'import json, sys
t = json.load(sys.stdin)["total"]
print("%s: pins_refused %d; sends_zc %d, of which the kernel copied %d (sends_zc_copied)"
      % (sys.argv[1], t["pins_refused"], t["sends_zc"], t["sends_zc_copied"]))' "$1")"
}

start_nginx_static() {	# size: nginx serving the same bytes from a file, sendfile on
	local port size=$1
	port=$(free_port)
	mkdir -p "$tmp/nginx/logs" "$tmp/www/cache"
	cp "$tmp/value-$size" "$tmp/www/cache/large"
	# nginx's worker drops to an unprivileged user: let it read the file
	chmod 755 "$tmp" "$tmp/www" "$tmp/www/cache"
	chmod 644 "$tmp/www/cache/large"
	cat >"$tmp/nginx/nginx.conf" <<-EOF
		worker_processes 1;
		daemon off;
		pid $tmp/nginx/nginx.pid;
		error_log $tmp/nginx/logs/error.log warn;
		events { worker_connections 4096; }
		http {
		    access_log off;
		    sendfile on;
		    tcp_nopush on;
		    client_body_temp_path $tmp/nginx/body;
		    proxy_temp_path $tmp/nginx/proxy;
		    fastcgi_temp_path $tmp/nginx/fastcgi;
		    uwsgi_temp_path $tmp/nginx/uwsgi;
		    scgi_temp_path $tmp/nginx/scgi;
		    keepalive_requests 1000000000;
		    default_type application/octet-stream;
		    server {
		        listen 127.0.0.1:$port;
		        root $tmp/www;
		    }
		}
	EOF
	taskset -c "$server_cpu" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/logs/error.log" \
		>"$tmp/nginx.log" 2>&1 &
	pids+=($!)
	ng_pid=$!
	ng_url=http://127.0.0.1:$port
	wait_http "$ng_url/cache/large" || { cat "$tmp/nginx.log" "$tmp/nginx/logs/error.log" >&2; exit 1; }
}

log "bench-large: $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs"
log "servers on CPU $server_cpu, wrk on CPU $client_cpu: wrk $wrk_args"
log "ringcached: $rc_bin $("$rc_bin" --version 2>/dev/null || true)"
log "nginx: $(nginx -v 2>&1), static file, sendfile on"
log ""
for size in $sizes; do
	head -c "$size" /dev/urandom >"$tmp/value-$size"
done

declare -A ratio_rps ratio_cpu
for round in $(seq "$rounds"); do
	[ "$rounds" -gt 1 ] && log "== round $round"
	for size in $sizes; do
		for srv in $servers; do
			case $srv in
			ringcached)
				start_rc_large "$size"
				run_wrk ringcached "$size" "$rc_url/cache/large" "$rc_pid"
				rc_sends_report ringcached
				stop_pid "$rc_pid"
				;;
			ringcached-zc)
				# shellcheck disable=SC2086  # flags, split on purpose
				start_rc_large "$size" $zc_flags
				run_wrk ringcached-zc "$size" "$rc_url/cache/large" "$rc_pid"
				rc_sends_report ringcached-zc
				stop_pid "$rc_pid"
				;;
			nginx)
				start_nginx_static "$size"
				run_wrk nginx "$size" "$ng_url/cache/large" "$ng_pid"
				stop_pid "$ng_pid"
				;;
			*) echo "bench-large: unknown server $srv" >&2; exit 1 ;;
			esac
		done
		n=${rps[nginx,$size]:-}
		for rc in ringcached ringcached-zc; do
			r=${rps[$rc,$size]:-}
			if [ -n "$r" ] && [ -n "$n" ]; then
				ratio_rps[$rc,$size]+=" $(awk -v r="$r" -v n="$n" 'BEGIN { printf "%.2f", r / n }')"
				ratio_cpu[$rc,$size]+=" $(awk -v cr="${cpu_us[$rc,$size]}" -v cn="${cpu_us[nginx,$size]}" \
					'BEGIN { printf "%.2f", cn ? cr / cn : 0 }')"
			fi
		done
		unset "rps[ringcached,$size]" "rps[ringcached-zc,$size]" "rps[nginx,$size]"
	done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
log ""
for size in $sizes; do
	for rc in ringcached ringcached-zc; do
		[ -n "${ratio_rps[$rc,$size]:-}" ] || continue
		log "$(printf '%8s B %s/nginx: %sx requests/s, %sx CPU per request (median of:%s |%s)' \
			"$size" "$rc" "$(echo "${ratio_rps[$rc,$size]}" | median)" \
			"$(echo "${ratio_cpu[$rc,$size]}" | median)" \
			"${ratio_rps[$rc,$size]}" "${ratio_cpu[$rc,$size]}")"
	done
done
log "full output: $out"
