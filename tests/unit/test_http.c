/*
 * test_http.c - the HTTP parser: a table of valid requests and their fields,
 * a table of refused ones and their statuses, and for every entry the same
 * bytes split at every point (one byte at a time with one `scanned`, and in
 * two parts), each prefix in an exact-size heap copy so that the sanitizers
 * see any read past its end, and before a PROT_NONE page.  Then the chunked
 * decoder split at every point, and the key and query helpers.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "ringcache/http.h"

static const struct http_limits LIM = HTTP_LIMITS(8192, 16384, 64);
static const struct http_limits SMALL = HTTP_LIMITS(64, 256, 4);

/* ---- valid requests ---------------------------------------------------- */

struct want {
	const char *raw;
	int method;
	const char *method_name;
	int minor;
	bool keep_alive, chunked, expect_continue;
	long long content_length;
	const char *path, *query;
	const char *target;         /* when not origin-form */
	const char *accept_encoding, *if_none_match, *content_type, *cache_control;
	const char *x_api_key, *authorization;
	const char *x_cache_fill, *x_cache_lease;
	const char *x_cache_tags;
	bool tags_repeated;
};

#define WRK_GET "GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"

static const struct want valid[] = {
	{ .raw = "GET /cache/key HTTP/1.1\r\nHost: x\r\n\r\n", .method = HTTP_METHOD_GET,
	  .method_name = "GET", .minor = 1, .keep_alive = true, .content_length = -1,
	  .path = "/cache/key", .query = "" },
	{ .raw = WRK_GET, .method = HTTP_METHOD_GET, .method_name = "GET", .minor = 1,
	  .keep_alive = true, .content_length = -1, .path = "/", .query = "" },
	{ .raw = "HEAD /cache/a%20b?x=1&y HTTP/1.0\n\n", .method = HTTP_METHOD_HEAD,
	  .method_name = "HEAD", .minor = 0, .keep_alive = false, .content_length = -1,
	  .path = "/cache/a%20b", .query = "x=1&y" },
	{ .raw = "PUT /cache/k?ttl=60 HTTP/1.1\r\nContent-Length: 5\r\n"
		 "Content-Type: text/plain\r\nExpect: 100-Continue\r\n\r\n",
	  .method = HTTP_METHOD_PUT, .method_name = "PUT", .minor = 1, .keep_alive = true,
	  .expect_continue = true, .content_length = 5, .path = "/cache/k", .query = "ttl=60",
	  .content_type = "text/plain" },
	{ .raw = "POST /cache/k HTTP/1.1\r\nTransfer-Encoding:  Chunked \t\r\n"
		 "Connection: close\r\n\r\n",
	  .method = HTTP_METHOD_POST, .method_name = "POST", .minor = 1, .keep_alive = false,
	  .chunked = true, .content_length = -1, .path = "/cache/k", .query = "" },
	{ .raw = "DELETE /cache/k HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
	  .method = HTTP_METHOD_DELETE, .method_name = "DELETE", .minor = 0, .keep_alive = true,
	  .content_length = -1, .path = "/cache/k", .query = "" },
	{ .raw = "PATCH /cache/k HTTP/1.1\r\n\r\n", .method = HTTP_METHOD_OTHER,
	  .method_name = "PATCH", .minor = 1, .keep_alive = true, .content_length = -1,
	  .path = "/cache/k", .query = "" },
	{ .raw = "get /x HTTP/1.1\r\n\r\n", .method = HTTP_METHOD_OTHER, .method_name = "get",
	  .minor = 1, .keep_alive = true, .content_length = -1, .path = "/x", .query = "" },
	{ .raw = "\r\nGET /after-crlf HTTP/1.1\r\n\r\n", .method = HTTP_METHOD_GET,
	  .method_name = "GET", .minor = 1, .keep_alive = true, .content_length = -1,
	  .path = "/after-crlf", .query = "" },
	{ .raw = "\nGET /after-lf HTTP/1.1\n\n", .method = HTTP_METHOD_GET, .method_name = "GET",
	  .minor = 1, .keep_alive = true, .content_length = -1, .path = "/after-lf",
	  .query = "" },
	{ .raw = "GET /cache/k HTTP/1.1\r\naccept-encoding: gzip, br\r\n"
		 "IF-NONE-MATCH: \"abc\"\r\nCache-Control:no-cache\r\nx-api-key: k1\r\n"
		 "X-Api-Key: k2\r\nAuthorization: Bearer t\r\nAccept-Encoding: zstd\r\n\r\n",
	  .method = HTTP_METHOD_GET, .method_name = "GET", .minor = 1, .keep_alive = true,
	  .content_length = -1, .path = "/cache/k", .query = "", .accept_encoding = "gzip, br",
	  .if_none_match = "\"abc\"", .cache_control = "no-cache", .x_api_key = "k1",
	  .authorization = "Bearer t" },
	/* fill leases (docs/cache-aside.md): the first of each kept, any case */
	{ .raw = "GET /cache/k HTTP/1.1\r\nx-cache-fill: lease\r\nX-CACHE-FILL: no\r\n"
		 "X-Cache-Lease:  0123abcd \r\nx-cache-lease: other\r\n\r\n",
	  .method = HTTP_METHOD_GET, .method_name = "GET", .minor = 1, .keep_alive = true,
	  .content_length = -1, .path = "/cache/k", .query = "", .x_cache_fill = "lease",
	  .x_cache_lease = "0123abcd" },
	{ .raw = "PUT /cache/k HTTP/1.1\r\nContent-Length: 0\r\nx-cache-tags:  a, b \r\n\r\n",
	  .method = HTTP_METHOD_PUT, .method_name = "PUT", .minor = 1, .keep_alive = true,
	  .content_length = 0, .path = "/cache/k", .query = "", .x_cache_tags = "a, b" },
	{ .raw = "PUT /cache/k HTTP/1.1\r\nContent-Length: 0\r\nX-Cache-Tags: a\r\n"
		 "X-CACHE-TAGS: b\r\n\r\n",
	  .method = HTTP_METHOD_PUT, .method_name = "PUT", .minor = 1, .keep_alive = true,
	  .content_length = 0, .path = "/cache/k", .query = "", .x_cache_tags = "a",
	  .tags_repeated = true },
	{ .raw = "GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n", .method = HTTP_METHOD_GET,
	  .method_name = "GET", .minor = 1, .keep_alive = false, .content_length = -1,
	  .path = "/", .query = "" },
	{ .raw = "GET / HTTP/1.0\r\nConnection: keep-alive ,\t CLOSE\r\n\r\n",
	  .method = HTTP_METHOD_GET, .method_name = "GET", .minor = 0, .keep_alive = false,
	  .content_length = -1, .path = "/", .query = "" },
	{ .raw = "GET / HTTP/1.1\r\nConnection: ,,foo, \r\n\r\n", .method = HTTP_METHOD_GET,
	  .method_name = "GET", .minor = 1, .keep_alive = true, .content_length = -1,
	  .path = "/", .query = "" },
	{ .raw = "PUT /cache/k HTTP/1.1\r\nContent-Length: 7\r\ncontent-length:7 \r\n\r\n",
	  .method = HTTP_METHOD_PUT, .method_name = "PUT", .minor = 1, .keep_alive = true,
	  .content_length = 7, .path = "/cache/k", .query = "" },
	{ .raw = "PUT /cache/k HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n",
	  .method = HTTP_METHOD_PUT, .method_name = "PUT", .minor = 1, .keep_alive = true,
	  .content_length = 999999999999999999ll, .path = "/cache/k", .query = "" },
	{ .raw = "PUT /cache/k HTTP/1.0\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n",
	  .method = HTTP_METHOD_PUT, .method_name = "PUT", .minor = 0, .keep_alive = false,
	  .content_length = 0, .path = "/cache/k", .query = "" },
	{ .raw = "GET /a? HTTP/1.1\nHost: a\r\nX-Empty:\r\nX-T: a\tb\xff \r\n\n",
	  .method = HTTP_METHOD_GET, .method_name = "GET", .minor = 1, .keep_alive = true,
	  .content_length = -1, .path = "/a", .query = "" },
	{ .raw = "GET /p?q?r=%2F HTTP/1.1\r\nContent-Type:\t \r\n\r\n", .method = HTTP_METHOD_GET,
	  .method_name = "GET", .minor = 1, .keep_alive = true, .content_length = -1,
	  .path = "/p", .query = "q?r=%2F", .content_type = "" },
	/* absolute-form (RFC 9112 3.2.2): the authority is ignored */
	{ .raw = "GET http://cache.example:8080/cache/k?ttl=5 HTTP/1.1\r\nHost: other\r\n\r\n",
	  .method = HTTP_METHOD_GET, .method_name = "GET", .minor = 1, .keep_alive = true,
	  .content_length = -1, .path = "/cache/k", .query = "ttl=5",
	  .target = "http://cache.example:8080/cache/k?ttl=5" },
	{ .raw = "PUT HTTPS://[::1]:443/cache/a%2Fb HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
	  .method = HTTP_METHOD_PUT, .method_name = "PUT", .minor = 1, .keep_alive = true,
	  .content_length = 1, .path = "/cache/a%2Fb", .query = "",
	  .target = "HTTPS://[::1]:443/cache/a%2Fb" },
	{ .raw = "DELETE hTtP://a.b-c_d~e!$&'()*+,;=%41/cache/k HTTP/1.0\r\n\r\n",
	  .method = HTTP_METHOD_DELETE, .method_name = "DELETE", .minor = 0,
	  .keep_alive = false, .content_length = -1, .path = "/cache/k", .query = "",
	  .target = "hTtP://a.b-c_d~e!$&'()*+,;=%41/cache/k" },
	{ .raw = "GET http://h//cache//k? HTTP/1.1\n\n", .method = HTTP_METHOD_GET,
	  .method_name = "GET", .minor = 1, .keep_alive = true, .content_length = -1,
	  .path = "//cache//k", .query = "", .target = "http://h//cache//k?" },
	/* an empty path means "/" */
	{ .raw = "GET http://h HTTP/1.1\r\n\r\n", .method = HTTP_METHOD_GET,
	  .method_name = "GET", .minor = 1, .keep_alive = true, .content_length = -1,
	  .path = "/", .query = "", .target = "http://h" },
	{ .raw = "GET https://h:1?x=1 HTTP/1.1\r\n\r\n", .method = HTTP_METHOD_GET,
	  .method_name = "GET", .minor = 1, .keep_alive = true, .content_length = -1,
	  .path = "/", .query = "x=1", .target = "https://h:1?x=1" },
	{ .raw = "M-SEARCH!#$%&'*+.^_`|~ /x HTTP/1.1\r\n\r\n", .method = HTTP_METHOD_OTHER,
	  .method_name = "M-SEARCH!#$%&'*+.^_`|~", .minor = 1, .keep_alive = true,
	  .content_length = -1, .path = "/x", .query = "" },
};

