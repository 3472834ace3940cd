/*
 * hist.h - a log-linear latency histogram (HdrHistogram's layout) written by
 * one thread and read by any other without locks.
 *
 * Values are nanoseconds.  0..31 get a bucket each; above, every power of two
 * [2^e, 2^(e+1)) is cut into HIST_SUB equal sub-buckets, so a bucket is at
 * most 1/16 of its lower bound wide and reporting a bucket's upper bound is
 * at most 6.25% above any value in it.  Values at or above HIST_MAX_NS
 * (2^36 ns, about 68.7 s) land in the last bucket; `max` keeps the exact
 * largest value.
 *
 *   index = (s << 4) + (v >> s),  s = max(floor(log2 v) - 4, 0)
 *
 *    v:   0 .. 31 | 32 34 .. 62 | 64 68 .. 124 | ... 
 *   idx:  0 .. 31 | 32 33 .. 47 | 48 49 .. 63  | ...
 *
 * Concurrency: only the owning thread calls hist_record(); it updates each
 * counter with a relaxed load and a relaxed store (no read-modify-write is
 * needed with one writer, and a plain store of an _Atomic uint64_t is never
 * torn, also on ARM64).  Readers copy the counters with relaxed loads into a
 * struct hist_snapshot.  A snapshot is not an atomic picture of the whole
 * histogram, but every bucket only grows, so the count of a later snapshot
 * is never below that of an earlier one.
 */
#ifndef RINGCACHE_HIST_H
#define RINGCACHE_HIST_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#define HIST_SUB_BITS 4u
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_BITS 36u
#define HIST_MAX_NS (1ull << HIST_MAX_BITS)
#define HIST_BUCKETS (((HIST_MAX_BITS - HIST_SUB_BITS) << HIST_SUB_BITS) + HIST_SUB)

/* Quantiles in parts per million, for hist_percentile(). */
#define HIST_P50 500000u
#define HIST_P90 900000u
#define HIST_P99 990000u
#define HIST_P999 999000u
#define HIST_PMAX 1000000u

struct hist {
	_Atomic uint64_t sum;   /* of recorded values, ns */
	_Atomic uint64_t max;   /* largest recorded value, ns */
	_Atomic uint64_t counts[HIST_BUCKETS];
};

/* A plain copy, owned by the reader; sums of several histograms. */
struct hist_snapshot {
	uint64_t count;
	uint64_t sum;
	uint64_t max;
	uint64_t counts[HIST_BUCKETS];
};

/* Zeroes a histogram before its owner starts recording. */
void hist_init(struct hist *h);

static inline unsigned hist_index(uint64_t ns)
{
	if (ns >= HIST_MAX_NS)
		ns = HIST_MAX_NS - 1;
	unsigned e = 63u - (unsigned)__builtin_clzll(ns | 1);
	unsigned s = e > HIST_SUB_BITS ? e - HIST_SUB_BITS : 0;
	return (s << HIST_SUB_BITS) + (unsigned)(ns >> s);
}

/* Smallest and largest value that land in bucket `idx` (< HIST_BUCKETS). */
static inline uint64_t hist_bucket_lower(unsigned idx)
{
	unsigned s = idx < 2 * HIST_SUB ? 0 : (idx >> HIST_SUB_BITS) - 1;
	return (uint64_t)(idx - (s << HIST_SUB_BITS)) << s;
}

static inline uint64_t hist_bucket_upper(unsigned idx)
{
	unsigned s = idx < 2 * HIST_SUB ? 0 : (idx >> HIST_SUB_BITS) - 1;
	return hist_bucket_lower(idx) + (1ull << s) - 1;
}

static inline void hist_add_relaxed(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* Records the value `ns` n times (answers that left in one send).  Only the
 * owning thread may call it. */
static inline void hist_record_n(struct hist *h, uint64_t ns, uint64_t n)
{
	hist_add_relaxed(&h->counts[hist_index(ns)], n);
	hist_add_relaxed(&h->sum, ns * n);
	if (ns > atomic_load_explicit(&h->max, memory_order_relaxed))
		atomic_store_explicit(&h->max, ns, memory_order_relaxed);
}

/* Records one value.  Only the owning thread may call it. */
static inline void hist_record(struct hist *h, uint64_t ns)
{
	hist_record_n(h, ns, 1);
}

/* Zeroes a snapshot, ready for hist_merge(). */
void hist_snapshot_init(struct hist_snapshot *s);

/* Adds the current contents of `h` to `s`.  Any thread. */
void hist_merge(struct hist_snapshot *s, const struct hist *h);

/* Adds one snapshot into another (totals across shards). */
void hist_snapshot_add(struct hist_snapshot *dst, const struct hist_snapshot *src);

/*
 * The value at quantile `ppm` (parts per million, 1..1000000) by nearest rank:
 * the upper bound of the bucket holding the ceil(count * ppm / 1e6)-th
 * smallest value, capped at `max`.  So the result is never below the exact
 * value and at most 6.25% above it; HIST_PMAX gives `max` exactly.  Ranks
 * falling in the last bucket (values >= HIST_MAX_NS) report `max`.
 * 0 for an empty snapshot.
 */
uint64_t hist_percentile(const struct hist_snapshot *s, uint32_t ppm);

/*
 * How many values are counted in buckets whose upper bound is <= `ns`: the
 * cumulative count for a Prometheus bucket with le = ns.  A value is thus
 * counted at its bucket's upper bound, at most 6.25% late.
 */
uint64_t hist_count_le(const struct hist_snapshot *s, uint64_t ns);

#endif
