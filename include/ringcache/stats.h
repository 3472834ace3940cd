/*
 * stats.h - per-shard counters and latency histograms, and their rendering
 * as JSON (GET /stats) and Prometheus text (GET /metrics).
 *
 * Each shard owns one struct stats_shard and is its only writer; any shard
 * may read all of them to answer /stats.  Counters are _Atomic uint64_t
 * updated with a relaxed load and a relaxed store (one writer needs no
 * read-modify-write), read with relaxed loads: never torn, also on ARM64,
 * and cheap enough for every request.  The store's own numbers are copied in
 * by the shard with stats_store_update() (from store_stats()), so readers
 * never touch another shard's store.
 *
 * STATS_METRICS is the one table of names: it declares the fields, the JSON
 * keys and the Prometheus names, HELP and TYPE lines, so they cannot drift.
 *   X(name, type, help)
 *   type COUNTER: Prometheus "ringcached_<name>_total", only ever grows;
 *   type GAUGE:   Prometheus "ringcached_<name>", may go down.
 * JSON uses <name> as the key in both cases.  See docs/stats.md.
 */
#ifndef RINGCACHE_STATS_H
#define RINGCACHE_STATS_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ringcache/buf.h"
#include "ringcache/cache.h"
#include "ringcache/hist.h"
#include "ringcache/lease.h"
#include "ringcache/store.h"

#define STATS_METRICS(X)                                                           \
	X(requests, COUNTER, "Requests parsed on this shard's connections.")      \
	X(local_requests, COUNTER,                                                 \
	  "Requests parsed here and served by this shard's own store.")           \
	X(forwarded_requests, COUNTER,                                             \
	  "Requests received from other shards and served by this shard's store.") \
	X(hits, COUNTER, "Lookups in this shard's store that found the key.")     \
	X(misses, COUNTER, "Lookups in this shard's store that did not.")         \
	X(not_modified, COUNTER, "Responses 304 Not Modified.")                   \
	X(stale, COUNTER, "Lookups answered from a stale window (X-Cache: STALE).") \
	X(sets, COUNTER, "Values stored in this shard's store.")                  \
	X(deletes, COUNTER, "Deletes applied to this shard's store.")             \
	X(errors, COUNTER, "Responses with a 4xx or 5xx status.")                 \
	X(responses_2xx, COUNTER, "Responses with a 2xx status.")                 \
	X(responses_3xx, COUNTER, "Responses with a 3xx status.")                 \
	X(responses_4xx, COUNTER, "Responses with a 4xx status.")                 \
	X(responses_5xx, COUNTER, "Responses with a 5xx status.")                 \
	X(l2_hits, COUNTER,                                                        \
	  "L1 misses this shard owns that Redis answered with a value (one per read).") \
	X(l2_misses, COUNTER,                                                      \
	  "L1 misses this shard owns that Redis did not hold either (one per read).") \
	X(l2_refused, COUNTER,                                                     \
	  "Values read from Redis that L1 would not keep (answered X-L2: bad-data).") \
	X(received_bytes, COUNTER, "Bytes received from clients.")                \
	X(sent_bytes, COUNTER, "Bytes sent to clients.")                          \
	X(connections_accepted, COUNTER, "Client connections accepted.")          \
	X(accept_errors, COUNTER,                                                  \
	  "Accepts that failed (EMFILE, ENFILE...) or were over --max-conns.")    \
	X(connections, GAUGE, "Client connections open now.")                    \
	X(conn_memory, GAUGE,                                                      \
	  "Bytes held for connections: buffers, queued answers, forwarded requests.") \
	X(memory_pauses, COUNTER,                                                  \
	  "Times this shard stopped taking input: connection memory over its share.") \
	X(memory_trims, COUNTER, "malloc_trim() calls after connections let go of memory.") \
	X(send_pins, GAUGE,                                                        \
	  "Values this shard's sends hold in a store: queued, in flight, or awaiting a zero-copy notification.") \
	X(sends_zc, COUNTER, "Sends made zero-copy (IORING_OP_SENDMSG_ZC, --send-zc-min).") \
	X(sends_zc_copied, COUNTER,                                                \
	  "Zero-copy sends the kernel copied anyway (a local receiver: loopback).") \
	X(pins_refused, COUNTER,                                                   \
	  "Values of 16 KiB or more copied, not sent from this store: a quarter of it was pinned.") \
	X(items, GAUGE, "Items in this shard's store.")                           \
	X(value_bytes, GAUGE, "Bytes of values (all variants) in the store.")     \
	X(arena_bytes, GAUGE, "Bytes reserved for the store's items and index.")  \
	X(evictions, COUNTER, "Items dropped to make room.")                      \
	X(expirations, COUNTER, "Items dropped because their TTL passed.")        \
	CACHE_ZIP_STATS(X)                                                         \
	LEASE_STATS(X)

