#!/usr/bin/env bash
# bench-write-stall.sh - what write-time compression does to the other
# requests of its shard (issue 4), measured rather than derived.
#
# ringcached runs with one shard pinned to one CPU.  One client (wrk -t1 -c1,
# pinned to another CPU) GETs a preloaded 100-byte value, one request per
# round trip, in phases, each against a fresh ringcached so its /stats
# histograms belong to that phase alone:
#   a     GETs alone
#   b     GETs while a second client (wrk -t1 -c1, same client CPU) PUTs 4 KB
#         JSON values in a closed loop (one PUT in flight, next one at once)
#   c     the same with 64 KB JSON values
#   d     64 KB PUTs with --compress-max 16K: stored raw, no compression, the
#         same bytes over the same sockets (the control for c)
# The PUT client starts a second before the GET run and ends a second after.
# Prints per phase: the GET client's p50/p99/p99.9/max and requests/s, the
# server's own local-hit latency from GET /stats (p50/p99/p99.9/max: from the
# completion that delivered the request to its response's submission, so it
# does not include time spent waiting behind another request), PUTs/s stored
# during the GET run (`sets` from /stats before and after), the shard's CPU
# use, whether a PUT value got a br variant, and the CPU other processes
# used meanwhile (other people's load spoils the row).  With ROUNDS > 1,
# also the median over rounds.  A benchmark, not a test: it passes no verdict.
#
# With RATE=N the GET client is wrk2 sending N GETs/s on a fixed schedule
# (-t1 -c1 -R N) and its percentiles are corrected: a GET held up behind a
# compressing PUT also delays, and is charged for, the GETs that should have
# gone out meanwhile, which the closed-loop client never sends.  The PUT
# client stays closed loop (Debian's wrk): it is the disturbance.
#
# usage: perf/bench-write-stall.sh [path/to/ringcached]
# environment (defaults in brackets):
#   RINGCACHED   the binary                      [build-release/src/ringcached]
#   SERVER_CPU   CPU of ringcached               [last CPU we may use]
#   CLIENT_CPU   CPU of both wrk clients         [first CPU we may use]
#   RATE         GETs/s: the GET client is wrk2  [unset: closed loop, wrk]
#   WRK2         the wrk2 binary (with RATE)     [wrk2 on PATH]
#   DURATION     seconds of GETs per phase       [10]
#   PHASES       which phases, in order          ["a b c d"]
#   ROUNDS       repetitions of all phases       [1]
#   RC_FLAGS     extra ringcached flags          []
#   ZIP_NICE     run the compression workers at SCHED_OTHER with this nice
#                value instead of SCHED_IDLE         [unset]
#
# After the client table, a server-side one (issue 8): the shard loop's busy
# stretches (/stats loop_busy: one iteration's work, what a request arriving
# meanwhile waits for), and what the compression workers did during the GET
# run (values queued, stored without variants because the queue was full,
# installed, found stale; zip_lag: PUT to install).
# Results also go to perf/out/bench-write-stall-<time>.txt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bench="bench-write-stall"
rc_bin=${1:-${RINGCACHED:-$root/build-release/src/ringcached}}
duration=${DURATION:-10}
phases=${PHASES:-a b c d}
rounds=${ROUNDS:-1}
lua=$here/write-stall.lua

choose_cpus clients
need_tools "apt-get install wrk util-linux curl python3 coreutils" wrk taskset curl python3 timeout
need_ringcached
choose_load	# the GET client's
bench_start

# Other people's load spoils the figures; each phase reports it: the CPU
# time the machine spent busy that neither ringcached nor our clients used
# (busy_ticks, children_ticks: lib.sh).

stats_to() {	# file: GET /stats into it
	curl -s -f --max-time 5 -o "$1" "$rc_url/stats" ||
		{ echo "bench-write-stall: GET /stats failed" >&2; exit 1; }
}

# A wrk run never outlives its -d by much; timeout is the backstop.
run_wrk() {	# out-file seconds env... : one client on the client CPU; with
	# RC_PUT_SIZE in env the closed-loop PUT client, else the GET client
	local f=$1 secs=$2 bin=$load_bin args=("${load_args[@]}")
	shift 2
	case " $* " in *" RC_PUT_SIZE="*) bin=wrk args=() ;; esac
	env "$@" timeout -k 5 $((secs + 30)) taskset -c "$client_cpu" \
		"$bin" "${args[@]}" -t1 -c1 -d"${secs}s" --timeout 5s -s "$lua" "$rc_url" >"$f" 2>&1
}

results=$tmp/results.tsv
: >"$results"
server=$tmp/server.tsv
: >"$server"

br_wait() {	# since-ns: ms from then until stall-1 is served as br (10 s at most)
	local t
	while :; do
		t=$((($(date +%s%N) - $1) / 1000000))
		[ "$t" -lt 10000 ] || { echo ">10000"; return; }
		curl -s --max-time 2 -H 'Accept-Encoding: br' -D - -o /dev/null "$rc_url/cache/stall-1" |
			tr -d '\r' | grep -qi '^content-encoding: br$' && { echo "$t"; return; }
		sleep 0.002
	done
}

