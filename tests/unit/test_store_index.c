/*
 * test_store_index.c - the store's index on its own (src/store/index.c):
 * insert/find/remove, growth by splitting while entries stay findable,
 * forced collisions, tag collisions decided by the key bytes, and the load
 * it reaches without dropping entries; and the item header's layout
 * (src/store/item.h), whose key bytes the index compares.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "store/index.h"
#include "store/item.h"

#define MAX_BUCKETS (1u << 20)

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* Locations past the index's memory so they never look like 0. */
static uint64_t loc_of(uint64_t i)
{
	return ((uint64_t)MAX_BUCKETS * INDEX_BUCKET) + i * 16;
}

static void test_insert_find_remove_grow(void)
{
	uint8_t *mem = calloc(MAX_BUCKETS, INDEX_BUCKET);
	enum { N = 200000 };
	uint32_t *hs = malloc(N * sizeof(*hs));
	struct index ix;
	unsigned found = 0, gone = 0;

	index_init(&ix, mem, MAX_BUCKETS);
	CHECK_EQ(ix.nbuckets, 1u << INDEX_MIN_LEVEL);
	for (uint64_t i = 0; i < N; i++) {
		hs[i] = (uint32_t)rnd();
		while (index_wants_split(&ix))
			index_split(&ix);
		CHECK_EQ(index_insert(&ix, hs[i], loc_of(i)) == 0, 1);
		/* Every so often, check a random earlier entry survived growth. */
		if (i % 1000 == 999) {
			uint64_t j = rnd() % i;
			CHECK(index_find_loc(&ix, hs[j], loc_of(j)) != NULL);
		}
	}
	CHECK_EQ(ix.used, N);
	CHECK(ix.nbuckets > N / 8);
	CHECK(ix.nbuckets * 8 < N * 12 / 10 + 8);  /* load above 80%: dense */
	for (uint64_t i = 0; i < N; i++)
		found += index_find_loc(&ix, hs[i], loc_of(i)) != NULL;
	CHECK_EQ(found, N);
	/* A location that was never inserted is not found. */
	CHECK(index_find_loc(&ix, hs[0], loc_of(N + 1)) == NULL);

	for (uint64_t i = 0; i < N; i += 2) {
		uint64_t *s = index_find_loc(&ix, hs[i], loc_of(i));
		CHECK(s != NULL);
		if (s)
			index_remove(&ix, s);
	}
	CHECK_EQ(ix.used, N / 2);
	found = 0;
	for (uint64_t i = 0; i < N; i++) {
		bool f = index_find_loc(&ix, hs[i], loc_of(i)) != NULL;
		if (i % 2)
			found += f;
		else
			gone += !f;
	}
	CHECK_EQ(found, N / 2);
	CHECK_EQ(gone, N / 2);

	/* Relocating keeps the entry and moves it. */
	uint64_t *s = index_find_loc(&ix, hs[1], loc_of(1));
	CHECK(s != NULL);
	*s |= INDEX_ACCESSED;
	index_relocate(s, loc_of(N + 7));
	CHECK(!(*s & INDEX_ACCESSED));
	CHECK(index_find_loc(&ix, hs[1], loc_of(1)) == NULL);
	CHECK(index_find_loc(&ix, hs[1], loc_of(N + 7)) != NULL);
	CHECK_EQ(ix.displaced, 0);
	free(hs);
	free(mem);
}

/* Seventeen entries with one hash: two buckets hold sixteen; the last
 * insert displaces one of them and says which. */
static void test_collisions(void)
{
	uint8_t *mem = calloc(1u << INDEX_MIN_LEVEL, INDEX_BUCKET);
	struct index ix;
	uint32_t h = 0xdeadbeef;
	uint64_t dropped;
	unsigned found = 0;

	index_init(&ix, mem, 1u << INDEX_MIN_LEVEL);
	for (uint64_t i = 0; i < 16; i++)
		CHECK_EQ(index_insert(&ix, h, loc_of(i)), 0);
	for (uint64_t i = 0; i < 16; i++)
		found += index_find_loc(&ix, h, loc_of(i)) != NULL;
	CHECK_EQ(found, 16);
	dropped = index_insert(&ix, h, loc_of(16));
	CHECK(dropped >= loc_of(0) && dropped <= loc_of(16));
	CHECK_EQ(ix.used, 16);
	CHECK_EQ(ix.displaced, 1);
	found = 0;
	for (uint64_t i = 0; i <= 16; i++)
		found += index_find_loc(&ix, h, loc_of(i)) != NULL;
	CHECK_EQ(found, 16);
	CHECK(index_find_loc(&ix, h, dropped) == NULL);
	/* Other hashes still go in. */
	CHECK_EQ(index_insert(&ix, h ^ 0x5555, loc_of(100)), 0);
	free(mem);
}

/* Keys whose hashes are equal are told apart by their bytes, and reading
 * an entry (the accessed bit) does not hide it from later lookups. */
