/*
 * test_tags.c - X-Cache-Tags parsing and the per-shard tag index
 * (src/cache/tags.h): the allowed bytes and limits, duplicates, adds that
 * are idempotent, removal, taking a tag's keys one at a time, the memory
 * bound (refused, never passed), the sweep of entries whose keys no longer
 * carry the tag, and a model check against a plain list under random
 * operations.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cache/tags.h"
#include "ringcache/hash.h"

static int parse(const char *s, uint8_t *out, uint32_t *len)
{
	return tags_parse(s, strlen(s), out, len);
}

static void test_parse(void)
{
	uint8_t out[REPR_TAGS_MAX * (1 + REPR_TAG_MAX)];
	uint32_t len = 99;

	CHECK_EQ(parse("t1, t2", out, &len), 2);
	CHECK(len == 6 && memcmp(out, "\x02t1\x02t2", 6) == 0);
	CHECK_EQ(parse("", out, &len), 0);
	CHECK_EQ(len, 0);
	CHECK_EQ(parse(" , ,\t", out, &len), 0);         /* empty members are skipped */
	CHECK_EQ(parse("a,a, a ,b", out, &len), 2);      /* a tag given twice counts once */
	CHECK(len == 4 && memcmp(out, "\x01" "a\x01" "b", 4) == 0);
	CHECK_EQ(parse("user:42,page/home,x=1;y,~!@#$%^&*()_+", out, &len), 4);
	CHECK_EQ(parse("1,2,3,4,5,6,7,8", out, &len), 8);
	CHECK_EQ(parse("1,2,3,4,5,6,7,8,9", out, &len), -E2BIG);
	CHECK_EQ(parse("1,2,3,4,5,6,7,8,8", out, &len), 8);   /* the duplicate is not a ninth */
	char big[300];
	memset(big, 'x', sizeof(big));
	big[128] = '\0';
	CHECK_EQ(parse(big, out, &len), 1);
	CHECK_EQ(out[0], 128);
	big[128] = 'x';
	big[129] = '\0';
	CHECK_EQ(parse(big, out, &len), -ENAMETOOLONG);
	/* odd bytes: a space inside, controls, DEL, a quote is fine, 8-bit not */
	CHECK_EQ(parse("a b", out, &len), -EINVAL);
	CHECK_EQ(parse("a\x01", out, &len), -EINVAL);
	CHECK_EQ(parse("a\x7f", out, &len), -EINVAL);
	CHECK_EQ(parse("caf\xc3\xa9", out, &len), -EINVAL);
	CHECK_EQ(parse("\"quoted\"", out, &len), 1);
	CHECK_EQ(tags_parse("a\0b", 3, out, &len), -EINVAL);
	CHECK(tags_valid((const uint8_t *)"x", 1));
	CHECK(!tags_valid((const uint8_t *)"", 0));
	CHECK(!tags_valid((const uint8_t *)"a,b", 3));
	CHECK(!tags_valid((const uint8_t *)big, 129));
	CHECK(tags_valid((const uint8_t *)big, 128));
	CHECK_EQ(parse("t1, t2", out, &len), 2);
	CHECK(tags_has(out, len, 2, (const uint8_t *)"t2", 2));
	CHECK(!tags_has(out, len, 2, (const uint8_t *)"t", 1));
	CHECK(!tags_has(out, len, 1, (const uint8_t *)"t2", 2));
}

static int add(struct tags *t, const char *tag, const char *key)
{
	return tags_add(t, (const uint8_t *)tag, strlen(tag), (const uint8_t *)key,
			(uint32_t)strlen(key), hash_key(key, strlen(key)));
}

static uint64_t count(struct tags *t, const char *tag)
{
	return tags_count(t, (const uint8_t *)tag, strlen(tag));
}

static void test_index(void)
{
	struct tags *t;
	struct tags_key k;

	CHECK_EQ(tags_create(&t, 1 << 20), 0);
	size_t empty = tags_memory(t);
	CHECK(empty > 0 && empty < 256);        /* nothing but the struct before a write */
	CHECK_EQ(add(t, "a", "k1"), 0);
	CHECK_EQ(add(t, "a", "k2"), 0);
	CHECK_EQ(add(t, "a", "k1"), 0);         /* idempotent */
	CHECK_EQ(add(t, "b", "k1"), 0);
	CHECK_EQ(tags_entries(t), 3);
	CHECK_EQ(count(t, "a"), 2);
	CHECK_EQ(count(t, "b"), 1);
	CHECK_EQ(count(t, "c"), 0);
	tags_remove(t, (const uint8_t *)"a", 1, (const uint8_t *)"k1", 2, hash_key("k1", 2));
	tags_remove(t, (const uint8_t *)"a", 1, (const uint8_t *)"zz", 2, hash_key("zz", 2));
	CHECK_EQ(count(t, "a"), 1);
	CHECK_EQ(tags_take(t, (const uint8_t *)"a", 1, &k), 1);
	CHECK(k.len == 2 && memcmp(k.key, "k2", 2) == 0 && k.hash == hash_key("k2", 2));
	CHECK_EQ(tags_take(t, (const uint8_t *)"a", 1, &k), 0);
	CHECK_EQ(count(t, "a"), 0);
	CHECK_EQ(tags_take(t, (const uint8_t *)"b", 1, &k), 1);
	CHECK_EQ(tags_entries(t), 0);
	/* the tables stay; tags and entries are all given back */
	size_t tables = tags_memory(t);
	CHECK_EQ(add(t, "a", "k1"), 0);
	CHECK(tags_memory(t) > tables);
	CHECK_EQ(tags_take(t, (const uint8_t *)"a", 1, &k), 1);
	CHECK_EQ(tags_memory(t), tables);
	tags_destroy(t);
	tags_destroy(NULL);
}

