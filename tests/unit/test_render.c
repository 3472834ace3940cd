/*
 * test_render.c - struct reply to HTTP/1.1 bytes (http_render.h): the
 * shapes of the daemon's answers, header by header, and the hit fast path
 * against the general path, byte for byte.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ringcache/decimal.h"
#include "ringcache/http_render.h"

static char text[4096];

/* Renders r for `to` into text (NUL-terminated); its length, -1 on error. */
static long render(const struct reply *r, uint8_t minor, bool keep_alive, bool head)
{
	struct http_answer_to to = { minor, keep_alive, head };
	struct buf b = { 0 };
	long n = -1;

	if (http_render(&b, r, &to) == 0 && b.len < sizeof(text)) {
		memcpy(text, b.data, b.len);
		text[b.len] = '\0';
		n = (long)b.len;
	}
	buf_deinit(&b);
	return n;
}

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void test_status(void)
{
	struct reply r;

	reply_status(&r, 400, "bad request\n");
	CHECK(render(&r, 1, false, false) > 0);
	CHECK(strcmp(text, "HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n"
			   "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
			   "bad request\n") == 0);

	reply_status(&r, 405, NULL);
	r.headers = "Allow: GET\r\n";
	CHECK(render(&r, 0, true, false) > 0);
	CHECK(strcmp(text, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n"
			   "Allow: GET\r\nConnection: keep-alive\r\n\r\n") == 0);

	reply_status(&r, 204, "ignored");
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(strcmp(text, "HTTP/1.1 204 No Content\r\n\r\n") == 0);

	/* HEAD: the length GET would send, no body */
	reply_status(&r, 200, "OK\n");
	CHECK(render(&r, 1, true, true) > 0);
	CHECK(strcmp(text, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
			   "Content-Type: text/plain; charset=utf-8\r\n\r\n") == 0);

	/* an answer that insists on closing */
	reply_status(&r, 500, NULL);
	r.close = true;
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(strstr(text, "\r\nConnection: close\r\n\r\n") != NULL);

	/* decorations as data: X-Cache and X-L2 */
	reply_status(&r, 404, NULL);
	r.cache = REPLY_CACHE_MISS;
	r.l2 = REPLY_L2_TIMEOUT;
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(strcmp(text, "HTTP/1.1 404 Not Found\r\nX-Cache: MISS\r\nContent-Length: 0\r\n"
			   "X-L2: timeout\r\n\r\n") == 0);
	reply_status(&r, 201, NULL);
	memcpy(r.etag, "\"0123456789abcdef\"", 18);
	r.etag_len = 18;
	r.l2 = REPLY_L2_SKIPPED;
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(strcmp(text, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n"
			   "ETag: \"0123456789abcdef\"\r\nX-L2: skipped\r\n\r\n") == 0);

	/* fill leases: a token on a miss, a waiter's fill, a refused fill */
	reply_status(&r, 404, NULL);
	r.cache = REPLY_CACHE_MISS;
	r.lease = "0123456789abcdef0123456789abcdef";
	r.lease_len = 32;
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(strcmp(text, "HTTP/1.1 404 Not Found\r\nX-Cache: MISS\r\nContent-Length: 0\r\n"
			   "X-Cache-Lease: 0123456789abcdef0123456789abcdef\r\n\r\n") == 0);
	reply_status(&r, 200, "v");
	r.cache = REPLY_CACHE_HIT_FILL;
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(starts(text, "HTTP/1.1 200 OK\r\nX-Cache: HIT-FILL\r\nContent-Length: 1\r\n"));
	reply_status(&r, 409, "lease revoked, expired or unknown\n");
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(starts(text, "HTTP/1.1 409 Conflict\r\nContent-Length: 34\r\n"));
	r.cache = 200;  /* not an enum reply_cache: no X-Cache, nothing read out of bounds */
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(strstr(text, "X-Cache") == NULL);

	reply_status(&r, 999, NULL);
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(strncmp(text, "HTTP/1.1 999 Unknown\r\n", 22) == 0);
	reply_status(&r, 1000, NULL);
	CHECK_EQ(render(&r, 1, true, false), -1);

	CHECK(strcmp(http_status_text(404), "Not Found") == 0);
	CHECK(strcmp(http_status_text(507), "Insufficient Storage") == 0);
	CHECK(strcmp(http_status_text(299), "Unknown") == 0);
}

/* A hit, padded type (the fast path) and not (the general one): the same
 * bytes for every combination of the hit's options. */
