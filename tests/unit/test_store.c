/*
 * test_store.c - the store through its public interface: get/set/delete,
 * key and value limits, TTL on a hand-driven clock, background expiry,
 * flush, eviction under pressure, arena reuse and fragmentation, and the
 * arena's backing options.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ringcache/hash.h"
#include "ringcache/store.h"

#define MiB (1ull << 20)

static struct store *mk(size_t memory, size_t max_value)
{
	struct store_config cfg = {
		.memory = memory,
		.max_value = max_value,
		.hugepages = STORE_HUGEPAGES_OFF,
		.numa_node = -1,
	};
	struct store *st = NULL;
	int r = store_create(&st, &cfg);

	CHECK_EQ(r, 0);
	if (r)
		exit(1);
	return st;
}

static uint64_t h(const char *k, size_t n)
{
	return hash_key(k, n);
}

static int set(struct store *st, const char *k, const void *v, size_t n, uint32_t ttl)
{
	struct iovec iov = { (void *)v, n };

	return store_set(st, k, strlen(k), h(k, strlen(k)), &iov, 1, ttl, 7, 0xabcd1234, NULL);
}

static int get(struct store *st, const char *k, struct store_item *it)
{
	return store_get(st, k, strlen(k), h(k, strlen(k)), it);
}

static bool get_is(struct store *st, const char *k, const void *v, size_t n)
{
	struct store_item it;

	return get(st, k, &it) == 0 && it.value_len == n && memcmp(it.value, v, n) == 0;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

static void test_basic(void)
{
	struct store *st = mk(8 * MiB, 0);
	struct store_item it;
	struct store_stats ss;
	struct iovec iov[3] = { { "ab", 2 }, { "", 0 }, { "cde", 3 } };

	CHECK_EQ(get(st, "nope", &it), -ENOENT);
	CHECK_EQ(set(st, "k1", "hello", 5, 0), 0);
	CHECK_EQ(get(st, "k1", &it), 0);
	CHECK_EQ(it.value_len, 5);
	CHECK(memcmp(it.value, "hello", 5) == 0);
	CHECK_EQ(it.flags, 7);
	CHECK_EQ(it.etag, 0xabcd1234u);
	CHECK_EQ(it.expires, 0);

	/* Overwrite with a different size, flags 0 and etag 0. */
	CHECK_EQ(store_set(st, "k1", 2, h("k1", 2), iov, 3, 0, 0, 0, NULL), 0);
	CHECK_EQ(get(st, "k1", &it), 0);
	CHECK_EQ(it.value_len, 5);
	CHECK(memcmp(it.value, "abcde", 5) == 0);
	CHECK_EQ(it.flags, 0);
	CHECK_EQ(it.etag, 0);

	/* Empty value. */
	CHECK_EQ(set(st, "empty", "", 0, 0), 0);
	CHECK_EQ(get(st, "empty", &it), 0);
	CHECK_EQ(it.value_len, 0);

	/* Binary key with NULs, and keys sharing a prefix. */
	CHECK_EQ(store_set(st, "a\0b", 3, h("a\0b", 3), iov, 1, 0, 0, 0, NULL), 0);
	CHECK_EQ(store_get(st, "a\0c", 3, h("a\0c", 3), &it), -ENOENT);
	CHECK_EQ(store_get(st, "a\0b", 3, h("a\0b", 3), &it), 0);
	CHECK_EQ(store_get(st, "a", 1, h("a", 1), &it), -ENOENT);

	store_stats(st, &ss);
	CHECK(store_contains(st, "k1", 2, h("k1", 2)));
	CHECK(!store_contains(st, "k2", 2, h("k2", 2)));
	CHECK(!store_contains(st, "", 0, 0));
	{
		struct store_stats s2;
		store_stats(st, &s2);
		CHECK_EQ(s2.gets, ss.gets);
		CHECK_EQ(s2.hits, ss.hits);
	}
	CHECK_EQ(store_delete(st, "k1", 2, h("k1", 2)), 0);
	CHECK_EQ(store_delete(st, "k1", 2, h("k1", 2)), -ENOENT);
	CHECK(!store_contains(st, "k1", 2, h("k1", 2)));
	CHECK_EQ(get(st, "k1", &it), -ENOENT);

	store_stats(st, &ss);
	CHECK_EQ(ss.items, 2);
	CHECK_EQ(ss.key_bytes, 5 + 3);
	CHECK_EQ(ss.value_bytes, 2);
	CHECK_EQ(ss.backing, STORE_BACKING_NORMAL);
	CHECK(ss.arena_bytes <= 8 * MiB);
	CHECK_EQ(ss.hits, 4);
	store_destroy(st);
	store_destroy(NULL);
}

static void test_key_limits(void)
{
	struct store *st = mk(4 * MiB, 0);
	static char big[STORE_KEY_MAX + 1];
	struct iovec iov = { "v", 1 };
	struct store_item it;

	memset(big, 'k', sizeof(big));
	CHECK_EQ(store_set(st, big, 0, 0, &iov, 1, 0, 0, 0, NULL), -EINVAL);
	CHECK_EQ(store_set(st, big, STORE_KEY_MAX + 1, 0, &iov, 1, 0, 0, 0, NULL), -EINVAL);
	CHECK_EQ(store_get(st, big, 0, 0, &it), -EINVAL);
	CHECK_EQ(store_delete(st, big, STORE_KEY_MAX + 1, 0), -EINVAL);
	CHECK_EQ(store_set(st, big, STORE_KEY_MAX, h(big, STORE_KEY_MAX), &iov, 1, 0, 0, 0, NULL),
		 0);
	CHECK_EQ(store_get(st, big, STORE_KEY_MAX, h(big, STORE_KEY_MAX), &it), 0);
	CHECK_EQ(store_get(st, big, STORE_KEY_MAX - 1, h(big, STORE_KEY_MAX - 1), &it), -ENOENT);
	for (size_t n = 1; n <= STORE_KEY_MAX; n += 37) {
		big[0] = (char)n;
		CHECK_EQ(store_set(st, big, n, h(big, n), &iov, 1, 0, 0, 0, NULL), 0);
		CHECK_EQ(store_get(st, big, n, h(big, n), &it), 0);
	}
	store_destroy(st);
}