/* Latency histograms, same idea: X(name, kind label, help). */
#define STATS_HISTS(X)                                                             \
	X(lat_local, "local", "hits served by this shard's own store")            \
	X(lat_forwarded, "forwarded", "hits served by another shard's store")     \
	X(lat_local_all, "local_all",                                              \
	  "every /cache/ request this shard's store answered (misses, writes, L2)") \
	X(lat_forwarded_all, "forwarded_all",                                      \
	  "every /cache/ request another shard's store answered")                 \
	X(loop_busy, "loop_busy",                                                  \
	  "the shard loop's busy stretches, first handling to next io_uring_enter") \
	X(zip_lag, "zip_lag", "from a PUT's store to the install of its br/gzip variants")

struct stats_shard {
#define STATS_FIELD(name, type, help) _Atomic uint64_t name;
	alignas(128) STATS_METRICS(STATS_FIELD)
#undef STATS_FIELD
	uint64_t start_ns;  /* clock_mono_ns() at stats_init(); for uptime */
	unsigned id;        /* the "shard" label */
#define STATS_HIST_FIELD(name, kind, help) alignas(128) struct hist name;
	STATS_HISTS(STATS_HIST_FIELD)
#undef STATS_HIST_FIELD
};

/* Zeroes `s` for shard `id` and records the start time for uptime. */
void stats_init(struct stats_shard *s, unsigned id);

/* Owner only: counter += 1 / += n. */
static inline void stats_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline void stats_inc(_Atomic uint64_t *c)
{
	stats_add(c, 1);
}

/* Owner only, gauges: -= 1, = v. */
static inline void stats_dec(_Atomic uint64_t *c)
{
	stats_add(c, (uint64_t)-1);
}

static inline void stats_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

/* Any thread. */
static inline uint64_t stats_get(const _Atomic uint64_t *c)
{
	return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

/* Owner only: copies the store's items, value_bytes, arena_bytes,
 * evictions and expirations into `s`.  Call it every tick (~1/s). */
void stats_store_update(struct stats_shard *s, const struct store_stats *ss);

/* Owner only: the counts a write or delete changed, right after it, so a
 * reader that had its writes answered sees them in `items` (docs/stats.md). */
void stats_store_counts(struct stats_shard *s, const struct store_counts *sc);

/*
 * A table of counters kept outside the shards (the coherence thread's
 * COH_STATS), rendered by the same code as the shards': in JSON an object
 * "<name>":{...} after "per_shard", in Prometheus "ringcached_<name>_<field>"
 * (with "_total" for counters).  Build `fields` from the table's X-macro with
 * STATS_FIELD_DESC, and `values` in the same order.
 */
enum stats_kind { STATS_COUNTER, STATS_GAUGE };

struct stats_field {
	const char *name;
	enum stats_kind kind;
	const char *help;
};

#define STATS_FIELD_DESC(name, kind, help) { #name, STATS_##kind, help },

struct stats_table {
	const char *name;
	const struct stats_field *fields;
	unsigned n;
	const uint64_t *values;
};

/*
 * Appends the /stats JSON for shards[0..n) and the tables extra[0..nextra)
 * to `out` (shape in docs/stats.md).  Any thread.  Returns 0 or -ENOMEM
 * (out may then hold a partial document).
 */
int stats_format_json(struct stats_shard *const *shards, unsigned n,
		      const struct stats_table *extra, unsigned nextra, struct buf *out);

/*
 * Appends the /metrics text (Prometheus exposition format 0.0.4; serve it as
 * "text/plain; version=0.0.4; charset=utf-8") for shards[0..n) and the
 * tables extra[0..nextra) to `out`.  Any thread.  Returns 0 or -ENOMEM.
 */
int stats_format_prometheus(struct stats_shard *const *shards, unsigned n,
			    const struct stats_table *extra, unsigned nextra,
			    struct buf *out);

#endif