/* ---- refused requests -------------------------------------------------- */

/* a value longer than SMALL's max_head */
#define LONG_280                                                                   \
	"0123456789012345678901234567890123456789012345678901234567890123456789"   \
	"0123456789012345678901234567890123456789012345678901234567890123456789"   \
	"0123456789012345678901234567890123456789012345678901234567890123456789"   \
	"0123456789012345678901234567890123456789012345678901234567890123456789"

struct refused {
	const char *raw;
	int status;
	const struct http_limits *lim;
};

static const struct refused refused[] = {
	{ "GET  / HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1 \r\n\r\n", -400, &LIM },
	{ " GET / HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET /\tx HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET x HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET * HTTP/1.1\r\n\r\n", -400, &LIM },
	/* other forms than origin-form and absolute-form (RFC 9112 3.2) */
	{ "OPTIONS * HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "CONNECT a:443 HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET a:80/x HTTP/1.1\r\n\r\n", -400, &LIM },
	/* absolute-form: only http and https, a host, no userinfo */
	{ "GET ftp://a/x HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET httpx://a/x HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http:/a/x HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http:a/x HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http:// HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http:///x HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http://:80/x HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http://u@a/x HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http://u:p@a/x HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http://a#f HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http://a{/x HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http://a/\x01 HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET http://a\r\n", -400, &LIM },
	{ "GET http://a/x\r\n\r\n", -400, &LIM },
	{ "GET /a\x7f HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET /\xc3\xa9 HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET /HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET\r\n\r\n", -400, &LIM },
	{ "/ HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "G(T / HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET / http/1.1\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.10\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/a.1\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\rX\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\r\n\r\n", -400, &LIM },
	{ "\r\r\nGET / HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "\rX", -400, &LIM },
	{ "\r\n\r\nGET / HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "\n\nGET / HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\nHost : a\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\n\tX: a\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\nFoo\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\n: a\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\nX(: a\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\n\rX: a\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\n\r\r\n\r\n", -400, &LIM },
	/* a complete request line is judged when it ends, whatever follows:
	 * an HTTP/0.9 client sends nothing after it and waits */
	{ "GET /x\r\n", -400, &LIM },
	{ "GET /x\n", -400, &LIM },
	{ "GET /cache/k?a=b\r\n", -400, &LIM },
	{ "\r\nGET /x\r\n", -400, &LIM },
	{ "GET x HTTP/1.1\r\n", -400, &LIM },
	{ "GET / HTTP/1.1 \r\n", -400, &LIM },
	{ "GET / HTTP/2.0\r\n", -505, &LIM },
	{ "GET x HTTP/1.1\r\nX-Long: "
	  LONG_280
	  "\r\n\r\n", -400, &SMALL },
	/* and a bare CR ends it as soon as the byte after it arrives */
	{ "GET /x\rH", -400, &LIM },
	{ "GET /x HTTP/1.1\r\r", -400, &LIM },
	{ "GET /cache/m HTTP/1.1\rHost: x\r\r", -400, &LIM },
	/* decided by the first bytes, before the line ends */
	{ "\x16\x03\x01\x02\x00\x01", -400, &LIM },
	{ "hello\n", -400, &LIM },
	{ "GET\t/ HTTP/1.1\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nContent-Length: 1a\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nContent-Length: \r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", -400, &LIM },
	/* a faulty field line is judged when it ends, before the head does:
	 * a client that sent it may be waiting for the answer */
	{ "GET / HTTP/1.1\r\nHost : x\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\r\nHost: x\r\nX: a\rb", -400, &LIM },
	{ "GET / HTTP/1.1\r\nHost: x\r\r", -400, &LIM },
	{ "GET / HTTP/1.1\r\nHost: x\r\n\rX", -400, &LIM },
	{ "GET / HTTP/1.1\r\nX: 1\r\n b\r\n", -400, &LIM },
	{ "GET / HTTP/1.1\nFoo\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1a\r\n", -400, &LIM },
	{ "PUT / HTTP/1.1\r\nTransfer-Encoding:\r\n", -400, &LIM },
	/* the first faulty line decides */
	{ "GET / HTTP/1.1\r\nX: \x01\r\nY : 1\r\nExpect: no\r\n\r\n", -400, &LIM },
	{ "GET / HTTP/2.0\r\nX : 1\r\n\r\n", -505, &LIM },
	{ "GET / HTTP/2.0\r\n\r\n", -505, &LIM },
	{ "GET / HTTP/1.2\r\n\r\n", -505, &LIM },
	{ "GET / HTTP/0.9\r\n\r\n", -505, &LIM },
	{ "GET / HTTP/3.1\n\n", -505, &LIM },
	{ "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", -501, &LIM },
	{ "PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", -501, &LIM },
	{ "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", -501, &LIM },
	{ "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	  -501, &LIM },
	{ "PUT / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", -417, &LIM },
	{ "PUT / HTTP/1.1\r\nExpect: 100-continue, x\r\n\r\n", -417, &LIM },
	/* limits: request line 64, head 256, 4 fields */
	{ "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
	  -414, &SMALL },
	{ "G\x01T /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
	  -400, &SMALL },
	{ "GET /\x01" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
	  -414, &SMALL },
	{ "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\r\n\r\n",
	  -414, &SMALL },
	{ "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", -431, &SMALL },
	/* a faulty field line is decided when it ends, the count at the head's */
	{ "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE : 5\r\n\r\n", -400, &SMALL },
	{ "GET / HTTP/1.1\r\nA : 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", -400, &SMALL },
	{ "GET / HTTP/1.1\r\nX-Long: "
	  LONG_280
	  "0123456789\r\n\r\n", -431, &SMALL },
	/* a faulty line ending within max_head decides before the head's size */
	{ "GET / HTTP/1.1\r\nX : bad\r\nX-Long: "
	  LONG_280
	  "0123456789\r\n\r\n", -400, &SMALL },
	/* and one that does not end within max_head is 431 */
	{ "GET / HTTP/1.1\r\nX-Long : "
	  LONG_280
	  "0123456789\r\n\r\n", -431, &SMALL },
};

/* ---- helpers ------------------------------------------------------------- */

static char *copy(const char *p, size_t n)
{
	char *c = malloc(n ? n : 1);
	memcpy(c, p, n);
	return c;
}

static bool str_is(struct http_str s, const char *want)
{
	if (!want)
		return s.p == NULL && s.len == 0;
	return s.p && s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

/* Same field, same place relative to each request's buffer. */
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
	       str_same(a->x_cache_lease, abase, b->x_cache_lease, bbase) &&
	       str_same(a->x_cache_tags, abase, b->x_cache_tags, bbase) &&
	       a->tags_repeated == b->tags_repeated;
}

static int parse_once(const char *p, size_t n, const struct http_limits *lim,
		      struct http_request *r)
{
	size_t scanned = 0;
	return http_parse_request(p, n, &scanned, lim, r);
}

static void check_fields(const struct want *w)
{
	size_t n = strlen(w->raw);
	char *b = copy(w->raw, n);
	struct http_request r;
	int rc = parse_once(b, n, &LIM, &r);

	CHECK_EQ(rc, (int)n);
	if (rc != (int)n) {
		fprintf(stderr, "  request: %s\n", w->raw);
		free(b);
		return;
	}
	CHECK_EQ(r.head_len, n);
	CHECK_EQ(r.method, w->method);
	CHECK(str_is(r.method_name, w->method_name));
	CHECK_EQ(r.minor, w->minor);
	CHECK_EQ(r.keep_alive, w->keep_alive);
	CHECK_EQ(r.chunked, w->chunked);
	CHECK_EQ(r.expect_continue, w->expect_continue);
	CHECK_EQ(r.content_length, w->content_length);
	CHECK(str_is(r.path, w->path));
	CHECK(str_is(r.query, w->query));
	if (w->target) {
		/* path and query lie in the target, the query at its end */
		CHECK(str_is(r.target, w->target));
		CHECK(r.path.p > r.target.p && r.path.p + r.path.len <= r.target.p + r.target.len);
		CHECK(r.query.p + r.query.len == r.target.p + r.target.len);
	} else {
		CHECK(r.target.p == r.path.p);
		CHECK(r.target.len ==
		      r.path.len + (r.query.p != r.path.p + r.path.len) + r.query.len);
	}
	CHECK(str_is(r.accept_encoding, w->accept_encoding));
	CHECK(str_is(r.if_none_match, w->if_none_match));
	CHECK(str_is(r.content_type, w->content_type));
	CHECK(str_is(r.cache_control, w->cache_control));
	CHECK(str_is(r.x_api_key, w->x_api_key));
	CHECK(str_is(r.x_cache_fill, w->x_cache_fill));
	CHECK(str_is(r.x_cache_lease, w->x_cache_lease));
	CHECK(str_is(r.authorization, w->authorization));
	CHECK(str_is(r.x_cache_tags, w->x_cache_tags));
	CHECK_EQ(r.tags_repeated, w->tags_repeated);
	free(b);
}

/*
 * The split property for one input: every prefix fed in order with one
 * `scanned` gives HTTP_AGAIN and then the one-shot result, which is also what
 * a fresh parse of that prefix gives; the input in two parts gives the
 * one-shot result; and a refused or incomplete parse never writes `req`.
 */
static void check_splits(const char *raw, size_t n, const struct http_limits *lim)
{
	struct http_request full, r, poison;
	char *fb = copy(raw, n);
	int want = parse_once(fb, n, lim, &full);
	unsigned bad = 0;

	CHECK(want != HTTP_AGAIN);
	memset(&poison, 0xa5, sizeof(poison));

	/* one byte at a time */
	size_t scanned = 0;
	size_t decided = 0;
	for (size_t k = 1; k <= n && !decided; k++) {
		char *b = copy(raw, k);
		r = poison;
		int rc = http_parse_request(b, k, &scanned, lim, &r);
		struct http_request r1;
		int once = parse_once(b, k, lim, &r1);
		if (rc != once)
			bad++;
		/* r is scratch unless rc > 0 (parsed in place, http.h) */
		if (rc != HTTP_AGAIN) {
			decided = k;
			if (rc != want || (rc > 0 && (k != n || !req_same(&r, b, &full, fb))))
				bad++;
		}
		free(b);
	}
	if (!decided)
		bad++;
	if (want > 0 && decided != n)
		bad++;

	/* two parts */
	for (size_t k = 0; k <= n; k++) {
		char *b = copy(raw, n);
		scanned = 0;
		int rc = http_parse_request(b, k, &scanned, lim, &r);
		if (rc != HTTP_AGAIN && rc != want)
			bad++;
		if (rc == HTTP_AGAIN) {
			rc = http_parse_request(b, n, &scanned, lim, &r);
			if (rc != want || (rc > 0 && !req_same(&r, b, &full, fb)))
				bad++;
		}
		free(b);
	}

	/* a pipelined request behind it changes nothing */
	if (want > 0) {
		static const char next[] = "GET /next HTTP/1.1\r\n\r\n";
		char *b = malloc(n + sizeof(next));
		memcpy(b, raw, n);
		memcpy(b + n, next, sizeof(next));
		CHECK_EQ(parse_once(b, n + sizeof(next) - 1, lim, &r), want);
		CHECK(req_same(&r, b, &full, fb));
		free(b);
	}
	CHECK_EQ(bad, 0);
	if (bad)
		fprintf(stderr, "  split failures for: %.*s\n", (int)n, raw);
	free(fb);
}

static void test_valid(void)
{
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		check_fields(&valid[i]);
		check_splits(valid[i].raw, strlen(valid[i].raw), &LIM);
	}
}

static void test_refused(void)
{
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		const struct refused *t = &refused[i];
		size_t n = strlen(t->raw);
		struct http_request r;
		int rc = parse_once(t->raw, n, t->lim, &r);
		CHECK_EQ(rc, t->status);
		if (rc != t->status)
			fprintf(stderr, "  request: %s\n", t->raw);
		check_splits(t->raw, n, t->lim);
	}

	/* a NUL in a value, which strlen cannot measure */
	static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
	struct http_request r;
	CHECK_EQ(parse_once(nul, sizeof(nul) - 1, &LIM, &r), -400);
	check_splits(nul, sizeof(nul) - 1, &LIM);
	/* decided when that line ends, before the head does */
	static const char nul_open[] = "GET / HTTP/1.1\r\nX: a\0b\r\n";
	CHECK_EQ(parse_once(nul_open, sizeof(nul_open) - 1, &LIM, &r), -400);
	check_splits(nul_open, sizeof(nul_open) - 1, &LIM);
	static const char nul_target[] = "GET /a\0b HTTP/1.1\r\n\r\n";
	CHECK_EQ(parse_once(nul_target, sizeof(nul_target) - 1, &LIM, &r), -400);
	check_splits(nul_target, sizeof(nul_target) - 1, &LIM);
}

static void fill(char *p, size_t n, char c)
{
	memset(p, c, n);
}

/* 414 and 431 exactly at their limits, and before the line or head ends. */
static void test_limits(void)
{
	struct http_request r;
	char b[1024];
	size_t scanned;

	/* request line of exactly 64 bytes: accepted; 65: refused */
	memcpy(b, "GET /", 5);
	fill(b + 5, 50, 'a');
	memcpy(b + 55, " HTTP/1.1\r\n\r\n", 13);
	CHECK_EQ(parse_once(b, 68, &SMALL, &r), 68);
	memcpy(b, "GET /", 5);
	fill(b + 5, 51, 'a');
	memcpy(b + 56, " HTTP/1.1\r\n\r\n", 13);
	CHECK_EQ(parse_once(b, 69, &SMALL, &r), -414);

	/* no LF yet: 64 bytes wait, a 65th decides, a CR 65th waits; the
	 * byte after it shows a bare CR ending a line of 64 bytes: 400 */
	fill(b, 100, 'a');
	memcpy(b, "GET /", 5);
	CHECK_EQ(parse_once(b, 64, &SMALL, &r), HTTP_AGAIN);
	CHECK_EQ(parse_once(b, 65, &SMALL, &r), -414);
	b[64] = '\r';
	CHECK_EQ(parse_once(b, 65, &SMALL, &r), HTTP_AGAIN);
	CHECK_EQ(parse_once(b, 66, &SMALL, &r), -400);
	scanned = 0;
	CHECK_EQ(http_parse_request(b, 60, &scanned, &SMALL, &r), HTTP_AGAIN);
	CHECK_EQ(http_parse_request(b, 65, &scanned, &SMALL, &r), HTTP_AGAIN);
	CHECK_EQ(http_parse_request(b, 66, &scanned, &SMALL, &r), -400);
	/* a CR 66th comes after 65 bytes of line: 414 */
	b[64] = 'a';
	b[65] = '\r';
	CHECK_EQ(parse_once(b, 66, &SMALL, &r), -414);
	scanned = 0;
	CHECK_EQ(http_parse_request(b, 64, &scanned, &SMALL, &r), HTTP_AGAIN);
	CHECK_EQ(http_parse_request(b, 66, &scanned, &SMALL, &r), -414);

	/* a request line limit above max_head still ends in 414, not 431 */
	struct http_limits wide = HTTP_LIMITS(1000, 64, 10);
	fill(b, 200, 'a');
	memcpy(b, "GET /", 5);
	CHECK_EQ(parse_once(b, 200, &wide, &r), -414);
	memcpy(b + 70, " HTTP/1.1\r\n\r\n", 13);
	CHECK_EQ(parse_once(b, 83, &wide, &r), -414);
	check_splits(b, 83, &wide);

	/* head of exactly 256 bytes: accepted; 257: refused, also unfinished */
	size_t n = 0;
	n += (size_t)sprintf(b + n, "GET / HTTP/1.1\r\nX: ");
	size_t pad = 256 - n - 4;
	fill(b + n, pad, 'v');
	n += pad;
	memcpy(b + n, "\r\n\r\n", 4);
	n += 4;
	CHECK_EQ(n, 256);
	CHECK_EQ(parse_once(b, n, &SMALL, &r), 256);
	check_splits(b, n, &SMALL);
	memmove(b + 20, b + 19, n - 19);
	b[19] = 'v';
	CHECK_EQ(parse_once(b, n + 1, &SMALL, &r), -431);
	check_splits(b, n + 1, &SMALL);
	CHECK_EQ(parse_once(b, 256, &SMALL, &r), HTTP_AGAIN);
	CHECK_EQ(parse_once(b, 257, &SMALL, &r), -431);
	/* LF-only ends land on the limit the same way */
	n = (size_t)sprintf(b, "GET / HTTP/1.1\nX: ");
	fill(b + n, 256 - n - 2, 'v');
	b[254] = '\n';
	b[255] = '\n';
	CHECK_EQ(parse_once(b, 256, &SMALL, &r), 256);
	b[255] = 'v';
	b[256] = '\n';
	CHECK_EQ(parse_once(b, 257, &SMALL, &r), -431);

	/* four fields are allowed, the fifth is refused */
	static const char four[] = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
	CHECK_EQ(parse_once(four, sizeof(four) - 1, &SMALL, &r), (int)sizeof(four) - 1);

	/* never settles on an endless stream of fields */
	fill(b, 1024, 0);
	n = (size_t)sprintf(b, "GET / HTTP/1.1\r\n");
	while (n + 6 <= sizeof(b)) {
		memcpy(b + n, "A: 1\r\n", 6);
		n += 6;
	}
	CHECK_EQ(parse_once(b, n, &LIM, &r), HTTP_AGAIN);
	CHECK_EQ(parse_once(b, n, &SMALL, &r), -431);
}

/*
 * Values and paths are scanned 8 bytes at a time: every byte class at every
 * offset of a long value and a long path, against a byte-at-a-time oracle.
 */
static void test_wide_scans(void)
{
	static const uint8_t value_ok[] = { '\t', ' ', '!', '~', 0x80, 0xff, '"' };
	static const uint8_t value_bad[] = { 0, 1, 0x1f, 0x7f, '\r', '\n' };
	static const uint8_t path_bad[] = { 0, '\t', 0x1f, 0x7f, 0x80, 0xff };
	struct http_request r;
	char b[256];

	for (size_t off = 0; off < 40; off++) {
		const char *pre = "GET / HTTP/1.1\r\nX-Api-Key: ";
		size_t n = strlen(pre);
		memcpy(b, pre, n);
		for (size_t i = 0; i < sizeof(value_ok) + sizeof(value_bad); i++) {
			bool ok = i < sizeof(value_ok);
			uint8_t c = ok ? value_ok[i] : value_bad[i - sizeof(value_ok)];
			memset(b + n, 'v', 40);
			b[n + off] = (char)c;
			memcpy(b + n + 40, "\r\n\r\n", 4);
			int rc = parse_once(b, n + 44, &LIM, &r);
			if (c == '\n' && off == 39) {
				/* the field just ends early, with a bare LF */
				CHECK_EQ(rc, (int)(n + 42));
				continue;
			}
			/* a LF inside ends the field early, and the rest of
			 * the value becomes a line without a colon */
			CHECK_EQ(rc, ok ? (int)(n + 44) : -400);
			if (ok && rc > 0) {
				/* OWS at either end is trimmed */
				size_t lead = off == 0 && (c == ' ' || c == '\t');
				size_t trail = off == 39 && (c == ' ' || c == '\t');
				CHECK_EQ(r.x_api_key.len, 40 - lead - trail);
			}
		}
	}

	for (size_t off = 0; off < 40; off++) {
		char *p = b;
		memcpy(p, "GET /", 5);
		memset(p + 5, 'p', 40);
		memcpy(p + 45, " HTTP/1.1\r\n\r\n", 13);
		for (size_t i = 0; i < sizeof(path_bad); i++) {
			p[5 + off] = (char)path_bad[i];
			CHECK_EQ(parse_once(p, 58, &LIM, &r), -400);
		}
		p[5 + off] = '?';
		CHECK_EQ(parse_once(p, 58, &LIM, &r), 58);
		CHECK_EQ(r.path.len, 1 + off);
		CHECK_EQ(r.query.len, 39 - off);
		CHECK(r.query.p == p + 6 + off);
		CHECK_EQ(r.target.len, 41);
	}
}

/* Field names match whatever their case, and only exactly. */
static void test_field_names(void)
{
	static const char upper[] = "PUT /k HTTP/1.1\r\nCONTENT-LENGTH: 5\r\n"
				    "X-API-KEY: a\r\nIf-None-MATCH: b\r\n\r\n";
	static const char near[] = "PUT /k HTTP/1.1\r\nContent_Length: x\r\n"
				   "Content-Lengthy: x\r\nX-Api-Keys: a\r\nTransfer-Encodinf: x\r\n"
				   "Expect_: x\r\nContent~Length: x\r\n\r\n";
	static const char te[] = "PUT /k HTTP/1.1\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n";
	struct http_request r;

	CHECK_EQ(parse_once(upper, sizeof(upper) - 1, &LIM, &r), (int)sizeof(upper) - 1);
	CHECK_EQ(r.content_length, 5);
	CHECK(str_is(r.x_api_key, "a"));
	CHECK(str_is(r.if_none_match, "b"));
	CHECK_EQ(parse_once(near, sizeof(near) - 1, &LIM, &r), (int)sizeof(near) - 1);
	CHECK_EQ(r.content_length, -1);
	CHECK(r.x_api_key.p == NULL);
	CHECK(!r.chunked && !r.expect_continue);
	CHECK_EQ(parse_once(te, sizeof(te) - 1, &LIM, &r), (int)sizeof(te) - 1);
	CHECK(r.chunked);
}

/*
 * The common shapes are matched a word at a time ("GET ", "HTTP/1.1\r\n"
 * and a CRLF in one compare each): those fast paths and the general
 * checks they fall back to give the same results, at every split point and
 * before a guard page, for those shapes and their near misses, also
 * when the window they need ends exactly at the request line limit.
 */
struct word_case {
	const char *raw;
	int rc;                     /* > 0: the whole input */
	int method, minor;
	const char *method_name;
	const struct http_limits *lim;
};

static const struct http_limits AT14 = HTTP_LIMITS(14, 64, 4);

static const struct word_case word_cases[] = {
	{ "GET /x HTTP/1.1\r\n\r\n", 1, HTTP_METHOD_GET, 1, "GET", &LIM },
	{ "GET /x HTTP/1.1\n\n", 1, HTTP_METHOD_GET, 1, "GET", &LIM },
	{ "GET /x HTTP/1.0\r\n\r\n", 1, HTTP_METHOD_GET, 0, "GET", &LIM },
	{ "GET /x HTTP/1.1\r\nA: 1\r\n\r\n", 1, HTTP_METHOD_GET, 1, "GET", &LIM },
	{ "GET / HTTP/1.1\r\n\r\n", 1, HTTP_METHOD_GET, 1, "GET", &AT14 },
	{ "GET / HTTP/1.1\n\n", 1, HTTP_METHOD_GET, 1, "GET", &AT14 },
	{ "GET /x HTTP/1.1\r\n\r\n", -414, 0, 0, NULL, &AT14 },
	{ "GET /x HTTP/1.1\n\n", -414, 0, 0, NULL, &AT14 },
	{ "GET /x HTTP/1.0\n\n", -414, 0, 0, NULL, &AT14 },
	{ "GET /x HTTP/2.0\n\n", -414, 0, 0, NULL, &AT14 },
	{ "GET /x HTTP/1.1\r\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET /x HTTP/1.1\rX\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET /x HTTP/1.1X\r\n\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET /x HTTP/1.1 \r\n\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET /x http/1.1\r\n\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET /x HTTP/1,1\r\n\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET /x HTTP/1.1\x01\r\n\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET /x HTTP/1.2\r\n\r\n", -505, 0, 0, NULL, &LIM },
	{ "GET /x HTTP/2.1\r\n\r\n", -505, 0, 0, NULL, &LIM },
	/* and "GET " / "PUT " in one 4-byte compare, other methods scanned */
	{ "PUT /x HTTP/1.1\r\n\r\n", 1, HTTP_METHOD_PUT, 1, "PUT", &LIM },
	{ "GETS /x HTTP/1.1\r\n\r\n", 1, HTTP_METHOD_OTHER, 1, "GETS", &LIM },
	{ "PUTX /x HTTP/1.1\r\n\r\n", 1, HTTP_METHOD_OTHER, 1, "PUTX", &LIM },
	{ "GE /x HTTP/1.1\r\n\r\n", 1, HTTP_METHOD_OTHER, 1, "GE", &LIM },
	{ "Get /x HTTP/1.1\r\n\r\n", 1, HTTP_METHOD_OTHER, 1, "Get", &LIM },
	{ "HEAD /x HTTP/1.0\r\n\r\n", 1, HTTP_METHOD_HEAD, 0, "HEAD", &LIM },
	{ "DELETE /x HTTP/1.1\r\n\r\n", 1, HTTP_METHOD_DELETE, 1, "DELETE", &LIM },
	{ "GET\t/x HTTP/1.1\r\n\r\n", -400, 0, 0, NULL, &LIM },
	{ "PUT\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET  /x HTTP/1.1\r\n\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET HTTP/1.1\r\n\r\n", -400, 0, 0, NULL, &LIM },
	/* CRLF ending a field line or the head in one 2-byte compare, lone LFs
	 * and bare CRs by the general checks */
	{ "GET /x HTTP/1.1\r\nA: 1\n\r\n", 1, HTTP_METHOD_GET, 1, "GET", &LIM },
	{ "GET /x HTTP/1.1\r\nA: 1\r\n\n", 1, HTTP_METHOD_GET, 1, "GET", &LIM },
	{ "GET /x HTTP/1.1\nA: 1\r\nB:\r\n\r\n", 1, HTTP_METHOD_GET, 1, "GET", &LIM },
	{ "GET /x HTTP/1.1\r\nA: 1\r\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET /x HTTP/1.1\r\nA: 1\r\n\r\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET /x HTTP/1.1\r\nA: 1\r\n\rB: 2\r\n\r\n", -400, 0, 0, NULL, &LIM },
	{ "GET /x HTTP/1.1\r\nA: 1\r\n\x01: 2\r\n\r\n", -400, 0, 0, NULL, &LIM },
};

static void test_word_compares(void)
{
	for (size_t i = 0; i < sizeof(word_cases) / sizeof(word_cases[0]); i++) {
		const struct word_case *w = &word_cases[i];
		size_t n = strlen(w->raw);
		char *b = copy(w->raw, n);
		struct http_request r;
		int want = w->rc > 0 ? (int)n : w->rc;
		int rc = parse_once(b, n, w->lim, &r);
		CHECK_EQ(rc, want);
		if (rc != want)
			fprintf(stderr, "  request: %s\n", w->raw);
		if (rc > 0 && want > 0) {
			CHECK_EQ(r.method, w->method);
			CHECK_EQ(r.minor, w->minor);
			CHECK(str_is(r.method_name, w->method_name));
			CHECK_EQ(r.keep_alive, w->minor == 1);
		}
		free(b);
		check_splits(w->raw, n, w->lim);
	}
}

/* `scanned` really resumes: the same bytes from a fresh start cost more. */
static void test_resume(void)
{
	static const char req[] = "GET /cache/k HTTP/1.1\r\nHost: x\r\n\r\n";
	struct http_request r;
	size_t scanned = 0;

	CHECK_EQ(http_parse_request(req, 20, &scanned, &LIM, &r), HTTP_AGAIN);
	CHECK_EQ(scanned, 20);
	CHECK_EQ(http_parse_request(req, 30, &scanned, &LIM, &r), HTTP_AGAIN);
	CHECK_EQ(scanned, 30);
	CHECK_EQ(http_parse_request(req, 30, &scanned, &LIM, &r), HTTP_AGAIN);
	CHECK_EQ(http_parse_request(req, sizeof(req) - 1, &scanned, &LIM, &r),
		 (int)sizeof(req) - 1);
	CHECK_EQ(http_parse_request(req, 0, &scanned, &LIM, &r), HTTP_AGAIN);
}

/* Every prefix of every valid request (and of the refused ones and the word
 * compares' cases), ending right before a PROT_NONE page. */
static void test_guard_page(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(map != MAP_FAILED);
	if (map == MAP_FAILED)
		return;
	CHECK(mprotect(map + pg, (size_t)pg, PROT_NONE) == 0);
	char *edge = map + pg;

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		const char *raw = valid[i].raw;
		size_t n = strlen(raw), scanned = 0;
		struct http_request r;
		int rc = HTTP_AGAIN;
		for (size_t k = 1; k <= n; k++) {
			memcpy(edge - k, raw, k);
			rc = http_parse_request(edge - k, k, &scanned, &LIM, &r);
			if (rc != HTTP_AGAIN)
				break;
			memcpy(edge - k, raw, k);
			CHECK_EQ(parse_once(edge - k, k, &LIM, &r), HTTP_AGAIN);
		}
		CHECK_EQ(rc, (int)n);
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		const char *raw = refused[i].raw;
		size_t n = strlen(raw);
		struct http_request r;
		for (size_t k = 1; k <= n; k++) {
			memcpy(edge - k, raw, k);
			int rc = parse_once(edge - k, k, refused[i].lim, &r);
			CHECK(rc == HTTP_AGAIN || rc < 0);
		}
	}
	/* the word compares' near misses end anywhere, too */
	for (size_t i = 0; i < sizeof(word_cases) / sizeof(word_cases[0]); i++) {
		const char *raw = word_cases[i].raw;
		size_t n = strlen(raw);
		int want = word_cases[i].rc > 0 ? (int)n : word_cases[i].rc;
		struct http_request r;
		for (size_t k = 1; k <= n; k++) {
			memcpy(edge - k, raw, k);
			int rc = parse_once(edge - k, k, word_cases[i].lim, &r);
			CHECK(rc == HTTP_AGAIN || rc == want);
		}
	}

	/* the helpers read exactly their input, too */
	uint8_t out[16];
	memcpy(edge - 5, "a%20b", 5);
	CHECK_EQ(http_decode_key(edge - 5, 5, out), 3);
	memcpy(edge - 4, "ab%2", 4);
	CHECK_EQ(http_decode_key(edge - 4, 4, out), -400);
	memcpy(edge - 1, "%", 1);
	CHECK_EQ(http_decode_key(edge - 1, 1, out), -400);
	uint32_t v = 0;
	memcpy(edge - 6, "ttl=12", 6);
	CHECK_EQ(http_query_u32((struct http_str){ edge - 6, 6 }, "ttl", &v), 1);
	CHECK_EQ(v, 12);
	memcpy(edge - 3, "ttl", 3);
	CHECK_EQ(http_query_u32((struct http_str){ edge - 3, 3 }, "ttl", &v), -400);
	memcpy(edge - 5, "0\r\n\r\n", 5);
	struct http_chunked c;
	size_t used;
	http_chunked_init(&c);
	CHECK_EQ(http_chunked_feed(&c, edge - 5, 5, &used, NULL, 100), 1);
	CHECK_EQ(used, 5);

	munmap(map, (size_t)pg * 2);
}

/* ---- chunked ------------------------------------------------------------- */

struct chunked_case {
	const char *body;   /* then "NEXT" follows it */
	int rc;             /* final result */
	const char *decoded;
	uint64_t max;
};

static const struct chunked_case chunked_cases[] = {
	{ "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 1, "hello world", 100 },
	{ "3;name=val\nabc\nA ; x=\"y\"\r\n0123456789\r\n0\n\n", 1, "abc0123456789", 100 },
	{ "4\r\nwiki\r\n0\r\nX-Trailer: 1\r\nY: 2\n\r\n", 1, "wiki", 100 },
	{ "1F\r\n0123456789abcdef0123456789ABCDE\r\n0\r\n\r\n", 1,
	  "0123456789abcdef0123456789ABCDE", 100 },
	{ "0\r\n\r\n", 1, "", 0 },
	{ "000\t ;ext\r\n\r\n", 1, "", 0 },
	{ "000000000000001\r\nx\r\n0\r\n\r\n", 1, "x", 1 },
	{ "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 1, "helloworld", 10 },
	{ "0000000000000001\r\nx\r\n0\r\n\r\n", -400, "", 100 },
	{ "\r\n", -400, "", 100 },
	{ "x\r\n", -400, "", 100 },
	{ ";a\r\n", -400, "", 100 },
	{ "5 x\r\nhello\r\n0\r\n\r\n", -400, "", 100 },
	{ "5\rx", -400, "", 100 },
	{ "5\r\nhelloX\r\n0\r\n\r\n", -400, "hello", 100 },
	{ "5\r\nhello\rX", -400, "hello", 100 },
	{ "5;a\x01\r\nhello\r\n0\r\n\r\n", -400, "", 100 },
	{ "0\r\n\rX", -400, "", 100 },
	{ "0\r\nA\rB\r\n\r\n", -400, "", 100 },
	/* trailer fields are checked as the head's field lines are */
	{ "0\r\nX-T: 1\r\nY:\r\nZ: a\tb\xff \r\n\r\n", 1, "", 0 },
	{ "0\r\nX-T: 1\nY: 2\n\n", 1, "", 0 },
	{ "0\r\n X: a\r\n\r\n", -400, "", 0 },
	{ "0\r\nX: a\r\n\tb\r\n\r\n", -400, "", 0 },
	{ "0\r\nX : a\r\n\r\n", -400, "", 0 },
	{ "0\r\n: a\r\n\r\n", -400, "", 0 },
	{ "0\r\nNoColon\r\n\r\n", -400, "", 0 },
	{ "0\r\nX(: a\r\n\r\n", -400, "", 0 },
	{ "0\r\nX: a\x01\r\n\r\n", -400, "", 0 },
	{ "0\r\nX: a\x7f\r\n\r\n", -400, "", 0 },
	{ "0\r\n\x01\r\n\r\n", -400, "", 0 },
	/* so is a chunk extension's end: no control bytes, no DEL */
	{ "1;a=\"\xff\t\"\r\nx\r\n0\r\n\r\n", 1, "x", 1 },
	{ "1;a\x7f\r\nx\r\n0\r\n\r\n", -400, "", 1 },
	{ "b\r\nhello world\r\n0\r\n\r\n", -413, "", 10 },
	{ "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", -413, "hello", 10 },
	{ "fffffffffffffff\r\n", -413, "", 1ull << 40 },
};

struct feed_result {
	int rc;
	size_t consumed;
	struct buf out;
};

/* Feeds body[0..n) in pieces that end at the offsets in cuts[]. */
static void feed(const char *body, size_t n, const size_t *cuts, size_t ncuts, uint64_t max,
		 struct feed_result *fr)
{
	struct http_chunked c;
	size_t off = 0;

	http_chunked_init(&c);
	memset(fr, 0, sizeof(*fr));
	fr->rc = HTTP_AGAIN;
	for (size_t i = 0; i <= ncuts && fr->rc == HTTP_AGAIN; i++) {
		size_t to = i < ncuts ? cuts[i] : n;
		size_t used = 0;
		char *piece = copy(body + off, to - off);
		fr->rc = http_chunked_feed(&c, piece, to - off, &used, &fr->out, max);
		free(piece);
		if (fr->rc == HTTP_AGAIN && used != to - off)
			fr->rc = 99;
		off += used;
	}
	fr->consumed = off;
}

static void test_chunked(void)
{
	for (size_t i = 0; i < sizeof(chunked_cases) / sizeof(chunked_cases[0]); i++) {
		const struct chunked_case *t = &chunked_cases[i];
		char in[256];
		size_t blen = strlen(t->body);
		size_t n = (size_t)snprintf(in, sizeof(in), "%sNEXT", t->body);
		struct feed_result one, split;
		unsigned bad = 0;

		feed(in, n, NULL, 0, t->max, &one);
		CHECK_EQ(one.rc, t->rc);
		if (t->rc == 1)
			CHECK_EQ(one.consumed, blen);
		CHECK_EQ(one.out.len, strlen(t->decoded));
		CHECK(one.out.len == 0 || memcmp(one.out.data, t->decoded, one.out.len) == 0);
		if (one.rc != t->rc)
			fprintf(stderr, "  body: %s\n", t->body);

		for (size_t k = 0; k <= n; k++) {
			size_t cut = k;
			feed(in, n, &cut, 1, t->max, &split);
			if (split.rc != one.rc || split.consumed != one.consumed ||
			    split.out.len != one.out.len ||
			    (one.out.len && memcmp(split.out.data, one.out.data, one.out.len)))
				bad++;
			buf_deinit(&split.out);
		}
		size_t cuts[256];
		for (size_t k = 0; k < n; k++)
			cuts[k] = k + 1;
		feed(in, n, cuts, n - 1, t->max, &split);
		if (split.rc != one.rc || split.consumed != one.consumed ||
		    split.out.len != one.out.len ||
		    (one.out.len && memcmp(split.out.data, one.out.data, one.out.len)))
			bad++;
		buf_deinit(&split.out);
		CHECK_EQ(bad, 0);
		if (bad)
			fprintf(stderr, "  chunked split failures: %s\n", t->body);
		buf_deinit(&one.out);
	}

	/* discarding: out == NULL still counts and frames */
	struct http_chunked c;
	size_t used;
	static const char body[] = "5\r\nhello\r\n0\r\n\r\n";
	http_chunked_init(&c);
	CHECK_EQ(http_chunked_feed(&c, body, sizeof(body) - 1, &used, NULL, 5), 1);
	CHECK_EQ(c.total, 5);
	CHECK_EQ(used, sizeof(body) - 1);
	/* once complete, it stays complete and consumes nothing */
	CHECK_EQ(http_chunked_feed(&c, "5\r\n", 3, &used, NULL, 5), 1);
	CHECK_EQ(used, 0);

	/* total counts bytes decoded, not bytes announced */
	http_chunked_init(&c);
	CHECK_EQ(http_chunked_feed(&c, "5\r\nhel", 6, &used, NULL, 5), HTTP_AGAIN);
	CHECK_EQ(c.total, 3);
	CHECK_EQ(c.remaining, 2);

	/* a size line or a trailer section cannot go on forever */
	char big[20000];
	memset(big, 'x', sizeof(big));
	memcpy(big, "1;", 2);
	http_chunked_init(&c);
	CHECK_EQ(http_chunked_feed(&c, big, sizeof(big), &used, NULL, 100), -400);
	memcpy(big, "0\r\nX: ", 6);
	http_chunked_init(&c);
	CHECK_EQ(http_chunked_feed(&c, big, sizeof(big), &used, NULL, 100), -400);
	/* but many chunks are fine */
	struct buf out = { 0 };
	http_chunked_init(&c);
	int rc = HTTP_AGAIN;
	for (int i = 0; i < 1000 && rc == HTTP_AGAIN; i++)
		rc = http_chunked_feed(&c, "2\r\nab\r\n", 7, &used, &out, 1u << 20);
	CHECK_EQ(rc, HTTP_AGAIN);
	CHECK_EQ(http_chunked_feed(&c, "0\r\n\r\n", 5, &used, &out, 1u << 20), 1);
	CHECK_EQ(out.len, 2000);
	CHECK_EQ(c.total, 2000);
	buf_deinit(&out);

	/* a NUL in a trailer field, which strlen cannot measure */
	static const char nul[] = "0\r\nX: a\0b\r\n\r\n";
	http_chunked_init(&c);
	CHECK_EQ(http_chunked_feed(&c, nul, sizeof(nul) - 1, &used, NULL, 0), -400);

	/* `out` that cannot grow is a status the server sends, not -ENOMEM:
	 * a buffer this full makes buf_reserve() fail without allocating */
	struct buf full = { .data = NULL, .len = SIZE_MAX - 2, .cap = SIZE_MAX - 2 };
	http_chunked_init(&c);
	CHECK_EQ(http_chunked_feed(&c, "5\r\nhello\r\n", 10, &used, &full, 100), -500);
	CHECK_EQ(full.len, SIZE_MAX - 2);
}

/* ---- key and query ------------------------------------------------------- */

static void test_decode_key(void)
{
	static const struct {
		const char *in;
		int rc;
		const char *out;
	} cases[] = {
		{ "abc", 3, "abc" },
		{ "", 0, "" },
		{ "a%20b", 3, "a b" },
		{ "%2f%2F", 2, "//" },
		{ "%41%4a%4A", 3, "AJJ" },
		{ "a+b", 3, "a+b" },
		{ "%25", 1, "%" },
		{ "%ff%FE", 2, "\xff\xfe" },
		{ "%", -400, NULL },
		{ "%2", -400, NULL },
		{ "abc%", -400, NULL },
		{ "%zz", -400, NULL },
		{ "%2g", -400, NULL },
		{ "%g2", -400, NULL },
		{ "a%2", -400, NULL },
	};
	uint8_t out[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = http_decode_key(cases[i].in, strlen(cases[i].in), out);
		CHECK_EQ(rc, cases[i].rc);
		if (rc >= 0 && cases[i].out)
			CHECK(memcmp(out, cases[i].out, (size_t)rc) == 0);
		/* the view: the same key, in place when nothing is escaped */
		const uint8_t *key = NULL;
		memset(out, 0, sizeof(out));
		rc = http_key_view(cases[i].in, strlen(cases[i].in), out, &key);
		CHECK_EQ(rc, cases[i].rc);
		if (rc >= 0 && cases[i].out) {
			bool escaped = strchr(cases[i].in, '%') != NULL;
			CHECK(key == (escaped ? out : (const uint8_t *)cases[i].in));
			CHECK(memcmp(key, cases[i].out, (size_t)rc) == 0);
		}
	}
	CHECK_EQ(http_decode_key("%00x", 4, out), 2);
	CHECK(out[0] == 0 && out[1] == 'x');
}

static void test_query(void)
{
	static const struct {
		const char *q;
		int rc;
		uint32_t v;
	} cases[] = {
		{ "ttl=60", 1, 60 },
		{ "a=1&ttl=5", 1, 5 },
		{ "ttl=0", 1, 0 },
		{ "ttl=007", 1, 7 },
		{ "ttl=4294967295", 1, 4294967295u },
		{ "xttl=5&ttl=7", 1, 7 },
		{ "ttl=5&ttl=x", 1, 5 },
		{ "&&ttl=9&", 1, 9 },
		{ "ttl=4294967296", -400, 0 },
		{ "ttl=99999999999999999999999", -400, 0 },
		{ "ttl=", -400, 0 },
		{ "ttl", -400, 0 },
		{ "ttl&x=1", -400, 0 },
		{ "ttl=abc", -400, 0 },
		{ "ttl=-1", -400, 0 },
		{ "ttl=+1", -400, 0 },
		{ "ttl=1 ", -400, 0 },
		{ "ttl=1=2", -400, 0 },
		{ "x=1", 0, 0 },
		{ "", 0, 0 },
		{ "ttlx=5", 0, 0 },
		{ "TTL=5", 0, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t v = 12345;
		struct http_str q = { cases[i].q, (uint32_t)strlen(cases[i].q) };
		int rc = http_query_u32(q, "ttl", &v);
		CHECK_EQ(rc, cases[i].rc);
		CHECK_EQ(v, rc == 1 ? cases[i].v : 12345);
	}
	uint32_t v;
	CHECK_EQ(http_query_u32((struct http_str){ NULL, 0 }, "ttl", &v), 0);
}

int main(void)
{
	test_valid();
	test_refused();
	test_limits();
	test_wide_scans();
	test_field_names();
	test_word_compares();
	test_resume();
	test_guard_page();
	test_chunked();
	test_decode_key();
	test_query();
	return check_done("http");
}