static void test_ttl(void)
{
	struct store *st = mk(8 * MiB, 0);
	struct store_item it;

	store_tick(st, 100);
	CHECK_EQ(set(st, "t", "x", 1, 5), 0);
	CHECK_EQ(set(st, "forever", "y", 1, 0), 0);
	CHECK_EQ(get(st, "t", &it), 0);
	CHECK_EQ(it.expires, 105);
	store_tick(st, 104);
	CHECK_EQ(get(st, "t", &it), 0);
	CHECK(store_contains(st, "t", 1, h("t", 1)));
	store_tick(st, 105);
	CHECK(!store_contains(st, "t", 1, h("t", 1)));
	CHECK_EQ(get(st, "t", &it), -ENOENT);
	CHECK_EQ(get(st, "forever", &it), 0);
	/* A clock that goes back does not resurrect anything. */
	store_tick(st, 50);
	CHECK_EQ(get(st, "t", &it), -ENOENT);
	/* An expired item deletes as absent. */
	CHECK_EQ(set(st, "t2", "x", 1, 1), 0);
	store_tick(st, 200);
	CHECK_EQ(store_delete(st, "t2", 2, h("t2", 2)), -ENOENT);
	/* Overwriting changes the TTL both ways. */
	CHECK_EQ(set(st, "t3", "x", 1, 10), 0);
	CHECK_EQ(set(st, "t3", "x", 1, 0), 0);
	store_tick(st, 300);
	CHECK_EQ(get(st, "t3", &it), 0);
	CHECK_EQ(it.expires, 0);
	/* A TTL that overflows the clock saturates instead of expiring. */
	CHECK_EQ(set(st, "t4", "x", 1, UINT32_MAX), 0);
	CHECK_EQ(get(st, "t4", &it), 0);
	CHECK_EQ(it.expires, UINT32_MAX);
	store_destroy(st);
}

/*
 * store_set() says whether it replaced a live item (a PUT answers 204 then,
 * 201 for a new key): not for a new key, an expired one or a deleted one.
 */
static bool replaces(struct store *st, const char *k, uint32_t ttl)
{
	struct iovec iov = { (void *)"v", 1 };
	struct store_set_info set = { .replaced = true };

	CHECK_EQ(store_set(st, k, strlen(k), h(k, strlen(k)), &iov, 1, ttl, 0, 0, &set), 0);
	return set.replaced;
}

static void test_replaced(void)
{
	struct store *st = mk(8 * MiB, 0);

	store_tick(st, 100);
	CHECK(!replaces(st, "r", 5));
	CHECK(replaces(st, "r", 5));
	CHECK(!replaces(st, "other", 0));
	store_tick(st, 105);            /* "r" expired, still indexed */
	CHECK(!replaces(st, "r", 0));
	CHECK(replaces(st, "r", 0));
	CHECK_EQ(store_delete(st, "r", 1, h("r", 1)), 0);
	CHECK(!replaces(st, "r", 0));
	store_destroy(st);
}

/* Expired items are reclaimed by store_tick() alone, with no reads. */
static void test_background_expiry(void)
{
	struct store *st = mk(16 * MiB, 0);
	struct store_stats before, after;
	uint8_t v[200];
	char k[32];
	int n = 50000;

	fill(v, sizeof(v), 1);
	store_tick(st, 10);
	for (int i = 0; i < n; i++) {
		snprintf(k, sizeof(k), "ttl:%d", i);
		CHECK_EQ(set(st, k, v, sizeof(v), 30 + (unsigned)(i % 20)) == 0, 1);
	}
	CHECK_EQ(set(st, "keep", v, sizeof(v), 0), 0);
	store_stats(st, &before);
	CHECK_EQ(before.items, (uint64_t)n + 1);
	/* The clock passes every expiry; ticks do the reclaiming in slices. */
	for (uint32_t t = 60; t < 60 + 200; t++)
		store_tick(st, t);
	store_stats(st, &after);
	CHECK_EQ(after.items, 1);
	CHECK_EQ(after.expirations, (uint64_t)n);
	CHECK_EQ(after.evictions, 0);
	CHECK_EQ(after.index_slots_used, 1);
	CHECK(after.segments_free + 1 >= after.segments - 1);
	CHECK(get_is(st, "keep", v, sizeof(v)));
	store_destroy(st);
}

static void test_flush(void)
{
	struct store *st = mk(8 * MiB, 0);
	struct store_item it;
	struct store_stats ss;
	char k[32];

	store_tick(st, 10);
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "old:%d", i);
		set(st, k, k, strlen(k), i % 2 ? 1000 : 0);
	}
	store_tick(st, 20);
	CHECK_EQ(store_flush(st, 20), 1000);
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof(k), "old:%d", i);
		CHECK_EQ(get(st, k, &it), -ENOENT);
	}
	CHECK_EQ(set(st, "new", "n", 1, 0), 0);
	/* Nothing stored before 20 remains, so this drops nothing. */
	CHECK_EQ(store_flush(st, 20), 0);
	CHECK_EQ(get(st, "new", &it), 0);
	/* A key written after a flush is readable even if its old copy is a
	 * ghost still waiting for reclamation. */
	CHECK_EQ(set(st, "old:5", "again", 5, 0), 0);
	CHECK(get_is(st, "old:5", "again", 5));
	store_tick(st, 21);
	CHECK_EQ(store_flush(st, 22), 2);
	CHECK_EQ(get(st, "new", &it), -ENOENT);
	for (int t = 22; t < 30; t++)
		store_tick(st, (uint32_t)t);
	store_stats(st, &ss);
	CHECK_EQ(ss.items, 0);
	CHECK_EQ(ss.flushed, 1002);
	CHECK_EQ(ss.index_slots_used, 0);
	store_destroy(st);
}

