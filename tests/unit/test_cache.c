/*
 * test_cache.c - the cache executor over a real store and real compression
 * workers (zip.h): statuses, headers, negotiation with decoded br/gzip
 * bodies, ETags and 304, TTLs driven by a hand-set store clock, and the
 * install rule of the variants made off the shard (issue 8): only the write
 * they were made from gets them, never a later one, a deleted, evicted or
 * expired one; a full queue stores without variants.
 *
 * The variants arrive when cache_zip_poll() takes them, which a shard does
 * once per loop iteration: settle() is that loop, waiting (on the workers'
 * wake-up, never on a timer) until nothing is out at the workers.
 */
#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <brotli/decode.h>
#include <libdeflate.h>

#include "check.h"
#include "cache/repr.h"
#include "ringcache/cache.h"
#include "ringcache/hash.h"
#include "ringcache/http_render.h"
#include "ringcache/zip.h"

#define MAX_VALUE (1u << 20)
#define LANES 8         /* caches sharing the pool: lane 0 is `cache` */

struct resp {
	int status;
	char head[8192];        /* status line and fields, NUL-terminated */
	size_t head_len;
	char *body;             /* malloc'd copy, NUL-terminated */
	size_t body_len;
	size_t total;           /* bytes of the response in the buffer */
};

static struct store *st;
static struct cache *cache;
static uint32_t now = 1000;

/* The compression workers every cache of this test uses; each finished job
 * posts `done`, as it would ring a parked shard's doorbell. */
static struct zip *zp;
static sem_t done;

static void on_done(void *arg, unsigned lane)
{
	(void)arg;
	(void)lane;
	sem_post(&done);
}

/* A cache's counters (what a shard's stats hold). */
struct zstats {
#define ZSTATS_FIELD(name, type, help) _Atomic uint64_t name;
	CACHE_ZIP_STATS(ZSTATS_FIELD)
#undef ZSTATS_FIELD
};

static struct zstats zs;        /* `cache`'s */

static struct cache_counters counters_of(struct zstats *z)
{
	struct cache_counters c = {
#define ZSTATS_PTR(name, type, help) .name = &z->name,
		CACHE_ZIP_STATS(ZSTATS_PTR)
#undef ZSTATS_PTR
	};
	return c;
}

static uint64_t zget(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* What a shard's loop does until the variants of every write so far are
 * installed (or discarded): poll, and when nothing came back, wait for a
 * worker to finish a job. */
static void settle_cache(struct cache *c)
{
	cache_zip_poll(c);      /* publishes what the PUTs queued */
	while (cache_zip_pending(c))
		if (!cache_zip_poll(c))
			sem_wait(&done);
}

static void settle(void)
{
	settle_cache(cache);
}

static void resp_free(struct resp *r)
{
	free(r->body);
	r->body = NULL;
}

/* The value of header `name` (first occurrence), or NULL. */
static const char *hdr(const struct resp *r, const char *name, size_t *len)
{
	size_t nl = strlen(name);
	const char *line = strstr(r->head, "\r\n");
	while (line && line[2] != '\0') {
		line += 2;
		const char *eol = strstr(line, "\r\n");
		if (!eol)
			break;
		if ((size_t)(eol - line) > nl && line[nl] == ':' &&
		    strncasecmp(line, name, nl) == 0) {
			const char *v = line + nl + 1;
			while (*v == ' ')
				v++;
			*len = (size_t)(eol - v);
			return v;
		}
		line = eol;
	}
	return NULL;
}

static bool hdr_is(const struct resp *r, const char *name, const char *want)
{
	size_t len;
	const char *v = hdr(r, name, &len);
	return v && len == strlen(want) && memcmp(v, want, len) == 0;
}

static bool has_hdr(const struct resp *r, const char *name)
{
	size_t len;
	return hdr(r, name, &len) != NULL;
}

/* Copies a header value into out (NUL-terminated); "" if absent. */
static void hdr_copy(const struct resp *r, const char *name, char *out, size_t cap)
{
	size_t len;
	const char *v = hdr(r, name, &len);
	if (!v || len >= cap)
		len = 0;
	memcpy(out, v ? v : "", len);
	out[len] = '\0';
}

/* Parses one response at p[0..n); the body is framed by Content-Length
 * unless the request was HEAD or the status has none. */
static int parse_resp(const char *p, size_t n, bool head_req, struct resp *r)
{
	memset(r, 0, sizeof(*r));
	const char *end = memmem(p, n, "\r\n\r\n", 4);
	if (!end || n < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0)
		return -1;
	r->status = atoi(p + 9);
	r->head_len = (size_t)(end - p) + 2;
	if (r->head_len >= sizeof(r->head))
		return -1;
	memcpy(r->head, p, r->head_len);
	r->head[r->head_len] = '\0';
	size_t cl_len = 0;
	const char *cl = hdr(r, "Content-Length", &cl_len);
	size_t body = 0;
	if (!head_req && r->status != 204 && r->status != 304 && r->status >= 200) {
		if (!cl)
			return -1;
		body = strtoul(cl, NULL, 10);
	}
	size_t off = r->head_len + 2;
	if (off + body > n)
		return -1;
	r->body = malloc(body + 1);
	memcpy(r->body, p + off, body);
	r->body[body] = '\0';
	r->body_len = body;
	r->total = off + body;
	return 0;
}

/* The request: what the executor reads, and how its answer is rendered. */
struct treq {
	struct cache_req c;
	uint8_t minor;
	bool keep_alive;
};

/* cache_exec() and http_render() the way a shard calls them. */
static int exec_render(struct cache *c, const struct treq *r, struct buf *out,
		       enum cache_outcome *oc)
{
	struct http_answer_to to = { r->minor, r->keep_alive, r->c.op == CACHE_HEAD };
	struct reply rep;

	*oc = cache_exec(c, &r->c, &rep);
	return http_render(out, &rep, &to);
}

static struct treq mkreq(uint8_t op, const char *key)
{
	struct treq t;
	struct cache_req r;
	memset(&r, 0, sizeof(r));
	memset(&t, 0, sizeof(t));
	t.minor = 1;
	t.keep_alive = true;
	r.op = op;
	r.key = (const uint8_t *)key;
	r.key_len = (uint32_t)strlen(key);
	r.hash = hash_key(key, r.key_len);
	r.ttl = -1;
	r.swr = r.sie = -1;
	r.stale_ok = op == CACHE_GET || op == CACHE_HEAD;   /* as route.c sets it */
	t.c = r;
	return t;
}

static struct http_str hs(const char *s)
{
	return (struct http_str){ s, s ? (uint32_t)strlen(s) : 0 };
}

/* Runs a request and parses its response, which must be the whole output. */
static enum cache_outcome run(const struct treq *r, struct resp *rs)
{
	struct buf out = { 0 };
	enum cache_outcome oc = CACHE_FAILED;
	CHECK_EQ(exec_render(cache, r, &out, &oc), 0);
	CHECK_EQ(parse_resp(out.data, out.len, r->c.op == CACHE_HEAD, rs), 0);
	CHECK_EQ(rs->total, out.len);
	buf_deinit(&out);
	return oc;
}

/* A PUT, answered before its variants exist. */
static int put_now(const char *key, const void *val, size_t len, const char *ct,
		   struct resp *rs)
{
	struct treq r = mkreq(CACHE_PUT, key);
	r.c.body = val;
	r.c.body_len = (uint32_t)len;
	r.c.content_type = hs(ct);
	struct resp tmp;
	struct resp *o = rs ? rs : &tmp;
	run(&r, o);
	int status = o->status;
	if (!rs)
		resp_free(&tmp);
	return status;
}

/* A PUT, then what the shard's loop does until its variants are in. */
static int put(const char *key, const void *val, size_t len, const char *ct, struct resp *rs)
{
	int status = put_now(key, val, len, ct, rs);
	settle();
	return status;
}

static int get_ae(const char *key, const char *ae, struct resp *rs)
{
	struct treq r = mkreq(CACHE_GET, key);
	r.c.accept_encoding = hs(ae);
	run(&r, rs);
	return rs->status;
}

static char *text_value(size_t n)
{
	static const char *words[] = { "{\"id\":", "\"name\":\"ringcache\",", "\"tags\":[\"a\",\"b\"],",
				       "\"count\":", "42,", "\"ok\":true}," };
	char *v = malloc(n + 1);
	size_t i = 0;
	unsigned k = 0;
	while (i < n) {
		const char *w = words[k++ % 6];
		size_t l = strlen(w);
		if (l > n - i)
			l = n - i;
		memcpy(v + i, w, l);
		i += l;
	}
	v[n] = '\0';
	return v;
}

static uint8_t *random_value(size_t n, uint64_t seed)
{
	uint8_t *v = malloc(n);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		v[i] = (uint8_t)(seed >> 56);
	}
	return v;
}

/* A strong ETag of this build: quoted, 16 lowercase hex digits (content
 * hash, then the write's stamp), then `suffix` ("", "-br" or "-gz"). */
static bool etag_ok(const char *t, const char *suffix)
{
	size_t n = strlen(t), sl = strlen(suffix);

	if (n != 18 + sl || t[0] != '"' || t[n - 1] != '"' || memcmp(t + 17, suffix, sl) != 0)
		return false;
	for (size_t i = 1; i < 17; i++)
		if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
			return false;
	return true;
}

