/*
 * exec.c - the cache executor: one parsed /cache/ request in, one response
 * out, on the shard that owns the key.
 *
 * Writes do the work: a PUT picks the Content-Type, compresses the variants
 * that pay, hashes every representation for its ETag and packs it all into
 * one blob (repr.c).  Reads only look up, negotiate and copy.  A GET hit is
 * one store_get(), an inline unpack (a bit test for plain values), at most
 * one Accept-Encoding scan, and a response built from padded header pieces
 * (respond.h) around two numbers, the ETag and the value, in room reserved
 * once.
 *
 * The response to a hit:
 *
 *   HTTP/1.1 200 OK\r\nX-Cache: HIT\r\nContent-Length: <n>      hit_head
 *   \r\nContent-Type: <type>\r\nETag: "<etag>"                 type_seg[i]
 *   \r\n | \r\nVary... | \r\nContent-Encoding: br\r\nVary...   tail_seg[j]
 *   Cache-Control: max-age=<remaining>\r\n                    only with a TTL
 *   \r\n | Connection: keep-alive\r\n\r\n | Connection: close   resp_conn_tail
 *   <value bytes>                                             not for HEAD
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache/cache.h"
#include "cache/compress.h"
#include "cache/negotiate.h"
#include "cache/repr.h"
#include "cache/respond.h"

_Static_assert((int)NEGOTIATE_BR == (int)REPR_BR && (int)NEGOTIATE_GZIP == (int)REPR_GZIP &&
		       (int)NEGOTIATE_IDENTITY == (int)REPR_IDENTITY,
	       "negotiate and repr number the codings alike");

/* Header room of any response besides a custom Content-Type and the body,
 * RESP_SEG of over-copy slack included. */
#define HEAD_ROOM 512

/* A scratch buffer grown past this is freed after the write that needed it. */
#define SCRATCH_KEEP (1u << 20)

/* Longest Accept-Encoding value remembered (browsers send ~25 bytes). */
#define AE_MEMO_MAX 96

struct cache {
	struct store *st;
	struct compress *z;
	struct cache_config cfg;
	uint32_t now;           /* store clock, from cache_tick(); 1 until then */
	struct buf scratch;     /* compressed variants of the write in progress */
	/* The last Accept-Encoding value weighed: clients repeat theirs, so a
	 * byte compare replaces the parse.  ae_len 0: nothing remembered. */
	uint32_t ae_len;
	struct negotiate_weights ae_weights;
	char ae[AE_MEMO_MAX];
};

/* X-Cache stays the line after the status line of hits and 304s: the shard
 * finds it within the first 64 bytes to mark a value promoted from L2. */
static const struct resp_seg hit_head =
	RESP_SEG_INIT("HTTP/1.1 200 OK\r\nX-Cache: HIT\r\nContent-Length: ");
static const struct resp_seg nm_head =
	RESP_SEG_INIT("HTTP/1.1 304 Not Modified\r\nX-Cache: HIT\r\nContent-Length: ");
static const struct resp_seg miss_head =
	RESP_SEG_INIT("HTTP/1.1 404 Not Found\r\nX-Cache: MISS\r\nContent-Length: 0\r\n");
static const struct resp_seg absent_head =
	RESP_SEG_INIT("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n");
static const struct resp_seg created_head =
	RESP_SEG_INIT("HTTP/1.1 201 Created\r\nContent-Length: 0\r\nETag: ");
static const struct resp_seg replaced_head = RESP_SEG_INIT("HTTP/1.1 204 No Content\r\nETag: ");
static const struct resp_seg deleted_head = RESP_SEG_INIT("HTTP/1.1 204 No Content\r\n");
static const struct resp_seg etag_seg = RESP_SEG_INIT("\r\nETag: ");
static const struct resp_seg type_open = RESP_SEG_INIT("\r\nContent-Type: ");
static const struct resp_seg max_age_seg = RESP_SEG_INIT("Cache-Control: max-age=");

static const struct resp_seg type_seg[REPR_F_TYPE + 1] = {
#define TYPE_SEG(s) RESP_SEG_INIT("\r\nContent-Type: " s "\r\nETag: "),
	REPR_TYPES(TYPE_SEG)
#undef TYPE_SEG
};