/* Far more data than memory: every write succeeds, the newest survive. */
static void test_eviction(void)
{
	struct store *st = mk(4 * MiB, 0);
	struct store_stats ss;
	uint8_t v[100];
	char k[32];
	int n = 200000, ok = 0;

	for (int i = 0; i < n; i++) {
		snprintf(k, sizeof(k), "key:%d", i);
		fill(v, sizeof(v), (unsigned)i);
		CHECK_EQ(set(st, k, v, sizeof(v), 0) == 0, 1);
	}
	for (int i = n - 1000; i < n; i++) {
		snprintf(k, sizeof(k), "key:%d", i);
		fill(v, sizeof(v), (unsigned)i);
		ok += get_is(st, k, v, sizeof(v));
	}
	CHECK_EQ(ok, 1000);
	store_stats(st, &ss);
	CHECK(ss.evictions > 0);
	CHECK_EQ(ss.items + ss.evictions, (uint64_t)n);
	CHECK(ss.items > 10000);
	CHECK(ss.live_bytes + ss.index_bytes <= ss.arena_bytes);
	printf("eviction: 4 MiB holds %llu of %d 100-byte items, %llu evicted\n",
	       (unsigned long long)ss.items, n, (unsigned long long)ss.evictions);
	store_destroy(st);
}

/* An item read since it was written survives FIFO eviction. */
static void test_second_chance(void)
{
	struct store *st = mk(4 * MiB, 0);
	struct store_item it;
	uint8_t v[100];
	char k[32];

	fill(v, sizeof(v), 3);
	CHECK_EQ(set(st, "hot", v, sizeof(v), 0), 0);
	for (int i = 0; i < 200000; i++) {
		snprintf(k, sizeof(k), "cold:%d", i);
		set(st, k, v, sizeof(v), 0);
		if (i % 1000 == 0)
			CHECK_EQ(get(st, "hot", &it), 0);
	}
	CHECK(get_is(st, "hot", v, sizeof(v)));
	CHECK_EQ(get(st, "cold:0", &it), -ENOENT);
	store_destroy(st);
}

static void test_values(void)
{
	size_t max = 16 * MiB;
	struct store *st = mk(64 * MiB, max);
	struct store_stats ss;
	size_t sizes[] = { 0, 1, 255, 256, 65535, 65536, 65537, (1u << 20) - 40,
			   1u << 20, (1u << 20) + 1, 3 * MiB + 7, max - 1, max };
	uint8_t *v = malloc(max + 1), *w = malloc(max + 1);
	char k[32];

	store_stats(st, &ss);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		snprintf(k, sizeof(k), "v:%zu", sizes[i]);
		fill(v, sizes[i], (unsigned)i);
		CHECK_EQ(set(st, k, v, sizes[i], 0), 0);
		CHECK(get_is(st, k, v, sizes[i]));
	}
	CHECK_EQ(set(st, "toobig", v, max + 1, 0), -E2BIG);
	/* Large values survive each other while they fit. */
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) - 2; i++) {
		snprintf(k, sizeof(k), "v:%zu", sizes[i]);
		fill(v, sizes[i], (unsigned)i);
		CHECK(get_is(st, k, v, sizes[i]));
	}
	/* Overwrite large with small and small with large. */
	fill(w, 5 * MiB, 77);
	CHECK_EQ(set(st, "v:0", w, 5 * MiB, 0), 0);
	CHECK_EQ(set(st, "v:3145735", "s", 1, 0), 0);
	CHECK(get_is(st, "v:0", w, 5 * MiB));
	CHECK(get_is(st, "v:3145735", "s", 1));
	store_destroy(st);

	/* Values larger than a whole small store fail cleanly with E2BIG, and
	 * the key's previous value does not survive the failed write. */
	st = mk(4 * MiB, 64 * MiB);
	CHECK_EQ(set(st, "a", "1", 1, 0), 0);
	CHECK_EQ(set(st, "b", "2", 1, 0), 0);
	CHECK_EQ(set(st, "a", v, 5 * MiB, 0), -E2BIG);
	CHECK_EQ(set(st, "a", v, 64 * MiB, 0), -E2BIG);
	CHECK(!get_is(st, "a", "1", 1));
	CHECK(get_is(st, "b", "2", 1));
	/* A value of most of the store evicts everything else, then works. */
	fill(v, 3 * MiB, 5);
	CHECK_EQ(set(st, "big", v, 3 * MiB, 0), 0);
	CHECK(get_is(st, "big", v, 3 * MiB));
	CHECK_EQ(set(st, "c", "3", 1, 0), 0);
	CHECK(get_is(st, "c", "3", 1));
	for (int i = 0; i < 50; i++) {
		snprintf(k, sizeof(k), "big:%d", i % 3);
		fill(v, MiB + (size_t)i * 999, (unsigned)i);
		CHECK_EQ(set(st, k, v, MiB + (size_t)i * 999, 0), 0);
		CHECK(get_is(st, k, v, MiB + (size_t)i * 999));
	}
	store_stats(st, &ss);
	CHECK(ss.live_bytes + ss.index_bytes <= ss.arena_bytes);
	store_destroy(st);
	free(v);
	free(w);
}

/*
 * The largest item header is 15 bytes (format, key length, 4-byte value
 * length, expiry, etag, 1-byte flags), so with the 8.98-byte index slot no
 * item carries more than 24 bytes of metadata (issue 3).  A value blob of
 * 16 MiB or more needs the 4-byte length; with a TTL, an etag and flags with
 * every bit set it must round-trip whole, and the store must account exactly
 * 15 header bytes for it.  The write's stamp, the second half of the cache's
 * ETags, is reported for it without a byte more (issue 11).
 */
