/*
 * test_kv.c - Redis's string operations over a real store (src/cache/kv.c):
 * answers, effects, TTL arithmetic on a clock the test sets (the store's and
 * a Unix one), and that a change of TTL keeps a value's variants.
 */
#include <semaphore.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ringcache/cache.h"
#include "ringcache/hash.h"
#include "ringcache/zip.h"

#define MAX_VALUE 4096
#define NOW 1000u                       /* store clock */
#define NOW_MS 1700000000000ull         /* Unix ms */

static struct cache *cache;
static struct store *st;
static struct buf scratch;
static struct zip *zp;
static sem_t done;

/* A worker finished a job for the (only) shard: wake the "loop". */
static void on_done(void *arg, unsigned shard)
{
	(void)arg;
	(void)shard;
	sem_post(&done);
}

/* What a shard's loop does until the variants of every write so far are in. */
static void settle(void)
{
	cache_zip_poll(cache);
	while (cache_zip_pending(cache))
		if (!cache_zip_poll(cache))
			sem_wait(&done);
}

static struct cache_kv_ctx ctx(void)
{
	struct cache_kv_ctx x = { cache, st, NOW, NOW_MS, MAX_VALUE, &scratch };
	return x;
}

static struct cache_req req(const char *key, const char *body)
{
	struct cache_req r;

	memset(&r, 0, sizeof(r));
	r.op = CACHE_PUT;
	r.key = (const uint8_t *)key;
	r.key_len = (uint32_t)strlen(key);
	r.hash = hash_key(key, r.key_len);
	r.body = (const uint8_t *)body;
	r.body_len = body ? (uint32_t)strlen(body) : 0;
	r.ttl = -1;
	return r;
}

static struct reply run(const char *key, const char *body, uint8_t op, uint8_t flags,
			int64_t num, int64_t at_ms, enum cache_kv_effect *effect)
{
	struct cache_kv_ctx x = ctx();
	struct cache_req r = req(key, body);
	struct cache_kv kv = { op, flags, num, at_ms };
	struct reply out;
	enum cache_kv_effect e;

	cache_kv_exec(&x, &r, &kv, &out, effect ? effect : &e);
	return out;
}

/* GET through the executor: 200 and the value, or 404. */
static int get(const char *key, char *val, size_t n, uint32_t *max_age)
{
	struct cache_req r = req(key, NULL);
	struct reply out;

	r.op = CACHE_GET;
	if (cache_exec(cache, &r, &out) != CACHE_HIT)
		return 404;
	snprintf(val, n, "%.*s", (int)out.body_len, (const char *)out.body);
	*max_age = out.has_max_age ? out.max_age : 0;
	return 200;
}

static int is_bulk(const struct reply *r, const char *s)
{
	return r->kind == REPLY_BULK && r->body_len == strlen(s) && !memcmp(r->body, s, r->body_len);
}

static int is_error(const struct reply *r, const char *s)
{
	return r->kind == REPLY_ERROR && r->body_len == strlen(s) && !memcmp(r->body, s, r->body_len);
}

static void test_set(void)
{
	enum cache_kv_effect e;
	struct reply r;
	char v[64];
	uint32_t age;

	r = run("s", "1", CACHE_KV_SET, CACHE_KV_NX, 0, 0, &e);
	CHECK(r.kind == REPLY_OK && e == CACHE_KV_WROTE);
	r = run("s", "2", CACHE_KV_SET, CACHE_KV_NX, 0, 0, &e);
	CHECK(r.kind == REPLY_NIL && e == CACHE_KV_UNCHANGED);
	r = run("s", "3", CACHE_KV_SET, CACHE_KV_XX | CACHE_KV_GET, 0, 0, &e);
	CHECK(is_bulk(&r, "1") && e == CACHE_KV_WROTE);
	r = run("nope", "x", CACHE_KV_SET, CACHE_KV_XX | CACHE_KV_GET, 0, 0, &e);
	CHECK(r.kind == REPLY_NIL && e == CACHE_KV_UNCHANGED);
	CHECK(get("s", v, sizeof(v), &age) == 200 && !strcmp(v, "3") && age == 0);

	/* an expiry 10.5 s away: 11 whole seconds, as max-age */
	r = run("s", "4", CACHE_KV_SET, CACHE_KV_EXPIRY, 0, (int64_t)NOW_MS + 10500, &e);
	CHECK(r.kind == REPLY_OK);
	CHECK(get("s", v, sizeof(v), &age) == 200 && age == 11);
	r = run("s", "5", CACHE_KV_SET, CACHE_KV_KEEPTTL, 0, 0, &e);
	CHECK(get("s", v, sizeof(v), &age) == 200 && !strcmp(v, "5") && age == 11);
	r = run("s", "6", CACHE_KV_SET, 0, 0, 0, &e);
	CHECK(get("s", v, sizeof(v), &age) == 200 && age == 0);
	/* an expiry not in the future: OK, and no key */
	r = run("s", "7", CACHE_KV_SET, CACHE_KV_EXPIRY, 0, (int64_t)NOW_MS, &e);
	CHECK(r.kind == REPLY_OK && e == CACHE_KV_DELETED);
	CHECK(get("s", v, sizeof(v), &age) == 404);
}

