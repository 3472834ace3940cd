#!/usr/bin/env bash
# compare.sh - ringcached against nginx in one command and one run, side by
# side: a table, the raw figures (CSV) and PNG plots (gnuplot) in
# perf/out/compare-<time>/.  A benchmark, not a test: it passes no verdict.
#
# The servers take turns on SERVER_CPU, a fresh one for every run:
# ringcached with one shard (--shards 1 --cpuset SERVER_CPU --memory 64M),
# nginx with one worker serving the same bytes from a file (sendfile, open
# file cache).  The load generator runs on CLIENT_CPU with one thread.  Each
# server is asked for one preloaded key, /cache/bench, whose value is SIZE
# bytes of 'x' (ringcached stores br/gzip variants for values of 256 B and
# more; the load sends no Accept-Encoding, so both send the raw bytes).
#
#   1. Throughput, closed loop (Debian's wrk, CONNS connections, DURATION s):
#      for every SIZE, one request per round trip ("plain") and DEPTH
#      requests per write ("pipelined").  Requests/s, MB/s of response
#      bytes, the server's CPU per request (utime+stime from /proc), the
#      client's CPU use (100% means the client was the limit), wrk's
#      percentiles (uncorrected round trips), ringcached's own hit latency
#      from GET /stats.
#   2. Latency against rate (wrk2 -R, the same connections, SWEEP_DURATION s
#      per point): for SWEEP_SIZE and each of SWEEP_MODES, each server at the
#      fractions SWEEP of its own peak from part 1.  wrk2's corrected
#      percentiles, and ringcached's /stats next to them.  wrk2 rounds every
#      wait to whole milliseconds, so its percentiles under ~1 ms are its own
#      timer, not the server (docs/benchmarks.md, "What wrk2's percentiles can
#      show"); it calibrates for 10 s + 5 ms per connection and then resets
#      its histogram, so with SWEEP_DURATION at most 10 every response counts.
#
#   3. TCP loopback against a Unix socket (TRANSPORTS has unix): for each
#      of TRANSPORT_SERVERS, a server listening on both (ringcached --listen
#      127.0.0.1:PORT --listen unix:PATH; nginx listen on both), fresh for
#      every run, loaded by perf/loadgen over one or the other, run for run
#      side by side: the same client for both rows, since wrk and wrk2 reach
#      only HOST:PORT.  Closed loop for TRANSPORT_SIZE and each of
#      TRANSPORT_MODES (requests/s, server CPU per request, loadgen's
#      percentiles: every request timed, pipelined ones too), then a
#      constant rate of TRANSPORT_FRACTION of the lower of the two peaks,
#      the same rate over both transports (loadgen -R: latency from each
#      request's due time, and server CPU per request at equal load).
#
# Every run also records "other%": CPU (in % of one CPU) that the machine
# spent on neither the server nor the client meanwhile.  Other people's load
# spoils a row; above a few % distrust it.  On a shared machine, QUIET_LOAD=1.0
# waits (up to QUIET_WAIT s) until the 1-minute load average is below 1.0.
#
# Transports: every row carries one, and the client that ran it.  "tcp" in
# TRANSPORTS runs parts 1 and 2 (wrk and wrk2 over loopback), "unix" part 3
# (loadgen, over loopback and over the socket).
#
# usage: perf/compare.sh [path/to/ringcached]
# environment (defaults in brackets):
#   RINGCACHED      the binary                     [build-release/src/ringcached]
#   WRK2            the wrk2 binary                [wrk2 on PATH]
#   LOADGEN         perf/loadgen (part 3)          [perf/loadgen of the build
#                                                   RINGCACHED comes from]
#   SERVER_CPU      CPU of both servers            [last CPU we may use]
#   CLIENT_CPU      CPU of wrk/wrk2                [first CPU we may use]
#   SERVERS         which servers                  ["ringcached nginx"]
#   TRANSPORTS      tcp: parts 1, 2; unix: part 3  ["tcp unix"]
#   SIZES           value sizes in bytes           ["100 4096 65536"]
#   MODES           part 1 modes                   ["plain pipelined"]
#   DEPTH           requests per pipelined write   [16]
#   CONNS           connections                    [64]
#   DURATION        seconds per throughput run     [5]
#   SWEEP           fractions of the peak; empty:
#                   no part 2 (and no wrk2 needed) ["0.1 0.5 0.9"]
#   SWEEP_SIZE      value size of part 2           [100]
#   SWEEP_MODES     modes of part 2                ["plain pipelined"]
#   SWEEP_DURATION  seconds per rate point         [10]
#   TRANSPORT_SERVERS  servers of part 3           ["ringcached"]
#   TRANSPORT_SIZE  value size of part 3           [100]
#   TRANSPORT_MODES modes of part 3                ["plain pipelined"]
#   TRANSPORT_DURATION seconds per part 3 run      [5]
#   TRANSPORT_FRACTION part 3's rate, of the lower
#                   peak; empty: no rate runs      [0.5]
#   RC_FLAGS        extra ringcached flags         []
#   QUIET_LOAD      wait for a load average below  [unset: do not wait]
#   QUIET_WAIT      at most this many seconds      [1200]
# The default run takes about 5 minutes (part 3: under one).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bench="compare"
rc_bin=${1:-${RINGCACHED:-$root/build-release/src/ringcached}}
servers=${SERVERS:-ringcached nginx}
transports=${TRANSPORTS:-tcp unix}
sizes=${SIZES:-100 4096 65536}
modes=${MODES:-plain pipelined}
depth=${DEPTH:-16}
conns=${CONNS:-64}
duration=${DURATION:-5}
sweep=${SWEEP-0.1 0.5 0.9}
sweep_size=${SWEEP_SIZE:-100}
sweep_modes=${SWEEP_MODES:-plain pipelined}
sweep_duration=${SWEEP_DURATION:-10}
tr_servers=${TRANSPORT_SERVERS:-ringcached}
tr_size=${TRANSPORT_SIZE:-100}
tr_modes=${TRANSPORT_MODES:-plain pipelined}
tr_duration=${TRANSPORT_DURATION:-5}
tr_fraction=${TRANSPORT_FRACTION-0.5}
loadgen_bin=${LOADGEN:-$(dirname "$rc_bin")/../perf/loadgen}