static void test_largest_header(void)
{
	size_t sizes[] = { 16 * MiB, 16 * MiB + 1, 20 * MiB + 3 };
	uint8_t flags[] = { 0xff, 0x80, 0x01 };
	struct store *st = mk(128 * MiB, 32 * MiB);
	uint8_t *v = malloc(20 * MiB + 3);
	struct store_stats ss;
	struct store_item it;
	char k[32];

	store_tick(st, 1000);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct iovec iov = { v, sizes[i] };
		uint32_t etag = 0xdeadbeefu + (uint32_t)i;
		struct store_set_info set = { 0 };
		int n = snprintf(k, sizeof(k), "large:%zu", i);

		fill(v, sizes[i], 100 + (unsigned)i);
		CHECK_EQ(store_set(st, k, (size_t)n, h(k, (size_t)n), &iov, 1, 3600, flags[i],
				   etag, &set), 0);
		uint32_t stamp = set.stamp;
		store_stats(st, &ss);
		CHECK_EQ(ss.items, 1);
		CHECK_EQ(ss.live_bytes, 15 + (uint64_t)n + sizes[i]);
		CHECK_EQ(get(st, k, &it), 0);
		CHECK_EQ(it.value_len, sizes[i]);
		CHECK(memcmp(it.value, v, sizes[i]) == 0);
		CHECK_EQ(it.expires, 1000 + 3600);
		CHECK_EQ(it.etag, etag);
		CHECK_EQ(it.stamp, stamp);
		CHECK_EQ(it.flags, flags[i]);
		CHECK_EQ(store_delete(st, k, (size_t)n, h(k, (size_t)n)), 0);
	}
	/* The same key with a 100-byte value, etag and flags and no TTL: an
	 * 8-byte header (format, key length, 1-byte length, etag, flags). */
	CHECK_EQ(store_set(st, "k", 1, h("k", 1), &(struct iovec){ v, 100 }, 1, 0, 0x42, 1, NULL),
		 0);
	store_stats(st, &ss);
	CHECK_EQ(ss.live_bytes, 8 + 1 + 100);
	CHECK_EQ(get(st, "k", &it), 0);
	CHECK_EQ(it.flags, 0x42);
	store_destroy(st);
	free(v);
}

/* Sets key k to v[0..n) with etag and flags fixed; returns the stamp, 0 on
 * failure (a failed check). */
static uint32_t set_stamp(struct store *st, const char *k, const void *v, size_t n)
{
	struct iovec iov = { (void *)v, n };
	struct store_set_info set = { 0 };

	CHECK_EQ(store_set(st, k, strlen(k), h(k, strlen(k)), &iov, 1, 0, 7, 0xabcd1234, &set),
		 0);
	return set.stamp;
}

/* The stamp key's item: where its value is, and its stamp. */
static const uint8_t *where(struct store *st, const char *k, uint32_t *stamp)
{
	struct store_item it;

	if (get(st, k, &it) != 0)
		return NULL;
	*stamp = it.stamp;
	return it.value;
}

/*
 * Issue 11: the cache's ETag is the content hash (`etag`, 32 bits) and the
 * write's stamp.  Every new placement of a key must get another stamp, so
 * that a value rewritten with a colliding content hash (here: the very same
 * etag) still gets another ETag: on overwrite, on delete and set, when
 * compaction moves the item, and when a segment is reused and the write
 * lands at the very same place as an earlier one.  The stamps are hashes, so
 * each "differs" below could fail by chance with probability 2^-32.
 */
static void test_stamps(void)
{
	struct store *st = mk(4 * MiB, 2 * MiB);
	uint8_t v[1000], *big = malloc(2 * MiB + 1);
	uint32_t s1, s2 = 0, s3 = 0;  /* where() sets them; -O3 cannot see it */
	const uint8_t *p1, *p2;
	struct store_stats ss;
	char k[32];

	fill(v, sizeof(v), 1);
	/* store_get reports what store_set did; a failed set leaves it alone. */
	s1 = set_stamp(st, "k", v, 100);
	p1 = where(st, "k", &s2);
	CHECK(p1 != NULL);
	CHECK_EQ(s2, s1);
	struct store_set_info left = { .stamp = 0x5a5a5a5a, .replaced = true };
	memset(big, 0, 2 * MiB + 1);
	CHECK_EQ(store_set(st, "k", 1, h("k", 1), &(struct iovec){ big, 2 * MiB + 1 }, 1, 0, 0, 0,
			   &left), -E2BIG);
	CHECK_EQ(left.stamp, 0x5a5a5a5a);
	CHECK(left.replaced);

	/* Overwrite with the same bytes and etag: another place, another stamp. */
	s1 = set_stamp(st, "k", v, 100);
	s2 = set_stamp(st, "k", v, 100);
	CHECK(s1 != s2);
	CHECK_EQ(where(st, "k", &s3) != NULL, 1);
	CHECK_EQ(s3, s2);
	/* Delete, then set again. */
	CHECK_EQ(store_delete(st, "k", 1, h("k", 1)), 0);
	s3 = set_stamp(st, "k", v, 100);
	CHECK(s3 != s2 && s3 != s1);

	store_destroy(st);

	/* Segment reuse: flush everything, let the ticks free the segments, and
	 * the next write lands at the very offset of an earlier one; only the
	 * segment's generation tells the two apart. */
	st = mk(4 * MiB, 2 * MiB);
	s1 = set_stamp(st, "k", v, 100);
	p1 = where(st, "k", &s2);
	store_flush(st, 2);
	for (uint32_t t = 2; t < 10; t++)
		store_tick(st, t);
	s2 = set_stamp(st, "k", v, 100);
	p2 = where(st, "k", &s3);
	CHECK(p1 == p2);        /* the same segment, the same offset */
	CHECK(s1 != s2);

	/* The same for a value that takes a run of segments, freed by delete. */
	fill(big, MiB, 2);
	s1 = set_stamp(st, "big", big, MiB);
	p1 = where(st, "big", &s3);
	CHECK_EQ(s3, s1);
	CHECK_EQ(store_delete(st, "big", 3, h("big", 3)), 0);
	s2 = set_stamp(st, "big", big, MiB);
	p2 = where(st, "big", &s3);
	CHECK(p1 == p2);
	CHECK(s1 != s2);
	/* Overwritten in place of itself: the old copy is live while the new
	 * one is placed, so it goes elsewhere, with another stamp. */
	s3 = set_stamp(st, "big", big, MiB);
	CHECK(s3 != s2 && s3 != s1);
	store_destroy(st);

	/* Compaction: "keep" is never rewritten, but overwrites around it make
	 * its segment sparse; when eviction reaches it, it is copied forward.
	 * Same value, new place, new stamp (a client revalidating then gets a
	 * 200 instead of a 304). */
	st = mk(4 * MiB, 0);
	s1 = set_stamp(st, "keep", v, 100);
	p1 = where(st, "keep", &s2);
	p2 = p1;
	for (unsigned i = 0, x = 1; i < 200000 && p2 == p1; i++) {
		x = x * 1103515245u + 12345u;
		snprintf(k, sizeof(k), "churn:%u", (x >> 8) % 3000);
		fill(v + 100, 900, i);
		set(st, k, v + 100, 900, 0);
		p2 = where(st, "keep", &s2);
	}
	store_stats(st, &ss);
	CHECK(ss.compacted > 0);
	CHECK(p2 != NULL && p2 != p1);
	CHECK(p2 && memcmp(p2, v, 100) == 0);
	CHECK(s2 != s1);
	store_destroy(st);
	free(big);
}

