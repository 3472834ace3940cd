#!/usr/bin/env bash
# bench-http.sh - ringcached (1 shard) against nginx (1 worker, `return 200`
# with the same 100-byte body), each pinned to the same CPU, one after the
# other, under the same wrk load pinned to another CPU; with and without
# pipelining.  Prints requests/s, the ratio ringcached/nginx, and each
# server's CPU time per request (utime+stime from /proc/PID/stat around the
# run, over the requests wrk completed), and the load generator's latency
# percentiles (p50, p90, p99, p99.9, max; none for pipelined closed-loop
# runs, where wrk 4's own correction makes them meaningless: summary.lua).
# A benchmark, not a test: it passes no verdict.
#
# Closed loop by default (Debian's wrk: each connection sends its next
# request when the last is answered, so a slow answer delays the requests
# behind it and they are never timed: coordinated omission).  With RATE=N,
# wrk2 sends N requests/s (pipelined: responses/s) on a fixed schedule
# whatever the server does, and times each from when it should have been
# sent: corrected percentiles.  wrk2's timer cannot resolve under ~1 ms
# (docs/benchmarks.md, "What wrk2's percentiles can show").
#
# usage: perf/bench-http.sh [path/to/ringcached]
# environment (defaults in brackets):
#   RINGCACHED   the binary                      [build-release/src/ringcached]
#   SERVER_CPU   CPU of both servers             [last CPU we may use]
#   CLIENT_CPU   CPU of wrk                      [first CPU we may use]
#   RATE         requests/s: run wrk2 -R RATE    [unset: closed loop, wrk]
#   WRK2         the wrk2 binary (with RATE)     [wrk2 on PATH]
#   WRK_ARGS     wrk/wrk2 load                   [-t1 -c64 -d10s]
#   DEPTH        requests per pipelined write    [16]
#   MODES        which runs                      ["plain pipelined"]
#   SERVERS      which servers                   ["ringcached nginx"]
#   RC_FLAGS     extra ringcached flags          []
#   ROUNDS       repetitions; ratios' median     [1]
# Results also go to perf/out/bench-http-<time>.txt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bench="bench-http"
rc_bin=${1:-${RINGCACHED:-$root/build-release/src/ringcached}}
wrk_args=${WRK_ARGS:--t1 -c64 -d10s}
depth=${DEPTH:-16}
rounds=${ROUNDS:-1}
modes=${MODES:-plain pipelined}
servers=${SERVERS:-ringcached nginx}

choose_cpus wrk
need_tools "apt-get install nginx-light util-linux curl python3" nginx taskset curl python3
choose_load
lat_kind="wrk, closed loop"
[ -z "${RATE:-}" ] || lat_kind="wrk2, corrected"
case " $servers " in *" ringcached "*) need_ringcached ;; esac
bench_start

declare -A rps cpu_us p99

run_wrk() {	# name mode url pid
	local name=$1 mode=$2 url=$3 pid=$4 script before after reqs secs
	script=$here/get.lua
	[ "$mode" = pipelined ] && script=$here/pipeline.lua
	before=$(cpu_ticks "$pid")
	# shellcheck disable=SC2086  # WRK_ARGS is a list of arguments
	RC_DEPTH=$depth taskset -c "$client_cpu" "$load_bin" "${load_args[@]}" $wrk_args \
		-s "$script" "$url" >"$tmp/wrk.out" 2>&1 || { cat "$tmp/wrk.out" >&2; exit 1; }
	after=$(cpu_ticks "$pid")
	{ echo "--- $name, $mode"; cat "$tmp/wrk.out"; } >>"$out"
	read_summary "$tmp/wrk.out"
	reqs=${sum[requests]}
	secs=$(awk -v n="$reqs" -v us="${sum[duration_us]}" 'BEGIN { printf "%.2f", us ? n / us * 1e6 : 0 }')
	if [ "${sum[non2xx]}" != 0 ] || [ "${sum[errors]}" != 0 ]; then
		log "warning: $name $mode: ${sum[non2xx]} non-2xx responses, ${sum[errors]} socket errors"
	fi
	rps[$name,$mode]=$secs
	p99[$name,$mode]=${sum[p99]}
	cpu_us[$name,$mode]=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" \
		'BEGIN { printf "%.2f", n ? t / hz / n * 1e6 : 0 }')
	log "$(printf '%-11s %-10s %12s req/s  %8s us CPU/request  (%s requests, %s CPU ticks)' \
		"$name" "$mode" "$secs" "${cpu_us[$name,$mode]}" "$reqs" "$((after - before))")"
	if [ -z "${RATE:-}" ] && [ "$mode" = pipelined ]; then
		# wrk 4's own correction makes these meaningless (summary.lua)
		p99[$name,$mode]=
		log "$(printf '%-11s %-10s latency: none from wrk for pipelined runs; RATE=N gives wrk2'"'"'s' \
			"$name" "$mode")"
	else
		log "$(printf '%-11s %-10s latency, %s: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s us%s' \
			"$name" "$mode" "$lat_kind" "${sum[p50]}" \
			"${sum[p90]}" "${sum[p99]}" "${sum[p99.9]}" "${sum[max]}" \
			"${RATE:+ (${sum[samples]} samples)}")"
	fi
	if [ -n "${RATE:-}" ] && awk -v r="$secs" -v t="$RATE" 'BEGIN { exit !(r < 0.95 * t) }'; then
		log "warning: $name $mode: $secs req/s is under 95% of RATE=$RATE: the server or the client" \
			"did not keep up, and the percentiles measure the queue that built"
	fi
}