/* After the ETag of a 200: indexed by tail_index(). */
static const struct resp_seg tail_seg[4] = {
	RESP_SEG_INIT("\r\n"),
	RESP_SEG_INIT("\r\nVary: Accept-Encoding\r\n"),
	RESP_SEG_INIT("\r\nContent-Encoding: br\r\nVary: Accept-Encoding\r\n"),
	RESP_SEG_INIT("\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n"),
};

static inline unsigned tail_index(unsigned coding, unsigned avail)
{
	return coding != REPR_IDENTITY ? coding + 1 : avail != 1u << REPR_IDENTITY;
}

static const char vary_line[] = "Vary: Accept-Encoding\r\n";

int cache_create(struct cache **out, struct store *st, const struct cache_config *cfg)
{
	struct cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	int rc = compress_create(&c->z, cfg->brotli_quality, cfg->gzip_level);
	if (rc) {
		free(c);
		return rc;
	}
	c->st = st;
	c->cfg = *cfg;
	if (!c->cfg.compress_max)
		c->cfg.compress_max = SIZE_MAX;
	c->now = 1;
	if (c->cfg.max_value > UINT32_MAX)
		c->cfg.max_value = UINT32_MAX;
	*out = c;
	return 0;
}

void cache_destroy(struct cache *c)
{
	if (!c)
		return;
	compress_destroy(c->z);
	buf_deinit(&c->scratch);
	free(c);
}

void cache_tick(struct cache *c, uint32_t now)
{
	c->now = now;
	store_tick(c->st, now);
}

size_t cache_blob_max(size_t max_value)
{
	return REPR_HDR_MAX + max_value + 2 * (max_value / 10 * 9 + 9);
}

static int reserve(struct buf *out, size_t n)
{
	if (out->cap - out->len < n)
		return buf_reserve(out, n);
	return 0;
}

static int choose_coding(struct cache *c, const struct http_str *ae, unsigned avail)
{
	if (ae->len != c->ae_len || memcmp(ae->p, c->ae, ae->len) != 0) {
		negotiate_weigh(ae->p, ae->len, &c->ae_weights);
		c->ae_len = ae->len <= AE_MEMO_MAX ? ae->len : 0;
		memcpy(c->ae, ae->p, c->ae_len);
	}
	return negotiate_pick(&c->ae_weights, avail);
}

static int respond_error(const struct cache_req *r, struct buf *out, int status,
			 const char *extra, const char *body, enum cache_outcome *outcome)
{
	*outcome = CACHE_FAILED;
	return cache_respond_status(out, status, r->minor, r->keep_alive, extra, body);
}

static int exec_get(struct cache *c, const struct cache_req *r, struct buf *out,
		    enum cache_outcome *outcome)
{
	unsigned conn = resp_conn(r->keep_alive, r->minor);
	struct store_item it;
	struct repr_view v;
	char *p;

	if (store_get(c->st, r->key, r->key_len, r->hash, &it) != 0) {
		if (reserve(out, HEAD_ROOM))
			return -ENOMEM;
		p = out->data + out->len;
		p = resp_put_seg(p, &miss_head);
		p = resp_put_seg(p, &resp_conn_tail[conn]);
		out->len = (size_t)(p - out->data);
		*outcome = CACHE_MISS;
		return 0;
	}
	if (repr_unpack(it.value, it.value_len, it.flags, it.etag, &v) != 0)
		return respond_error(r, out, 500, NULL, "stored value is damaged\n", outcome);

	unsigned coding = REPR_IDENTITY;
	if (r->accept_encoding.len) {
		int nc = choose_coding(c, &r->accept_encoding, v.avail);
		if (nc < 0)
			return respond_error(r, out, 406, v.avail != 1 ? vary_line : NULL,
					     "no acceptable content-coding\n", outcome);
		coding = (unsigned)nc;
	}
	const struct repr_part *part = &v.part[coding];
	char etag[REPR_ETAG_MAX + 3] = "";
	size_t etag_len = repr_format_etag(etag, part->etag, it.stamp, coding);
	bool not_modified = r->if_none_match.len &&
			    negotiate_etag_match(r->if_none_match.p, r->if_none_match.len,
						 etag, etag_len);
	bool body = r->op == CACHE_GET && !not_modified;