# which parts run: tcp (wrk, wrk2), unix (loadgen, tcp against unix)
wrk_part='' unix_part=''
for t in $transports; do
	case $t in
	tcp) wrk_part=1 ;;
	unix) unix_part=1 ;;
	*) echo "compare: unknown transport $t (known: tcp, unix)" >&2; exit 1 ;;
	esac
done
[ -n "$wrk_part" ] || { servers='' sweep=''; }
[ -n "$unix_part" ] || tr_servers=

choose_cpus "the load generator"
need_tools "apt-get install util-linux curl python3 coreutils" taskset curl python3 timeout
need_tools "apt-get install gnuplot-nox" gnuplot
[ -z "$wrk_part" ] || need_tools "apt-get install wrk" wrk
case " $servers $tr_servers " in *" nginx "*) need_tools "apt-get install nginx-light" nginx ;; esac
case " $servers $tr_servers " in *" ringcached "*) need_ringcached ;; esac
[ -z "$sweep" ] || find_wrk2

# Part 2 sweeps from part 1's peaks: the size and modes must be measured.
if [ -n "$sweep" ]; then
	case " $sizes " in *" $sweep_size "*) ;; *)
		echo "compare: SWEEP_SIZE=$sweep_size is not in SIZES=\"$sizes\" (part 2 needs its peak)" >&2
		exit 1 ;;
	esac
	for m in $sweep_modes; do
		case " $modes " in *" $m "*) ;; *)
			echo "compare: SWEEP_MODES has $m, MODES=\"$modes\" does not (part 2 needs its peak)" >&2
			exit 1 ;;
		esac
	done
fi