static void test_incr_append(void)
{
	enum cache_kv_effect e;
	struct reply r;
	char v[64];
	uint32_t age;

	r = run("n", NULL, CACHE_KV_INCRBY, 0, 5, 0, &e);
	CHECK(r.kind == REPLY_INT && r.num == 5 && e == CACHE_KV_WROTE);
	r = run("n", NULL, CACHE_KV_INCRBY, 0, -7, 0, &e);
	CHECK(r.kind == REPLY_INT && r.num == -2);
	CHECK(get("n", v, sizeof(v), &age) == 200 && !strcmp(v, "-2"));
	run("n", NULL, CACHE_KV_EXPIRE, 0, 0, (int64_t)NOW_MS + 30000, &e);
	r = run("n", NULL, CACHE_KV_INCRBY, 0, 1, 0, &e);
	CHECK(get("n", v, sizeof(v), &age) == 200 && !strcmp(v, "-1") && age == 30);
	run("big", "9223372036854775806", CACHE_KV_SET, 0, 0, 0, NULL);
	r = run("big", NULL, CACHE_KV_INCRBY, 0, 1, 0, &e);
	CHECK(r.kind == REPLY_INT && r.num == INT64_MAX);
	r = run("big", NULL, CACHE_KV_INCRBY, 0, 1, 0, &e);
	CHECK(is_error(&r, "ERR increment or decrement would overflow") &&
	      e == CACHE_KV_UNCHANGED);
	run("txt", "12a", CACHE_KV_SET, 0, 0, 0, NULL);
	r = run("txt", NULL, CACHE_KV_INCRBY, 0, 1, 0, &e);
	CHECK(is_error(&r, "ERR value is not an integer or out of range"));

	r = run("a", "ab", CACHE_KV_APPEND, 0, 0, 0, &e);
	CHECK(r.kind == REPLY_INT && r.num == 2 && e == CACHE_KV_WROTE);
	r = run("a", "cd", CACHE_KV_APPEND, 0, 0, 0, &e);
	CHECK(r.kind == REPLY_INT && r.num == 4);
	CHECK(get("a", v, sizeof(v), &age) == 200 && !strcmp(v, "abcd"));
	static char big[MAX_VALUE];
	memset(big, 'x', MAX_VALUE - 4);
	big[MAX_VALUE - 4] = '\0';
	r = run("a", big, CACHE_KV_APPEND, 0, 0, 0, &e);
	CHECK(r.kind == REPLY_INT && r.num == MAX_VALUE);
	r = run("a", "y", CACHE_KV_APPEND, 0, 0, 0, &e);
	CHECK(is_error(&r, "ERR string exceeds maximum allowed size (proto-max-bulk-len)"));
}

static void test_expiry(void)
{
	enum cache_kv_effect e;
	struct reply r;
	char v[64];
	uint32_t age;

	run("e", "v", CACHE_KV_SET, 0, 0, 0, NULL);
	r = run("e", NULL, CACHE_KV_EXPIRE, CACHE_KV_XX, 0, (int64_t)NOW_MS + 5000, &e);
	CHECK(r.kind == REPLY_INT && r.num == 0 && e == CACHE_KV_UNCHANGED);
	r = run("e", NULL, CACHE_KV_EXPIRE, CACHE_KV_NX, 0, (int64_t)NOW_MS + 5000, &e);
	CHECK(r.num == 1 && e == CACHE_KV_WROTE);
	CHECK(get("e", v, sizeof(v), &age) == 200 && !strcmp(v, "v") && age == 5);
	r = run("e", NULL, CACHE_KV_EXPIRE, CACHE_KV_GT, 0, (int64_t)NOW_MS + 4000, &e);
	CHECK(r.num == 0);
	r = run("e", NULL, CACHE_KV_EXPIRE, CACHE_KV_LT, 0, (int64_t)NOW_MS + 4000, &e);
	CHECK(r.num == 1);
	CHECK(get("e", v, sizeof(v), &age) == 200 && age == 4);
	r = run("e", NULL, CACHE_KV_PERSIST, 0, 0, 0, &e);
	CHECK(r.num == 1 && e == CACHE_KV_WROTE);
	CHECK(get("e", v, sizeof(v), &age) == 200 && age == 0);
	r = run("e", NULL, CACHE_KV_PERSIST, 0, 0, 0, &e);
	CHECK(r.num == 0);
	r = run("e", NULL, CACHE_KV_GETEX, CACHE_KV_EXPIRY, 0, (int64_t)NOW_MS + 2000, &e);
	CHECK(is_bulk(&r, "v") && e == CACHE_KV_WROTE);
	CHECK(get("e", v, sizeof(v), &age) == 200 && age == 2);
	r = run("e", NULL, CACHE_KV_GETEX, CACHE_KV_EXPIRY, 0, CACHE_KV_AT_INVALID, &e);
	CHECK(is_error(&r, "ERR invalid expire time in 'getex' command"));
	r = run("nope", NULL, CACHE_KV_GETEX, CACHE_KV_EXPIRY, 0, CACHE_KV_AT_INVALID, &e);
	CHECK(r.kind == REPLY_NIL);
	r = run("e", NULL, CACHE_KV_EXPIRE, 0, 0, (int64_t)NOW_MS - 1, &e);
	CHECK(r.num == 1 && e == CACHE_KV_DELETED);
	CHECK(get("e", v, sizeof(v), &age) == 404);
	r = run("e", NULL, CACHE_KV_EXPIRE, 0, 0, (int64_t)NOW_MS + 1000, &e);
	CHECK(r.num == 0);

	run("g", "gone", CACHE_KV_SET, 0, 0, 0, NULL);
	r = run("g", NULL, CACHE_KV_GETDEL, 0, 0, 0, &e);
	CHECK(is_bulk(&r, "gone") && e == CACHE_KV_DELETED);
	r = run("g", NULL, CACHE_KV_GETDEL, 0, 0, 0, &e);
	CHECK(r.kind == REPLY_NIL && e == CACHE_KV_UNCHANGED);
}