print_stats() {	# url mode: hit latency percentiles from GET /stats, if served
	local code mode=$2
	code=$(curl -s -o "$tmp/stats.json" -w '%{http_code}' --max-time 2 "$1/stats" || true)
	if [ "$code" != 200 ]; then
		log "ringcached GET /stats: $code (no latency percentiles)"
		return
	fi
	cp "$tmp/stats.json" "${out%.txt}-stats.json"
	python3 - "$tmp/stats.json" "$mode" <<-'EOF' | tee -a "$out"
		import json, sys
		try:
		    doc = json.load(open(sys.argv[1]))
		    lat = doc["total"]["latency_ns"]
		except (ValueError, KeyError, TypeError) as e:
		    print("ringcached GET /stats: no total.latency_ns (%r)" % (e,))
		    sys.exit(0)
		for kind, q in sorted(lat.items()):
		    if not q.get("count"):
		        continue
		    keys = [k for k in ("p50", "p90", "p99", "p99.9", "max") if k in q]
		    print("ringcached %-9s %-9s hits: %d, server-side latency %s" % (
		        sys.argv[2], kind, q.get("count", 0),
		        "  ".join("%s %.2f us" % (k, q[k] / 1000.0) for k in keys)))
	EOF
}

log "bench-http: $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs"
log "servers on CPU $server_cpu, load on CPU $client_cpu: $load_name $wrk_args; pipelined depth $depth"
log "ringcached: $rc_bin $("$rc_bin" --version 2>/dev/null || true)"
log "nginx: $(nginx -v 2>&1)"
log ""

# Each round runs every mode on every server, one after the other, with a
# fresh ringcached per mode so its /stats percentiles belong to that mode.
# With ROUNDS > 1 the summary gives each round's ratios and their median:
# this VM's timings drift, and only same-round comparisons mean anything.
declare -A ratio_rps ratio_cpu ratio_p99
for round in $(seq "$rounds"); do
	[ "$rounds" -gt 1 ] && log "== round $round"
	for m in $modes; do
		for srv in $servers; do
			case $srv in
			ringcached)
				start_ringcached
				run_wrk ringcached "$m" "$rc_url" "$rc_pid"
				print_stats "$rc_url" "$m"
				stop_pid "$rc_pid"
				;;
			nginx)
				start_nginx
				run_wrk nginx "$m" "$ng_url" "$ng_pid"
				stop_pid "$ng_pid"
				;;
			*) echo "bench-http: unknown server $srv" >&2; exit 1 ;;
			esac
		done
		r=${rps[ringcached,$m]:-} n=${rps[nginx,$m]:-}
		if [ -n "$r" ] && [ -n "$n" ]; then
			ratio_rps[$m]+=" $(awk -v r="$r" -v n="$n" 'BEGIN { printf "%.2f", r / n }')"
			ratio_cpu[$m]+=" $(awk -v cr="${cpu_us[ringcached,$m]}" -v cn="${cpu_us[nginx,$m]}" \
				'BEGIN { printf "%.2f", cn ? cr / cn : 0 }')"
			[ -z "${p99[nginx,$m]}" ] ||
				ratio_p99[$m]+=" $(awk -v r="${p99[ringcached,$m]}" -v n="${p99[nginx,$m]}" \
					'BEGIN { printf "%.2f", n ? r / n : 0 }')"
		fi
	done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
log ""
for m in $modes; do
	[ -n "${ratio_rps[$m]:-}" ] || continue
	p99_part=
	[ -z "${ratio_p99[$m]:-}" ] || p99_part=", $(echo "${ratio_p99[$m]}" | median)x p99"
	log "$(printf '%-10s ringcached/nginx: %sx requests/s, %sx CPU per request%s (median of:%s |%s%s)' \
		"$m" "$(echo "${ratio_rps[$m]}" | median)" "$(echo "${ratio_cpu[$m]}" | median)" \
		"$p99_part" "${ratio_rps[$m]}" "${ratio_cpu[$m]}" "${ratio_p99[$m]:+ |${ratio_p99[$m]}}")"
done
log "full output: $out"
