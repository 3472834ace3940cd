/*
 * http.h - the HTTP/1.1 request parser: incremental, allocation-free,
 * independent of the server.  Pointers in a parsed request point into the
 * caller's buffer.
 *
 * One return convention for every function here, so that the sign alone
 * tells a caller what to do, whatever order it tests in:
 *
 *   > 0          done: a count (head length, decoded key length), or 1
 *                (a chunked body complete, a query parameter found)
 *   0            HTTP_AGAIN for the incremental functions: more input is
 *                needed; for the one-shot helpers an empty key or an absent
 *                parameter, also not an error
 *   < 0          -status: refuse the request with that HTTP status (-400,
 *                -413, -414, -417, -431, -500, -501, -505) and close
 *
 * No function returns -errno: a status cannot be mistaken for one, nor
 * "need more input" for either (HTTP_AGAIN used to be -1, which is -EPERM).
 * The chunked decoder's one resource failure, `out` unable to grow, comes
 * back as -500, the answer the server sends for it; a caller that wants to
 * tell it apart from the peer's faults can, since no peer fault gives 500.
 */
#ifndef RINGCACHE_HTTP_H
#define RINGCACHE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcache/buf.h"

/* More input is needed (see the convention above): 0, not a negative value,
 * so that no check for errors can take waiting for one. */
#define HTTP_AGAIN 0

enum http_method {
	HTTP_METHOD_OTHER = 0,
	HTTP_METHOD_GET,
	HTTP_METHOD_HEAD,
	HTTP_METHOD_PUT,
	HTTP_METHOD_POST,
	HTTP_METHOD_DELETE,
};

struct http_str {
	const char *p;
	uint32_t len;
};

/* Made by HTTP_LIMITS(), which also derives the last two fields once, not
 * per request. */
struct http_limits {
	uint32_t max_request_line;  /* bytes, CRLF excluded: over it -> -414 */
	uint32_t max_head;          /* request line + headers: over it -> -431 */
	uint32_t max_headers;       /* header fields: over it -> -431 */
	uint32_t head;              /* max_head, at most INT32_MAX */
	uint32_t line;              /* the request line's bound: max_request_line,
				     * at most head - 3 (parse.c: 414 before 431) */
};

#define HTTP_LIMITS_HEAD_(h) ((h) < INT32_MAX ? (uint32_t)(h) : (uint32_t)INT32_MAX)
#define HTTP_LIMITS_LINE_(rl, h)                                                   \
	((uint32_t)(rl) < (HTTP_LIMITS_HEAD_(h) > 3 ? HTTP_LIMITS_HEAD_(h) - 3 : 0)  \
		 ? (uint32_t)(rl)                                                   \
		 : (HTTP_LIMITS_HEAD_(h) > 3 ? HTTP_LIMITS_HEAD_(h) - 3 : 0))
/* The limits of a parser, as an initializer (a constant one when the
 * arguments are; `(struct http_limits)HTTP_LIMITS(...)` to assign).  A
 * request line longer than max_head - 3 cannot belong to a head that fits
 * (up to 2 bytes of leading empty line, then at least one LF), so `line`
 * refuses it as 414: that keeps 414 ahead of 431 on every prefix. */
#define HTTP_LIMITS(request_line, head_, headers)                                \
	{ .max_request_line = (uint32_t)(request_line), .max_head = (uint32_t)(head_), \
	  .max_headers = (uint32_t)(headers), .head = HTTP_LIMITS_HEAD_(head_),        \
	  .line = HTTP_LIMITS_LINE_(request_line, head_) }

struct http_request {
	uint8_t method;             /* enum http_method */
	uint8_t minor;              /* HTTP/1.<minor>: 0 or 1 */
	bool keep_alive;            /* version default adjusted by Connection */
	bool chunked;               /* Transfer-Encoding: chunked */
	bool expect_continue;       /* Expect: 100-continue */
	int64_t content_length;     /* -1 when absent */
	struct http_str method_name;
	struct http_str target;     /* raw request-target */
	struct http_str path;       /* target up to '?', after the authority
				     * in absolute-form, "/" if empty there */
	struct http_str query;      /* after '?', may be empty */
	struct http_str accept_encoding;
	struct http_str if_none_match;
	struct http_str content_type;
	struct http_str cache_control;
	struct http_str x_api_key;
	struct http_str authorization;
	struct http_str x_cache_fill;   /* fill leases (docs/cache-aside.md) */
	struct http_str x_cache_lease;
	struct http_str x_cache_tags;   /* X-Cache-Tags (issue 9), the first field */
	bool tags_repeated;             /* X-Cache-Tags came in more than one field */
	uint32_t head_len;          /* bytes of request line + headers + CRLFCRLF */
};

/*
 * Parses the request head at the start of buf[0..len).  *scanned is the
 * caller's state for one request: set it to 0 before the first call; the
 * parser records how far it has looked so that a request arriving a byte at
 * a time costs O(n), not O(n^2).  Returns the head length, HTTP_AGAIN, or
 * -status; the result depends on the bytes only, not on how they were split
 * across calls.  A faulty line is refused as soon as it ends (at its LF, or
 * at a bare CR), before the head does: an HTTP/0.9 request line gets 400 at
 * once.  `req` is the caller's scratch: it holds the request on success and
 * anything otherwise.  One empty line before the
 * request line is skipped (RFC 9112 2.2) and counted in the head length.
 * Origin-form and absolute-form targets are accepted (RFC 9112 3.2).  Host
 * is not required.
 */
int http_parse_request(const char *buf, size_t len, size_t *scanned,
		       const struct http_limits *lim, struct http_request *req);

/* State of an incremental chunked-body decoder. */
struct http_chunked {
	uint32_t state;
	uint64_t remaining;   /* bytes left in the current chunk */
	uint64_t total;       /* decoded bytes so far */
};

static inline void http_chunked_init(struct http_chunked *c)
{
	c->state = 0;
	c->remaining = 0;
	c->total = 0;
}

/*
 * Feeds in[0..len) to the decoder, appending decoded data to `out`.  *used
 * is set to the input bytes consumed.  Returns 1 when the last chunk and the
 * trailer section are complete (input after *used belongs to the next
 * request), HTTP_AGAIN when it needs more input (all of `in` was used), -400
 * for a malformed body, -413 once the decoded size would pass `max`, -500 if
 * `out` cannot grow.  `out` may be NULL to discard the data.
 */
int http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
		      size_t *used, struct buf *out, uint64_t max);

/* Percent-decodes p[0..n) into out (room for n bytes); returns the decoded
 * length or -400 on a bad escape. */
int http_decode_key(const char *p, size_t n, uint8_t *out);

/* The key in p[0..n) with http_decode_key()'s result, but *key points into p
 * itself when nothing in it is escaped (most keys: no copy), else at
 * scratch, decoded there (room for n bytes). */
int http_key_view(const char *p, size_t n, uint8_t *scratch, const uint8_t **key);

/* Finds `name` in an application/x-www-form-urlencoded query and parses its
 * value as a decimal u32.  1 found, 0 absent, -400 malformed or too large. */
int http_query_u32(struct http_str query, const char *name, uint32_t *out);

#endif