zip_nice() {	# nice: the compression workers from SCHED_IDLE to SCHED_OTHER + nice
	local t
	for t in /proc/"$rc_pid"/task/*; do
		[ "$(cat "$t/comm" 2>/dev/null)" = ringcache-zip ] || continue
		chrt -o -p 0 "${t##*/}" >/dev/null && renice -n "$1" -p "${t##*/}" >/dev/null
	done
}

run_phase() {	# round phase
	local round=$1 ph=$2 size=0 flags=() put_pid= t0 t1 ce put_end= br_in=-
	case $ph in
	a) ;;
	b) size=4096 ;;
	c) size=65536 ;;
	d) size=65536 flags=(--compress-max 16K) ;;
	*) echo "bench-write-stall: unknown phase $ph" >&2; exit 1 ;;
	esac
	start_ringcached "${flags[@]}"
	[ -z "${ZIP_NICE:-}" ] || zip_nice "$ZIP_NICE"
	local b0 s0 c0 w0 b1 s1 c1 w1
	b0=$(busy_ticks) s0=$(cpu_ticks "$rc_pid") c0=$(children_ticks) w0=$(date +%s%N)
	if [ "$size" -gt 0 ]; then
		run_wrk "$tmp/put.out" $((duration + 2)) RC_PUT_SIZE=$size &
		put_pid=$!
		pids+=($put_pid)
		sleep 1
	fi
	stats_to "$tmp/before.json"
	t0=$(cpu_ticks "$rc_pid")
	run_wrk "$tmp/get.out" "$duration" || { cat "$tmp/get.out" >&2; exit 1; }
	t1=$(cpu_ticks "$rc_pid")
	stats_to "$tmp/after.json"
	ce=-
	if [ -n "$put_pid" ]; then
		wait "$put_pid" || { cat "$tmp/put.out" >&2; exit 1; }
		put_end=$(date +%s%N)
		forget_pid "$put_pid"
		# the value of a key the PUT client wrote: did it get a br variant?
		ce=$(curl -s --max-time 2 -H 'Accept-Encoding: br' -D - -o /dev/null "$rc_url/cache/stall-1" |
			tr -d '\r' | awk -F': ' 'tolower($1) == "content-encoding" { print $2 }')
		ce=${ce:-identity}
		br_in=$(br_wait "$put_end")
	fi
	b1=$(busy_ticks) s1=$(cpu_ticks "$rc_pid") c1=$(children_ticks) w1=$(date +%s%N)
	other=$(awk -v t=$(((b1 - b0) - (s1 - s0) - (c1 - c0))) -v hz="$hz" -v ns=$((w1 - w0)) \
		'BEGIN { v = 100 * t / hz / (ns / 1e9); printf "%.0f", v < 0 ? 0 : v }')
	{
		echo "--- round $round, phase $ph (PUT size $size, flags: ${flags[*]:-none})"
		cat "$tmp/get.out"
		[ -z "$put_pid" ] || { echo "- PUT client:"; cat "$tmp/put.out"; }
		echo "- /stats after:"; cat "$tmp/after.json"; echo
	} >>"$out"
	python3 - "$round" "$ph" "$size" "$tmp/get.out" "$tmp/before.json" "$tmp/after.json" \
		"$((t1 - t0))" "$hz" "$ce" "$other" "${put_pid:+$tmp/put.out}" >>"$results" <<-'EOF'
		import json, re, sys
		rnd, ph, size, getf, bef, aft, ticks, hz, ce, other = sys.argv[1:11]
		putf = sys.argv[11] if len(sys.argv) > 11 else ""
		def summary(f):	# the summary: line of summary.lua
		    for line in open(f):
		        if line.startswith("summary:"):
		            return {k: v for k, v in re.findall(r"([\w.]+)=(\S+)", line)}
		    sys.exit("bench-write-stall: no summary: line in " + f)
		g = summary(getf)
		secs = int(g["duration_us"]) / 1e6
		b, a = json.load(open(bef))["total"], json.load(open(aft))["total"]
		loc = a["latency_ns"]["local"]
		bad = int(g["non2xx"]) + int(g["errors"])
		if putf:
		    p = summary(putf)
		    bad += int(p["non2xx"]) + int(p["errors"])
		print("\t".join(str(x) for x in (
		    rnd, ph, size, int(g["requests"]) / secs,
		    g["p50"], g["p99"], g["p99.9"], g["max"],
		    loc["p50"] / 1000, loc["p99"] / 1000, loc["p99.9"] / 1000, loc["max"] / 1000,
		    (a["sets"] - b["sets"]) / secs, 100.0 * int(ticks) / int(hz) / secs, ce, bad, other)))
	EOF
	python3 - "$round" "$ph" "$tmp/before.json" "$tmp/after.json" "$tmp/get.out" \
		"$br_in" >>"$server" <<-'EOF'
		import json, re, sys
		rnd, ph, bef, aft, getf, br = sys.argv[1:7]
		us = [int(v) for v in re.findall(r"duration_us=(\d+)", open(getf).read())[:1]] or [0]
		secs = us[0] / 1e6 or 1
		b, a = json.load(open(bef))["total"], json.load(open(aft))["total"]
		lat = a["latency_ns"]
		def q(kind, key, div):
		    return "%g" % (lat[kind][key] / div) if kind in lat else "-"
		def rate(k):
		    return "%.0f" % ((a[k] - b[k]) / secs) if k in a else "-"
		print("\t".join([rnd, ph] + [q("loop_busy", k, 1000) for k in ("p50", "p99", "p99.9", "max")] +
		                 [rate(k) for k in ("zip_queued", "zip_queue_full", "zip_installed",
		                                    "zip_stale")] +
		                 [q("zip_lag", k, 1e6) for k in ("p50", "p99")] +
		                 [str(a.get("zip_pending", "-")), br]))
	EOF
	stop_pid "$rc_pid"
}