/*
 * A restarted process must not repeat the stamps of the one before: the same
 * writes into two new stores (each keyed from getrandom()) land at the same
 * places but get other stamps; with the same stamp_seed they get the same.
 */
static void test_stamp_key(void)
{
	struct store_config cfg = { .memory = 4 * MiB, .hugepages = STORE_HUGEPAGES_OFF,
				    .numa_node = -1 };
	struct store *a, *b;
	char k[16];

	for (int seeded = 0; seeded < 2; seeded++) {
		const uint8_t *a0 = NULL, *b0 = NULL, *pa, *pb;
		unsigned same = 0, same_place = 0;
		uint32_t sa = 0, sb = 0;

		cfg.stamp_seed = seeded ? 42 : 0;
		CHECK_EQ(store_create(&a, &cfg), 0);
		CHECK_EQ(store_create(&b, &cfg), 0);
		for (int i = 0; i < 4; i++) {
			snprintf(k, sizeof(k), "r:%d", i);
			CHECK_EQ(set(a, k, k, strlen(k), 0), 0);
			CHECK_EQ(set(b, k, k, strlen(k), 0), 0);
			pa = where(a, k, &sa);
			pb = where(b, k, &sb);
			if (i == 0) {
				a0 = pa;
				b0 = pb;
			}
			same_place += pa - a0 == pb - b0;
			same += sa == sb;
		}
		CHECK_EQ(same_place, 4);
		CHECK_EQ(same, seeded ? 4 : 0);
		store_destroy(a);
		store_destroy(b);
	}
}

/*
 * store_tick() expires and reclaims; it never evicts a live item on its own.
 * Ticks of an idle store used to start an eviction victim once the free list
 * was at its low-water mark, so a value filling most of the store (or the
 * oldest segment of a full one) vanished within a second with no write
 * needing the room.
 */
static void test_tick_does_not_evict(void)
{
	struct store *st = mk(MiB, 2 * MiB);
	struct store_stats ss;
	uint8_t *v = malloc(MiB);
	uint8_t small[100];
	char k[32];
	size_t n = MiB;
	int kept = 0, nkeys = 30000;

	/* The largest value a 1 MiB store takes: every segment but the index's
	 * and the reserve, so the free list is below its low-water mark. */
	fill(v, MiB, 9);
	while (n > 0 && set(st, "big", v, n, 0) != 0)
		n -= 4096;
	CHECK(n >= MiB / 2);
	store_stats(st, &ss);
	CHECK(ss.segments_free <= 2);
	for (uint32_t t = 2; t < 10; t++)
		store_tick(st, t);
	CHECK(get_is(st, "big", v, n));
	store_stats(st, &ss);
	CHECK_EQ(ss.evictions, 0);
	CHECK_EQ(ss.items, 1);
	store_destroy(st);

	/* A full store of small items: idle ticks keep every item there is. */
	st = mk(MiB, 0);
	for (int i = 0; i < nkeys; i++) {
		snprintf(k, sizeof(k), "s:%d", i);
		fill(small, sizeof(small), (unsigned)i);
		CHECK_EQ(set(st, k, small, sizeof(small), 0), 0);
	}
	store_stats(st, &ss);
	CHECK(ss.evictions > 0);
	uint64_t items = ss.items, evictions = ss.evictions;
	for (uint32_t t = 2; t < 10; t++)
		store_tick(st, t);
	store_stats(st, &ss);
	CHECK_EQ(ss.evictions, evictions);
	CHECK_EQ(ss.items, items);
	for (int i = 0; i < nkeys; i++) {
		snprintf(k, sizeof(k), "s:%d", i);
		fill(small, sizeof(small), (unsigned)i);
		kept += get_is(st, k, small, sizeof(small));
	}
	CHECK_EQ((uint64_t)kept, items);
	store_destroy(st);
	free(v);
}

