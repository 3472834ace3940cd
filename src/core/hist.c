/*
 * hist.c - the reader side of struct hist: snapshots, merging, quantiles.
 * Recording is inline in hist.h because it sits on every request's path;
 * everything here runs when someone asks for /stats or /metrics.
 */
#include <string.h>

#include "ringcache/hist.h"

void hist_init(struct hist *h)
{
	atomic_store_explicit(&h->sum, 0, memory_order_relaxed);
	atomic_store_explicit(&h->max, 0, memory_order_relaxed);
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		atomic_store_explicit(&h->counts[i], 0, memory_order_relaxed);
}

void hist_snapshot_init(struct hist_snapshot *s)
{
	memset(s, 0, sizeof(*s));
}

void hist_merge(struct hist_snapshot *s, const struct hist *h)
{
	/* The writer's stores are relaxed, so these loads may see the buckets,
	 * sum and max of slightly different moments; each is monotonic, and
	 * count is derived from the buckets so it always equals their sum. */
	struct hist *w = (struct hist *)h;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		uint64_t c = atomic_load_explicit(&w->counts[i], memory_order_relaxed);
		s->counts[i] += c;
		s->count += c;
	}
	s->sum += atomic_load_explicit(&w->sum, memory_order_relaxed);
	uint64_t max = atomic_load_explicit(&w->max, memory_order_relaxed);
	if (max > s->max)
		s->max = max;
}

void hist_snapshot_add(struct hist_snapshot *dst, const struct hist_snapshot *src)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t hist_percentile(const struct hist_snapshot *s, uint32_t ppm)
{
	if (s->count == 0)
		return 0;
	if (ppm > HIST_PMAX)
		ppm = HIST_PMAX;
	unsigned __int128 scaled = (unsigned __int128)s->count * ppm;
	uint64_t rank = (uint64_t)((scaled + HIST_PMAX - 1) / HIST_PMAX);
	if (rank == 0)
		rank = 1;

	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += s->counts[i];
		if (seen < rank)
			continue;
		/* Capping at max makes p100 exact; the last bucket also holds
		 * everything beyond the range, so max is its only true bound.
		 * A snapshot taken while the writer runs may hold a max older
		 * than the buckets (relaxed loads may be reordered on ARM64):
		 * then max is below this bucket and is ignored. */
		uint64_t upper = hist_bucket_upper(i);
		if (s->max >= hist_bucket_lower(i) &&
		    (s->max < upper || i == HIST_BUCKETS - 1))
			return s->max;
		return upper;
	}
	return s->max; /* not reached: count is the sum of the buckets */
}

uint64_t hist_count_le(const struct hist_snapshot *s, uint64_t ns)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < HIST_BUCKETS && hist_bucket_upper(i) <= ns; i++)
		n += s->counts[i];
	return n;
}