log "bench-write-stall: $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs"
log "ringcached on CPU $server_cpu (--shards 1 ${RC_FLAGS:-}), both clients on CPU $client_cpu;" \
	"${duration}s of GETs per phase; GET client: $load_name -t1 -c1"
log "ringcached: $rc_bin $("$rc_bin" --version 2>/dev/null || true)"
log ""
for round in $(seq "$rounds"); do
	for ph in $phases; do
		run_phase "$round" "$ph"
	done
done

python3 - "$results" "$load_name" <<-'EOF' | tee -a "$out"
	import statistics, sys
	rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
	def num(x):	# a percentile may be n/a (summary.lua)
	    try:
	        return float(x)
	    except ValueError:
	        return float("nan")
	what = {"a": "GETs alone", "b": "+ 4 KB PUTs", "c": "+ 64 KB PUTs",
	        "d": "+ 64 KB PUTs raw (--compress-max 16K)"}
	head = ("phase", "GET/s", "cli p50", "p99", "p99.9", "max",
	        "srv p50", "p99", "p99.9", "max", "PUT/s", "CPU%", "PUT enc", "other%")
	print("latencies in microseconds; cli = the GET client (%s), srv = /stats local hits;" % sys.argv[2])
	print("CPU% = ringcached's CPU use; other% = CPU (% of one) used by anything but")
	print("ringcached and the two clients during the phase: above a few %, distrust the row")
	fmt = "%-6s %8s %8s %8s %8s %8s | %7s %7s %7s %8s | %7s %5s %8s %6s"
	def show(r, label):
	    n = [num(x) for x in r[3:14]]
	    print(fmt % ((label, "%.0f" % n[0]) + tuple("%.0f" % x for x in n[1:5]) +
	                 tuple("%.2f" % x for x in n[5:8]) + ("%.0f" % n[8],) +
	                 ("%.0f" % n[9], "%.0f" % n[10], r[14], r[16])))
	print(fmt % head)
	rounds = sorted({r[0] for r in rows}, key=int)
	for rnd in rounds:
	    for r in rows:
	        if r[0] == rnd:
	            show(r, r[1] + ("" if len(rounds) == 1 else "/" + rnd))
	if len(rounds) > 1:
	    print("median over %d rounds:" % len(rounds))
	    for ph in dict.fromkeys(r[1] for r in rows):
	        rs = [r for r in rows if r[1] == ph]
	        med = [ph, ph, rs[0][2]] + ["%g" % statistics.median(num(r[i]) for r in rs)
	                                    for i in range(3, 14)] + [rs[-1][14], "0",
	                                    "%g" % statistics.median(float(r[16]) for r in rs)]
	        show(med, ph)
	for ph, w in what.items():
	    if any(r[1] == ph for r in rows):
	        print("  %s: %s" % (ph, w))
	bad = sum(int(r[15]) for r in rows)
	if bad:
	    print("warning: %d non-2xx responses or socket errors (see the full output)" % bad)
EOF
python3 - "$server" <<-'EOF' | tee -a "$out"
	import sys
	rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
	print()
	print("server side: loop_busy = the shard loop's busy stretches, microseconds (/stats);")
	print("values per second of the GET run: zip queued, stored without variants (queue")
	print("full), installed, stale; zip_lag = PUT to install, ms; pending at the end;")
	print("br in = ms from the PUT client's end until stall-1 is served as br")
	fmt = "%-6s %8s %8s %8s %8s | %7s %7s %7s %7s | %8s %8s %7s %7s"
	print(fmt % ("phase", "busy p50", "p99", "p99.9", "max", "queued", "full", "inst", "stale",
	             "lag p50", "lag p99", "pending", "br in"))
	for r in rows:
	    print(fmt % tuple([r[1] + "/" + r[0]] + r[2:]))
EOF
log "full output: $out"
