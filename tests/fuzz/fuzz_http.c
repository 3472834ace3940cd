/*
 * fuzz_http.c - libFuzzer target for the HTTP parser and chunked decoder.
 *
 * Beyond "does not crash", it checks the properties the shard loop relies
 * on, and aborts when one fails: the input fed a byte at a time with one
 * `scanned`, or in two parts, gives the one-shot result (and the same
 * fields); a parsed request's strings lie inside the input; the chunked
 * decoder gives the same result, the same consumed count and the same bytes
 * at any split.  The body after a parsed head, or the whole input, goes to
 * the chunked decoder.  tests/fuzz/replay.c runs the saved corpus through
 * this same function in the normal build.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ringcache/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c)                                                              \
	do {                                                                        \
		if (!(c)) {                                                         \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__,   \
				__LINE__, #c);                                      \
			abort();                                                    \
		}                                                                   \
	} while (0)

static const struct http_limits LIM = HTTP_LIMITS(8192, 16384, 64);
static const struct http_limits SMALL = HTTP_LIMITS(40, 120, 3);

/* Prefixes are parsed from exact-size copies up to this length, so that a
 * read past `len` is caught by ASan; longer inputs reuse the input. */
#define COPY_PREFIX_MAX 512

static bool str_inside(struct http_str s, const char *p, size_t n)
{
	if (!s.p)
		return s.len == 0;
	return s.p >= p && s.len <= n && (size_t)(s.p - p) <= n - s.len;
}

static bool str_same(struct http_str a, const char *abase, struct http_str b, const char *bbase)
{
	if (!a.p || !b.p)
		return a.p == b.p && a.len == b.len;
	return a.p - abase == b.p - bbase && a.len == b.len;
}

static bool req_same(const struct http_request *a, const char *abase,
		     const struct http_request *b, const char *bbase)
{
	return a->method == b->method && a->minor == b->minor &&
	       a->keep_alive == b->keep_alive && a->chunked == b->chunked &&
	       a->expect_continue == b->expect_continue &&
	       a->content_length == b->content_length && a->head_len == b->head_len &&
	       str_same(a->method_name, abase, b->method_name, bbase) &&
	       str_same(a->target, abase, b->target, bbase) &&
	       str_same(a->path, abase, b->path, bbase) &&
	       str_same(a->query, abase, b->query, bbase) &&
	       str_same(a->accept_encoding, abase, b->accept_encoding, bbase) &&
	       str_same(a->if_none_match, abase, b->if_none_match, bbase) &&
	       str_same(a->content_type, abase, b->content_type, bbase) &&
	       str_same(a->cache_control, abase, b->cache_control, bbase) &&
	       str_same(a->x_api_key, abase, b->x_api_key, bbase) &&
	       str_same(a->authorization, abase, b->authorization, bbase) &&
	       str_same(a->x_cache_fill, abase, b->x_cache_fill, bbase) &&
	       str_same(a->x_cache_lease, abase, b->x_cache_lease, bbase);
}

static void check_parsed(const struct http_request *r, const char *p, size_t n,
			 const struct http_limits *lim)
{
	FUZZ_ASSERT(r->head_len <= n && r->head_len <= lim->max_head);
	FUZZ_ASSERT(r->method <= HTTP_METHOD_DELETE && r->minor <= 1);
	FUZZ_ASSERT(r->content_length >= -1 && !(r->chunked && r->content_length >= 0));
	FUZZ_ASSERT(r->method_name.len > 0 && r->target.len > 0);
	/* origin-form, or absolute-form whose path and query lie after the
	 * authority, with "/" (the one before the authority) for an empty path */
	FUZZ_ASSERT(r->path.len > 0 && r->path.p[0] == '/');
	FUZZ_ASSERT(str_inside(r->path, r->target.p, r->target.len));
	FUZZ_ASSERT(str_inside(r->query, r->target.p, r->target.len));
	FUZZ_ASSERT(r->query.p + r->query.len == r->target.p + r->target.len);
	if (r->target.p[0] == '/') {
		FUZZ_ASSERT(r->path.p == r->target.p);
	} else {
		size_t sl = (r->target.p[4] | 0x20) == 's' ? 8 : 7;
		FUZZ_ASSERT(r->target.len >= sl + 1);
		FUZZ_ASSERT(!strncasecmp(r->target.p, sl == 8 ? "https://" : "http://", sl));
		const char *a = r->target.p + sl, *te = r->target.p + r->target.len, *ae = a;
		while (ae < te && *ae != '/' && *ae != '?')
			ae++;
		FUZZ_ASSERT(ae > a && *a != ':' && !memchr(a, '@', (size_t)(ae - a)));
		FUZZ_ASSERT(r->path.p == (ae < te && *ae == '/' ? ae : a - 1));
	}
	FUZZ_ASSERT(r->method_name.len + r->target.len + 12 <= r->head_len);
	FUZZ_ASSERT(r->method_name.len + r->target.len + 10 <= lim->max_request_line);
	FUZZ_ASSERT(!memchr(r->path.p, '?', r->path.len));
	struct http_str s[] = { r->method_name, r->target, r->path, r->query,
				r->accept_encoding, r->if_none_match, r->content_type,
				r->cache_control, r->x_api_key, r->authorization };
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		FUZZ_ASSERT(str_inside(s[i], p, r->head_len));

	uint8_t key[COPY_PREFIX_MAX * 32];
	if (r->path.len <= sizeof(key)) {
		int k = http_decode_key(r->path.p, r->path.len, key);
		FUZZ_ASSERT(k == -400 || (k >= 0 && (uint32_t)k <= r->path.len));
	}
	uint32_t v;
	int q = http_query_u32(r->query, "ttl", &v);
	FUZZ_ASSERT(q == 1 || q == 0 || q == -400);
}