/* A value stored with br/gzip variants over HTTP keeps them through EXPIRE,
 * and the write-through sees its identity bytes and type. */
static void test_retime_keeps_variants(void)
{
	static char text[2048];
	struct cache_req r = req("doc", text);
	struct reply out;
	enum cache_kv_effect e;

	for (size_t i = 0; i + 1 < sizeof(text); i++)
		text[i] = "compressible text "[i % 18];
	r.body_len = (uint32_t)strlen(text);
	r.content_type.p = "text/html";
	r.content_type.len = 9;
	CHECK(cache_exec(cache, &r, &out) == CACHE_STORED);
	settle();       /* the variants are made off the shard (docs/fastlane.md) */
	run("doc", NULL, CACHE_KV_EXPIRE, 0, 0, (int64_t)NOW_MS + 60000, &e);
	CHECK(e == CACHE_KV_WROTE);
	r.op = CACHE_GET;
	r.accept_encoding.p = "br";
	r.accept_encoding.len = 2;
	CHECK(cache_exec(cache, &r, &out) == CACHE_HIT && out.coding == REPLY_BR &&
	      out.has_max_age && out.max_age == 60);

	const uint8_t *val;
	uint32_t len, tlen;
	const char *type;
	CHECK(cache_kv_identity(st, &r, &val, &len, &type, &tlen) == 0);
	CHECK(len == strlen(text) && !memcmp(val, text, len) && tlen == 9 &&
	      !memcmp(type, "text/html", 9));
	run("plain", "p", CACHE_KV_SET, 0, 0, 0, NULL);
	struct cache_req p = req("plain", NULL);
	CHECK(cache_kv_identity(st, &p, &val, &len, &type, &tlen) == 0 && tlen == 0);
}

static void test_count_flush(void)
{
	enum cache_kv_effect e;
	struct reply r = run("x", NULL, CACHE_KV_COUNT, 0, 0, 0, &e);

	CHECK(r.kind == REPLY_INT && r.num > 0);
	r = run("x", NULL, CACHE_KV_FLUSH, 0, 0, 0, &e);
	CHECK(r.kind == REPLY_OK);
	r = run("x", NULL, CACHE_KV_COUNT, 0, 0, 0, &e);
	CHECK(r.kind == REPLY_INT && r.num == 0);
}

int main(void)
{
	struct store_config sc = { .memory = 16u << 20, .max_value = cache_blob_max(MAX_VALUE),
				   .hugepages = STORE_HUGEPAGES_OFF, .numa_node = -1 };
	struct zip_config zc = { .threads = 1, .shards = 1, .brotli_quality = 4, .gzip_level = 6,
				 .wake = on_done };

	CHECK_EQ(sem_init(&done, 0, 0), 0);
	CHECK_EQ(zip_create(&zp, &zc), 0);
	struct cache_config cc = { .compress_min = 256, .max_value = MAX_VALUE, .zip = zp,
				   .lane = 0 };

	CHECK_EQ(store_create(&st, &sc), 0);
	CHECK_EQ(cache_create(&cache, st, &cc), 0);
	cache_tick(cache, NOW);
	test_set();
	test_incr_append();
	test_expiry();
	test_retime_keeps_variants();
	test_count_flush();
	cache_destroy(cache);
	store_destroy(st);
	zip_destroy(zp);
	buf_deinit(&scratch);
	return check_done("kv");
}
