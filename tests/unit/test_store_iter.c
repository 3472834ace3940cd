/*
 * test_store_iter.c - the walk over a store's live items (store_iter_*,
 * src/store/iter.c), which the snapshot of a warm restart writes out, and
 * the loader's store_reserve().
 *
 * The walk trusts each item's dead bit instead of asking the index, so the
 * central check is that the two agree: after long random sequences of
 * writes, overwrites, deletes, expiries, flushes and evictions (small
 * arenas, values from empty to larger than a segment), the walk returns
 * exactly the keys store_contains() finds, each once, with the bytes,
 * flags, etag and expiry store_get() reports.  Also: the order (oldest
 * segments first, write order within), deletes during a walk, expired items
 * left out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ringcache/hash.h"
#include "ringcache/store.h"

static uint64_t rs = 88172645463325252ull;

static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static size_t key_of(char *buf, uint32_t k)
{
	return (size_t)snprintf(buf, 32, "key:%u", k);
}

static struct store *make(size_t memory)
{
	struct store_config cfg = {
		.memory = memory,
		.max_value = 3u << 20,
		.hugepages = STORE_HUGEPAGES_OFF,
		.numa_node = -1,
		.stamp_seed = 7,
	};
	struct store *st = NULL;

	CHECK_EQ(store_create(&st, &cfg), 0);
	return st;
}

static int put(struct store *st, uint32_t k, uint32_t len, uint32_t ttl, uint8_t fill)
{
	static uint8_t val[3u << 20];
	char key[32];
	size_t kl = key_of(key, k);
	struct iovec iov = { val, len };

	memset(val, fill, len);
	return store_set(st, key, kl, hash_key(key, kl), &iov, 1, ttl, fill, k + 1, NULL);
}

/* The key number of an entry's key "key:N", or -1. */
static long entry_key(const struct store_entry *e)
{
	char buf[32];

	if (e->key_len < 5 || e->key_len >= sizeof(buf))
		return -1;
	memcpy(buf, e->key, e->key_len);
	buf[e->key_len] = '\0';
	return strncmp(buf, "key:", 4) == 0 ? strtol(buf + 4, NULL, 10) : -1;
}

/*
 * Walks st and checks the walk against the store's own lookups for keys
 * [0, nkeys): every live key once, nothing else, the same item.  Returns
 * the number of items walked.
 */
