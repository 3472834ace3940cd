/*
 * reply.h - a request's answer as data, before any protocol writes it.
 *
 * The executor (cache.h), the router and the L2 code describe what they
 * answer in a struct reply; only the renderer of the connection's protocol
 * (http_render() for HTTP/1.1) turns it into bytes.  Nothing edits rendered
 * bytes afterwards: a value promoted from Redis is a reply whose `cache` says
 * HIT_L2, a write-through is a reply whose `l2` says how Redis took it.
 *
 * RESP (resp.h) needs answers HTTP has no word for: an integer, a nil, an
 * error line, bytes already in the protocol (INFO, HELLO).  `kind` says which
 * a reply is; the executor's replies are all REPLY_REPR, which each protocol
 * renders in its own terms (HTTP by status; RESP by what the command asked,
 * resp.h's forms), and only the RESP side makes the others.
 *
 * A reply may point at memory it does not own: `body` and `type` of a hit
 * point into the owning shard's store and stay valid only until that store
 * changes (the next request it executes), so a reply is rendered on the
 * shard that made it, before that shard does anything else.  `headers` and
 * text bodies point at static strings.
 */
#ifndef RINGCACHE_REPLY_H
#define RINGCACHE_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* X-Cache: where a /cache/ read found its answer. */
enum reply_cache {
	REPLY_CACHE_NONE = 0,   /* no X-Cache header */
	REPLY_CACHE_HIT,        /* L1 */
	REPLY_CACHE_HIT_L2,     /* L1 miss, value read from Redis */
	REPLY_CACHE_MISS,
	REPLY_CACHE_HIT_FILL,   /* a waiter answered by a lease's fill (docs/cache-aside.md) */
	REPLY_CACHE_STALE,      /* served from a stale window (issue 9): with Age */
};

/* X-L2: what Redis did with a write, or why it could not answer a read. */
enum reply_l2 {
	REPLY_L2_NONE = 0,      /* no X-L2 header */
	REPLY_L2_OK,
	REPLY_L2_MISS,
	REPLY_L2_TIMEOUT,
	REPLY_L2_SKIPPED,       /* breaker open: not sent (writes queued for replay) */
	REPLY_L2_BAD_DATA,
	REPLY_L2_ERROR,
	REPLY_L2_UNAVAILABLE,   /* /cluster: no registry to read */
};

/* Content-Encoding of the body; numbered as src/cache/repr.h's codings. */
enum reply_coding { REPLY_IDENTITY = 0, REPLY_BR = 1, REPLY_GZIP = 2 };

/* What a reply is: REPLY_REPR for everything HTTP answers. */
enum reply_kind {
	REPLY_REPR = 0,         /* status, and a representation or a text body */
	REPLY_INT,              /* the integer `num` */
	REPLY_NIL,              /* no value */
	REPLY_OK,               /* done, nothing to say ("+OK") */
	REPLY_BULK,             /* body is a string value */
	REPLY_SIMPLE,           /* body is a short status word ("PONG") */
	REPLY_ERROR,            /* body is an error line's text ("ERR syntax error") */
	REPLY_RAW,              /* body is bytes already in the connection's protocol */
};

#define REPLY_ETAG_MAX 32       /* a quoted ETag, padding included */

struct reply {
	uint16_t status;        /* 100..599 */
	uint8_t cache;          /* enum reply_cache */
	uint8_t l2;             /* enum reply_l2 */
	uint8_t coding;         /* enum reply_coding */
	uint8_t etag_len;       /* 0: no ETag */
	bool vary;              /* Vary: Accept-Encoding */
	bool close;             /* end the connection after this answer */
	bool has_max_age;       /* Cache-Control: max-age=<max_age> */
	bool type_padded;       /* 64 bytes may be read at type (a copy of fixed size) */
	bool has_age;           /* Age: <age> (a stale answer) */
	uint8_t kind;           /* enum reply_kind */
	uint32_t max_age;
	uint32_t age;
	uint32_t type_len;
	const char *type;       /* Content-Type; NULL: text/plain for a body, else none */
	const char *headers;    /* NULL or NUL-terminated header lines, each ending in CRLF */
	const void *body;       /* the representation (its length even for HEAD and 304) */
	size_t body_len;
	void *body_store;       /* the struct store body points into, or NULL: a large
				 * body may then be sent from there (store_pin) */
	int64_t num;            /* REPLY_INT */
	const char *lease;      /* X-Cache-Lease: a fill lease's token, lease_len bytes */
	uint32_t lease_len;
	char etag[REPLY_ETAG_MAX];  /* quoted, etag_len bytes */
};

/* A reply with no representation: `status` and an optional text body. */
static inline void reply_status(struct reply *r, int status, const char *text)
{
	memset(r, 0, offsetof(struct reply, etag));
	r->status = (uint16_t)status;
	r->body = text;
	r->body_len = text ? strlen(text) : 0;
}

/* The X-L2 value of `l2`, or NULL for REPLY_L2_NONE. */
const char *reply_l2_name(enum reply_l2 l2);

#endif