static void test_hit_paths(void)
{
	static const struct {
		char s[64];
	} type = { "application/json" };
	char fast[2048], slow[2048];
	unsigned combos = 0;

	for (int st = 0; st < 2; st++)
		for (int cache = REPLY_CACHE_HIT; cache <= REPLY_CACHE_HIT_FILL; cache++)
			for (int coding = 0; coding <= REPLY_GZIP; coding++)
				for (int vary = 0; vary < 2; vary++)
					for (int age = 0; age < 2; age++)
						for (int conn = 0; conn < 3; conn++)
							for (int head = 0; head < 2; head++) {
	struct reply r;
	reply_status(&r, st ? 304 : 200, NULL);
	r.cache = (uint8_t)cache;
	r.coding = (uint8_t)coding;
	r.vary = vary;
	r.has_max_age = age;
	r.max_age = 1234567;
	r.type = type.s;
	r.type_len = (uint32_t)strlen(type.s);
	r.body = "{\"a\":1}";
	r.body_len = 7;
	memcpy(r.etag, "\"0123456789abcdef-br\"", 21);
	r.etag_len = 21;
	uint8_t minor = conn == 1 ? 0 : 1;
	bool keep = conn != 2;
	r.type_padded = true;
	CHECK(render(&r, minor, keep, head) > 0);
	strcpy(fast, text);
	r.type_padded = false;
	CHECK(render(&r, minor, keep, head) > 0);
	strcpy(slow, text);
	CHECK(strcmp(fast, slow) == 0);
	combos++;
							}
	CHECK_EQ(combos, 2 * 4 * 3 * 2 * 2 * 3 * 2);   /* HIT, HIT-L2, MISS, HIT-FILL */

	/* and one in full */
	struct reply r;
	reply_status(&r, 200, NULL);
	r.cache = REPLY_CACHE_HIT;
	r.coding = REPLY_BR;
	r.vary = true;
	r.has_max_age = true;
	r.max_age = 59;
	r.type = type.s;
	r.type_len = 16;
	r.type_padded = true;
	r.body = "xyz";
	r.body_len = 3;
	memcpy(r.etag, "\"00000000ffffffff-br\"", 21);
	r.etag_len = 21;
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(strcmp(text, "HTTP/1.1 200 OK\r\nX-Cache: HIT\r\nContent-Length: 3\r\n"
			   "Content-Type: application/json\r\nETag: \"00000000ffffffff-br\"\r\n"
			   "Content-Encoding: br\r\nVary: Accept-Encoding\r\n"
			   "Cache-Control: max-age=59\r\n\r\nxyz") == 0);
	r.status = 304;
	CHECK(render(&r, 1, true, false) > 0);
	CHECK(strcmp(text, "HTTP/1.1 304 Not Modified\r\nX-Cache: HIT\r\nContent-Length: 3\r\n"
			   "ETag: \"00000000ffffffff-br\"\r\nVary: Accept-Encoding\r\n"
			   "Cache-Control: max-age=59\r\n\r\n") == 0);
}

/* Appends after what is in the buffer; lengths of every size render. */
static void test_append_and_lengths(void)
{
	struct http_answer_to to = { 1, true, true };
	struct buf b = { 0 };
	struct reply r;
	const uint64_t lens[] = { 0, 9, 10, 99999, 100000, 4294967295ull, 4294967296ull,
				  18446744073709551615ull };
	const char *want[] = { "0", "9", "10", "99999", "100000", "4294967295", "4294967296",
			       "18446744073709551615" };

	buf_append(&b, "X", 1);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		char line[64];
		size_t start = b.len;
		reply_status(&r, 200, "");
		r.body_len = lens[i];   /* HEAD: only the length is written */
		CHECK_EQ(http_render(&b, &r, &to), 0);
		snprintf(line, sizeof(line), "Content-Length: %s\r\n", want[i]);
		CHECK(memmem(b.data + start, b.len - start, line, strlen(line)) != NULL);
	}
	CHECK(b.data[0] == 'X');
	buf_deinit(&b);
}

/* The Date line (RFC 9110 5.6.7 IMF-fixdate), and where it goes. */
static void test_date(void)
{
	char line[HTTP_DATE_LINE];
	struct http_answer_to to = { 1, true, false, line };
	struct buf b = { 0 };
	struct reply r;

	http_date_line(line, 784111777);
	CHECK(strcmp(line, "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n") == 0);
	http_date_line(line, 0);
	CHECK(strcmp(line, "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n") == 0);
	reply_status(&r, 404, NULL);
	r.cache = REPLY_CACHE_MISS;
	CHECK_EQ(http_render(&b, &r, &to), 0);
	CHECK(b.len > 0 && memmem(b.data, b.len, "\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n",
				     41) != NULL);
	/* a hit (the fast path) carries it too */
	static const struct {
		char s[64];
	} type = { "text/plain" };
	reply_status(&r, 200, NULL);
	r.cache = REPLY_CACHE_HIT;
	r.type = type.s;
	r.type_len = 10;
	r.type_padded = true;
	memcpy(r.etag, "\"0123456789abcdef\"", 18);
	r.etag_len = 18;
	r.body = "x";
	r.body_len = 1;
	b.len = 0;
	CHECK_EQ(http_render(&b, &r, &to), 0);
	CHECK(b.len > 0 && memmem(b.data, b.len, "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n", 37));
	buf_deinit(&b);
}

/* decimal.h, the digits of every length both renderers write: against
 * printf at every value below 10^6 and at each power of ten and its
 * neighbours up to UINT64_MAX. */
static void test_decimal(void)
{
	char want[32], got[32];
	unsigned wrong = 0;

	for (uint64_t v = 0; v < 1000000; v++) {
		int n = snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
		char *e = decimal_put_u64(got, v);
		wrong += e - got != n || memcmp(got, want, (size_t)n) != 0;
	}
	for (uint64_t p = 10; ; p *= 10) {
		for (uint64_t v = p - 1; v <= p + 1; v++) {
			int n = snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
			char *e = decimal_put_u64(got, v);
			wrong += e - got != n || memcmp(got, want, (size_t)n) != 0;
		}
		if (p > UINT64_MAX / 10)
			break;
	}
	char *e = decimal_put_u64(got, UINT64_MAX);
	wrong += e - got != 20 || memcmp(got, "18446744073709551615", 20) != 0;
	CHECK_EQ(wrong, 0);
}

int main(void)
{
	test_decimal();
	test_date();
	test_status();
	test_hit_paths();
	test_append_and_lengths();
	return check_done("render");
}