static void test_keys_decide(void)
{
	size_t index_len = (size_t)INDEX_BUCKET << INDEX_MIN_LEVEL;
	uint8_t *mem = calloc(1, index_len + 4096);
	struct index ix;
	uint64_t loc_a = index_len, loc_b = index_len + 100;
	uint32_t h = 12345;
	uint64_t *s;

	/* 3-byte headers: format, key length, one byte of value length */
	CHECK_EQ(item_put_hdr(mem + loc_a, 3, 0, 0, 0, 0), 3);
	memcpy(mem + loc_a + 3, "abc", 3);
	CHECK_EQ(item_put_hdr(mem + loc_b, 3, 0, 0, 0, 0), 3);
	memcpy(mem + loc_b + 3, "abd", 3);
	index_init(&ix, mem, 1u << INDEX_MIN_LEVEL);
	CHECK_EQ(index_insert(&ix, h, loc_a), 0);
	CHECK_EQ(index_insert(&ix, h, loc_b), 0);
	s = index_find(&ix, h, "abd", 3);
	CHECK(s && index_loc(*s) == loc_b);
	s = index_find(&ix, h, "abc", 3);
	CHECK(s && index_loc(*s) == loc_a);
	CHECK(index_find(&ix, h, "abe", 3) == NULL);
	CHECK(index_find(&ix, h, "ab", 2) == NULL);
	*s |= INDEX_ACCESSED;
	s = index_find(&ix, h, "abc", 3);
	CHECK(s && index_loc(*s) == loc_a);
	CHECK(index_find_loc(&ix, h, loc_a) == s);
	free(mem);
}

/* The header's layout: the largest is ITEM_HDR_MAX = 15 bytes (4-byte value
 * length, expiry, etag, 1-byte flags) and decodes to what was written; each
 * optional field costs its size only when non-zero. */
static void test_item_header(void)
{
	uint8_t p[ITEM_HDR_MAX + 8];
	struct item_hdr hd;

	CHECK_EQ(ITEM_HDR_MAX, 15);
	CHECK_EQ(item_hdr_len(UINT32_MAX, 1, 1, 1), ITEM_HDR_MAX);
	CHECK_EQ(item_hdr_len(1u << 24, 1, 1, 1), ITEM_HDR_MAX);
	CHECK_EQ(item_hdr_len((1u << 24) - 1, 1, 1, 1), 14);
	CHECK_EQ(item_hdr_len(100, 0, 1, 1), 8);
	CHECK_EQ(item_hdr_len(100, 1, 1, 1), 12);
	CHECK_EQ(item_hdr_len(100, 0, 0, 0xff), 4);
	CHECK_EQ(item_hdr_len(100, 0, 0, 0), 3);

	memset(p, 0xaa, sizeof(p));
	CHECK_EQ(item_put_hdr(p, 1024, 1u << 24, 0x01020304u, 0xdeadbeefu, 0xff), 15);
	CHECK_EQ(p[15], 0xaa);
	item_get_hdr(p, &hd);
	CHECK_EQ(hd.hdr_len, 15);
	CHECK_EQ(hd.key_len, 1024);
	CHECK_EQ(hd.value_len, 1u << 24);
	CHECK_EQ(hd.expires, 0x01020304u);
	CHECK_EQ(hd.etag, 0xdeadbeefu);
	CHECK_EQ(hd.flags, 0xff);
	CHECK(!hd.dead);
	CHECK_EQ(item_key_len(p), 1024);
	CHECK(item_key(p) == p + 15);
	CHECK_EQ(item_total(&hd), 15 + 1024 + (1u << 24));

	/* Flags alone, top bit set: one byte after the 1-byte length. */
	CHECK_EQ(item_put_hdr(p, 1, 7, 0, 0, 0x80), 4);
	item_get_hdr(p, &hd);
	CHECK_EQ(hd.hdr_len, 4);
	CHECK_EQ(hd.value_len, 7);
	CHECK_EQ(hd.expires, 0);
	CHECK_EQ(hd.etag, 0);
	CHECK_EQ(hd.flags, 0x80);
	CHECK(item_key(p) == p + 4);
}

/* Items whose index is capped stay correct: inserts past the cap displace
 * instead of growing, and what is found is always right. */
static void test_capped(void)
{
	uint8_t *mem = calloc(1u << INDEX_MIN_LEVEL, INDEX_BUCKET);
	struct index ix;
	enum { N = 20000 };
	uint32_t *hs = malloc(N * sizeof(*hs));
	uint8_t *present = calloc(N, 1);
	unsigned found = 0, live = 0;

	index_init(&ix, mem, 1u << INDEX_MIN_LEVEL);
	for (uint64_t i = 0; i < N; i++) {
		uint64_t d;
		hs[i] = (uint32_t)rnd();
		CHECK(!index_wants_split(&ix));
		d = index_insert(&ix, hs[i], loc_of(i));
		present[i] = 1;
		if (d)
			present[(d - loc_of(0)) / 16] = 0;
	}
	CHECK(ix.used > (8u << INDEX_MIN_LEVEL) * 95 / 100);  /* near full, never over */
	CHECK(ix.used <= 8u << INDEX_MIN_LEVEL);
	for (uint64_t i = 0; i < N; i++) {
		live += present[i];
		found += present[i] && index_find_loc(&ix, hs[i], loc_of(i)) != NULL;
	}
	CHECK_EQ(found, live);
	CHECK_EQ(live, ix.used);
	free(present);
	free(hs);
	free(mem);
}

int main(void)
{
	test_insert_find_remove_grow();
	test_collisions();
	test_keys_decide();
	test_capped();
	test_item_header();
	return check_done("store_index");
}
