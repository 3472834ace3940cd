/*
 * http_render.h - writing answers as HTTP/1.1 responses: the one place a
 * struct reply (reply.h) becomes bytes on an HTTP connection.
 *
 * Independent of the server, like the parser: a caller hands it a reply and
 * the few properties of the request the wire format depends on.
 */
#ifndef RINGCACHE_HTTP_RENDER_H
#define RINGCACHE_HTTP_RENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "ringcache/buf.h"
#include "ringcache/reply.h"

/* What of the request shapes its response. */
struct http_answer_to {
	uint8_t minor;          /* HTTP/1.<minor> of the request */
	bool keep_alive;        /* false: "Connection: close" */
	bool head;              /* HEAD: the headers GET would send, no body */
	const char *date;       /* NULL, or the Date line (http_date_line), 64 bytes readable */
};

/* The Date line of `t` (seconds since the epoch): "Date: <IMF-fixdate>\r\n"
 * in buf, padded to 64 bytes so the renderer copies it whole. */
#define HTTP_DATE_LINE 64
#define HTTP_DATE_LEN 37        /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
void http_date_line(char buf[HTTP_DATE_LINE], int64_t t);

/*
 * Appends r as one complete response to out.  Every response says HTTP/1.1.
 * Headers, in this order, each only when it applies:
 *
 *   HTTP/1.1 <status> <reason>
 *   X-Cache: HIT | HIT-L2 | MISS | STALE             r->cache
 *   Content-Length: <body_len>                       not for 1xx and 204
 *   Content-Type: <type | text/plain; charset=utf-8> not for 304
 *   ETag: <etag>
 *   Content-Encoding: br | gzip
 *   Vary: Accept-Encoding
 *   Cache-Control: max-age=<n>
 *   Age: <n>                                         r->has_age (a stale answer)
 *   <r->headers>
 *   X-L2: <reply_l2_name(r->l2)>
 *   Date: <to->date>                                 not for 1xx (RFC 9110 6.6.1)
 *   Connection: close | keep-alive                   close: !keep_alive or r->close;
 *                                                    keep-alive: a kept HTTP/1.0 one
 *   <body>                                           not for HEAD, 1xx, 204, 304
 *
 * Returns 0, or -ENOMEM with out unchanged.
 */
int http_render(struct buf *out, const struct reply *r, const struct http_answer_to *to);

/* The body a response carries, when the caller sends it from where it is. */
struct http_body {
	const void *p;          /* NULL: no body is sent (HEAD, 304, none) */
	size_t len;
};

/*
 * As http_render(), but the body is not copied: *body says which bytes
 * follow the head on the wire (for a value sent from the store, outq.h).
 */
int http_render_head(struct buf *out, const struct reply *r, const struct http_answer_to *to,
		     struct http_body *body);

/* True when the response to `to` ends its connection. */
static inline bool http_render_closes(const struct reply *r, const struct http_answer_to *to)
{
	return r->close || !to->keep_alive;
}

/* The reason phrase of `status` ("Not Found"), "Unknown" if not listed. */
const char *http_status_text(int status);

#endif