/* Overwriting one key forever needs no eviction: dead copies come back. */
static void test_arena_reuse(void)
{
	struct store *st = mk(4 * MiB, 0);
	struct store_stats ss;
	uint8_t v[300];
	char k[32];

	for (int i = 0; i < 300000; i++) {
		snprintf(k, sizeof(k), "same:%d", i % 10);
		fill(v, 100 + (size_t)(i % 200), (unsigned)i);
		CHECK_EQ(set(st, k, v, 100 + (size_t)(i % 200), 0) == 0, 1);
	}
	for (int i = 300000 - 10; i < 300000; i++) {
		snprintf(k, sizeof(k), "same:%d", i % 10);
		fill(v, 100 + (size_t)(i % 200), (unsigned)i);
		CHECK(get_is(st, k, v, 100 + (size_t)(i % 200)));
	}
	store_stats(st, &ss);
	CHECK_EQ(ss.items, 10);
	CHECK_EQ(ss.evictions, 0);
	CHECK(ss.segments_free + 2 >= ss.segments);
	/* Deleting reclaims too. */
	for (int i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "same:%d", i);
		CHECK_EQ(store_delete(st, k, strlen(k), h(k, strlen(k))), 0);
	}
	store_stats(st, &ss);
	CHECK_EQ(ss.items, 0);
	CHECK_EQ(ss.live_bytes, 0);
	store_destroy(st);
}

/*
 * Random overwrites with mixed sizes over a key space that fills a third of
 * the arena: compaction keeps every key (no evictions) and the arena does
 * not fill with dead space.
 */
static void test_fragmentation(void)
{
	struct store *st = mk(16 * MiB, 0);
	struct store_stats ss;
	static uint8_t v[8192];
	uint32_t *gen;
	unsigned nkeys = 4000, ok = 0;
	uint64_t x = 88172645463325252ull;
	char k[32];

	gen = calloc(nkeys, sizeof(*gen));
	for (unsigned i = 0; i < 400000; i++) {
		unsigned key, len;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		key = (unsigned)(x % nkeys);
		len = (unsigned)((x >> 32) % 2500) * ((x >> 60) == 0 ? 3 : 1);
		snprintf(k, sizeof(k), "frag:%u", key);
		fill(v, len, i);
		gen[key] = i + 1;
		CHECK_EQ(set(st, k, v, len, 0) == 0, 1);
	}
	x = 88172645463325252ull;
	for (unsigned i = 0; i < 400000; i++) {
		unsigned key, len;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		key = (unsigned)(x % nkeys);
		len = (unsigned)((x >> 32) % 2500) * ((x >> 60) == 0 ? 3 : 1);
		if (gen[key] != i + 1)
			continue;
		snprintf(k, sizeof(k), "frag:%u", key);
		fill(v, len, i);
		ok += get_is(st, k, v, len);
	}
	store_stats(st, &ss);
	CHECK_EQ(ok, ss.items);
	CHECK_EQ(ss.evictions, 0);
	CHECK(ss.items >= nkeys * 99 / 100);
	printf("fragmentation: live %.1f MiB, in segments %.1f MiB, arena %.1f MiB: "
	       "live/arena %.2f, live/used %.2f, %llu copied forward\n",
	       ss.live_bytes / 1048576.0, ss.used_bytes / 1048576.0, ss.arena_bytes / 1048576.0,
	       (double)ss.live_bytes / ss.arena_bytes, (double)ss.live_bytes / ss.used_bytes,
	       (unsigned long long)ss.compacted);
	free(gen);
	store_destroy(st);

	/* A key space twice the arena: eviction is unavoidable, but the arena
	 * stays mostly live data rather than dead copies and gaps. */
	st = mk(16 * MiB, 0);
	nkeys = 2 * 16 * 1024 * 1024 / 1450;
	for (unsigned i = 0; i < 400000; i++) {
		unsigned key, len;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		key = (unsigned)(x % nkeys);
		len = (unsigned)((x >> 32) % 2500) * ((x >> 60) == 0 ? 3 : 1);
		snprintf(k, sizeof(k), "frag:%u", key);
		CHECK_EQ(set(st, k, v, len, 0) == 0, 1);
	}
	store_stats(st, &ss);
	CHECK(ss.evictions > 0);
	CHECK(ss.live_bytes * 10 >= ss.arena_bytes * 7);
	printf("fragmentation, key space 2x the arena: live/arena %.2f, live/used %.2f\n",
	       (double)ss.live_bytes / ss.arena_bytes, (double)ss.live_bytes / ss.used_bytes);
	store_destroy(st);
}

/* Whether this process can map a huge page at all: qemu-user, for one,
 * cannot, whatever the host has reserved. */
static bool hugetlb_maps(void)
{
	size_t len = 2 * MiB;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

	if (p == MAP_FAILED)
		return false;
	munmap(p, len);
	return true;
}

static bool hugetlb_reserved(void)
{
	const char *paths[] = { "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
				"/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages" };

	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(paths[i], "r");
		long n = 0;
		if (f) {
			if (fscanf(f, "%ld", &n) != 1)
				n = 0;
			fclose(f);
		}
		if (n >= (i == 0 ? 4 : 1))
			return hugetlb_maps();
	}
	return false;
}

static void test_backing(void)
{
	struct store_config cfg = { .memory = 8 * MiB, .hugepages = STORE_HUGEPAGES_ON,
				    .numa_node = -1 };
	struct store_stats ss;
	struct store *st = NULL;
	int r = store_create(&st, &cfg);

	if (hugetlb_reserved()) {
		CHECK_EQ(r, 0);
		if (r == 0) {
			store_stats(st, &ss);
			CHECK_EQ(ss.backing, STORE_BACKING_HUGETLB);
			store_destroy(st);
		}
	} else {
		CHECK_EQ(r, -ENOMEM);
	}
	cfg.hugepages = STORE_HUGEPAGES_AUTO;
	cfg.prefault = true;
	cfg.numa_node = 0;
	CHECK_EQ(store_create(&st, &cfg), 0);
	store_stats(st, &ss);
	printf("backing with hugepages=auto: %s\n", store_backing_name(ss.backing));
	CHECK_EQ(set(st, "k", "v", 1, 0), 0);
	CHECK(get_is(st, "k", "v", 1));
	store_destroy(st);
	cfg.numa_node = 4095;
	CHECK_EQ(store_create(&st, &cfg), -EINVAL);
	cfg.numa_node = -1;
	cfg.memory = 1000;
	CHECK_EQ(store_create(&st, &cfg), -EINVAL);
	cfg.memory = 8 * MiB;
	cfg.max_value = (size_t)UINT32_MAX + 1;
	CHECK_EQ(store_create(&st, &cfg), -EINVAL);
}

