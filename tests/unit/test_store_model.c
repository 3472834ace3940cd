/*
 * test_store_model.c - long random sequences of set/get/delete/tick/flush
 * run against the store and against a trivially correct reference (an
 * array indexed by key number).  Every answer must agree with the model: a
 * hit returns exactly the latest value, flags, etag and expiry; a key that
 * was deleted, expired or flushed never hits; a key the store evicted may
 * miss.  Small arenas force eviction, compaction and large-value paths.
 *
 * Stamps (issue 11): a hit reports the stamp its store_set() returned, or,
 * only after a compaction, a new one; and a key's new write never repeats
 * its previous stamp.  The stores are seeded, so a run is repeatable: a
 * 2^-32 chance collision of the stamp hash would fail it every time, not now
 * and then.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ringcache/hash.h"
#include "ringcache/store.h"

struct ref {
	bool present;
	uint32_t version;   /* the value's bytes are made from it */
	uint32_t len;
	uint32_t expires;
	uint32_t stored;
	uint32_t etag;
	uint32_t stamp;      /* the latest known; kept after a delete or eviction */
	uint64_t compacted;  /* the store's count when stamp was learned */
	uint8_t flags;
};

static uint64_t rs;

static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static void make_value(uint8_t *p, uint32_t len, uint32_t version)
{
	uint32_t x = version * 2654435761u ^ len;

	for (uint32_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

static uint32_t pick_len(uint32_t max_value)
{
	uint64_t r = rnd() % 1000, len;

	if (r < 700)
		len = rnd() % 200;
	else if (r < 950)
		len = rnd() % 4000;
	else if (r < 995)
		len = rnd() % 60000;
	else
		len = rnd() % (max_value + 2ull);   /* segment-sized and larger */
	/* max_value + 1 now and then, which must fail with E2BIG */
	return (uint32_t)(len % (max_value + 2ull));
}

struct run {
	size_t memory;
	uint32_t max_value;
	unsigned nkeys;
	unsigned ops;
	uint64_t seed;
	unsigned min_hit_pct;   /* of valid reads: the store is not just empty */
};

static void model_run(const struct run *r)
{
	struct store_config cfg = { .memory = r->memory, .max_value = r->max_value,
				    .hugepages = STORE_HUGEPAGES_OFF, .numa_node = -1,
				    .stamp_seed = r->seed };
	struct ref *ref = calloc(r->nkeys, sizeof(*ref));
	uint8_t *buf = malloc(r->max_value + 2ull);
	uint32_t now = 1, version = 0;
	uint64_t valid_gets = 0, hits = 0, wrong = 0, resurrected = 0;
	uint64_t stamp_repeated = 0, stamp_moved = 0, stamp_wrong = 0;
	uint64_t replaced = 0, replaced_dead = 0;
	struct store_stats ss;
	struct store *st;
	char key[48];

	rs = r->seed;
	CHECK_EQ(store_create(&st, &cfg), 0);
	store_stats(st, &ss);
	for (unsigned op = 0; op < r->ops; op++) {
		unsigned k = (unsigned)(rnd() % r->nkeys);
		size_t klen = (size_t)snprintf(key, sizeof(key), "m:%u:%u", k, k % 7 ? 0 : k * 977);
		uint64_t h = hash_key(key, klen);
		struct ref *e = &ref[k];
		bool valid = e->present && (!e->expires || now < e->expires);
		uint64_t c = rnd() % 100000;
		struct store_item it;

		if (c < 45000) {
			uint32_t len = pick_len(r->max_value);
			uint32_t ttl = rnd() % 3 ? 0 : (uint32_t)(1 + rnd() % 40);
			uint8_t flags = (uint8_t)(rnd() % 3 ? rnd() : 0);
			uint32_t etag = (uint32_t)(rnd() % 4 ? rnd() : 0);
			struct iovec iov[2];
			uint32_t cut = len ? (uint32_t)(rnd() % len) : 0;
			struct store_set_info set = { .stamp = e->stamp };
			int ret;

			make_value(buf, len, ++version);
			iov[0] = (struct iovec){ buf, cut };
			iov[1] = (struct iovec){ buf + cut, len - cut };
			ret = store_set(st, key, klen, h, iov, 2, ttl, flags, etag, &set);
			uint32_t stamp = set.stamp;
			if (ret == 0) {
				/* e->version: this key was written before */
				stamp_repeated += e->version && stamp == e->stamp;
				/* a live item replaced: the model has one too (the
				 * store may have evicted one the model still has) */
				replaced += set.replaced;
				replaced_dead += set.replaced && !valid;
				store_stats(st, &ss);
				*e = (struct ref){ true, version, len, ttl ? now + ttl : 0, now, etag,
						   stamp, ss.compacted, flags };
			} else {
				CHECK_EQ(stamp, e->stamp);
				/* Only a value over max_value may fail, and then
				 * the key must be gone. */
				CHECK_EQ(ret, -E2BIG);
				CHECK(len > r->max_value);
				e->present = false;
			}
		} else if (c < 85000) {
			int ret = store_get(st, key, klen, h, &it);

			valid_gets += valid;
			if (ret == 0) {
				hits++;
				if (!valid) {
					resurrected++;
				} else {
					make_value(buf, e->len, e->version);
					if (it.value_len != e->len || memcmp(it.value, buf, e->len) ||
					    it.flags != e->flags || it.etag != e->etag ||
					    it.expires != e->expires)
						wrong++;
					if (it.stamp != e->stamp) {
						/* moved: only compaction moves items */
						store_stats(st, &ss);
						stamp_moved++;
						stamp_wrong += ss.compacted == e->compacted;
						e->stamp = it.stamp;
						e->compacted = ss.compacted;
					}
				}
			} else {
				CHECK_EQ(ret, -ENOENT);
			}
		} else if (c < 95000) {
			int ret = store_delete(st, key, klen, h);

			if (ret == 0 && !valid)
				resurrected++;
			e->present = false;
		} else if (c < 99995) {
			now += (uint32_t)(rnd() % 4);
			store_tick(st, now);
		} else {
			uint32_t older = now - (uint32_t)(rnd() % 5);

			store_flush(st, older);
			for (unsigned i = 0; i < r->nkeys; i++)
				if (ref[i].present && ref[i].stored < older)
					ref[i].present = false;
		}
	}
	/* A final sweep over every key. */
	for (unsigned k = 0; k < r->nkeys; k++) {
		size_t klen = (size_t)snprintf(key, sizeof(key), "m:%u:%u", k, k % 7 ? 0 : k * 977);
		struct ref *e = &ref[k];
		bool valid = e->present && (!e->expires || now < e->expires);
		struct store_item it;

		if (store_get(st, key, klen, hash_key(key, klen), &it) == 0) {
			make_value(buf, e->len, e->version);
			if (!valid)
				resurrected++;
			else if (it.value_len != e->len || memcmp(it.value, buf, e->len))
				wrong++;
		}
	}
	store_stats(st, &ss);
	CHECK_EQ(wrong, 0);
	CHECK_EQ(resurrected, 0);
	CHECK_EQ(stamp_repeated, 0);
	CHECK_EQ(replaced_dead, 0);
	CHECK(replaced > 0);
	CHECK_EQ(stamp_wrong, 0);
	CHECK(ss.live_bytes + ss.index_bytes <= ss.arena_bytes);
	CHECK(ss.items <= r->nkeys);
	CHECK(hits * 100 >= valid_gets * r->min_hit_pct);
	printf("model %zu KiB, %u keys, %u ops: %llu/%llu valid reads hit, %llu evicted, "
	       "%llu expired, %llu compacted (%llu seen moved), %llu flushed\n",
	       r->memory >> 10, r->nkeys, r->ops, (unsigned long long)hits,
	       (unsigned long long)valid_gets, (unsigned long long)ss.evictions,
	       (unsigned long long)ss.expirations, (unsigned long long)ss.compacted,
	       (unsigned long long)stamp_moved, (unsigned long long)ss.flushed);
	store_destroy(st);
	free(buf);
	free(ref);
}

int main(void)
{
	const struct run runs[] = {
		/* tight: constant eviction, values up to 4 segments */
		{ 1u << 20, 256u << 10, 3000, 400000, 1, 10 },
		/* roomy: mostly compaction, flushes and expiry */
		{ 16u << 20, 1u << 20, 4000, 400000, 2, 80 },
		/* many small keys: index growth and displacement pressure */
		{ 4u << 20, 4096, 60000, 1000000, 3, 50 },
	};

	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++)
		model_run(&runs[i]);
	return check_done("store_model");
}