static void check_request(const char *p, size_t n, const struct http_limits *lim, size_t cut)
{
	struct http_request full, r;
	size_t scanned = 0;
	int want = http_parse_request(p, n, &scanned, lim, &full);

	FUZZ_ASSERT(want == HTTP_AGAIN || want > 0 || want == -400 || want == -414 ||
		    want == -417 || want == -431 || want == -501 || want == -505);
	if (want > 0)
		check_parsed(&full, p, n, lim);

	/* a byte at a time */
	scanned = 0;
	int rc = HTTP_AGAIN;
	size_t k;
	for (k = 1; k <= n; k++) {
		if (n <= COPY_PREFIX_MAX) {
			char *b = malloc(k);
			memcpy(b, p, k);
			rc = http_parse_request(b, k, &scanned, lim, &r);
			struct http_request r1;
			size_t s1 = 0;
			FUZZ_ASSERT(http_parse_request(b, k, &s1, lim, &r1) == rc);
			if (rc > 0)
				FUZZ_ASSERT(req_same(&r, b, &full, p));
			free(b);
		} else {
			rc = http_parse_request(p, k, &scanned, lim, &r);
			if (rc > 0)
				FUZZ_ASSERT(req_same(&r, p, &full, p));
		}
		if (rc != HTTP_AGAIN)
			break;
	}
	FUZZ_ASSERT(rc == want);
	if (want > 0)
		FUZZ_ASSERT(k == (size_t)want);

	/* two parts */
	scanned = 0;
	rc = http_parse_request(p, cut, &scanned, lim, &r);
	FUZZ_ASSERT(rc == HTTP_AGAIN || rc == want);
	if (rc == HTTP_AGAIN) {
		rc = http_parse_request(p, n, &scanned, lim, &r);
		FUZZ_ASSERT(rc == want);
		if (rc > 0)
			FUZZ_ASSERT(req_same(&r, p, &full, p));
	}
}

struct chunked_run {
	int rc;
	size_t consumed;
	struct buf out;
	uint64_t total;
};

/* Feeds in[0..n) in pieces of `step` bytes (0: all at once). */
static void chunked_run(const char *in, size_t n, size_t step, uint64_t max,
			struct chunked_run *cr)
{
	struct http_chunked c;
	size_t off = 0;

	http_chunked_init(&c);
	memset(cr, 0, sizeof(*cr));
	do {
		size_t piece = step && n - off > step ? step : n - off;
		size_t used = 0;
		cr->rc = http_chunked_feed(&c, in + off, piece, &used, &cr->out, max);
		FUZZ_ASSERT(used <= piece);
		FUZZ_ASSERT(cr->rc != HTTP_AGAIN || used == piece);
		off += used;
	} while (cr->rc == HTTP_AGAIN && off < n);
	cr->consumed = off;
	cr->total = c.total;
	FUZZ_ASSERT(cr->rc == HTTP_AGAIN || cr->rc == 1 || cr->rc == -400 || cr->rc == -413);
	FUZZ_ASSERT(cr->out.len == c.total && c.total <= max);
}

static void check_chunked(const char *in, size_t n, uint64_t max)
{
	struct chunked_run one, bytes, halves;

	chunked_run(in, n, 0, max, &one);
	chunked_run(in, n, 1, max, &bytes);
	chunked_run(in, n, n / 2 + 1, max, &halves);
	const struct chunked_run *o[] = { &bytes, &halves };
	for (size_t i = 0; i < 2; i++) {
		FUZZ_ASSERT(o[i]->rc == one.rc && o[i]->consumed == one.consumed);
		FUZZ_ASSERT(o[i]->out.len == one.out.len);
		FUZZ_ASSERT(!one.out.len || !memcmp(o[i]->out.data, one.out.data, one.out.len));
	}
	buf_deinit(&one.out);
	buf_deinit(&bytes.out);
	buf_deinit(&halves.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t cut = 0;

	for (size_t i = 0; i < size; i++)
		cut = cut * 31 + data[i];
	cut = size ? cut % (size + 1) : 0;

	check_request(p, size, &LIM, cut);
	check_request(p, size, &SMALL, cut);

	struct http_request r;
	size_t scanned = 0;
	int rc = http_parse_request(p, size, &scanned, &LIM, &r);
	size_t body = rc > 0 ? (size_t)rc : 0;
	check_chunked(p + body, size - body, 1u << 20);
	check_chunked(p + body, size - body, 16);
	if (body)
		check_chunked(p, size, 1u << 20);

	uint8_t key[4096];
	if (size <= sizeof(key)) {
		int k = http_decode_key(p, size, key);
		FUZZ_ASSERT(k == -400 || (k >= 0 && (size_t)k <= size));
	}
	if (size <= UINT32_MAX) {
		uint32_t v;
		http_query_u32((struct http_str){ p, (uint32_t)size }, "ttl", &v);
	}
	return 0;
}