/* Writes `count` new values of n bytes under prefix:i and pins each; the
 * pins it got go to out[], their number is returned (the rest refused). */
static unsigned pin_new_values(struct store *st, const char *prefix, const uint8_t *v, size_t n,
			       unsigned count, _Atomic uint32_t **out)
{
	struct store_item it;
	char key[32];
	unsigned got = 0;

	for (unsigned i = 0; i < count; i++) {
		snprintf(key, sizeof(key), "%s:%u", prefix, i);
		CHECK_EQ(set(st, key, v, n, 0), 0);
		CHECK_EQ(get(st, key, &it), 0);
		_Atomic uint32_t *pp = store_pin(st, it.value);
		if (pp)
			out[got++] = pp;
	}
	return got;
}

/*
 * Pins (store_pin): a pinned value's bytes stay put, unchanged, through an
 * overwrite, a delete, eviction of its segment under pressure and a flush;
 * writes are not blocked (they find room elsewhere); once unpinned the
 * segment is reused.  With every value pinned, a write fails with -ENOMEM
 * instead of overwriting one.
 */
/*
 * A value whose item was deleted, and whose segment went free with it (its
 * last live item), is not pinned: a send would read bytes the next write
 * may take.  The caller copies (or, better, pins before deleting).  Seen
 * through RESP GETDEL of a large value: a slow reader got other keys' bytes.
 */
static void test_pin_free(void)
{
	struct store *st = mk(32 * MiB, 8 * MiB);
	struct store_item it;
	size_t n = 6 * MiB;
	uint8_t *v = malloc(n);

	fill(v, n, 7);
	CHECK_EQ(set(st, "alone", v, n, 0), 0);
	CHECK_EQ(get(st, "alone", &it), 0);
	const uint8_t *p = it.value;
	CHECK_EQ(store_delete(st, "alone", 5, h("alone", 5)), 0);
	CHECK(store_pin(st, p) == NULL);
	struct store_stats ss;
	store_stats(st, &ss);
	CHECK_EQ(ss.pins_refused, 0);   /* not the bound's refusal */
	free(v);
	store_destroy(st);
}

