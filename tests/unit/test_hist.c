/*
 * test_hist.c - the log-linear histogram: bucket layout, quantiles against
 * exact values from sorted samples, Prometheus cumulative counts, merging,
 * and a writer and a reader running at the same time.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ringcache/hist.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Latency-like samples: spread over many orders of magnitude. */
static uint64_t sample(void)
{
	unsigned bits = (unsigned)(rng() % 34);
	return rng() & ((1ull << bits) - 1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_layout(void)
{
	unsigned bad = 0;

	CHECK_EQ(hist_bucket_lower(0), 0);
	CHECK_EQ(hist_bucket_upper(HIST_BUCKETS - 1), HIST_MAX_NS - 1);
	for (unsigned i = 0; i + 1 < HIST_BUCKETS; i++)
		if (hist_bucket_lower(i + 1) != hist_bucket_upper(i) + 1 ||
		    hist_index(hist_bucket_lower(i)) != i || hist_index(hist_bucket_upper(i)) != i)
			bad++;
	CHECK_EQ(bad, 0);

	/* Every value lies in its bucket, and the bucket is narrow enough for
	 * its upper bound to be within 1/16 of the value. */
	bad = 0;
	for (uint64_t v = 0; v < 200000; v++) {
		unsigned i = hist_index(v);
		uint64_t up = hist_bucket_upper(i);
		if (hist_bucket_lower(i) > v || up < v || (up - v) * 16 > v)
			bad++;
	}
	for (int k = 0; k < 200000; k++) {
		uint64_t v = sample() | 1;
		unsigned i = hist_index(v);
		uint64_t up = hist_bucket_upper(i);
		if (hist_bucket_lower(i) > v || up < v || (up - v) * 16 > v)
			bad++;
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(hist_index(31), 31);
	CHECK_EQ(hist_index(32), 32);
	CHECK_EQ(hist_index(HIST_MAX_NS), HIST_BUCKETS - 1);
	CHECK_EQ(hist_index(UINT64_MAX), HIST_BUCKETS - 1);
}

static struct hist h1, h2;
static struct hist_snapshot snap, snap2;

static void test_percentiles(void)
{
	enum { N = 100000 };
	static uint64_t v[N];
	static const uint32_t ppms[] = { 1, 10000, 250000, HIST_P50, HIST_P90, HIST_P99,
					 HIST_P999, 999999, HIST_PMAX };

	hist_init(&h1);
	hist_snapshot_init(&snap);
	CHECK_EQ(hist_percentile(&snap, HIST_P50), 0);

	uint64_t sum = 0;
	for (int i = 0; i < N; i++) {
		v[i] = sample();
		sum += v[i];
		hist_record(&h1, v[i]);
	}
	qsort(v, N, sizeof(v[0]), cmp_u64);
	hist_merge(&snap, &h1);
	CHECK_EQ(snap.count, N);
	CHECK_EQ(snap.sum, sum);
	CHECK_EQ(snap.max, v[N - 1]);

	for (unsigned k = 0; k < sizeof(ppms) / sizeof(ppms[0]); k++) {
		uint64_t rank = ((uint64_t)N * ppms[k] + 999999) / 1000000;
		uint64_t exact = v[rank - 1];
		uint64_t got = hist_percentile(&snap, ppms[k]);
		CHECK(got >= exact);
		CHECK(got - exact <= exact / 16);
	}
	CHECK_EQ(hist_percentile(&snap, HIST_PMAX), v[N - 1]);

	/* Cumulative counts: never more than the values <= le, and never
	 * fewer than those within 1/16 below it. */
	static const uint64_t les[] = { 0, 15, 100, 250, 1000, 2500, 100000, 1000000000 };
	for (unsigned k = 0; k < sizeof(les) / sizeof(les[0]); k++) {
		uint64_t le = les[k], at_most = 0, surely = 0;
		for (int i = 0; i < N; i++) {
			at_most += v[i] <= le;
			surely += v[i] + v[i] / 16 <= le;
		}
		uint64_t got = hist_count_le(&snap, le);
		CHECK(got <= at_most);
		CHECK(got >= surely);
	}
	CHECK_EQ(hist_count_le(&snap, UINT64_MAX), N);
}

static void test_small_exact(void)
{
	hist_init(&h1);
	for (uint64_t x = 1; x <= 10; x++)
		hist_record(&h1, x);
	hist_snapshot_init(&snap);
	hist_merge(&snap, &h1);
	CHECK_EQ(hist_percentile(&snap, HIST_P50), 5);
	CHECK_EQ(hist_percentile(&snap, HIST_P90), 9);
	CHECK_EQ(hist_percentile(&snap, HIST_P99), 10);
	CHECK_EQ(hist_percentile(&snap, 1), 1);
	CHECK_EQ(hist_count_le(&snap, 3), 3);

	/* Beyond the range: last bucket, exact max. */
	hist_init(&h1);
	hist_record(&h1, 100ull * 1000000000ull);
	hist_snapshot_init(&snap);
	hist_merge(&snap, &h1);
	CHECK_EQ(snap.counts[HIST_BUCKETS - 1], 1);
	CHECK_EQ(hist_percentile(&snap, HIST_P50), 100ull * 1000000000ull);
	CHECK_EQ(hist_percentile(&snap, HIST_PMAX), 100ull * 1000000000ull);
	CHECK_EQ(hist_count_le(&snap, HIST_MAX_NS - 2), 0);
	CHECK_EQ(snap.max, 100ull * 1000000000ull);
}

static void test_merge(void)
{
	struct hist_snapshot a, b;

	hist_init(&h1);
	hist_init(&h2);
	hist_snapshot_init(&snap);
	hist_snapshot_init(&snap2);
	/* h1 and h2 each get half; snap2 sees all of them through both. */
	for (int i = 0; i < 20000; i++)
		hist_record(i & 1 ? &h1 : &h2, sample());
	hist_merge(&snap, &h1);
	hist_merge(&snap, &h2);
	hist_snapshot_init(&a);
	hist_snapshot_init(&b);
	hist_merge(&a, &h1);
	hist_merge(&b, &h2);
	hist_snapshot_add(&snap2, &a);
	hist_snapshot_add(&snap2, &b);
	CHECK_EQ(snap.count, 20000);
	CHECK(memcmp(&snap, &snap2, sizeof(snap)) == 0);
	CHECK_EQ(snap.max, a.max > b.max ? a.max : b.max);
}

/* One writer, one reader: the reader's counts never go down. */
#define RECORDS 2000000u

static atomic_bool writer_done;

static void *writer(void *arg)
{
	struct hist *h = arg;
	for (unsigned i = 0; i < RECORDS; i++)
		hist_record(h, (i * 2654435761u) % 5000u);
	atomic_store_explicit(&writer_done, true, memory_order_release);
	return NULL;
}

static void test_concurrent(void)
{
	pthread_t t;
	uint64_t last = 0, snaps = 0, backwards = 0, over = 0;

	hist_init(&h1);
	atomic_store(&writer_done, false);
	CHECK_EQ(pthread_create(&t, NULL, writer, &h1), 0);
	while (!atomic_load_explicit(&writer_done, memory_order_acquire)) {
		hist_snapshot_init(&snap);
		hist_merge(&snap, &h1);
		backwards += snap.count < last;
		over += snap.count > RECORDS;
		last = snap.count;
		snaps++;
	}
	pthread_join(t, NULL);
	hist_snapshot_init(&snap);
	hist_merge(&snap, &h1);
	CHECK_EQ(backwards, 0);
	CHECK_EQ(over, 0);
	CHECK(snap.count >= last);
	CHECK_EQ(snap.count, RECORDS);
	CHECK(snap.max < 5000);
	printf("concurrent: %llu snapshots while writing\n", (unsigned long long)snaps);
}

int main(void)
{
	test_layout();
	test_percentiles();
	test_small_exact();
	test_merge();
	test_concurrent();
	return check_done("test_hist");
}