static uint64_t check_walk(struct store *st, uint32_t nkeys)
{
	uint8_t *seen = calloc(nkeys, 1);
	struct store_iter *it = NULL;
	struct store_entry e;
	uint64_t walked = 0, live = 0;
	unsigned bad = 0;

	CHECK_EQ(store_iter_create(st, &it), 0);
	while (store_iter_next(it, &e) == 0) {
		long k = entry_key(&e);
		struct store_item si;

		walked++;
		if (k < 0 || (uint32_t)k >= nkeys || seen[k]) {
			bad++;
			continue;
		}
		seen[k] = 1;
		if (store_get(st, e.key, e.key_len, hash_key(e.key, e.key_len), &si) != 0 ||
		    si.value != e.item.value || si.value_len != e.item.value_len ||
		    si.flags != e.item.flags || si.etag != e.item.etag ||
		    si.expires != e.item.expires || si.stamp != e.item.stamp)
			bad++;
	}
	store_iter_destroy(it);
	for (uint32_t k = 0; k < nkeys; k++) {
		char key[32];
		size_t kl = key_of(key, k);
		bool in = store_contains(st, key, kl, hash_key(key, kl));

		live += in;
		if (in != (seen[k] != 0))
			bad++;
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(walked, live);
	free(seen);
	return walked;
}

/* Random writes, overwrites, deletes, ticks and flushes; a walk now and then. */
static void test_model(size_t memory, uint32_t nkeys, uint32_t maxlen, unsigned ops)
{
	struct store *st = make(memory);
	uint32_t now = 1;
	struct store_stats ss;
	uint64_t walks = 0, walked = 0;

	for (unsigned i = 0; i < ops; i++) {
		uint32_t k = (uint32_t)(rnd() % nkeys), r = (uint32_t)(rnd() % 100);

		if (r < 70) {
			uint32_t len = (uint32_t)(rnd() % 8 == 0 ? rnd() % (maxlen + 1)
							    : rnd() % 200);
			uint32_t ttl = rnd() % 3 == 0 ? (uint32_t)(1 + rnd() % 20) : 0;
			put(st, k, len, ttl, (uint8_t)rnd());
		} else if (r < 90) {
			char key[32];
			size_t kl = key_of(key, k);
			store_delete(st, key, kl, hash_key(key, kl));
		} else if (r < 99) {
			now += (uint32_t)(rnd() % 3);
			store_tick(st, now);
		} else if (rnd() % 200 == 0) {
			store_flush(st, now - (uint32_t)(rnd() % 2));
		}
		if (i % (ops / 16) == 0) {
			walked += check_walk(st, nkeys);
			walks++;
		}
	}
	walked += check_walk(st, nkeys);
	store_stats(st, &ss);
	printf("  model %zu MiB, %u keys, values to %u B: %llu walks, %llu items walked, "
	       "%llu evicted, %llu compacted, %llu expired\n", memory >> 20, nkeys, maxlen,
	       (unsigned long long)walks + 1, (unsigned long long)walked,
	       (unsigned long long)ss.evictions, (unsigned long long)ss.compacted,
	       (unsigned long long)ss.expirations);
	/* the runs are meant to evict and compact: otherwise they test less */
	CHECK(ss.evictions > 0);
	store_destroy(st);
}

/* Without eviction, the walk gives items in the order they were written. */
static void test_order(void)
{
	struct store *st = make(8u << 20);
	struct store_iter *it = NULL;
	struct store_entry e;
	long expect = 0;
	unsigned bad = 0;

	for (uint32_t k = 0; k < 20000; k++)
		CHECK_EQ(put(st, k, 100, 0, 1), 0);
	CHECK_EQ(store_iter_create(st, &it), 0);
	while (store_iter_next(it, &e) == 0)
		bad += entry_key(&e) != expect++;
	store_iter_destroy(it);
	CHECK_EQ(bad, 0);
	CHECK_EQ(expect, 20000);
	store_destroy(st);
}

/* Deleting items ahead of the walk and behind it, and flushing segments,
 * while walking: deleted ones never come out, the rest do, once. */
static void test_delete_while_walking(void)
{
	struct store *st = make(8u << 20);
	struct store_iter *it = NULL;
	struct store_entry e;
	uint8_t *seen = calloc(30000, 1);
	unsigned bad = 0, n = 0;

	for (uint32_t k = 0; k < 30000; k++)
		CHECK_EQ(put(st, k, 150, 0, 2), 0);
	CHECK_EQ(store_iter_create(st, &it), 0);
	while (store_iter_next(it, &e) == 0) {
		long k = entry_key(&e);
		char key[32];
		size_t kl;

		n++;
		if (k < 0 || k >= 30000 || seen[k] || (k % 3 == 0 && k > 0)) {
			bad++;
			continue;
		}
		seen[k] = 1;
		/* delete every third key ahead, and this one half the time */
		for (long d = k + 1; d < k + 4 && d < 30000; d++) {
			if (d % 3 == 0) {
				kl = key_of(key, (uint32_t)d);
				store_delete(st, key, kl, hash_key(key, kl));
			}
		}
		if (k % 2) {
			kl = key_of(key, (uint32_t)k);
			CHECK_EQ(store_delete(st, key, kl, hash_key(key, kl)), 0);
		}
	}
	store_iter_destroy(it);
	CHECK_EQ(bad, 0);
	/* key 0, then the 29999 - 9999 keys of 1..29999 that are not multiples
	 * of 3 (those were deleted before the walk reached them) */
	CHECK_EQ(n, 1 + 20000);
	/* left: key 0 and the even keys of 1..29999 not multiples of 6 */
	CHECK_EQ(check_walk(st, 30000), 1 + 14999 - 4999);
	free(seen);
	store_destroy(st);
}

/* Expired items are left out; a flush drops what it drops. */
static void test_expired_and_flushed(void)
{
	struct store *st = make(8u << 20);
	struct store_iter *it = NULL;
	struct store_entry e;
	unsigned n = 0;

	for (uint32_t k = 0; k < 100; k++)
		CHECK_EQ(put(st, k, 50, k % 2 ? 5 : 0, 3), 0);
	store_tick(st, 1 + 5);   /* the TTL-5 half expires (expires = 1 + 5) */
	CHECK_EQ(store_now(st), 6);
	CHECK_EQ(store_iter_create(st, &it), 0);
	while (store_iter_next(it, &e) == 0) {
		n++;
		CHECK(entry_key(&e) % 2 == 0);
		CHECK_EQ(e.item.expires, 0);
	}
	store_iter_destroy(it);
	CHECK_EQ(n, 50);
	store_flush(st, 7);
	CHECK_EQ(check_walk(st, 100), 0);
	store_destroy(st);
}

/*
 * store_reserve(): the index grows at once to what the items will need
 * (and then does not grow while they are stored), never past half the
 * arena, and a reserve on a store that holds items loses none of them.
 */
static void test_reserve(void)
{
	struct store *st = make(64u << 20);
	struct store_stats a, b;
	unsigned missing = 0;

	store_stats(st, &a);
	store_reserve(st, 200000);
	store_stats(st, &b);
	/* 200000 entries at 7.125 per 64-byte bucket */
	CHECK(b.index_bytes >= 200000ull * 64 / 8 && b.index_bytes > a.index_bytes);
	for (uint32_t k = 0; k < 200000; k++)
		CHECK_EQ(put(st, k, 20, 0, 1), 0);
	store_stats(st, &a);
	CHECK_EQ(a.index_bytes, b.index_bytes);
	CHECK_EQ(a.items, 200000);
	/* more than the arena could index: capped at half of it, nothing lost
	 * (the index takes empty segments from the top first) */
	store_reserve(st, 1ull << 50);
	store_stats(st, &b);
	CHECK(b.index_bytes <= b.arena_bytes / 2 + b.segment_size);
	for (uint32_t k = 0; k < 200000; k++) {
		char key[32];
		size_t kl = key_of(key, k);
		missing += !store_contains(st, key, kl, hash_key(key, kl));
	}
	printf("  reserve: index %llu KiB of %llu MiB, %u of 200000 keys lost\n",
	       (unsigned long long)(b.index_bytes >> 10), (unsigned long long)(b.arena_bytes >> 20),
	       missing);
	CHECK_EQ(missing, 0);
	store_destroy(st);
}

int main(void)
{
	test_reserve();
	test_order();
	test_delete_while_walking();
	test_expired_and_flushed();
	/* 4 MiB: 64 KiB segments, values up to 3 segments; 16 MiB: 256 KiB */
	test_model(4u << 20, 40000, 200000, 200000);
	test_model(16u << 20, 100000, 600000, 200000);
	test_model(2u << 20, 20000, 3000, 100000);
	return check_done("store_iter");
}
