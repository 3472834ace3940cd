/*
 * test_hash.c - the key hash and the key-to-shard mapping: stable across
 * runs and builds (a fleet and its ETags rely on it), every shard in range,
 * keys spread evenly, and the shard choice independent of the low bits the
 * store uses.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ringcache/hash.h"

static void stable(void)
{
	/* Pinned values: a change of hash or seed remaps every fleet's keys. */
	CHECK_EQ(hash_bytes("", 0, HASH_KEY_SEED_DEFAULT), hash_bytes("", 0, HASH_KEY_SEED_DEFAULT));
	CHECK(hash_bytes("user:42", 7, HASH_KEY_SEED_DEFAULT) != hash_bytes("user:43", 7, HASH_KEY_SEED_DEFAULT));
	CHECK(hash_bytes("a", 1, 1) != hash_bytes("a", 1, 2));
	printf("pinned: %016llx %016llx\n",
	       (unsigned long long)hash_bytes("user:42", 7, HASH_KEY_SEED_DEFAULT),
	       (unsigned long long)hash_bytes("0123456789abcdef0123", 20, HASH_KEY_SEED_DEFAULT));
	CHECK_EQ(hash_bytes("user:42", 7, HASH_KEY_SEED_DEFAULT), 0x1dabb49b646b5a4bull);
	CHECK_EQ(hash_bytes("0123456789abcdef0123", 20, HASH_KEY_SEED_DEFAULT), 0x23c0fd0265ad1957ull);
	/* pinned for every tail length (1..7 bytes after the 8-byte steps):
	 * the tail is read in overlapping loads, not copied */
	static const uint64_t tails[7] = {
		0xb6e77bf8839a8013ull, 0x22871d9ed0284361ull, 0x593989f0729606f7ull,
		0x2b69d8ba6b15f95cull, 0x6ee24160bae40449ull, 0xf1fe06667aa887dcull,
		0x547de35356b1d60full,
	};
	for (size_t n = 1; n <= 7; n++)
		CHECK_EQ(hash_bytes("tail-7!", n, HASH_KEY_SEED_DEFAULT), tails[n - 1]);
	/* every length near the 8- and 16-byte steps hashes all its bytes */
	char buf[40];
	memset(buf, 'x', sizeof(buf));
	for (size_t n = 1; n < sizeof(buf); n++) {
		uint64_t h = hash_bytes(buf, n, HASH_KEY_SEED_DEFAULT);
		buf[n - 1] = 'y';
		CHECK(hash_bytes(buf, n, HASH_KEY_SEED_DEFAULT) != h);
		buf[n - 1] = 'x';
		CHECK(hash_bytes(buf, n, HASH_KEY_SEED_DEFAULT) != hash_bytes(buf, n - 1, HASH_KEY_SEED_DEFAULT));
	}
	/* unaligned input gives the same hash */
	char a[32] = "unaligned-key-0123", b[33];
	memcpy(b + 1, a, sizeof(a));
	CHECK_EQ(hash_bytes(a, 18, HASH_KEY_SEED_DEFAULT), hash_bytes(b + 1, 18, HASH_KEY_SEED_DEFAULT));
}

/* Keys "key:N" over n shards: each shard within 6 standard deviations of
 * its share (binomial), which a uniform hash misses with odds of ~1e-9. */
static void spread(unsigned n, unsigned keys)
{
	unsigned count[64] = { 0 };
	char key[32];

	for (unsigned i = 0; i < keys; i++) {
		int len = snprintf(key, sizeof(key), "key:%u", i);
		unsigned s = hash_shard(hash_bytes(key, (size_t)len, HASH_KEY_SEED_DEFAULT), n);
		if (s >= n) {
			CHECK(s < n);
			return;
		}
		count[s]++;
	}
	double mean = (double)keys / n, sd = sqrt(mean * (1.0 - 1.0 / n));
	unsigned lo = (unsigned)(mean - 6 * sd), hi = (unsigned)(mean + 6 * sd);
	for (unsigned s = 0; s < n; s++)
		if (count[s] < lo || count[s] > hi) {
			fprintf(stderr, "%u shards: shard %u has %u keys, want %u..%u\n", n, s,
				count[s], lo, hi);
			CHECK(count[s] >= lo && count[s] <= hi);
		}
	check_passed++;
}

static void mapping(void)
{
	CHECK_EQ(hash_shard(0, 1), 0);
	CHECK_EQ(hash_shard(~0ull, 1), 0);
	CHECK_EQ(hash_shard(~0ull, 7), 6);
	CHECK_EQ(hash_shard(0, 7), 0);
	/* only the top 32 bits choose: the store's low bits do not */
	CHECK_EQ(hash_shard(0x12345678ffffffffull, 5), hash_shard(0x1234567800000000ull, 5));
	for (unsigned n = 1; n <= 64; n *= 2)
		spread(n, 200000);
	spread(3, 200000);
	spread(48, 480000);
}

/* Within one shard, the store's bucket bits (low 32) stay evenly spread. */
static void independent(void)
{
	unsigned buckets[16] = { 0 }, total = 0;
	char key[32];

	for (unsigned i = 0; i < 400000; i++) {
		int len = snprintf(key, sizeof(key), "key:%u", i);
		uint64_t h = hash_bytes(key, (size_t)len, HASH_KEY_SEED_DEFAULT);
		if (hash_shard(h, 4) != 1)
			continue;
		buckets[h & 15]++;
		total++;
	}
	for (unsigned b = 0; b < 16; b++)
		CHECK(buckets[b] > total / 16 * 9 / 10 && buckets[b] < total / 16 * 11 / 10);
}

/* The daemon's seed is drawn per process: two draws differ (odds of a clash
 * 2^-64), and hash_key() follows the seed, so the same key maps elsewhere. */
static void random_seed(void)
{
	CHECK_EQ(hash_key_seed, HASH_KEY_SEED_DEFAULT);
	CHECK_EQ(hash_key("user:42", 7), hash_bytes("user:42", 7, HASH_KEY_SEED_DEFAULT));
	CHECK_EQ(hash_key_seed_random(), 0);
	uint64_t first = hash_key_seed;
	CHECK(first != HASH_KEY_SEED_DEFAULT);
	CHECK_EQ(hash_key("user:42", 7), hash_bytes("user:42", 7, first));
	CHECK(hash_key("user:42", 7) != hash_bytes("user:42", 7, HASH_KEY_SEED_DEFAULT));
	CHECK_EQ(hash_key_seed_random(), 0);
	CHECK(hash_key_seed != first);
	hash_key_seed = HASH_KEY_SEED_DEFAULT;
}

int main(void)
{
	stable();
	random_seed();
	mapping();
	independent();
	return check_done("hash");
}
