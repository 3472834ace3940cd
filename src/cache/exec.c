/*
 * exec.c - the cache executor: one parsed /cache/ request in, one struct
 * reply out, on the shard that owns the key.
 *
 * Writes do the work: a PUT picks the Content-Type, compresses the variants
 * that pay, hashes every representation for its ETag and packs it all into
 * one blob (repr.c).  Reads only look up, negotiate and point: a GET hit is
 * one store_get(), an inline unpack (a bit test for plain values), at most
 * one Accept-Encoding scan, and a reply whose body and Content-Type point
 * into the store.  The protocol's renderer (http_render) writes it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache/cache.h"
#include "cache/compress.h"
#include "cache/negotiate.h"
#include "cache/repr.h"

_Static_assert((int)NEGOTIATE_BR == (int)REPR_BR && (int)NEGOTIATE_GZIP == (int)REPR_GZIP &&
		       (int)NEGOTIATE_IDENTITY == (int)REPR_IDENTITY,
	       "negotiate and repr number the codings alike");
_Static_assert((int)REPLY_BR == (int)REPR_BR && (int)REPLY_GZIP == (int)REPR_GZIP &&
		       (int)REPLY_IDENTITY == (int)REPR_IDENTITY,
	       "reply and repr number the codings alike");
_Static_assert(REPR_ETAG_MAX < REPLY_ETAG_MAX, "a formatted ETag fits in a reply");

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

/* Content-Types by their index in the store's flags (repr.h), padded so
 * the renderer may copy them whole (reply.h type_padded). */
static const struct {
	char s[64];
	uint32_t len;
} type_names[REPR_F_TYPE + 1] = {
#define TYPE_NAME(s) { s, sizeof(s) - 1 },
	REPR_TYPES(TYPE_NAME)
#undef TYPE_NAME
};

static const char allow_cache[] = "Allow: GET, HEAD, PUT, POST, DELETE\r\n";

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

static int choose_coding(struct cache *c, const struct http_str *ae, unsigned avail)
{
	if (ae->len != c->ae_len || memcmp(ae->p, c->ae, ae->len) != 0) {
		negotiate_weigh(ae->p, ae->len, &c->ae_weights);
		c->ae_len = ae->len <= AE_MEMO_MAX ? ae->len : 0;
		memcpy(c->ae, ae->p, c->ae_len);
	}
	return negotiate_pick(&c->ae_weights, avail);
}

static enum cache_outcome fail(struct reply *out, int status, const char *text)
{
	reply_status(out, status, text);
	return CACHE_FAILED;
}

static enum cache_outcome exec_get(struct cache *c, const struct cache_req *r,
				   struct reply *out)
{
	struct store_item it;
	struct repr_view v;

	if (store_get(c->st, r->key, r->key_len, r->hash, &it) != 0) {
		reply_status(out, 404, NULL);
		out->cache = REPLY_CACHE_MISS;
		return CACHE_MISS;
	}
	if (repr_unpack(it.value, it.value_len, it.flags, it.etag, &v) != 0)
		return fail(out, 500, "stored value is damaged\n");

	unsigned coding = REPR_IDENTITY;
	if (r->accept_encoding.len) {
		int nc = choose_coding(c, &r->accept_encoding, v.avail);
		if (nc < 0) {
			fail(out, 406, "no acceptable content-coding\n");
			out->vary = v.avail != 1;
			return CACHE_FAILED;
		}
		coding = (unsigned)nc;
	}
	const struct repr_part *part = &v.part[coding];

	memset(out, 0, offsetof(struct reply, etag));
	out->etag_len = (uint8_t)repr_format_etag(out->etag, part->etag, it.stamp, coding);
	bool not_modified = r->if_none_match.len &&
			    negotiate_etag_match(r->if_none_match.p, r->if_none_match.len,
						 out->etag, out->etag_len);
	out->status = not_modified ? 304 : 200;
	out->cache = REPLY_CACHE_HIT;
	out->coding = (uint8_t)coding;
	out->vary = v.avail != 1u << REPR_IDENTITY;
	if (v.type >= 0) {
		out->type = type_names[v.type].s;
		out->type_len = type_names[v.type].len;
		out->type_padded = true;
	} else {
		out->type = v.type_str;
		out->type_len = v.type_len;
	}
	out->body = part->p;
	out->body_len = part->len;
	out->body_store = c->st;
	if (it.expires) {
		out->has_max_age = true;
		/* the extra second put_ttl() added is not promised to caches */
		out->max_age = it.expires > c->now + 1 ? it.expires - c->now - 1 : 0;
	}
	return not_modified ? CACHE_NOT_MODIFIED : CACHE_HIT;
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

static enum cache_outcome exec_put(struct cache *c, const struct cache_req *r,
				   struct reply *out)
{
	const char *ct = NULL;
	size_t ct_len = 0;
	struct variants var;
	struct repr_blob blob;

	if (r->body_len > c->cfg.max_value)
		return fail(out, 413, "value too large\n");
	if (put_type(r, &ct, &ct_len) != 0)
		return fail(out, 400, "bad Content-Type\n");
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
		return fail(out, 413, "value too large for the store\n");
	case -ENOMEM:
		return fail(out, 507, "no room in the store\n");
	case -EINVAL:
		return fail(out, 400, "bad key\n");
	default:
		return fail(out, 500, "store failure\n");
	}
	reply_status(out, existed ? 204 : 201, NULL);
	out->etag_len = (uint8_t)repr_format_etag(out->etag, blob.etag, stamp, REPR_IDENTITY);
	return CACHE_STORED;
}

static enum cache_outcome exec_delete(struct cache *c, const struct cache_req *r,
				      struct reply *out)
{
	bool existed = store_delete(c->st, r->key, r->key_len, r->hash) == 0;

	reply_status(out, existed ? 204 : 404, NULL);
	return existed ? CACHE_DELETED : CACHE_ABSENT;
}

enum cache_outcome cache_exec(struct cache *c, const struct cache_req *r, struct reply *out)
{
	switch (r->op) {
	case CACHE_GET:
	case CACHE_HEAD:
		return exec_get(c, r, out);
	case CACHE_PUT:
		return exec_put(c, r, out);
	case CACHE_DELETE:
		return exec_delete(c, r, out);
	default:
		fail(out, 405, "method not allowed\n");
		out->headers = allow_cache;
		return CACHE_FAILED;
	}
}