# Part 3 reaches a Unix socket, which wrk and wrk2 cannot: it needs loadgen
# (built with -Dperf=true) and, for ringcached, --listen unix:PATH.
if [ -n "$unix_part" ]; then
	if [ ! -x "$loadgen_bin" ]; then
		echo "compare: part 3 (TRANSPORTS has unix) needs perf/loadgen, not at $loadgen_bin:" \
			"build with -Dperf=true (meson configure BUILD -Dperf=true), set LOADGEN," \
			"or TRANSPORTS=tcp" >&2
		exit 1
	fi
	case " $tr_servers " in *" ringcached "*)
		"$rc_bin" --help 2>&1 | grep 'unix:' >/dev/null || {     # not -q: bench-invalidation.sh
			echo "compare: $rc_bin has no --listen unix:PATH (part 3); TRANSPORTS=tcp skips it" >&2
			exit 1
		} ;;
	esac
fi

for m in $modes $tr_modes; do
	case $m in plain | pipelined) ;; *) echo "compare: unknown mode $m" >&2; exit 1 ;; esac
done
for srv in $servers $tr_servers; do
	case $srv in ringcached | nginx) ;; *) echo "compare: unknown server $srv" >&2; exit 1 ;; esac
done

bench_start
dir=${out%.txt}
mkdir -p "$dir"
out=$dir/table.txt
raw=$dir/raw.txt

if [ -n "${QUIET_LOAD:-}" ]; then
	waited=0
	until awk -v q="$QUIET_LOAD" '{ exit !($1 < q) }' /proc/loadavg; do
		if [ "$waited" -ge "${QUIET_WAIT:-1200}" ]; then
			echo "compare: load average still $(cut -d' ' -f1 /proc/loadavg) after ${waited}s; running anyway" >&2
			break
		fi
		sleep 10
		waited=$((waited + 10))
	done
fi

# The values, as files: ringcached is preloaded from them (value_file,
# start_ringcached) and nginx serves them (www-SIZE/cache/bench).
for s in $(printf '%s\n' $sizes $tr_size | sort -un); do
	mkdir -p "$tmp/www-$s/cache"
	head -c "$s" /dev/zero | tr '\0' x >"$tmp/www-$s/cache/bench"
done
# nginx started by root reads them as its worker's user (nobody)
chmod a+x "$tmp"
chmod -R a+rX "$tmp"/www-*

# Part 3's servers listen on a Unix socket as well as on loopback, the same
# server for the rows of both transports (ringcached's /stats and preload
# go over TCP).
sock=$tmp/http.sock
start_server() {	# server size [socket]: starts it; sets srv_pid, srv_url
	[ -z "${3:-}" ] || rm -f "$3"	# nginx would not bind over a file left behind
	case $1 in
	ringcached)
		value_file=$tmp/www-$2/cache/bench start_ringcached ${3:+--listen "unix:$3"}
		srv_pid=$rc_pid srv_url=$rc_url
		;;
	nginx)
		start_nginx "$tmp/www-$2" ${3:+"$3"}
		srv_pid=$ng_pid srv_url=$ng_url
		;;
	esac
}