static void test_pins(void)
{
	struct store *st = mk(8 * MiB, 4 * MiB);
	struct store_item it;
	struct store_stats ss;
	size_t n = 48 << 10;
	uint8_t *v = malloc(n), *w = malloc(n), *copy = malloc(n), *big = malloc(3 * MiB);

	fill(v, n, 1);
	fill(w, n, 2);
	fill(big, 3 * MiB, 3);
	CHECK_EQ(set(st, "pinned", v, n, 0), 0);
	CHECK_EQ(get(st, "pinned", &it), 0);
	const uint8_t *p = it.value;
	_Atomic uint32_t *pin = store_pin(st, p);
	_Atomic uint32_t *pin2 = store_pin(st, p);
	CHECK(pin == pin2);

	/* overwrite and delete: the old bytes stay */
	CHECK_EQ(set(st, "pinned", w, n, 0), 0);
	CHECK(get_is(st, "pinned", w, n));
	CHECK_EQ(store_delete(st, "pinned", 6, h("pinned", 6)), 0);
	CHECK(memcmp(p, v, n) == 0);

	/* pressure: the arena is written over several times */
	char key[32];
	for (unsigned i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "fill:%u", i);
		CHECK_EQ(set(st, key, w, n, 0), 0);
	}
	CHECK(memcmp(p, v, n) == 0);
	store_stats(st, &ss);
	CHECK(ss.evictions > 0);
	CHECK(ss.segments_pinned >= 1);

	/* a flush and expiry ticks do not free it either */
	store_tick(st, 100);
	store_flush(st, 200);
	store_tick(st, 101);
	CHECK(memcmp(p, v, n) == 0);

	/* one unpin of two: still kept */
	store_unpin(pin);
	for (unsigned i = 0; i < 500; i++) {
		snprintf(key, sizeof(key), "more:%u", i);
		CHECK_EQ(set(st, key, w, n, 0), 0);
	}
	CHECK(memcmp(p, v, n) == 0);

	/* the last unpin: the segment goes back to use */
	store_unpin(pin2);
	store_tick(st, 102);
	store_stats(st, &ss);
	CHECK_EQ(ss.segments_pinned, 0);
	bool reused = false;
	for (unsigned i = 0; i < 2000 && !reused; i++) {
		snprintf(key, sizeof(key), "reuse:%u", i);
		CHECK_EQ(set(st, key, w, n, 0), 0);
		reused = memcmp(p, v, n) != 0;
	}
	CHECK(reused);

	/* a value whose run is more than a quarter of the store: not pinned
	 * (the caller copies it), so a reader cannot hold the store */
	CHECK_EQ(set(st, "huge", big, 3 * MiB, 0), 0);
	CHECK_EQ(get(st, "huge", &it), 0);
	CHECK(store_pin(st, it.value) == NULL);

	/* a large value (a run of segments) pinned, then evicted */
	size_t L = 3 * MiB / 2;
	CHECK_EQ(set(st, "large", big, L, 0), 0);
	CHECK_EQ(get(st, "large", &it), 0);
	const uint8_t *lp = it.value;
	_Atomic uint32_t *lpin = store_pin(st, lp);
	CHECK(lpin != NULL);
	memcpy(copy, lp + L - n, n);
	for (unsigned i = 0; i < 600; i++) {
		snprintf(key, sizeof(key), "big:%u", i);
		CHECK_EQ(set(st, key, w, n, 0), 0);
	}
	CHECK(get(st, "large", &it) == -ENOENT);
	CHECK(memcmp(lp, big, L) == 0);
	/* other large values (runs of segments) go elsewhere, never over it;
	 * when there is no run free of it, the write fails */
	uint8_t *mb = malloc(MiB);
	fill(mb, MiB, 4);
	unsigned large_ok = 0;
	for (unsigned i = 0; i < 40; i++) {
		snprintf(key, sizeof(key), "mb:%u", i);
		large_ok += set(st, key, mb, MiB, 0) == 0;
	}
	CHECK(large_ok > 0);
	CHECK(memcmp(lp, big, L) == 0);
	CHECK(memcmp(lp + L - n, copy, n) == 0);
	free(mb);
	store_unpin(lpin);
	store_destroy(st);

	/* at most a quarter of the segments pinned: past it store_pin() says
	 * no; after the unpins and a tick it says yes again */
	st = mk(8 * MiB, 1 * MiB);
	_Atomic uint32_t *many[128];
	/* about one value per 128K segment */
	unsigned got_pins = pin_new_values(st, "q", big, 100 << 10, 128, many);
	CHECK(got_pins < 128);
	CHECK(got_pins > 0 && got_pins <= 16 + 1);   /* 64 segments: 16, a few values may share one */
	store_stats(st, &ss);
	CHECK_EQ(ss.pins_refused, 128 - got_pins);   /* each refusal counted */
	for (unsigned k = 0; k < got_pins; k++)
		store_unpin(many[k]);
	store_tick(st, 3);
	CHECK_EQ(get(st, "q:127", &it), 0);
	_Atomic uint32_t *again = store_pin(st, it.value);
	CHECK(again != NULL);
	if (again)
		store_unpin(again);
	store_destroy(st);

	/* one value pinned and unpinned again and again between two ticks, as
	 * readers of a hot large value do: its group counts once against the
	 * bound, never once per pin (a 3-segment value: 1000 x 3 > 16) */
	st = mk(8 * MiB, 1 * MiB);
	CHECK_EQ(set(st, "hot", big, 300 << 10, 0), 0);
	CHECK_EQ(get(st, "hot", &it), 0);
	unsigned hot_refused = 0;
	for (unsigned i = 0; i < 1000; i++) {
		_Atomic uint32_t *pp = store_pin(st, it.value);
		if (!pp) {
			hot_refused++;
			continue;
		}
		store_unpin(pp);
	}
	CHECK_EQ(hot_refused, 0);
	/* and the bound still holds for the others */
	got_pins = pin_new_values(st, "r", big, 100 << 10, 128, many);
	CHECK(got_pins < 128);
	/* exactly the bound, a quarter of the segments: the writes evicted the
	 * hot value, and its group left the bound as it was freed */
	store_stats(st, &ss);
	CHECK_EQ(got_pins, ss.segments / 4);
	/* unpinned by their owner: they leave the bound at once, no tick
	 * needed; a pin of another store passed to it is a plain unpin */
	struct store *other = mk(8 * MiB, 1 * MiB);
	CHECK_EQ(set(other, "o", big, 100 << 10, 0), 0);
	CHECK_EQ(get(other, "o", &it), 0);
	_Atomic uint32_t *foreign = store_pin(other, it.value);
	CHECK(foreign != NULL);
	store_unpin_own(st, foreign);
	CHECK_EQ(atomic_load(foreign), 0);
	store_destroy(other);
	for (unsigned k = 0; k < got_pins; k++)
		store_unpin_own(st, many[k]);
	/* new values, in groups not counted */
	unsigned again_pins = pin_new_values(st, "s", big, 100 << 10, 128, many);
	CHECK(again_pins + 1 >= got_pins);   /* the room they took is back */
	for (unsigned k = 0; k < again_pins; k++)
		store_unpin_own(st, many[k]);
	store_destroy(st);

	/* everything pinnable pinned: a write fails, nothing pinned is overwritten */
	st = mk(2 * MiB, 1 * MiB);
	enum { N = 64 };
	const uint8_t *ps[N];
	_Atomic uint32_t *pins[N];
	unsigned seeds[N];
	unsigned pinned = 0, fails = 0;
	for (unsigned i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "all:%u", i);
		fill(v, n, 100 + i);
		if (set(st, key, v, n, 0) != 0) {
			fails++;
			continue;
		}
		CHECK_EQ(get(st, key, &it), 0);
		_Atomic uint32_t *pp = store_pin(st, it.value);
		if (!pp)
			continue;       /* past the quarter: not pinned */
		ps[pinned] = it.value;
		seeds[pinned] = 100 + i;
		pins[pinned++] = pp;
	}
	CHECK(pinned > 0);
	unsigned intact = 0;
	for (unsigned k = 0; k < pinned; k++) {
		fill(v, n, seeds[k]);
		intact += memcmp(ps[k], v, n) == 0;
	}
	CHECK_EQ(intact, pinned);   /* no pinned value was overwritten */
	for (unsigned k = 0; k < pinned; k++)
		store_unpin(pins[k]);
	store_tick(st, 5);
	CHECK_EQ(set(st, "after", w, n, 0), 0);
	store_destroy(st);
	free(v);
	free(w);
	free(copy);
	free(big);
}

int main(void)
{
	test_basic();
	test_key_limits();
	test_ttl();
	test_replaced();
	test_background_expiry();
	test_flush();
	test_eviction();
	test_second_chance();
	test_values();
	test_largest_header();
	test_stamps();
	test_stamp_key();
	test_tick_does_not_evict();
	test_arena_reuse();
	test_fragmentation();
	test_backing();
	test_pins();
	test_pin_free();
	return check_done("store");
}