	if (reserve(out, HEAD_ROOM + (v.type < 0 ? v.type_len : 0) + (body ? part->len : 0)))
		return -ENOMEM;
	p = out->data + out->len;
	p = resp_put_seg(p, not_modified ? &nm_head : &hit_head);
	p = resp_put_u32(p, part->len);
	if (not_modified) {
		p = resp_put_seg(p, &etag_seg);
	} else if (v.type >= 0) {
		p = resp_put_seg(p, &type_seg[v.type]);
	} else {
		p = resp_put_seg(p, &type_open);
		p = resp_put(p, v.type_str, v.type_len);
		p = resp_put_seg(p, &etag_seg);
	}
	memcpy(p, etag, sizeof(etag));
	p += etag_len;
	p = resp_put_seg(p, &tail_seg[not_modified ? v.avail != 1 : tail_index(coding, v.avail)]);
	if (it.expires) {
		p = resp_put_seg(p, &max_age_seg);
		/* the extra second put_ttl() added is not promised to caches */
		p = resp_put_u32(p, it.expires > c->now + 1 ? it.expires - c->now - 1 : 0);
		p = resp_put(p, "\r\n", 2);
	}
	p = resp_put_seg(p, &resp_conn_tail[conn]);
	if (body)
		p = resp_put(p, part->p, part->len);
	out->len = (size_t)(p - out->data);
	*outcome = not_modified ? CACHE_NOT_MODIFIED : CACHE_HIT;
	return 0;
}

/* The request's Content-Type without surrounding whitespace.  0, or -EINVAL
 * when it is too long to store or holds control characters. */
static int put_type(const struct cache_req *r, const char **ct, size_t *ct_len)
{
	const char *s = r->content_type.p;
	size_t n = r->content_type.len;

	while (n && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n > REPR_TYPE_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return -EINVAL;
	}
	*ct = s;
	*ct_len = n;
	return 0;
}

/*
 * ?ttl= first, then Cache-Control: max-age, then the default; clamped so
 * the store's now + ttl cannot wrap.  The store clock counts whole seconds,
 * so a TTL of N taken at face value would live between N-1 and N seconds;
 * one more second makes it live at least N (and at most N+1, plus the
 * shard's tick interval).  A TTL of 0 (none) stays 0.
 */
static uint32_t put_ttl(const struct cache *c, const struct cache_req *r)
{
	uint64_t ttl = c->cfg.default_ttl;
	uint32_t max_age;

	if (r->ttl >= 0)
		ttl = (uint64_t)r->ttl;
	else if (r->cache_control.len &&
		 negotiate_max_age(r->cache_control.p, r->cache_control.len, &max_age))
		ttl = max_age;
	if (ttl)
		ttl++;
	uint32_t room = UINT32_MAX - c->now;
	return ttl > room ? room : (uint32_t)ttl;
}

struct variants {
	const uint8_t *br, *gz;
	uint32_t br_len, gz_len;
};

/* Compresses the value into c->scratch; keeps each variant only if it saves
 * at least 10%, i.e. fits in floor(0.9 * n) bytes. */
static void make_variants(struct cache *c, const struct cache_req *r, const char *ct,
			  size_t ct_len, struct variants *var)
{
	size_t n = r->body_len;

	memset(var, 0, sizeof(*var));
	if (n == 0 || n < c->cfg.compress_min || n > c->cfg.compress_max ||
	    compress_type_is_compressed(ct, ct_len))
		return;
	size_t cap = (size_t)((uint64_t)n * 9 / 10);
	if (cap == 0 || buf_reserve(&c->scratch, 2 * cap) != 0)
		return;
	uint8_t *s = (uint8_t *)c->scratch.data;
	size_t len = compress_br(c->z, r->body, n, s, cap);
	if (len) {
		var->br = s;
		var->br_len = (uint32_t)len;
	}
	len = compress_gzip(c->z, r->body, n, s + cap, cap);
	if (len) {
		var->gz = s + cap;
		var->gz_len = (uint32_t)len;
	}
}