static void test_bound(void)
{
	struct tags *t;
	char key[32];
	unsigned added = 0;
	int rc = 0;

	CHECK_EQ(tags_create(&t, 16384), 0);
	for (unsigned i = 0; i < 10000 && rc == 0; i++) {
		snprintf(key, sizeof(key), "key-%u", i);
		rc = add(t, "t", key);
		if (rc == 0)
			added++;
		CHECK(tags_memory(t) <= 16384);
	}
	CHECK_EQ(rc, -ENOSPC);
	CHECK(added > 50);
	CHECK_EQ(count(t, "t"), added);
	CHECK(!tags_room(t, 1, 8));
	/* taking keys out makes room again */
	struct tags_key k;
	for (unsigned i = 0; i < 20; i++)
		CHECK_EQ(tags_take(t, (const uint8_t *)"t", 1, &k), 1);
	CHECK_EQ(add(t, "t", "again"), 0);
	tags_destroy(t);
}

/* The sweep's model of the store: keys whose number is odd lost their tags. */
static bool odd_gone(void *arg, const uint8_t *tag, size_t tag_len, const uint8_t *key,
		     uint32_t key_len, uint64_t khash)
{
	(void)arg;
	(void)tag;
	(void)tag_len;
	(void)khash;
	return (key[key_len - 1] - '0') % 2 == 0;
}

static void test_sweep(void)
{
	struct tags *t;
	char key[32];

	CHECK_EQ(tags_create(&t, 1 << 20), 0);
	CHECK_EQ(tags_sweep(t, 100, odd_gone, NULL), 0);
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "k%u", i);
		CHECK_EQ(add(t, i % 3 ? "x" : "y", key), 0);
	}
	uint32_t dropped = 0, rounds = 0;
	while (tags_entries(t) > 500 && rounds++ < 1000) {
		uint64_t before = tags_entries(t);
		dropped += tags_sweep(t, 64, odd_gone, NULL);
		CHECK(before - tags_entries(t) <= 64);  /* a slice looks at ~64 */
	}
	CHECK_EQ(dropped, 500);
	CHECK_EQ(tags_entries(t), 500);
	CHECK_EQ(tags_sweep(t, 2000, odd_gone, NULL), 0);
	tags_destroy(t);
}

/* Random adds, removes and takes against a list of (tag, key) pairs. */
static void test_model(void)
{
	enum { TAGS = 5, KEYS = 50 };
	bool model[TAGS][KEYS] = { { false } };
	struct tags *t;
	uint64_t seed = 42;
	char tag[8], key[8];

	CHECK_EQ(tags_create(&t, 1 << 20), 0);
	for (unsigned step = 0; step < 20000; step++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		unsigned op = (unsigned)(seed >> 60) % 3, g = (unsigned)(seed >> 40) % TAGS,
			 k = (unsigned)(seed >> 20) % KEYS;
		snprintf(tag, sizeof(tag), "t%u", g);
		snprintf(key, sizeof(key), "k%u", k);
		if (op == 0) {
			CHECK_EQ(add(t, tag, key), 0);
			model[g][k] = true;
		} else if (op == 1) {
			tags_remove(t, (const uint8_t *)tag, strlen(tag), (const uint8_t *)key,
				    (uint32_t)strlen(key), hash_key(key, strlen(key)));
			model[g][k] = false;
		} else if (step % 50 == 0) {
			struct tags_key tk;
			while (tags_take(t, (const uint8_t *)tag, strlen(tag), &tk) == 1) {
				char kb[16] = { 0 };
				memcpy(kb, tk.key, tk.len < 15 ? tk.len : 15);
				unsigned kk = (unsigned)atoi(kb + 1);
				CHECK(kk < KEYS && model[g][kk]);
				if (kk < KEYS)
					model[g][kk] = false;
			}
		}
	}
	uint64_t n = 0;
	for (unsigned g = 0; g < TAGS; g++) {
		uint64_t c = 0;
		for (unsigned k = 0; k < KEYS; k++)
			c += model[g][k];
		snprintf(tag, sizeof(tag), "t%u", g);
		CHECK_EQ(count(t, tag), c);
		n += c;
	}
	CHECK_EQ(tags_entries(t), n);
	tags_destroy(t);
}

int main(void)
{
	test_parse();
	test_index();
	test_bound();
	test_sweep();
	test_model();
	return check_done("test_tags");
}