# One load run against a fresh server; appends a row to $dir/runs.csv.
# Parts 1 and 2: wrk, or wrk2 -R rate when rate is set, over loopback.
# Part 3 (client loadgen): loadgen over the transport, closed loop or -R.
run_load() {	# transport server size mode secs rate fraction [client]
	local tr=$1 srv=$2 size=$3 mode=$4 secs=$5 rate=$6 frac=$7 client=${8:-wrk}
	local bin=wrk args=() kind=closed samples='' d=1 script=$here/get.lua
	local s0 s1 c0 c1 b0 b1 w0 w1 srv_lat=,, status=0
	[ -z "$rate" ] || kind=rate
	[ "$mode" = plain ] || { script=$here/pipeline.lua d=$depth; }
	if [ "$client" = wrk ] && [ -n "$rate" ]; then
		client=wrk2 bin=$wrk2_bin args=(-R "$rate")
	fi
	if [ "$client" = loadgen ]; then
		start_server "$srv" "$size" "$sock"
		local target=${srv_url#http://}
		[ "$tr" = tcp ] || target=unix:$sock
		bin=$loadgen_bin
		args=(--connect "$target" -c "$conns" -d "$d" -s "$secs" -p /cache/bench ${rate:+-R "$rate"})
	else
		start_server "$srv" "$size"
		args+=(-t1 -c"$conns" -d"${secs}s" -s "$script" "$srv_url")
	fi
	b0=$(busy_ticks) s0=$(cpu_ticks "$srv_pid") c0=$(children_ticks) w0=$(date +%s%N)
	# loadgen exits 2 when the run had errors: the row records them
	RC_DEPTH=$depth timeout -k 5 $((secs + 30)) taskset -c "$client_cpu" \
		"$bin" "${args[@]}" >"$tmp/load.out" 2>&1 || status=$?
	if [ "$status" != 0 ] && { [ "$client" != loadgen ] || [ "$status" != 2 ]; }; then
		cat "$tmp/load.out" >&2
		echo "compare: $client exited with status $status" >&2
		exit 1
	fi
	b1=$(busy_ticks) s1=$(cpu_ticks "$srv_pid") c1=$(children_ticks) w1=$(date +%s%N)
	{
		echo "=== $tr $srv size $size $mode ($client) ${rate:+rate $rate (${frac} of peak)}"
		cat "$tmp/load.out"
	} >>"$raw"
	if [ "$srv" = ringcached ]; then
		curl -s -f --max-time 5 -o "$tmp/stats.json" "$srv_url/stats" ||
			{ echo "compare: GET /stats failed" >&2; exit 1; }
		{ echo "--- /stats"; cat "$tmp/stats.json"; echo; } >>"$raw"
		srv_lat=$(python3 -c '
import json, sys
q = json.load(open(sys.argv[1]))["total"]["latency_ns"]["local"]
print(",".join("%.2f" % (q[k] / 1000) for k in ("p50", "p99", "p99.9")))' "$tmp/stats.json")
	fi
	stop_pid "$srv_pid"
	read_summary "$tmp/load.out"
	# wrk 4's #latency is not a count of responses (summary.lua); loadgen's is
	[ "$client" = wrk ] || samples=${sum[samples]}
	# one CSV row: the columns are named in the header written below
	awk -v OFS=, -v tr="$tr" -v srv="$srv" -v size="$size" -v mode="$mode" \
		-v depth="$d" -v conns="$conns" -v kind="$kind" -v frac="$frac" -v rate="$rate" \
		-v n="${sum[requests]}" -v us="${sum[duration_us]}" -v bytes="${sum[bytes]}" \
		-v st=$((s1 - s0)) -v ct=$((c1 - c0)) -v bt=$((b1 - b0)) -v hz="$hz" -v ns=$((w1 - w0)) \
		-v samples="$samples" \
		-v p50="${sum[p50]}" -v p90="${sum[p90]}" -v p99="${sum[p99]}" -v p999="${sum[p99.9]}" \
		-v max="${sum[max]}" -v srv_lat="$srv_lat" -v non2xx="${sum[non2xx]}" -v errors="${sum[errors]}" \
		-v client="$client" \
		'BEGIN {
			secs = us / 1e6; wall = ns / 1e9
			other = 100 * (bt - st - ct) / hz / wall
			print tr, srv, size, mode, depth, conns, kind, frac, rate, n, sprintf("%.3f", secs),
				sprintf("%.0f", n / secs), sprintf("%.2f", bytes / secs / 1e6),
				sprintf("%.2f", n ? st / hz / n * 1e6 : 0), sprintf("%.0f", 100 * ct / hz / wall),
				samples, p50, p90, p99, p999, max, srv_lat, non2xx, errors,
				sprintf("%.0f", other < 0 ? 0 : other), client
		}' >>"$dir/runs.csv"
	if [ "${sum[non2xx]}" != 0 ] || [ "${sum[errors]}" != 0 ]; then
		echo "compare: warning: $tr $srv $size $mode ($client) ${rate:+rate $rate}: ${sum[non2xx]} non-2xx," \
			"${sum[errors]} socket errors" | tee -a "$out" >&2
	fi
	echo "  $(tail -1 "$dir/runs.csv")" >&2
}

echo "transport,server,size,mode,depth,connections,load,fraction,target_rate,requests,seconds,req_per_s,mb_per_s,server_cpu_us_per_req,client_cpu_pct,samples,p50_us,p90_us,p99_us,p999_us,max_us,srv_p50_us,srv_p99_us,srv_p999_us,non2xx,errors,other_cpu_pct,client" \
	>"$dir/runs.csv"

git_rev=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
{
	echo "compare: $(date -u +%FT%TZ), commit $git_rev, $(uname -srm), $(nproc) CPUs"
	echo "servers on CPU $server_cpu, load generator on CPU $client_cpu (-t1 -c$conns); pipelined depth $depth"
	echo "ringcached: $rc_bin $("$rc_bin" --version 2>/dev/null || true) (--shards 1 --memory 64M ${RC_FLAGS:-})"
	case " $servers $tr_servers " in *" nginx "*)
		echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'), 1 worker, static file, sendfile" ;;
	esac
	[ -z "$wrk_part" ] ||
		echo "part 1: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), ${duration}s per run; sizes $sizes; modes $modes"
	[ -z "$sweep" ] || echo "part 2: wrk2 ($wrk2_bin), ${sweep_duration}s per point; size $sweep_size;" \
		"modes $sweep_modes; fractions of peak $sweep"
	[ -z "$unix_part" ] || echo "part 3: loadgen ($loadgen_bin), tcp and unix, ${tr_duration}s per run;" \
		"servers $tr_servers; size $tr_size; modes $tr_modes;" \
		"${tr_fraction:+rate $tr_fraction of the lower peak}"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$tmp/head.txt"
cat "$tmp/head.txt" >&2

declare -A peak
[ -z "$wrk_part" ] || echo "part 1: throughput, closed loop" >&2
for tr in ${wrk_part:+tcp}; do
	for size in $sizes; do
		for m in $modes; do
			for srv in $servers; do
				run_load "$tr" "$srv" "$size" "$m" "$duration" "" ""
				peak[$tr,$srv,$size,$m]=$(tail -1 "$dir/runs.csv" | cut -d, -f12)
			done
		done
	done
done

if [ -n "$sweep" ]; then
	echo "part 2: latency against rate (wrk2)" >&2
	for tr in ${wrk_part:+tcp}; do
		for m in $sweep_modes; do
			for f in $sweep; do
				for srv in $servers; do
					rate=$(awk -v p="${peak[$tr,$srv,$sweep_size,$m]}" -v f="$f" \
						'BEGIN { r = int(p * f + 0.5); print r < 1 ? 1 : r }')
					run_load "$tr" "$srv" "$sweep_size" "$m" "$sweep_duration" "$rate" "$f"
				done
			done
		done
	done
fi

# Part 3: tcp and unix run for run, one after the other, so the machine's
# drift falls on both alike; the rate is the same for both.
if [ -n "$unix_part" ]; then
	echo "part 3: TCP loopback against a Unix socket (loadgen)" >&2
	for srv in $tr_servers; do
		for m in $tr_modes; do
			for tr in tcp unix; do
				run_load "$tr" "$srv" "$tr_size" "$m" "$tr_duration" "" "" loadgen
				peak[lg,$tr,$srv,$m]=$(tail -1 "$dir/runs.csv" | cut -d, -f12)
			done
		done
		[ -n "$tr_fraction" ] || continue
		for m in $tr_modes; do
			rate=$(awk -v a="${peak[lg,tcp,$srv,$m]}" -v b="${peak[lg,unix,$srv,$m]}" \
				-v f="$tr_fraction" 'BEGIN { p = a < b ? a : b; r = int(p * f + 0.5)
					print r < 1 ? 1 : r }')
			for tr in tcp unix; do
				run_load "$tr" "$srv" "$tr_size" "$m" "$tr_duration" "$rate" "$tr_fraction" loadgen
			done
		done
	done
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$tmp/head.txt"
python3 "$here/compare-report.py" "$dir" "$tmp/head.txt" | tee "$out"
echo "results: $dir (table.txt, runs.csv, raw.txt, compare-*.png)"