static int exec_put(struct cache *c, const struct cache_req *r, struct buf *out,
		    enum cache_outcome *outcome)
{
	const char *ct = NULL;
	size_t ct_len = 0;
	struct variants var;
	struct repr_blob blob;

	if (r->body_len > c->cfg.max_value)
		return respond_error(r, out, 413, NULL, "value too large\n", outcome);
	if (put_type(r, &ct, &ct_len) != 0)
		return respond_error(r, out, 400, NULL, "bad Content-Type\n", outcome);
	if (reserve(out, HEAD_ROOM))
		return -ENOMEM;
	uint32_t ttl = put_ttl(c, r);

	make_variants(c, r, ct, ct_len, &var);
	repr_build(&blob, r->body, r->body_len, ct, ct_len, var.br, var.br_len, var.gz,
		   var.gz_len);
	bool existed = store_contains(c->st, r->key, r->key_len, r->hash);
	uint32_t stamp = 0;
	int rc = store_set(c->st, r->key, r->key_len, r->hash, blob.iov, blob.iovcnt, ttl,
			   blob.flags, blob.etag, &stamp);
	if (rc == -E2BIG && (var.br || var.gz)) {
		repr_build(&blob, r->body, r->body_len, ct, ct_len, NULL, 0, NULL, 0);
		rc = store_set(c->st, r->key, r->key_len, r->hash, blob.iov, blob.iovcnt, ttl,
			       blob.flags, blob.etag, &stamp);
	}
	if (c->scratch.cap > SCRATCH_KEEP)
		buf_deinit(&c->scratch);

	switch (rc) {
	case 0:
		break;
	case -E2BIG:
		return respond_error(r, out, 413, NULL, "value too large for the store\n", outcome);
	case -ENOMEM:
		return respond_error(r, out, 507, NULL, "no room in the store\n", outcome);
	case -EINVAL:
		return respond_error(r, out, 400, NULL, "bad key\n", outcome);
	default:
		return respond_error(r, out, 500, NULL, "store failure\n", outcome);
	}

	char etag[REPR_ETAG_MAX + 3];
	size_t etag_len = repr_format_etag(etag, blob.etag, stamp, REPR_IDENTITY);
	char *p = out->data + out->len;
	p = resp_put_seg(p, existed ? &replaced_head : &created_head);
	p = resp_put(p, etag, etag_len);
	p = resp_put(p, "\r\n", 2);
	p = resp_put_seg(p, &resp_conn_tail[resp_conn(r->keep_alive, r->minor)]);
	out->len = (size_t)(p - out->data);
	*outcome = CACHE_STORED;
	return 0;
}

static int exec_delete(struct cache *c, const struct cache_req *r, struct buf *out,
		       enum cache_outcome *outcome)
{
	if (reserve(out, HEAD_ROOM))
		return -ENOMEM;
	bool existed = store_delete(c->st, r->key, r->key_len, r->hash) == 0;
	char *p = out->data + out->len;
	p = resp_put_seg(p, existed ? &deleted_head : &absent_head);
	p = resp_put_seg(p, &resp_conn_tail[resp_conn(r->keep_alive, r->minor)]);
	out->len = (size_t)(p - out->data);
	*outcome = existed ? CACHE_DELETED : CACHE_ABSENT;
	return 0;
}

int cache_exec(struct cache *c, const struct cache_req *r, struct buf *out,
	       enum cache_outcome *outcome)
{
	switch (r->op) {
	case CACHE_GET:
	case CACHE_HEAD:
		return exec_get(c, r, out, outcome);
	case CACHE_PUT:
		return exec_put(c, r, out, outcome);
	case CACHE_DELETE:
		return exec_delete(c, r, out, outcome);
	default:
		return respond_error(r, out, 405, "Allow: GET, HEAD, PUT, POST, DELETE\r\n",
				     "method not allowed\n", outcome);
	}
}