static void test_put_get_delete(void)
{
	struct resp rs, g;
	const char *val = "hello, ringcache";

	CHECK_EQ(put("k1", val, strlen(val), NULL, &rs), 201);
	CHECK(hdr_is(&rs, "Content-Length", "0"));
	char etag[64];
	hdr_copy(&rs, "ETag", etag, sizeof(etag));
	CHECK(etag_ok(etag, ""));
	resp_free(&rs);

	struct treq r = mkreq(CACHE_GET, "k1");
	CHECK_EQ(run(&r, &g), CACHE_HIT);
	CHECK_EQ(g.status, 200);
	CHECK(strncmp(g.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
	CHECK(hdr_is(&g, "X-Cache", "HIT"));
	CHECK(hdr_is(&g, "Content-Type", "application/octet-stream"));
	CHECK(hdr_is(&g, "ETag", etag));
	CHECK(!has_hdr(&g, "Vary"));
	CHECK(!has_hdr(&g, "Content-Encoding"));
	CHECK(!has_hdr(&g, "Cache-Control"));
	CHECK(!has_hdr(&g, "Connection"));
	CHECK_EQ(g.body_len, strlen(val));
	CHECK(memcmp(g.body, val, strlen(val)) == 0);

	/* A small value with the default type adds nothing to the blob. */
	struct store_item it;
	CHECK_EQ(store_get(st, "k1", 2, r.c.hash, &it), 0);
	CHECK_EQ(it.value_len, strlen(val));

	/* HEAD: byte-identical headers, no body. */
	struct resp h;
	r.c.op = CACHE_HEAD;
	CHECK_EQ(run(&r, &h), CACHE_HIT);
	CHECK_EQ(h.head_len, g.head_len);
	CHECK(strcmp(h.head, g.head) == 0);
	CHECK_EQ(h.total, h.head_len + 2);
	resp_free(&h);
	resp_free(&g);

	/* Replacing: 204 without Content-Length, new ETag. */
	CHECK_EQ(put("k1", "other", 5, NULL, &rs), 204);
	CHECK(!has_hdr(&rs, "Content-Length"));
	char etag2[64];
	hdr_copy(&rs, "ETag", etag2, sizeof(etag2));
	CHECK(strcmp(etag, etag2) != 0);
	resp_free(&rs);

	r = mkreq(CACHE_DELETE, "k1");
	CHECK_EQ(run(&r, &rs), CACHE_DELETED);
	CHECK_EQ(rs.status, 204);
	CHECK(!has_hdr(&rs, "Content-Length"));
	resp_free(&rs);
	CHECK_EQ(run(&r, &rs), CACHE_ABSENT);
	CHECK_EQ(rs.status, 404);
	CHECK(hdr_is(&rs, "Content-Length", "0"));
	resp_free(&rs);

	r = mkreq(CACHE_GET, "k1");
	CHECK_EQ(run(&r, &rs), CACHE_MISS);
	CHECK_EQ(rs.status, 404);
	CHECK(hdr_is(&rs, "X-Cache", "MISS"));
	CHECK(hdr_is(&rs, "Content-Length", "0"));
	resp_free(&rs);
	r.c.op = CACHE_HEAD;
	CHECK_EQ(run(&r, &rs), CACHE_MISS);
	CHECK_EQ(rs.status, 404);
	resp_free(&rs);

	/* Empty value. */
	CHECK_EQ(put("empty", "", 0, NULL, NULL), 201);
	CHECK_EQ(get_ae("empty", NULL, &rs), 200);
	CHECK(hdr_is(&rs, "Content-Length", "0"));
	CHECK_EQ(rs.body_len, 0);
	resp_free(&rs);
}

static void test_connection(void)
{
	struct resp rs;
	put("conn", "v", 1, NULL, NULL);

	struct treq r = mkreq(CACHE_GET, "conn");
	r.keep_alive = false;
	run(&r, &rs);
	CHECK(hdr_is(&rs, "Connection", "close"));
	resp_free(&rs);

	r.minor = 0;
	r.keep_alive = true;
	run(&r, &rs);
	CHECK(strncmp(rs.head, "HTTP/1.1 200 OK", 15) == 0);
	CHECK(hdr_is(&rs, "Connection", "keep-alive"));
	resp_free(&rs);

	r.keep_alive = false;
	run(&r, &rs);
	CHECK(hdr_is(&rs, "Connection", "close"));
	resp_free(&rs);

	/* Misses and writes carry it too. */
	r = mkreq(CACHE_GET, "no-such-key");
	r.keep_alive = false;
	run(&r, &rs);
	CHECK_EQ(rs.status, 404);
	CHECK(hdr_is(&rs, "Connection", "close"));
	resp_free(&rs);
	r = mkreq(CACHE_PUT, "conn");
	r.minor = 0;
	run(&r, &rs);
	CHECK_EQ(rs.status, 204);
	CHECK(hdr_is(&rs, "Connection", "keep-alive"));
	resp_free(&rs);
}

static void test_content_type(void)
{
	struct resp rs;
	struct store_item it;

	CHECK_EQ(put("json", "{\"a\":1}", 7, "application/json", NULL), 201);
	CHECK_EQ(get_ae("json", NULL, &rs), 200);
	CHECK(hdr_is(&rs, "Content-Type", "application/json"));
	resp_free(&rs);
	/* Well-known type: still no header in the blob. */
	CHECK_EQ(store_get(st, "json", 4, hash_key("json", 4), &it), 0);
	CHECK_EQ(it.value_len, 7);

	const char *ct = "application/vnd.example+json; profile=\"x\"";
	CHECK_EQ(put("custom", "xyz", 3, ct, NULL), 201);
	CHECK_EQ(get_ae("custom", "gzip", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Type", ct));
	CHECK_EQ(rs.body_len, 3);
	CHECK(memcmp(rs.body, "xyz", 3) == 0);
	resp_free(&rs);

	/* Surrounding whitespace is not part of the type. */
	CHECK_EQ(put("ws", "x", 1, "  text/plain \t", NULL), 201);
	CHECK_EQ(get_ae("ws", NULL, &rs), 200);
	CHECK(hdr_is(&rs, "Content-Type", "text/plain"));
	resp_free(&rs);

	/* The same bytes under another type are another representation. */
	char e1[64], e2[64];
	put("t1", "same", 4, "text/plain", &rs);
	hdr_copy(&rs, "ETag", e1, sizeof(e1));
	resp_free(&rs);
	put("t2", "same", 4, "text/html", &rs);
	hdr_copy(&rs, "ETag", e2, sizeof(e2));
	resp_free(&rs);
	CHECK(strcmp(e1, e2) != 0);

	struct treq r = mkreq(CACHE_PUT, "bad");
	r.c.content_type = hs("text/plain\x01");
	CHECK_EQ(run(&r, &rs), CACHE_FAILED);
	CHECK_EQ(rs.status, 400);
	resp_free(&rs);
	char longct[300];
	memset(longct, 'a', sizeof(longct) - 1);
	longct[sizeof(longct) - 1] = '\0';
	r.c.content_type = hs(longct);
	run(&r, &rs);
	CHECK_EQ(rs.status, 400);
	resp_free(&rs);
}

static bool br_equals(const struct resp *rs, const void *val, size_t n)
{
	size_t out_len = n;
	uint8_t *out = malloc(n + 1);
	bool ok = BrotliDecoderDecompress(rs->body_len, (const uint8_t *)rs->body, &out_len,
					  out) == BROTLI_DECODER_RESULT_SUCCESS &&
		  out_len == n && memcmp(out, val, n) == 0;
	free(out);
	return ok;
}

static bool gzip_equals(const struct resp *rs, const void *val, size_t n)
{
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	uint8_t *out = malloc(n + 1);
	size_t out_len = 0;
	bool ok = libdeflate_gzip_decompress(d, rs->body, rs->body_len, out, n + 1, &out_len) ==
			  LIBDEFLATE_SUCCESS &&
		  out_len == n && memcmp(out, val, n) == 0;
	free(out);
	libdeflate_free_decompressor(d);
	return ok;
}

static void test_variants(void)
{
	struct resp rs;
	size_t n = 10000;
	char *val = text_value(n);
	char e_id[64], e_br[64], e_gz[64];

	CHECK_EQ(put("text", val, n, "application/json", NULL), 201);

	/* No Accept-Encoding: identity, but Vary because variants exist. */
	CHECK_EQ(get_ae("text", NULL, &rs), 200);
	CHECK(!has_hdr(&rs, "Content-Encoding"));
	CHECK(hdr_is(&rs, "Vary", "Accept-Encoding"));
	CHECK(hdr_is(&rs, "Content-Type", "application/json"));
	CHECK_EQ(rs.body_len, n);
	CHECK(memcmp(rs.body, val, n) == 0);
	hdr_copy(&rs, "ETag", e_id, sizeof(e_id));
	resp_free(&rs);

	CHECK_EQ(get_ae("text", "br", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Encoding", "br"));
	CHECK(hdr_is(&rs, "Vary", "Accept-Encoding"));
	CHECK(hdr_is(&rs, "Content-Type", "application/json"));
	CHECK(rs.body_len * 10 <= n * 9);
	CHECK(br_equals(&rs, val, n));
	hdr_copy(&rs, "ETag", e_br, sizeof(e_br));
	resp_free(&rs);

	CHECK_EQ(get_ae("text", "gzip", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Encoding", "gzip"));
	CHECK(hdr_is(&rs, "Vary", "Accept-Encoding"));
	CHECK(gzip_equals(&rs, val, n));
	hdr_copy(&rs, "ETag", e_gz, sizeof(e_gz));
	resp_free(&rs);

	CHECK(strcmp(e_id, e_br) != 0 && strcmp(e_id, e_gz) != 0 && strcmp(e_br, e_gz) != 0);
	CHECK(etag_ok(e_id, "") && etag_ok(e_br, "-br") && etag_ok(e_gz, "-gz"));
	/* One write, one stamp: the last 8 digits are the same in all three. */
	CHECK(memcmp(e_id + 9, e_br + 9, 8) == 0 && memcmp(e_id + 9, e_gz + 9, 8) == 0);

	/* HEAD of the br representation: same headers, no body. */
	struct treq r = mkreq(CACHE_HEAD, "text");
	r.c.accept_encoding = hs("br");
	struct resp h, g;
	run(&r, &h);
	r.c.op = CACHE_GET;
	run(&r, &g);
	CHECK(strcmp(h.head, g.head) == 0);
	CHECK_EQ(h.body_len, 0);
	resp_free(&h);
	resp_free(&g);

	struct {
		const char *ae;
		const char *want;       /* Content-Encoding, "" identity, NULL 406 */
	} cases[] = {
		{ "gzip, deflate, br", "br" },
		{ "br;q=0.5, gzip", "gzip" },
		{ "br;q=0.5, gzip;q=0.5", "br" },
		{ "gzip;q=0.8, identity", "" },
		{ "identity;q=0.5, gzip;q=0.5, br;q=0.4", "gzip" },
		{ "BR", "br" },
		{ "x-gzip", "gzip" },
		{ "br;q=0, gzip;q=0", "" },
		{ "*", "br" },
		{ "*;q=0.5, gzip", "gzip" },
		{ "deflate", "" },
		{ "identity;q=0", NULL },
		{ "*;q=0", NULL },
		{ "*;q=0, identity", "" },
		{ "identity;q=0, gzip;q=0.1", "gzip" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int status = get_ae("text", cases[i].ae, &rs);
		if (!cases[i].want) {
			CHECK_EQ(status, 406);
			CHECK(hdr_is(&rs, "Vary", "Accept-Encoding"));
		} else if (!*cases[i].want) {
			CHECK_EQ(status, 200);
			CHECK(!has_hdr(&rs, "Content-Encoding"));
			CHECK(rs.body_len == n && memcmp(rs.body, val, n) == 0);
		} else {
			CHECK_EQ(status, 200);
			CHECK(hdr_is(&rs, "Content-Encoding", cases[i].want));
		}
		if (cases[i].want && !hdr_is(&rs, "Content-Encoding", cases[i].want) &&
		    *cases[i].want)
			fprintf(stderr, "  Accept-Encoding: %s\n", cases[i].ae);
		resp_free(&rs);
	}

	/* Same length, another meaning: the executor's memory of the last
	 * Accept-Encoding must not answer for a different value. */
	CHECK_EQ(get_ae("text", "x-gzip", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Encoding", "gzip"));
	resp_free(&rs);
	CHECK_EQ(get_ae("text", "br;q=0", &rs), 200);
	CHECK(!has_hdr(&rs, "Content-Encoding"));
	resp_free(&rs);
	CHECK_EQ(get_ae("text", "br;q=0", &rs), 200);
	CHECK(!has_hdr(&rs, "Content-Encoding"));
	resp_free(&rs);
	char longae[200];
	memset(longae, ' ', sizeof(longae));
	memcpy(longae + sizeof(longae) - 5, ",gzip", 5);
	struct treq lr = mkreq(CACHE_GET, "text");
	lr.c.accept_encoding = (struct http_str){ longae, sizeof(longae) };
	run(&lr, &rs);
	CHECK(hdr_is(&rs, "Content-Encoding", "gzip"));
	resp_free(&rs);
	run(&lr, &rs);
	CHECK(hdr_is(&rs, "Content-Encoding", "gzip"));
	resp_free(&rs);

	/* A plain value under "identity;q=0" has nothing to offer either. */
	put("plain", "p", 1, NULL, NULL);
	CHECK_EQ(get_ae("plain", "identity;q=0", &rs), 406);
	CHECK(!has_hdr(&rs, "Vary"));
	resp_free(&rs);
	CHECK_EQ(get_ae("plain", "br, gzip", &rs), 200);
	CHECK(!has_hdr(&rs, "Content-Encoding"));
	resp_free(&rs);

	/* Below --compress-min: no variants. */
	CHECK_EQ(put("short", val, 255, NULL, NULL), 201);
	CHECK_EQ(get_ae("short", "br", &rs), 200);
	CHECK(!has_hdr(&rs, "Content-Encoding") && !has_hdr(&rs, "Vary"));
	resp_free(&rs);
	CHECK_EQ(put("short", val, 256, NULL, NULL), 204);
	CHECK_EQ(get_ae("short", "br", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Encoding", "br"));
	CHECK(br_equals(&rs, val, 256));
	resp_free(&rs);

	/* Already-compressed types are stored raw; SVG is text. */
	CHECK_EQ(put("png", val, n, "image/png", NULL), 201);
	CHECK_EQ(get_ae("png", "br, gzip", &rs), 200);
	CHECK(!has_hdr(&rs, "Content-Encoding") && !has_hdr(&rs, "Vary"));
	resp_free(&rs);
	CHECK_EQ(put("zip", val, n, "Application/Zip", NULL), 201);
	CHECK_EQ(get_ae("zip", "gzip", &rs), 200);
	CHECK(!has_hdr(&rs, "Content-Encoding"));
	resp_free(&rs);
	CHECK_EQ(put("svg", val, n, "image/svg+xml", NULL), 201);
	CHECK_EQ(get_ae("svg", "gzip", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Encoding", "gzip"));
	CHECK(gzip_equals(&rs, val, n));
	resp_free(&rs);

	/* Incompressible bytes: no variant saves 10%. */
	uint8_t *rnd = random_value(4096, 7);
	CHECK_EQ(put("random", rnd, 4096, NULL, NULL), 201);
	CHECK_EQ(get_ae("random", "br, gzip", &rs), 200);
	CHECK(!has_hdr(&rs, "Content-Encoding") && !has_hdr(&rs, "Vary"));
	CHECK(rs.body_len == 4096 && memcmp(rs.body, rnd, 4096) == 0);
	resp_free(&rs);
	free(rnd);
	free(val);
}

static void test_conditional(void)
{
	struct resp rs;
	size_t n = 5000;
	char *val = text_value(n);
	char e_id[64], e_br[64], inm[256];

	put("cond", val, n, NULL, NULL);
	get_ae("cond", NULL, &rs);
	hdr_copy(&rs, "ETag", e_id, sizeof(e_id));
	resp_free(&rs);
	get_ae("cond", "br", &rs);
	hdr_copy(&rs, "ETag", e_br, sizeof(e_br));
	size_t br_len = rs.body_len;
	resp_free(&rs);

	struct treq r = mkreq(CACHE_GET, "cond");
	r.c.if_none_match = hs(e_id);
	CHECK_EQ(run(&r, &rs), CACHE_NOT_MODIFIED);
	CHECK_EQ(rs.status, 304);
	CHECK(hdr_is(&rs, "ETag", e_id));
	CHECK(hdr_is(&rs, "Vary", "Accept-Encoding"));
	CHECK(!has_hdr(&rs, "Content-Type"));
	CHECK(!has_hdr(&rs, "Content-Encoding"));
	char len[32];
	snprintf(len, sizeof(len), "%zu", n);
	CHECK(hdr_is(&rs, "Content-Length", len));
	CHECK_EQ(rs.total, rs.head_len + 2);
	resp_free(&rs);

	/* The br representation has its own tag. */
	r.c.accept_encoding = hs("br");
	CHECK_EQ(run(&r, &rs), CACHE_HIT);
	CHECK_EQ(rs.status, 200);
	resp_free(&rs);
	r.c.if_none_match = hs(e_br);
	CHECK_EQ(run(&r, &rs), CACHE_NOT_MODIFIED);
	CHECK(hdr_is(&rs, "ETag", e_br));
	snprintf(len, sizeof(len), "%zu", br_len);
	CHECK(hdr_is(&rs, "Content-Length", len));
	resp_free(&rs);

	/* Lists, weak prefixes, "*". */
	r.c.accept_encoding = hs(NULL);
	snprintf(inm, sizeof(inm), "\"nope\", W/%s , \"x,y\"", e_id);
	r.c.if_none_match = hs(inm);
	CHECK_EQ(run(&r, &rs), CACHE_NOT_MODIFIED);
	resp_free(&rs);
	snprintf(inm, sizeof(inm), "\"x,%s\"", e_id + 1);
	r.c.if_none_match = hs(inm);
	CHECK_EQ(run(&r, &rs), CACHE_HIT);
	resp_free(&rs);
	r.c.if_none_match = hs("*");
	CHECK_EQ(run(&r, &rs), CACHE_NOT_MODIFIED);
	resp_free(&rs);
	r.c.if_none_match = hs("\"00000000\"");
	CHECK_EQ(run(&r, &rs), CACHE_HIT);
	CHECK_EQ(rs.body_len, n);
	resp_free(&rs);

	/* HEAD with a match is a 304 too; "*" on a miss is a miss. */
	r.c.op = CACHE_HEAD;
	r.c.if_none_match = hs(e_id);
	CHECK_EQ(run(&r, &rs), CACHE_NOT_MODIFIED);
	resp_free(&rs);
	r = mkreq(CACHE_GET, "absent");
	r.c.if_none_match = hs("*");
	CHECK_EQ(run(&r, &rs), CACHE_MISS);
	resp_free(&rs);

	/* A value without variants: 304 without Vary. */
	put("cond-plain", "abc", 3, NULL, &rs);
	hdr_copy(&rs, "ETag", e_id, sizeof(e_id));
	resp_free(&rs);
	r = mkreq(CACHE_GET, "cond-plain");
	r.c.if_none_match = hs(e_id);
	CHECK_EQ(run(&r, &rs), CACHE_NOT_MODIFIED);
	CHECK(!has_hdr(&rs, "Vary"));
	resp_free(&rs);
	free(val);
}

/* The ETag of a GET of key with Accept-Encoding ae (NULL: none). */
static void get_etag(const char *key, const char *ae, char *out, size_t cap)
{
	struct resp rs;

	get_ae(key, ae, &rs);
	hdr_copy(&rs, "ETag", out, cap);
	resp_free(&rs);
}

/* GET key with If-None-Match: inm and Accept-Encoding ae; the status. */
static int revalidate(const char *key, const char *ae, const char *inm)
{
	struct treq r = mkreq(CACHE_GET, key);
	struct resp rs;

	r.c.accept_encoding = hs(ae);
	r.c.if_none_match = hs(inm);
	run(&r, &rs);
	resp_free(&rs);
	return rs.status;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * Issue 11, defect 10: with a 32-bit content hash as the whole ETag, a value
 * replaced by other bytes of the same hash kept its ETag, and a client
 * revalidating with the old one got a false 304.  Two 8-byte values of the
 * same content hash are found by a birthday search (300K candidates give
 * about ten pairs) and written in turn under one key: the second must get
 * another ETag, and the first one's tag must get a 200 with the new bytes.
 */
static void test_etag_collision(void)
{
	enum { N = 300000 };
	uint64_t *h = malloc(N * sizeof(*h)), va = 0, vb = 0;
	struct repr_blob b;
	char e1[64], e2[64];
	struct resp rs;
	bool found = false;

	for (uint64_t i = 0; i < N; i++) {
		repr_build(&b, &i, sizeof(i), NULL, 0, NULL, 0, NULL, 0, 0);
		h[i] = (uint64_t)b.etag << 32 | i;
	}
	qsort(h, N, sizeof(*h), cmp_u64);
	for (size_t i = 1; i < N && !found; i++) {
		if (h[i] >> 32 == h[i - 1] >> 32) {
			va = (uint32_t)h[i - 1];
			vb = (uint32_t)h[i];
			found = true;
		}
	}
	free(h);
	CHECK(found);
	if (!found)
		return;
	struct repr_blob ba, bb;
	repr_build(&ba, &va, sizeof(va), NULL, 0, NULL, 0, NULL, 0, 0);
	repr_build(&bb, &vb, sizeof(vb), NULL, 0, NULL, 0, NULL, 0, 0);
	CHECK(va != vb && ba.etag == bb.etag);

	CHECK_EQ(put("collide", &va, sizeof(va), NULL, &rs) / 100, 2);
	hdr_copy(&rs, "ETag", e1, sizeof(e1));
	resp_free(&rs);
	CHECK_EQ(revalidate("collide", NULL, e1), 304);
	CHECK_EQ(put("collide", &vb, sizeof(vb), NULL, &rs), 204);
	hdr_copy(&rs, "ETag", e2, sizeof(e2));
	resp_free(&rs);
	CHECK(etag_ok(e1, "") && etag_ok(e2, ""));
	CHECK(strcmp(e1, e2) != 0);
	/* the same content hash, in the first half */
	CHECK(memcmp(e1, e2, 9) == 0);
	CHECK_EQ(revalidate("collide", NULL, e1), 200);
	CHECK_EQ(get_ae("collide", NULL, &rs), 200);
	CHECK(rs.body_len == sizeof(vb) && memcmp(rs.body, &vb, sizeof(vb)) == 0);
	resp_free(&rs);
	CHECK_EQ(revalidate("collide", NULL, e2), 304);
}

/*
 * Every write is a new version: the same bytes written again get new ETags,
 * for the identity and for the br and gzip variants (their content hashes
 * live in the blob and had the same 32-bit problem), so a tag of an earlier
 * write never matches a later one.  A client holding the old tag gets one
 * 200 it could have been spared; it can never get a 304 for bytes it does
 * not have.
 */
static void test_etag_per_write(void)
{
	size_t n = 4000;
	char *val = text_value(n);
	char id1[64], br1[64], gz1[64], id2[64], br2[64], gz2[64], put2[64];
	struct resp rs;

	put("rewrite", val, n, "application/json", NULL);
	get_etag("rewrite", NULL, id1, sizeof(id1));
	get_etag("rewrite", "br", br1, sizeof(br1));
	get_etag("rewrite", "gzip", gz1, sizeof(gz1));
	CHECK(etag_ok(id1, "") && etag_ok(br1, "-br") && etag_ok(gz1, "-gz"));

	put("rewrite", val, n, "application/json", &rs);
	hdr_copy(&rs, "ETag", put2, sizeof(put2));
	resp_free(&rs);
	get_etag("rewrite", NULL, id2, sizeof(id2));
	get_etag("rewrite", "br", br2, sizeof(br2));
	get_etag("rewrite", "gzip", gz2, sizeof(gz2));
	CHECK(strcmp(put2, id2) == 0);
	CHECK(strcmp(id1, id2) != 0 && strcmp(br1, br2) != 0 && strcmp(gz1, gz2) != 0);
	/* same bytes: same content hashes, other stamps */
	CHECK(memcmp(id1, id2, 9) == 0 && memcmp(br1, br2, 9) == 0 && memcmp(gz1, gz2, 9) == 0);

	CHECK_EQ(revalidate("rewrite", NULL, id1), 200);
	CHECK_EQ(revalidate("rewrite", "br", br1), 200);
	CHECK_EQ(revalidate("rewrite", "gzip", gz1), 200);
	CHECK_EQ(revalidate("rewrite", NULL, id2), 304);
	CHECK_EQ(revalidate("rewrite", "br", br2), 304);
	CHECK_EQ(revalidate("rewrite", "gzip", gz2), 304);

	/* Deleted and written again: new tags too. */
	struct treq d = mkreq(CACHE_DELETE, "rewrite");
	CHECK_EQ(run(&d, &rs), CACHE_DELETED);
	resp_free(&rs);
	put("rewrite", val, n, "application/json", NULL);
	CHECK_EQ(revalidate("rewrite", "br", br2), 200);
	CHECK_EQ(revalidate("rewrite", NULL, id2), 200);
	free(val);
}

static void tick(uint32_t t)
{
	now = t;
	cache_tick(cache, now);
}

static void test_ttl(void)
{
	struct resp rs;
	struct treq r = mkreq(CACHE_PUT, "ttl");
	r.c.body = (const uint8_t *)"v";
	r.c.body_len = 1;
	r.c.ttl = 100;
	r.c.cache_control = hs("max-age=5");
	CHECK_EQ(run(&r, &rs), CACHE_STORED);
	resp_free(&rs);

	CHECK_EQ(get_ae("ttl", NULL, &rs), 200);
	CHECK(hdr_is(&rs, "Cache-Control", "max-age=100"));
	resp_free(&rs);
	tick(now + 30);
	CHECK_EQ(get_ae("ttl", NULL, &rs), 200);
	CHECK(hdr_is(&rs, "Cache-Control", "max-age=70"));
	resp_free(&rs);
	tick(now + 71);
	CHECK_EQ(get_ae("ttl", NULL, &rs), 404);
	resp_free(&rs);

	/* Cache-Control: max-age when ?ttl= is absent. */
	r.c.ttl = -1;
	r.c.cache_control = hs("public, max-age=\"50\"");
	run(&r, &rs);
	resp_free(&rs);
	CHECK_EQ(get_ae("ttl", NULL, &rs), 200);
	CHECK(hdr_is(&rs, "Cache-Control", "max-age=50"));
	resp_free(&rs);

	/* ?ttl=0: no expiry, no Cache-Control. */
	r.c.ttl = 0;
	run(&r, &rs);
	resp_free(&rs);
	CHECK_EQ(get_ae("ttl", NULL, &rs), 200);
	CHECK(!has_hdr(&rs, "Cache-Control"));
	resp_free(&rs);

	/* A TTL of N lives at least N whole seconds of the store clock (the
	 * write may land late in its second) and is gone one second later. */
	r.c.ttl = 5;
	r.c.cache_control = hs(NULL);
	run(&r, &rs);
	resp_free(&rs);
	uint32_t written = now;
	tick(written + 5);
	CHECK_EQ(get_ae("ttl", NULL, &rs), 200);
	CHECK(hdr_is(&rs, "Cache-Control", "max-age=0"));
	resp_free(&rs);
	tick(written + 6);
	CHECK_EQ(get_ae("ttl", NULL, &rs), 404);
	resp_free(&rs);

	/* 304 keeps Cache-Control. */
	r.c.ttl = 10;
	r.c.cache_control = hs(NULL);
	run(&r, &rs);
	char etag[64];
	hdr_copy(&rs, "ETag", etag, sizeof(etag));
	resp_free(&rs);
	struct treq g = mkreq(CACHE_GET, "ttl");
	g.c.if_none_match = hs(etag);
	CHECK_EQ(run(&g, &rs), CACHE_NOT_MODIFIED);
	CHECK(hdr_is(&rs, "Cache-Control", "max-age=10"));
	resp_free(&rs);
}

/* A cache of its own on a store of its own (`memory` bytes, blobs up to
 * `store_max`), its clock at 500, for the tests that need other settings. */
static struct cache *other_cache(struct store **st2, size_t memory, size_t store_max,
				 const struct cache_config *cc)
{
	struct store_config sc = { .memory = memory, .max_value = store_max,
				   .hugepages = STORE_HUGEPAGES_OFF, .numa_node = -1 };
	struct cache *c2 = NULL;

	CHECK_EQ(store_create(st2, &sc), 0);
	CHECK_EQ(cache_create(&c2, *st2, cc), 0);
	cache_tick(c2, 500);
	return c2;
}

static void test_default_ttl(void)
{
	struct store *st2;
	struct cache *c2;
	struct cache_config cc = { .compress_min = 256, .default_ttl = 60, .max_value = MAX_VALUE,
				   .zip = zp, .lane = 1 };
	c2 = other_cache(&st2, 16u << 20, cache_blob_max(MAX_VALUE), &cc);

	struct treq r = mkreq(CACHE_PUT, "d");
	struct buf out = { 0 };
	enum cache_outcome oc;
	CHECK_EQ(exec_render(c2, &r, &out, &oc), 0);
	out.len = 0;
	r.c.op = CACHE_GET;
	CHECK_EQ(exec_render(c2, &r, &out, &oc), 0);
	CHECK_EQ(oc, CACHE_HIT);
	CHECK(memmem(out.data, out.len, "\r\nCache-Control: max-age=60\r\n", 29) != NULL);
	buf_deinit(&out);
	cache_destroy(c2);
	store_destroy(st2);
}

/* --compress-max: a compressible value above it is stored raw, so a huge
 * write does not hold its shard while brotli runs. */
static void test_compress_max(void)
{
	struct store *st2;
	struct cache *c2;
	struct cache_config cc = { .compress_min = 256, .compress_max = 4096,
				   .max_value = MAX_VALUE, .zip = zp, .lane = 2 };
	c2 = other_cache(&st2, 16u << 20, cache_blob_max(MAX_VALUE), &cc);

	const char *names[2] = { "small", "large" };
	size_t sizes[2] = { 4096, 4097 };
	for (int i = 0; i < 2; i++) {
		char *val = text_value(sizes[i]);
		struct treq r = mkreq(CACHE_PUT, names[i]);
		struct buf out = { 0 };
		enum cache_outcome oc;
		r.c.body = (const uint8_t *)val;
		r.c.body_len = (uint32_t)sizes[i];
		CHECK_EQ(exec_render(c2, &r, &out, &oc), 0);
		CHECK_EQ(oc, CACHE_STORED);
		settle_cache(c2);
		out.len = 0;
		r = mkreq(CACHE_GET, names[i]);
		r.c.accept_encoding.p = "gzip";
		r.c.accept_encoding.len = 4;
		CHECK_EQ(exec_render(c2, &r, &out, &oc), 0);
		CHECK_EQ(oc, CACHE_HIT);
		bool gz = memmem(out.data, out.len, "Content-Encoding: gzip", 22) != NULL;
		CHECK_EQ(gz, i == 0);
		buf_deinit(&out);
		free(val);
	}
	cache_destroy(c2);
	store_destroy(st2);
}

static void test_limits(void)
{
	struct resp rs;
	size_t n = MAX_VALUE + 1;
	uint8_t *big = calloc(1, n);

	struct treq r = mkreq(CACHE_PUT, "big");
	r.c.body = big;
	r.c.body_len = (uint32_t)n;
	CHECK_EQ(run(&r, &rs), CACHE_FAILED);
	CHECK_EQ(rs.status, 413);
	resp_free(&rs);
	r.c.body_len = MAX_VALUE;
	CHECK_EQ(run(&r, &rs), CACHE_STORED);
	CHECK_EQ(rs.status, 201);
	resp_free(&rs);
	settle();
	CHECK_EQ(get_ae("big", "gzip", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Encoding", "gzip"));
	CHECK(gzip_equals(&rs, big, MAX_VALUE));
	resp_free(&rs);
	free(big);
}

/* A store whose largest blob fits the value but not its variants: the
 * store refuses the variants, and the value stays, raw (a failed store_set()
 * drops the key, so the install must put the value back). */
static void test_variants_dropped_when_too_big(void)
{
	struct store *st2;
	struct cache *c2;
	struct zstats z2 = { 0 };
	size_t n = 20000;
	char *val = text_value(n);
	struct cache_config cc = { .compress_min = 256, .max_value = n, .zip = zp, .lane = 3,
				   .counters = counters_of(&z2) };
	c2 = other_cache(&st2, 16u << 20, n + 64, &cc);

	struct treq r = mkreq(CACHE_PUT, "d");
	r.c.body = (const uint8_t *)val;
	r.c.body_len = (uint32_t)n;
	struct buf out = { 0 };
	enum cache_outcome oc;
	struct resp rs;
	CHECK_EQ(exec_render(c2, &r, &out, &oc), 0);
	CHECK_EQ(oc, CACHE_STORED);
	settle_cache(c2);
	CHECK_EQ(zget(&z2.zip_queued), 1);
	CHECK_EQ(zget(&z2.zip_refused), 1);
	CHECK_EQ(zget(&z2.zip_installed), 0);
	CHECK_EQ(zget(&z2.zip_pending), 0);
	out.len = 0;
	r.c.op = CACHE_GET;
	r.c.accept_encoding = hs("br");
	CHECK_EQ(exec_render(c2, &r, &out, &oc), 0);
	CHECK_EQ(oc, CACHE_HIT);
	CHECK_EQ(parse_resp(out.data, out.len, false, &rs), 0);
	CHECK(!has_hdr(&rs, "Content-Encoding"));
	CHECK(rs.body_len == n && memcmp(rs.body, val, n) == 0);
	resp_free(&rs);
	buf_deinit(&out);
	cache_destroy(c2);
	store_destroy(st2);
	free(val);
}

/* The ETag a PUT answered, into out. */
static void put_etag(const char *key, const void *val, size_t len, const char *ct,
		     int64_t ttl, char *out, size_t cap)
{
	struct treq r = mkreq(CACHE_PUT, key);
	struct resp rs;

	r.c.body = val;
	r.c.body_len = (uint32_t)len;
	r.c.content_type = hs(ct);
	r.c.ttl = ttl;
	CHECK_EQ(run(&r, &rs), CACHE_STORED);
	hdr_copy(&rs, "ETag", out, cap);
	resp_free(&rs);
}

static void del(const char *key)
{
	struct treq r = mkreq(CACHE_DELETE, key);
	struct resp rs;

	CHECK_EQ(run(&r, &rs), CACHE_DELETED);
	resp_free(&rs);
}

/*
 * Issue 8: a PUT is stored and answered before its variants exist.  Until
 * the shard installs them (cache_zip_poll(), which this test has not called
 * yet, so whatever the workers did meanwhile cannot show) a GET gets the
 * identity with the ETag the PUT answered; after, br and gzip, and the
 * identity keeps that ETag (its holder still gets a 304).
 */
static void test_async_variants(void)
{
	size_t n = 8000;
	char *val = text_value(n);
	char e_put[64], e[64];
	struct resp rs;
	uint64_t q0 = zget(&zs.zip_queued), in0 = zget(&zs.zip_installed);

	put_etag("async", val, n, "application/json", -1, e_put, sizeof(e_put));
	CHECK(etag_ok(e_put, ""));
	CHECK_EQ(zget(&zs.zip_queued), q0 + 1);
	CHECK_EQ(zget(&zs.zip_pending), 1);
	CHECK_EQ(cache_zip_pending(cache), 1);
	CHECK_EQ(get_ae("async", "br, gzip", &rs), 200);
	CHECK(!has_hdr(&rs, "Content-Encoding") && !has_hdr(&rs, "Vary"));
	CHECK(hdr_is(&rs, "ETag", e_put));
	CHECK(hdr_is(&rs, "Content-Type", "application/json"));
	CHECK(rs.body_len == n && memcmp(rs.body, val, n) == 0);
	resp_free(&rs);
	CHECK_EQ(revalidate("async", "br", e_put), 304);

	settle();
	CHECK_EQ(zget(&zs.zip_installed), in0 + 1);
	CHECK_EQ(zget(&zs.zip_pending), 0);
	CHECK_EQ(get_ae("async", "br", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Encoding", "br"));
	CHECK(hdr_is(&rs, "Vary", "Accept-Encoding"));
	CHECK(hdr_is(&rs, "Content-Type", "application/json"));
	CHECK(br_equals(&rs, val, n));
	hdr_copy(&rs, "ETag", e, sizeof(e));
	resp_free(&rs);
	/* the variants carry the stamp of the write they were made from */
	CHECK(etag_ok(e, "-br") && memcmp(e + 9, e_put + 9, 8) == 0);
	CHECK_EQ(get_ae("async", "gzip", &rs), 200);
	CHECK(gzip_equals(&rs, val, n));
	resp_free(&rs);
	get_etag("async", NULL, e, sizeof(e));
	CHECK(strcmp(e, e_put) == 0);
	CHECK_EQ(revalidate("async", NULL, e_put), 304);
	free(val);
}

/*
 * The install rule: variants go into the item only if it is still the write
 * they were made from.  Overwritten (even with the same bytes), deleted,
 * expired or evicted first: they are discarded (zip_stale) and nothing
 * comes back to life; a later write gets its own.
 */
static void test_install_rule(void)
{
	size_t n = 6000, n2 = 6100;
	char *v1 = text_value(n), *v2 = text_value(n2);
	char e_a[64], e_b[64], e[64];
	struct resp rs;
	uint64_t stale = zget(&zs.zip_stale), inst = zget(&zs.zip_installed);

	/* overwritten by other bytes before the variants came back */
	put_etag("ow", v1, n, "text/plain", -1, e_a, sizeof(e_a));
	put_etag("ow", v2, n2, "text/plain", -1, e_b, sizeof(e_b));
	settle();
	CHECK_EQ(zget(&zs.zip_stale), stale + 1);
	CHECK_EQ(zget(&zs.zip_installed), inst + 1);
	CHECK_EQ(get_ae("ow", "br", &rs), 200);
	CHECK(br_equals(&rs, v2, n2));
	resp_free(&rs);
	CHECK_EQ(get_ae("ow", "gzip", &rs), 200);
	CHECK(gzip_equals(&rs, v2, n2));
	resp_free(&rs);
	get_etag("ow", NULL, e, sizeof(e));
	CHECK(strcmp(e, e_b) == 0);

	/* overwritten by the same bytes: another write, only its variants go in */
	put_etag("same", v1, n, NULL, -1, e_a, sizeof(e_a));
	put_etag("same", v1, n, NULL, -1, e_b, sizeof(e_b));
	CHECK(strcmp(e_a, e_b) != 0);
	settle();
	CHECK_EQ(zget(&zs.zip_stale), stale + 2);
	CHECK_EQ(zget(&zs.zip_installed), inst + 2);
	get_etag("same", "br", e, sizeof(e));
	CHECK(etag_ok(e, "-br") && memcmp(e + 9, e_b + 9, 8) == 0);
	CHECK_EQ(revalidate("same", NULL, e_a), 200);
	CHECK_EQ(revalidate("same", NULL, e_b), 304);

	/* deleted first: the key stays absent */
	put_etag("del", v1, n, NULL, -1, e, sizeof(e));
	del("del");
	settle();
	CHECK_EQ(zget(&zs.zip_stale), stale + 3);
	CHECK_EQ(get_ae("del", "br", &rs), 404);
	resp_free(&rs);

	/* deleted and written again with a value that gets no variants */
	put_etag("del2", v1, n, NULL, -1, e, sizeof(e));
	del("del2");
	put_etag("del2", "tiny", 4, NULL, -1, e, sizeof(e));
	settle();
	CHECK_EQ(zget(&zs.zip_stale), stale + 4);
	CHECK_EQ(get_ae("del2", "br, gzip", &rs), 200);
	CHECK(rs.body_len == 4 && memcmp(rs.body, "tiny", 4) == 0);
	CHECK(!has_hdr(&rs, "Vary") && hdr_is(&rs, "ETag", e));
	resp_free(&rs);

	/* expired first */
	put_etag("exp", v1, n, NULL, 5, e, sizeof(e));
	tick(now + 10);
	settle();
	CHECK_EQ(zget(&zs.zip_stale), stale + 5);
	CHECK_EQ(get_ae("exp", NULL, &rs), 404);
	resp_free(&rs);

	/* installed: the absolute expiry and a custom Content-Type are kept */
	const char *ct = "application/vnd.example+json";
	put_etag("keep", v1, n, ct, 100, e_a, sizeof(e_a));
	tick(now + 30);
	settle();
	CHECK_EQ(zget(&zs.zip_installed), inst + 3);
	CHECK_EQ(get_ae("keep", "br", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Encoding", "br"));
	CHECK(hdr_is(&rs, "Cache-Control", "max-age=70"));
	CHECK(hdr_is(&rs, "Content-Type", ct));
	CHECK(br_equals(&rs, v1, n));
	resp_free(&rs);
	get_etag("keep", NULL, e, sizeof(e));
	CHECK(strcmp(e, e_a) == 0);
	tick(now + 71);
	CHECK_EQ(get_ae("keep", "br", &rs), 404);
	resp_free(&rs);
	CHECK_EQ(zget(&zs.zip_pending), 0);
	free(v1);
	free(v2);
}

/* Evicted before the variants came back: they are discarded, the key is
 * not brought back. */
static void test_install_after_eviction(void)
{
	struct store *st2;
	struct cache *c2;
	struct zstats z2 = { 0 };
	struct cache_config cc = { .compress_min = 256, .max_value = 64 << 10, .zip = zp,
				   .lane = 4, .counters = counters_of(&z2) };
	size_t n = 8000;
	char *val = text_value(n);
	char small[200];
	struct buf out = { 0 };
	enum cache_outcome oc;

	memset(small, 'x', sizeof(small));
	c2 = other_cache(&st2, 4u << 20, cache_blob_max(64 << 10), &cc);
	struct treq r = mkreq(CACHE_PUT, "victim");
	r.c.body = (const uint8_t *)val;
	r.c.body_len = (uint32_t)n;
	CHECK_EQ(exec_render(c2, &r, &out, &oc), 0);
	CHECK_EQ(oc, CACHE_STORED);
	/* values below --compress-min queue nothing: fill until the victim goes */
	char key[32];
	unsigned i;
	for (i = 0; i < 200000 && store_contains(st2, "victim", 6, r.c.hash); i++) {
		snprintf(key, sizeof(key), "filler:%u", i);
		struct treq f = mkreq(CACHE_PUT, key);
		f.c.body = (const uint8_t *)small;
		f.c.body_len = sizeof(small);
		out.len = 0;
		CHECK_EQ(exec_render(c2, &f, &out, &oc), 0);
	}
	CHECK(!store_contains(st2, "victim", 6, r.c.hash));
	CHECK_EQ(zget(&z2.zip_queued), 1);
	settle_cache(c2);
	CHECK_EQ(zget(&z2.zip_stale), 1);
	CHECK_EQ(zget(&z2.zip_installed), 0);
	CHECK(!store_contains(st2, "victim", 6, r.c.hash));
	buf_deinit(&out);
	cache_destroy(c2);
	store_destroy(st2);
	free(val);
}

/*
 * Bounded work: with the workers not running, a shard can hand out at most
 * ZIP_QUEUE_JOBS values; the next ones are stored (and answered) without
 * variants and counted in zip_queue_full.  The newest RETRY_MAX (64) of
 * those are remembered and queued once there is room, if still the item:
 * here the 6 oldest are forgotten (no variants), one is overwritten and one
 * deleted meanwhile (their retries are dropped), the rest get variants.
 */
static void test_queue_full(void)
{
	struct zip *zq;
	struct zip_config zc = { .threads = 1, .shards = 1, .brotli_quality = 4, .gzip_level = 6,
				 .wake = on_done, .paused = true };
	struct store *st2;
	struct cache *c2;
	struct zstats z2 = { 0 };
	size_t n = 3000;
	char *val = text_value(n);
	struct buf out = { 0 };
	enum cache_outcome oc;
	struct resp rs;
	char key[32];
	const unsigned refused = 70, total = ZIP_QUEUE_JOBS + refused;
	const unsigned forgotten = refused - 64;

	CHECK_EQ(zip_create(&zq, &zc), 0);
	struct cache_config cc = { .compress_min = 256, .max_value = MAX_VALUE, .zip = zq,
				   .lane = 0, .counters = counters_of(&z2) };
	c2 = other_cache(&st2, 16u << 20, cache_blob_max(MAX_VALUE), &cc);
	for (unsigned i = 0; i < total; i++) {
		snprintf(key, sizeof(key), "q%u", i);
		struct treq r = mkreq(CACHE_PUT, key);
		r.c.body = (const uint8_t *)val;
		r.c.body_len = (uint32_t)n;
		if (i == 50)    /* a retry keeps a Content-Type of its own */
			r.c.content_type = hs("application/vnd.q+json");
		out.len = 0;
		CHECK_EQ(exec_render(c2, &r, &out, &oc), 0);
		CHECK_EQ(oc, CACHE_STORED);
		cache_zip_poll(c2);     /* publishes; nothing can come back */
	}
	CHECK_EQ(zget(&z2.zip_queued), ZIP_QUEUE_JOBS);
	CHECK_EQ(zget(&z2.zip_queue_full), refused);
	CHECK_EQ(zget(&z2.zip_retried), 0);
	CHECK_EQ(zget(&z2.zip_pending), ZIP_QUEUE_JOBS + 64);   /* 64 remembered */
	CHECK_EQ(cache_zip_pending(c2), ZIP_QUEUE_JOBS + 64);
	CHECK(!cache_zip_waiting(c2));

	/* the newest refused one overwritten (a value with no variants to
	 * make), the one before it deleted */
	struct treq w = mkreq(CACHE_PUT, "q85");
	w.c.body = (const uint8_t *)"tiny";
	w.c.body_len = 4;
	out.len = 0;
	CHECK_EQ(exec_render(c2, &w, &out, &oc), 0);
	w = mkreq(CACHE_DELETE, "q84");
	out.len = 0;
	CHECK_EQ(exec_render(c2, &w, &out, &oc), 0);
	CHECK_EQ(oc, CACHE_DELETED);

	CHECK_EQ(zip_start(zq), 0);
	settle_cache(c2);
	CHECK_EQ(zget(&z2.zip_retried), 64 - 2);
	CHECK_EQ(zget(&z2.zip_queued), ZIP_QUEUE_JOBS + 64 - 2);
	CHECK_EQ(zget(&z2.zip_installed), ZIP_QUEUE_JOBS + 64 - 2);
	CHECK_EQ(zget(&z2.zip_stale), 0);
	CHECK_EQ(zget(&z2.zip_pending), 0);
	for (unsigned i = 0; i < total; i++) {
		snprintf(key, sizeof(key), "q%u", i);
		struct treq r = mkreq(CACHE_GET, key);
		r.c.accept_encoding = hs("br");
		out.len = 0;
		CHECK_EQ(exec_render(c2, &r, &out, &oc), 0);
		CHECK_EQ(parse_resp(out.data, out.len, false, &rs), 0);
		if (i == total - 2) {
			CHECK_EQ(rs.status, 404);
		} else if (i == total - 1) {
			CHECK(rs.status == 200 && !has_hdr(&rs, "Vary") && rs.body_len == 4);
		} else if (i >= ZIP_QUEUE_JOBS && i < ZIP_QUEUE_JOBS + forgotten) {
			CHECK(rs.status == 200 && !has_hdr(&rs, "Vary") && rs.body_len == n &&
			      memcmp(rs.body, val, n) == 0);
		} else {
			CHECK(rs.status == 200 && hdr_is(&rs, "Content-Encoding", "br") &&
			      br_equals(&rs, val, n));
			CHECK(hdr_is(&rs, "Content-Type", i == 50 ? "application/vnd.q+json"
								  : "application/octet-stream"));
		}
		resp_free(&rs);
	}
	buf_deinit(&out);
	cache_destroy(c2);
	store_destroy(st2);
	zip_destroy(zq);
	free(val);
}

/* Random bytes: compressed for nothing, counted, stored without variants. */
static void test_unprofitable(void)
{
	uint64_t u0 = zget(&zs.zip_unprofitable);
	uint8_t *rnd = random_value(5000, 11);
	struct resp rs;

	put("noise", rnd, 5000, "application/json", NULL);
	CHECK_EQ(zget(&zs.zip_unprofitable), u0 + 1);
	CHECK_EQ(get_ae("noise", "br, gzip", &rs), 200);
	CHECK(!has_hdr(&rs, "Vary") && rs.body_len == 5000 && memcmp(rs.body, rnd, 5000) == 0);
	resp_free(&rs);
	free(rnd);
}

/* A value promoted from L2 is a reply whose cache says HIT_L2: the renderer
 * writes the header, nobody edits bytes (issue 11). */
static void test_x_cache_from_reply(void)
{
	struct treq r;
	struct reply rep;
	struct buf out = { 0 };
	struct http_answer_to to = { 1, true, false };
	struct resp rs;

	put("xc", "value", 5, "text/x-long-custom-type-name-for-this-test", NULL);
	r = mkreq(CACHE_GET, "xc");
	CHECK_EQ(cache_exec(cache, &r.c, &rep), CACHE_HIT);
	CHECK_EQ(rep.cache, REPLY_CACHE_HIT);
	rep.cache = REPLY_CACHE_HIT_L2;
	CHECK_EQ(http_render(&out, &rep, &to), 0);
	CHECK_EQ(parse_resp(out.data, out.len, false, &rs), 0);
	CHECK(hdr_is(&rs, "X-Cache", "HIT-L2"));
	CHECK(hdr_is(&rs, "Content-Type", "text/x-long-custom-type-name-for-this-test"));
	CHECK(strcmp(rs.body, "value") == 0);
	resp_free(&rs);
	buf_deinit(&out);
}

static void test_pipelined_appends(void)
{
	struct buf out = { 0 };
	enum cache_outcome oc;
	struct resp a, b;

	put("p1", "one", 3, NULL, NULL);
	struct treq r = mkreq(CACHE_GET, "p1");
	CHECK_EQ(exec_render(cache, &r, &out, &oc), 0);
	r = mkreq(CACHE_GET, "p-missing");
	CHECK_EQ(exec_render(cache, &r, &out, &oc), 0);
	CHECK_EQ(parse_resp(out.data, out.len, false, &a), 0);
	CHECK_EQ(parse_resp(out.data + a.total, out.len - a.total, false, &b), 0);
	CHECK_EQ(a.status, 200);
	CHECK(strcmp(a.body, "one") == 0);
	CHECK_EQ(b.status, 404);
	CHECK_EQ(a.total + b.total, out.len);
	resp_free(&a);
	resp_free(&b);
	buf_deinit(&out);
}


/* A PUT of "key" with ?ttl=, ?swr=, ?sie= (-1: absent) and Cache-Control. */
static enum cache_outcome put_windows(const char *key, const char *val, int64_t ttl, int64_t swr,
				      int64_t sie, const char *cc, struct resp *rs)
{
	struct treq r = mkreq(CACHE_PUT, key);
	r.c.body = (const uint8_t *)val;
	r.c.body_len = (uint32_t)strlen(val);
	r.c.ttl = ttl;
	r.c.swr = swr;
	r.c.sie = sie;
	r.c.cache_control = hs(cc);
	return run(&r, rs);
}

/* A GET (or HEAD) with a request Cache-Control (NULL: none). */
static enum cache_outcome get_cc(const char *key, uint8_t op, const char *cc, struct resp *rs)
{
	struct treq r = mkreq(op, key);
	r.c.cache_control = hs(cc);
	return run(&r, rs);
}

static void test_stale_while_revalidate(void)
{
	struct resp rs;

	tick(2000);
	CHECK_EQ(put_windows("swr", "old", 10, -1, -1, "max-age=99, stale-while-revalidate=20",
			     &rs), CACHE_STORED);
	CHECK(!has_hdr(&rs, "Age"));
	resp_free(&rs);
	/* the query wins over Cache-Control, as ?ttl= does over max-age */
	CHECK_EQ(put_windows("swr", "old", 10, 20, -1, "stale-while-revalidate=1", &rs),
		 CACHE_STORED);
	char etag[64];
	hdr_copy(&rs, "ETag", etag, sizeof(etag));
	resp_free(&rs);

	/* fresh: an ordinary hit whose max-age counts to the TTL, not past it */
	CHECK_EQ(get_cc("swr", CACHE_GET, NULL, &rs), CACHE_HIT);
	CHECK(hdr_is(&rs, "X-Cache", "HIT"));
	CHECK(hdr_is(&rs, "Cache-Control", "max-age=10"));
	CHECK(!has_hdr(&rs, "Age"));
	resp_free(&rs);
	tick(2000 + 10);
	CHECK_EQ(get_cc("swr", CACHE_GET, NULL, &rs), CACHE_HIT);
	CHECK(hdr_is(&rs, "Cache-Control", "max-age=0"));
	resp_free(&rs);

	/* the first stale second (fresh until 2000 + 11): STALE with its Age */
	tick(2000 + 11);
	CHECK_EQ(get_cc("swr", CACHE_GET, NULL, &rs), CACHE_STALE);
	CHECK_EQ(rs.status, 200);
	CHECK(hdr_is(&rs, "X-Cache", "STALE"));
	CHECK(hdr_is(&rs, "Age", "11"));
	CHECK(!has_hdr(&rs, "Cache-Control"));
	CHECK(hdr_is(&rs, "ETag", etag));
	CHECK(strcmp(rs.body, "old") == 0);
	resp_free(&rs);
	/* HEAD and a matching If-None-Match keep their rules when stale */
	CHECK_EQ(get_cc("swr", CACHE_HEAD, NULL, &rs), CACHE_STALE);
	CHECK(hdr_is(&rs, "X-Cache", "STALE"));
	CHECK(hdr_is(&rs, "Content-Length", "3"));
	CHECK_EQ(rs.body_len, 0);
	resp_free(&rs);
	struct treq g = mkreq(CACHE_GET, "swr");
	g.c.if_none_match = hs(etag);
	CHECK_EQ(run(&g, &rs), CACHE_STALE);
	CHECK_EQ(rs.status, 304);
	CHECK(hdr_is(&rs, "X-Cache", "STALE"));
	CHECK(hdr_is(&rs, "Age", "11"));
	resp_free(&rs);

	/* the last second of the window, then a miss (no sie: also gone) */
	tick(2000 + 11 + 19);
	CHECK_EQ(get_cc("swr", CACHE_GET, NULL, &rs), CACHE_STALE);
	CHECK(hdr_is(&rs, "Age", "30"));
	resp_free(&rs);
	tick(2000 + 11 + 20);
	CHECK_EQ(get_cc("swr", CACHE_GET, "max-stale", &rs), CACHE_MISS);
	CHECK(hdr_is(&rs, "X-Cache", "MISS"));
	resp_free(&rs);

	/* without stale_ok (RESP) a stale item is a miss */
	CHECK_EQ(put_windows("swr", "v", 5, 100, -1, NULL, &rs), CACHE_STORED);
	resp_free(&rs);
	tick(now + 6);
	struct treq rr = mkreq(CACHE_GET, "swr");
	rr.c.stale_ok = false;
	CHECK_EQ(run(&rr, &rs), CACHE_MISS);
	resp_free(&rs);
	CHECK_EQ(get_cc("swr", CACHE_GET, NULL, &rs), CACHE_STALE);
	resp_free(&rs);

	/* an overwrite without windows is fresh, then simply gone */
	CHECK_EQ(put_windows("swr", "new", 5, -1, -1, NULL, &rs), CACHE_STORED);
	resp_free(&rs);
	tick(now + 6);
	CHECK_EQ(get_cc("swr", CACHE_GET, "max-stale", &rs), CACHE_MISS);
	resp_free(&rs);

	/* windows without a TTL mean nothing: never stale */
	CHECK_EQ(put_windows("swr", "forever", 0, 30, 30, NULL, &rs), CACHE_STORED);
	resp_free(&rs);
	tick(now + 1000);
	CHECK_EQ(get_cc("swr", CACHE_GET, NULL, &rs), CACHE_HIT);
	CHECK(!has_hdr(&rs, "Cache-Control"));
	resp_free(&rs);
}

static void test_stale_if_error(void)
{
	struct resp rs;

	tick(5000);
	/* fresh until 5011; stale-while-revalidate to 5016; stale-if-error to 5046 */
	CHECK_EQ(put_windows("sie", "v", 10, 5, 30, NULL, &rs), CACHE_STORED);
	resp_free(&rs);
	tick(5011 + 5);
	/* 5 s past expiry: only a request that asks gets it; N bounds the
	 * seconds past expiry accepted; a malformed directive is absent */
	static const struct {
		const char *cc;
		enum cache_outcome want;
	} asks[] = {
		{ NULL, CACHE_MISS },
		{ "no-cache, foo=1", CACHE_MISS },
		{ "stale-if-error", CACHE_STALE },
		{ "Max-Stale", CACHE_STALE },
		{ "max-stale=5", CACHE_STALE },
		{ "max-stale=4", CACHE_MISS },
		{ "stale-if-error=4", CACHE_MISS },
		{ "max-stale=4, stale-if-error=\"60\"", CACHE_STALE },
		{ "max-stale=-1", CACHE_MISS },
		{ "max-stale=\"9", CACHE_MISS },
		{ "max-stale=99999999999999999999", CACHE_STALE },
	};
	for (size_t i = 0; i < sizeof(asks) / sizeof(asks[0]); i++) {
		CHECK_EQ(get_cc("sie", CACHE_GET, asks[i].cc, &rs), asks[i].want);
		if (asks[i].want == CACHE_STALE)
			CHECK(hdr_is(&rs, "Age", "16"));
		resp_free(&rs);
	}
	/* the last second of S + E, then the store drops it */
	tick(5011 + 34);
	CHECK_EQ(get_cc("sie", CACHE_GET, "max-stale", &rs), CACHE_STALE);
	resp_free(&rs);
	tick(5011 + 35);
	CHECK_EQ(get_cc("sie", CACHE_GET, "max-stale", &rs), CACHE_MISS);
	resp_free(&rs);
	struct treq d = mkreq(CACHE_DELETE, "sie");
	CHECK_EQ(run(&d, &rs), CACHE_ABSENT);
	resp_free(&rs);
}

/*
 * cache_copy_answers() says, before a copy read from Redis is stored, what
 * storing it and asking would answer: checked against doing exactly that,
 * for every second of TTL + S + E and a request of every kind.
 */
static void test_copy_answers(void)
{
	static const struct { uint32_t swr, sie; } windows[] = {
		{ 0, 0 }, { 5, 0 }, { 0, 7 }, { 3, 4 },
	};
	static const struct { bool stale_ok; const char *cc; } asks[] = {
		{ true, NULL }, { false, NULL }, { true, "stale-if-error" },
		{ true, "max-stale=2" }, { false, "stale-if-error" },
	};
	struct resp rs;

	tick(7000);
	for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
		struct repr_ext e = { .bits = REPR_EXT_WINDOWS, .ttl = 10, .swr = windows[w].swr,
				      .sie = windows[w].sie };
		uint8_t ext[REPR_EXT_MAX];
		uint32_t n = repr_ext_encode(ext, &e);
		for (uint32_t ttl = 1; ttl <= 3 + e.swr + e.sie; ttl++) {
			for (size_t a = 0; a < sizeof(asks) / sizeof(asks[0]); a++) {
				struct treq put = mkreq(CACHE_PUT, "copy");
				put.c.body = (const uint8_t *)"v";
				put.c.body_len = 1;
				put.c.ttl = ttl;
				put.c.ext = ext;
				put.c.ext_len = n;
				CHECK_EQ(run(&put, &rs), CACHE_STORED);
				resp_free(&rs);
				struct treq get = mkreq(CACHE_GET, "copy");
				get.c.stale_ok = asks[a].stale_ok;
				get.c.cache_control = hs(asks[a].cc);
				bool says = cache_copy_answers(cache, &get.c, ttl, ext, n);
				enum cache_outcome oc = run(&get, &rs);
				resp_free(&rs);
				if (says != (oc != CACHE_MISS)) {
					fprintf(stderr, "copy_answers: swr %u sie %u ttl %u ask %zu: "
						"said %d, got outcome %d\n", e.swr, e.sie, ttl, a,
						says, oc);
					CHECK(false);
				}
			}
		}
	}
	/* no expiry, no windows, and a header put_from_l2() refuses */
	struct treq get = mkreq(CACHE_GET, "copy");
	static const uint8_t bad[] = { 0x40, 0, 0 };
	CHECK(cache_copy_answers(cache, &get.c, 0, NULL, 0));
	CHECK(cache_copy_answers(cache, &get.c, 1, NULL, 0));
	/* refused headers are tried, so the refusal is reported: undecodable,
	 * longer than it says, windows no PUT gives (even when stale) */
	CHECK(cache_copy_answers(cache, &get.c, 5, bad, sizeof(bad)));
	struct repr_ext be = { .bits = REPR_EXT_WINDOWS, .ttl = 1, .swr = 0,
			       .sie = CACHE_STALE_MAX + 1 };
	uint8_t bext[REPR_EXT_MAX + 1];
	uint32_t bn = repr_ext_encode(bext, &be);
	CHECK(cache_copy_answers(cache, &get.c, 1, bext, bn));
	be.sie = 7;
	bn = repr_ext_encode(bext, &be);
	bext[bn] = 0;
	CHECK(cache_copy_answers(cache, &get.c, 1, bext, bn + 1));
	struct treq d = mkreq(CACHE_DELETE, "copy");
	CHECK_EQ(run(&d, &rs), CACHE_DELETED);
	resp_free(&rs);
}

static void test_stale_bad_windows(void)
{
	static const char *const bad[] = {
		"stale-while-revalidate=-1",      "stale-while-revalidate=abc",
		"stale-while-revalidate=",        "stale-while-revalidate",
		"stale-if-error=1e3",             "stale-if-error=\"5",
		"stale-while-revalidate=31536001", "stale-if-error=99999999999999999999",
	};
	struct resp rs;

	CHECK_EQ(put_windows("bad", "keep", 10, -1, -1, NULL, &rs), CACHE_STORED);
	resp_free(&rs);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ(put_windows("bad", "lost", 10, -1, -1, bad[i], &rs), CACHE_FAILED);
		CHECK_EQ(rs.status, 400);
		CHECK(strstr(rs.body, strncmp(bad[i], "stale-if", 8) == 0 ? "(sie)" : "(swr)"));
		resp_free(&rs);
	}
	CHECK_EQ(put_windows("bad", "lost", 10, CACHE_STALE_MAX + 1, -1, NULL, &rs), CACHE_FAILED);
	CHECK_EQ(rs.status, 400);
	resp_free(&rs);
	CHECK_EQ(put_windows("bad", "lost", 10, -1, CACHE_STALE_MAX + 1, NULL, &rs), CACHE_FAILED);
	resp_free(&rs);
	/* nothing was stored by a refused PUT */
	CHECK_EQ(get_cc("bad", CACHE_GET, NULL, &rs), CACHE_HIT);
	CHECK(strcmp(rs.body, "keep") == 0);
	resp_free(&rs);
	/* the largest windows and TTL: the expiry cannot wrap the clock */
	CHECK_EQ(put_windows("bad", "max", UINT32_MAX, CACHE_STALE_MAX, CACHE_STALE_MAX, NULL,
			     &rs), CACHE_STORED);
	resp_free(&rs);
	CHECK_EQ(get_cc("bad", CACHE_GET, NULL, &rs), CACHE_HIT);
	resp_free(&rs);
}

/* PUTs 4096 bytes of JSON text v with r's other fields, and waits until
 * its variants are installed. */
static void put_variants(struct treq *r, const char *v)
{
	struct resp rs;

	r->c.body = (const uint8_t *)v;
	r->c.body_len = 4096;
	r->c.content_type = hs("application/json");
	CHECK_EQ(run(r, &rs), CACHE_STORED);
	resp_free(&rs);
	uint64_t installed = zget(&zs.zip_installed);
	settle();
	CHECK_EQ(zget(&zs.zip_installed), installed + 1);
}

/* Variants made off the shard keep the item's windows (install() puts the
 * extension header back in front of the worker's blob). */
static void test_stale_with_variants(void)
{
	struct resp rs;
	char *v = text_value(4096);

	tick(8000);
	struct treq r = mkreq(CACHE_PUT, "swr-br");
	r.c.ttl = 10;
	r.c.swr = 60;
	put_variants(&r, v);
	CHECK_EQ(get_ae("swr-br", "br", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Encoding", "br"));
	CHECK(hdr_is(&rs, "X-Cache", "HIT"));
	resp_free(&rs);
	tick(8000 + 12);
	CHECK_EQ(get_ae("swr-br", "br", &rs), 200);
	CHECK(hdr_is(&rs, "X-Cache", "STALE"));
	CHECK(hdr_is(&rs, "Content-Encoding", "br"));
	CHECK(hdr_is(&rs, "Age", "12"));
	resp_free(&rs);
	CHECK_EQ(get_ae("swr-br", NULL, &rs), 200);
	CHECK_EQ(rs.body_len, 4096);
	CHECK(memcmp(rs.body, v, 4096) == 0);
	resp_free(&rs);
	free(v);
}

/* A PUT of key with X-Cache-Tags (NULL: none). */
static int put_tags(struct cache *c, const char *key, const char *val, const char *tags)
{
	struct treq r = mkreq(CACHE_PUT, key);
	r.c.body = (const uint8_t *)val;
	r.c.body_len = (uint32_t)strlen(val);
	r.c.tags = hs(tags);
	struct buf out = { 0 };
	struct resp rs;
	enum cache_outcome oc;
	CHECK_EQ(exec_render(c, &r, &out, &oc), 0);
	CHECK_EQ(parse_resp(out.data, out.len, false, &rs), 0);
	buf_deinit(&out);
	int status = rs.status;
	resp_free(&rs);
	return status;
}

static int status_of(const char *key)
{
	struct resp rs;
	int status = get_ae(key, NULL, &rs);
	resp_free(&rs);
	return status;
}

struct removed_log {
	unsigned n;
	char last[64];
};

static void on_removed(void *arg, const uint8_t *key, uint32_t key_len, uint64_t hash)
{
	struct removed_log *l = arg;
	CHECK_EQ(hash, hash_key(key, key_len));
	l->n++;
	memcpy(l->last, key, key_len < 63 ? key_len : 63);
	l->last[key_len < 63 ? key_len : 63] = '\0';
}

static uint64_t purge_all(struct cache *c, const char *tag, uint32_t slice, unsigned *calls,
			  struct removed_log *log)
{
	uint64_t removed = 0;
	unsigned n = 0;
	while (cache_tag_purge(c, (const uint8_t *)tag, strlen(tag), slice, &removed,
			       log ? on_removed : NULL, log) == 1 && n < 100000)
		n++;
	if (calls)
		*calls = n + 1;
	return removed;
}

static void test_tags(void)
{
	uint64_t bytes0 = zget(&zs.tag_index_bytes);

	/* untagged writes never touch the index */
	CHECK_EQ(put_tags(cache, "tg-plain", "v", NULL), 201);
	CHECK_EQ(zget(&zs.tag_index_bytes), bytes0);
	CHECK_EQ(bytes0, 0);

	CHECK_EQ(put_tags(cache, "tg-1", "one", "user:1, page"), 201);
	CHECK_EQ(put_tags(cache, "tg-2", "two", "user:1"), 201);
	CHECK_EQ(put_tags(cache, "tg-3", "three", "page"), 201);
	CHECK(zget(&zs.tag_index_bytes) > 0);
	CHECK_EQ(zget(&zs.tag_index_entries), 4);
	CHECK_EQ(cache_tag_count(cache, (const uint8_t *)"user:1", 6), 2);

	/* overwritten without the tag: no longer the tag's, not purged */
	CHECK_EQ(put_tags(cache, "tg-2", "two again", NULL), 204);
	CHECK_EQ(cache_tag_count(cache, (const uint8_t *)"user:1", 6), 1);
	/* deleted: out of the index */
	struct treq d = mkreq(CACHE_DELETE, "tg-3");
	struct resp rs;
	CHECK_EQ(run(&d, &rs), CACHE_DELETED);
	resp_free(&rs);
	CHECK_EQ(cache_tag_count(cache, (const uint8_t *)"page", 4), 1);

	struct removed_log log = { 0 };
	uint64_t purged0 = zget(&zs.tag_purged);
	CHECK_EQ(purge_all(cache, "user:1", 16, NULL, &log), 1);
	CHECK_EQ(log.n, 1);
	CHECK(strcmp(log.last, "tg-1") == 0);
	CHECK_EQ(zget(&zs.tag_purged), purged0 + 1);
	CHECK_EQ(status_of("tg-1"), 404);
	CHECK_EQ(status_of("tg-2"), 200);
	CHECK_EQ(status_of("tg-plain"), 200);
	/* the purged key's other tag let go of it too */
	CHECK_EQ(cache_tag_count(cache, (const uint8_t *)"page", 4), 0);
	CHECK_EQ(purge_all(cache, "page", 16, NULL, NULL), 0);
	CHECK_EQ(purge_all(cache, "never-seen", 16, NULL, NULL), 0);
	CHECK_EQ(zget(&zs.tag_index_entries), 0);

	/* bad X-Cache-Tags: 400, nothing stored */
	static const char *const bad[] = { "a b", "1,2,3,4,5,6,7,8,9", "caf\xc3\xa9", "x\x01" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_EQ(put_tags(cache, "tg-bad", "v", bad[i]), 400);
	char longtag[200];
	memset(longtag, 'l', 129);
	longtag[129] = '\0';
	CHECK_EQ(put_tags(cache, "tg-bad", "v", longtag), 400);
	CHECK_EQ(status_of("tg-bad"), 404);
	CHECK(cache_tag_valid((const uint8_t *)"user:1", 6));
	CHECK(!cache_tag_valid((const uint8_t *)"a,b", 3));

	/* a purge in slices: each call takes at most `slice` keys */
	char key[32];
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "tg-many-%u", i);
		CHECK_EQ(put_tags(cache, key, "v", i % 2 ? "many, odd" : "many"), 201);
	}
	CHECK_EQ(cache_tag_count(cache, (const uint8_t *)"many", 4), 1000);
	unsigned calls = 0;
	CHECK_EQ(purge_all(cache, "many", 10, &calls, NULL), 1000);
	CHECK_EQ(calls, 100);
	CHECK_EQ(status_of("tg-many-7"), 404);
	CHECK_EQ(cache_tag_count(cache, (const uint8_t *)"odd", 3), 0);

	/* an item in its stale window is purged too */
	struct treq w = mkreq(CACHE_PUT, "tg-stale");
	w.c.body = (const uint8_t *)"s";
	w.c.body_len = 1;
	w.c.ttl = 1;
	w.c.swr = 100;
	w.c.tags = hs("st");
	CHECK_EQ(run(&w, &rs), CACHE_STORED);
	resp_free(&rs);
	tick(now + 5);
	struct treq g = mkreq(CACHE_GET, "tg-stale");
	CHECK_EQ(run(&g, &rs), CACHE_STALE);
	resp_free(&rs);
	CHECK_EQ(purge_all(cache, "st", 16, NULL, NULL), 1);
	CHECK_EQ(run(&g, &rs), CACHE_MISS);
	resp_free(&rs);

	/* tags survive the install of variants made off the shard */
	char *v = text_value(4096);
	struct treq z = mkreq(CACHE_PUT, "tg-zip");
	z.c.tags = hs("zipped");
	put_variants(&z, v);
	CHECK_EQ(get_ae("tg-zip", "gzip", &rs), 200);
	CHECK(hdr_is(&rs, "Content-Encoding", "gzip"));
	resp_free(&rs);
	CHECK_EQ(purge_all(cache, "zipped", 16, NULL, NULL), 1);
	CHECK_EQ(status_of("tg-zip"), 404);
	free(v);

	/* the sweep drops entries of keys that left without telling the index
	 * (expired here) */
	struct treq e = mkreq(CACHE_PUT, "tg-exp");
	e.c.body = (const uint8_t *)"e";
	e.c.body_len = 1;
	e.c.ttl = 1;
	e.c.tags = hs("exp");
	CHECK_EQ(run(&e, &rs), CACHE_STORED);
	resp_free(&rs);
	CHECK_EQ(cache_tag_count(cache, (const uint8_t *)"exp", 3), 1);
	tick(now + 5);
	CHECK_EQ(cache_tag_count(cache, (const uint8_t *)"exp", 3), 0);
}

/* The index's bound: a tagged write it has no room for is refused (507)
 * and not stored; untagged writes go on. */
static void test_tags_bound(void)
{
	struct store *st2;
	struct zstats z2 = { 0 };
	struct cache_config cc = { .compress_min = 256, .max_value = MAX_VALUE,
				   .counters = counters_of(&z2), .tags_memory = 8192 };
	struct cache *c2 = other_cache(&st2, 8u << 20, cache_blob_max(MAX_VALUE), &cc);
	char key[32];
	int status = 201;
	unsigned stored = 0;

	for (unsigned i = 0; i < 1000 && status == 201; i++) {
		snprintf(key, sizeof(key), "b-%u", i);
		status = put_tags(c2, key, "v", "t");
		stored += status == 201;
	}
	CHECK_EQ(status, 507);
	CHECK(stored > 10);
	CHECK_EQ(zget(&z2.tag_index_full), 1);
	CHECK(zget(&z2.tag_index_bytes) <= 8192);
	CHECK_EQ(cache_tag_count(c2, (const uint8_t *)"t", 1), stored);
	CHECK_EQ(put_tags(c2, "untagged", "v", NULL), 201);
	uint64_t removed = 0;
	while (cache_tag_purge(c2, (const uint8_t *)"t", 1, 64, &removed, NULL, NULL))
		;
	CHECK_EQ(removed, stored);
	CHECK_EQ(put_tags(c2, key, "v", "t"), 201);     /* room again */
	cache_destroy(c2);
	store_destroy(st2);
}

/* Items a snapshot load put in the store (without the cache) are indexed
 * by their blobs' tags at the first tick before any request; one the
 * index has no room for is dropped, not left unfindable. */
static void test_tags_loaded(void)
{
	struct store *st2;
	struct zstats z2 = { 0 };
	struct cache_config cc = { .compress_min = 256, .max_value = MAX_VALUE,
				   .counters = counters_of(&z2), .tags_memory = 4096 };
	struct store_config sc = { .memory = 8u << 20, .max_value = cache_blob_max(MAX_VALUE),
				   .hugepages = STORE_HUGEPAGES_OFF, .numa_node = -1 };
	struct cache *c2 = NULL;
	char key[32];

	CHECK_EQ(store_create(&st2, &sc), 0);
	CHECK_EQ(cache_create(&c2, st2, &cc), 0);
	cache_tick(c2, 500);    /* the tick a shard gives at setup: still empty */
	/* what src/snapshot/load.c does: blobs stored as they were saved */
	static const uint8_t tags[] = { 4, 'l', 'o', 'a', 'd' };
	struct repr_ext e = { .bits = REPR_EXT_TAGS, .ntags = 1, .tags = tags,
			      .tags_len = sizeof(tags) };
	uint8_t ext[REPR_EXT_MAX];
	uint32_t n = repr_ext_encode(ext, &e);
	unsigned stored = 200;
	for (unsigned i = 0; i < stored; i++) {
		struct repr_blob b;
		snprintf(key, sizeof(key), "loaded-%u", i);
		repr_build(&b, "v", 1, NULL, 0, NULL, 0, NULL, 0, 0);
		repr_blob_ext(&b, ext, n);
		CHECK_EQ(store_set(st2, key, strlen(key), hash_key(key, strlen(key)), b.iov,
				   b.iovcnt, 0, b.flags, b.etag, NULL), 0);
	}
	CHECK_EQ(cache_tag_count(c2, (const uint8_t *)"load", 4), 0);
	cache_tick(c2, 501);    /* warm_start's tick, after the load */
	uint64_t indexed = cache_tag_count(c2, (const uint8_t *)"load", 4);
	uint64_t dropped = zget(&z2.tag_index_full);
	CHECK(indexed > 0);
	CHECK(dropped > 0);     /* 4 KiB does not hold 200 entries */
	CHECK_EQ(indexed + dropped, stored);
	struct store_counts cnt;
	store_counts(st2, &cnt);
	CHECK_EQ(cnt.items, indexed);   /* what could not be indexed is gone */
	uint64_t removed = 0;
	while (cache_tag_purge(c2, (const uint8_t *)"load", 4, 64, &removed, NULL, NULL))
		;
	CHECK_EQ(removed, indexed);
	store_counts(st2, &cnt);
	CHECK_EQ(cnt.items, 0);
	cache_destroy(c2);
	store_destroy(st2);
}

int main(void)
{
	struct store_config sc = { .memory = 32u << 20, .max_value = cache_blob_max(MAX_VALUE),
				   .hugepages = STORE_HUGEPAGES_OFF, .numa_node = -1 };
	struct zip_config zc = { .threads = 2, .shards = LANES, .idle = false,
				 .brotli_quality = 4, .gzip_level = 6, .wake = on_done };

	CHECK_EQ(sem_init(&done, 0, 0), 0);
	CHECK_EQ(zip_create(&zp, &zc), 0);
	struct cache_config cc = { .compress_min = 256, .default_ttl = 0, .max_value = MAX_VALUE,
				   .zip = zp, .lane = 0, .counters = counters_of(&zs) };

	CHECK_EQ(store_create(&st, &sc), 0);
	CHECK_EQ(cache_create(&cache, st, &cc), 0);
	cache_destroy(NULL);
	tick(now);

	test_put_get_delete();
	test_connection();
	test_content_type();
	test_variants();
	test_conditional();
	test_etag_collision();
	test_etag_per_write();
	test_ttl();
	test_default_ttl();
	test_limits();
	test_compress_max();
	test_variants_dropped_when_too_big();
	test_pipelined_appends();
	test_x_cache_from_reply();
	test_async_variants();
	test_install_rule();
	test_install_after_eviction();
	test_queue_full();
	test_unprofitable();
	test_stale_while_revalidate();
	test_stale_if_error();
	test_copy_answers();
	test_stale_bad_windows();
	test_stale_with_variants();
	test_tags();
	test_tags_bound();
	test_tags_loaded();

	cache_destroy(cache);
	store_destroy(st);
	zip_destroy(zp);
	return check_done("test_cache");
}
