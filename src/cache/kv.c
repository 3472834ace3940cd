/*
 * kv.c - Redis's string operations over the store, on the key's owner shard
 * (cache.h, "RESP operations").
 *
 * Each operation is a read of the item and at most one write, with nothing
 * in between, so it is atomic on its shard as Redis's are on its one thread.
 * New values go through cache_exec() as a PUT would (variants, ETags, the
 * TTL convention of put_ttl()); a change of TTL alone rewrites the stored
 * blob with its flags and content hash as they are, from a pinned copy
 * (store_pin keeps the source bytes in place while store_set writes the new
 * placement).
 *
 * TTLs: the store counts whole seconds from its clock, and a TTL of N is
 * stored as N + 1 so that it lives at least N seconds (exec.c put_ttl()).
 * An expiry given as Unix milliseconds becomes a TTL of the seconds left,
 * rounded up; one that is not in the future deletes the key, as in Redis.
 * The expiry of an item, read back, is now + (expires - now - 1) seconds.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache/cache.h"
#include "ringcache/resp.h"
#include "cache/repr.h"

static const char err_not_int[] = "ERR value is not an integer or out of range";
static const char err_overflow[] = "ERR increment or decrement would overflow";
static const char err_too_big[] = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
static const char err_damaged[] = "ERR stored value is damaged";

struct item {
	struct store_item it;
	struct repr_view v;
	const char *type;       /* its Content-Type, for a rewrite of its value */
	uint32_t type_len;
};

static void reply_kind(struct reply *out, enum reply_kind kind)
{
	reply_status(out, 200, NULL);
	out->kind = (uint8_t)kind;
}

static void reply_int(struct reply *out, int64_t v)
{
	reply_kind(out, REPLY_INT);
	out->num = v;
}

static void reply_error(struct reply *out, const char *text)
{
	reply_status(out, 400, NULL);
	out->kind = REPLY_ERROR;
	out->body = text;
	out->body_len = strlen(text);
}

static void reply_bulk(struct reply *out, const void *p, size_t n, void *store)
{
	reply_kind(out, REPLY_BULK);
	out->body = p;
	out->body_len = n;
	out->body_store = store;
}

/*
 * The item of r's key: 1 found, 0 absent, -EINVAL damaged.  An item past
 * its TTL but kept for its stale windows (cache.h) is absent here, as an
 * expired key is in Redis: RESP never sees a stale value.
 */
static int read_item(struct store *st, uint32_t now, const struct cache_req *r, struct item *x)
{
	if (store_get(st, r->key, r->key_len, r->hash, &x->it) != 0)
		return 0;
	if (repr_unpack(x->it.value, x->it.value_len, x->it.flags, x->it.etag, &x->v) != 0)
		return -EINVAL;
	uint32_t fresh_until = repr_fresh_until(x->it.expires, &x->v);
	if (fresh_until && fresh_until <= now)
		return 0;
	/* the rest of this file reads the expiry as the end of freshness */
	x->it.expires = fresh_until;
	if (x->v.type >= 0) {
		x->type = repr_type_name((unsigned)x->v.type, &x->type_len);
	} else {
		x->type = x->v.type_str;
		x->type_len = x->v.type_len;
	}
	return 1;
}

static const struct repr_part *identity(const struct item *x)
{
	return &x->v.part[REPR_IDENTITY];
}

int cache_kv_identity(struct store *st, const struct cache_req *r, const uint8_t **value,
		      uint32_t *len, const char **type, uint32_t *type_len)
{
	struct item x;

	if (read_item(st, store_now(st), r, &x) != 1)
		return -ENOENT;
	*value = identity(&x)->p;
	*len = identity(&x)->len;
	/* the default type is no type: what a SET writes through */
	*type = x.type;
	*type_len = x.v.type == 0 ? 0 : x.type_len;
	return 0;
}

/* The seconds an item has left, as a PUT's ttl would give them (at least
 * 1); 0: it has no expiry. */
static int64_t seconds_left(const struct cache_kv_ctx *ctx, const struct item *x)
{
	if (!x->it.expires)
		return 0;
	return x->it.expires > ctx->now + 1 ? (int64_t)(x->it.expires - ctx->now - 1) : 1;
}

/* Its expiry as Unix milliseconds, -1 for none. */
static int64_t expiry_ms(const struct cache_kv_ctx *ctx, const struct item *x)
{
	if (!x->it.expires)
		return -1;
	return (int64_t)ctx->now_ms + seconds_left(ctx, x) * 1000;
}

/* The TTL in seconds, rounded up, that an expiry at at_ms leaves; 0 when it
 * is not in the future. */
static int64_t ttl_until(const struct cache_kv_ctx *ctx, int64_t at_ms)
{
	int64_t left = at_ms - (int64_t)ctx->now_ms;

	return left <= 0 ? 0 : (left + 999) / 1000;
}

/* Writes value[0..n) as a PUT with Content-Type `type` and `ttl` (exec.c's:
 * -1 the default, 0 none).  CACHE_STORED, or a failure described in *out. */
static enum cache_outcome put(const struct cache_kv_ctx *ctx, const struct cache_req *r,
			      const void *value, size_t n, const char *type, uint32_t type_len,
			      int64_t ttl, struct reply *out)
{
	struct cache_req w;

	memset(&w, 0, sizeof(w));
	w.op = CACHE_PUT;
	w.key = r->key;
	w.key_len = r->key_len;
	w.hash = r->hash;
	w.body = value;
	w.body_len = (uint32_t)n;
	w.ttl = ttl;
	w.content_type.p = type;
	w.content_type.len = type ? type_len : 0;
	return cache_exec(ctx->cache, &w, out);
}

/*
 * The same blob again with a new TTL (seconds, 0: none).  0 or -errno.  An
 * item with stale windows keeps them past the new TTL: its extension header
 * is rewritten with the new TTL (repr.h), its tags kept.
 */
static int retime(const struct cache_kv_ctx *ctx, const struct cache_req *r,
		  const struct item *x, int64_t ttl)
{
	uint64_t t = ttl ? (uint64_t)ttl + 1 : 0;
	uint64_t room = UINT32_MAX - ctx->now;
	uint8_t ext[REPR_EXT_MAX];
	struct iovec iov[2] = { { NULL, 0 }, { (void *)x->it.value, x->it.value_len } };

	if (x->v.ext.bits & REPR_EXT_WINDOWS) {
		uint64_t windows = (uint64_t)x->v.ext.swr + x->v.ext.sie;
		room = room > windows ? room - windows : 0;
		t = t > room ? room : t;
		struct repr_ext e = x->v.ext;
		e.ttl = (uint32_t)t;
		iov[0] = (struct iovec){ ext, repr_ext_encode(ext, &e) };
		iov[1].iov_base = (void *)(x->it.value + x->v.ext.len);
		iov[1].iov_len = x->it.value_len - x->v.ext.len;
		if (t)
			t += windows;   /* fits: room was made for the windows */
	} else if (t > room) {
		t = room;
	}
	/*
	 * The write reads the value where it is, so it is pinned there; with
	 * the pin bound full (clients that do not read hold a quarter of the
	 * store) the write reads a copy instead.
	 */
	_Atomic uint32_t *pin = store_pin(ctx->st, x->it.value);
	void *copy = NULL;
	if (!pin) {
		copy = malloc(iov[1].iov_len ? iov[1].iov_len : 1);
		if (!copy)
			return -ENOMEM;
		iov[1].iov_base = memcpy(copy, iov[1].iov_base, iov[1].iov_len);
	}
	int rc = store_set(ctx->st, r->key, r->key_len, r->hash, iov[0].iov_len ? iov : iov + 1,
			   iov[0].iov_len ? 2 : 1, (uint32_t)t, x->it.flags, x->it.etag, NULL);

	if (pin)
		store_unpin_own(ctx->st, pin);
	free(copy);
	return rc;
}

/* After retime(): the value at its new place, for an answer that shows it. */
static void reply_current(const struct cache_kv_ctx *ctx, const struct cache_req *r,
			  struct reply *out)
{
	struct item x;

	if (read_item(ctx->st, ctx->now, r, &x) == 1)
		reply_bulk(out, identity(&x)->p, identity(&x)->len, ctx->st);
	else
		reply_kind(out, REPLY_NIL);
}

static enum cache_outcome retime_failed(struct reply *out, int rc)
{
	reply_status(out, rc == -ENOMEM ? 507 : 500,
		     rc == -ENOMEM ? "no room in the store\n" : "store failure\n");
	return CACHE_FAILED;
}

/*
 * The value of x as the answer of an operation that deletes it (GETDEL,
 * GETEX with a past expiry), copied: the delete frees the item's segment at
 * once when it held its last live item, and a pin taken afterwards, when
 * the answer is rendered, no longer stops the next write from reusing those
 * bytes while a send that a slow reader holds still reads them (the client
 * got other keys' bytes).  0, or -ENOMEM with *out unchanged.
 */
static int reply_before_delete(const struct cache_kv_ctx *ctx, const struct item *x,
			       struct reply *out)
{
	ctx->scratch->len = 0;
	if (buf_append(ctx->scratch, identity(x)->p, identity(x)->len))
		return -ENOMEM;
	reply_bulk(out, ctx->scratch->data, identity(x)->len, NULL);
	return 0;
}

static enum cache_outcome kv_set(const struct cache_kv_ctx *ctx, const struct cache_req *r,
				 const struct cache_kv *kv, const struct item *x, bool found,
				 struct reply *out, enum cache_kv_effect *effect)
{
	struct reply old;
	int64_t ttl = -1;

	if (kv->flags & CACHE_KV_GET) {
		if (found) {
			/* copied: the write below may move what the store holds */
			ctx->scratch->len = 0;
			if (buf_append(ctx->scratch, identity(x)->p, identity(x)->len))
				return retime_failed(out, -ENOMEM);
			reply_bulk(&old, ctx->scratch->data, identity(x)->len, NULL);
		} else {
			reply_kind(&old, REPLY_NIL);
		}
	} else {
		reply_kind(&old, REPLY_OK);
	}
	if (((kv->flags & CACHE_KV_NX) && found) || ((kv->flags & CACHE_KV_XX) && !found)) {
		if (kv->flags & CACHE_KV_GET)
			*out = old;
		else
			reply_kind(out, REPLY_NIL);
		return CACHE_FAILED;
	}
	if (kv->flags & CACHE_KV_EXPIRY) {
		ttl = ttl_until(ctx, kv->at_ms);
		if (ttl == 0) {
			/* expired as soon as set: what is left is no key */
			*out = old;
			if (found && store_delete(ctx->st, r->key, r->key_len, r->hash) == 0) {
				*effect = CACHE_KV_DELETED;
				return CACHE_DELETED;
			}
			return CACHE_ABSENT;
		}
	} else if ((kv->flags & CACHE_KV_KEEPTTL) && found) {
		ttl = seconds_left(ctx, x);
	}
	enum cache_outcome oc = put(ctx, r, r->body, r->body_len, NULL, 0, ttl, out);
	if (oc != CACHE_STORED)
		return oc;
	*out = old;
	*effect = CACHE_KV_WROTE;
	return oc;
}

static enum cache_outcome kv_incrby(const struct cache_kv_ctx *ctx, const struct cache_req *r,
				    const struct cache_kv *kv, const struct item *x, bool found,
				    struct reply *out, enum cache_kv_effect *effect)
{
	int64_t v = 0;
	char num[24];

	if (found &&
	    !resp_parse_i64((const char *)identity(x)->p, identity(x)->len, &v)) {
		reply_error(out, err_not_int);
		return CACHE_FAILED;
	}
	if ((kv->num < 0 && v < 0 && kv->num < INT64_MIN - v) ||
	    (kv->num > 0 && v > 0 && kv->num > INT64_MAX - v)) {
		reply_error(out, err_overflow);
		return CACHE_FAILED;
	}
	v += kv->num;
	int n = snprintf(num, sizeof(num), "%" PRId64, v);
	/* Redis keeps an incremented key's TTL; a new one gets none (or the
	 * --default-ttl a SET would give it) */
	enum cache_outcome oc = put(ctx, r, num, (size_t)n, found ? x->type : NULL,
				    found ? x->type_len : 0, found ? seconds_left(ctx, x) : -1, out);
	if (oc != CACHE_STORED)
		return oc;
	reply_int(out, v);
	*effect = CACHE_KV_WROTE;
	return oc;
}

static enum cache_outcome kv_append(const struct cache_kv_ctx *ctx, const struct cache_req *r,
				    const struct item *x, bool found, struct reply *out,
				    enum cache_kv_effect *effect)
{
	size_t have = found ? identity(x)->len : 0, n = have + r->body_len;
	enum cache_outcome oc;

	if (n > ctx->max_value) {
		reply_error(out, err_too_big);
		return CACHE_FAILED;
	}
	if (!found) {
		oc = put(ctx, r, r->body, r->body_len, NULL, 0, -1, out);
	} else {
		ctx->scratch->len = 0;
		if (buf_reserve(ctx->scratch, n))
			return retime_failed(out, -ENOMEM);
		memcpy(ctx->scratch->data, identity(x)->p, have);
		if (r->body_len)
			memcpy(ctx->scratch->data + have, r->body, r->body_len);
		oc = put(ctx, r, ctx->scratch->data, n, x->type, x->type_len,
			 seconds_left(ctx, x), out);
	}
	if (oc != CACHE_STORED)
		return oc;
	reply_int(out, (int64_t)n);
	*effect = CACHE_KV_WROTE;
	return oc;
}

static enum cache_outcome kv_getex(const struct cache_kv_ctx *ctx, const struct cache_req *r,
				   const struct cache_kv *kv, const struct item *x,
				   struct reply *out, enum cache_kv_effect *effect)
{
	int64_t ttl;
	int rc;

	if ((kv->flags & CACHE_KV_EXPIRY) && kv->at_ms == CACHE_KV_AT_NOT_INT) {
		reply_error(out, err_not_int);
		return CACHE_FAILED;
	}
	if ((kv->flags & CACHE_KV_EXPIRY) && kv->at_ms == CACHE_KV_AT_INVALID) {
		reply_error(out, "ERR invalid expire time in 'getex' command");
		return CACHE_FAILED;
	}
	reply_bulk(out, identity(x)->p, identity(x)->len, ctx->st);
	if (kv->flags & CACHE_KV_EXPIRY) {
		ttl = ttl_until(ctx, kv->at_ms);
		if (ttl == 0) {
			if (reply_before_delete(ctx, x, out))
				return retime_failed(out, -ENOMEM);
			store_delete(ctx->st, r->key, r->key_len, r->hash);
			*effect = CACHE_KV_DELETED;
			return CACHE_HIT;
		}
	} else if ((kv->flags & CACHE_KV_PERSIST_F) && x->it.expires) {
		ttl = 0;
	} else {
		return CACHE_HIT;
	}
	rc = retime(ctx, r, x, ttl);
	if (rc)
		return retime_failed(out, rc);
	reply_current(ctx, r, out);
	*effect = CACHE_KV_WROTE;
	return CACHE_HIT;
}

static enum cache_outcome kv_expire(const struct cache_kv_ctx *ctx, const struct cache_req *r,
				    const struct cache_kv *kv, const struct item *x,
				    struct reply *out, enum cache_kv_effect *effect)
{
	int64_t cur = expiry_ms(ctx, x), when = kv->at_ms;
	int rc;

	reply_int(out, 0);
	if (((kv->flags & CACHE_KV_NX) && cur != -1) || ((kv->flags & CACHE_KV_XX) && cur == -1) ||
	    ((kv->flags & CACHE_KV_GT) && (when <= cur || cur == -1)) ||
	    ((kv->flags & CACHE_KV_LT) && cur != -1 && when >= cur))
		return CACHE_FAILED;
	reply_int(out, 1);
	int64_t ttl = ttl_until(ctx, when);
	if (ttl == 0) {
		store_delete(ctx->st, r->key, r->key_len, r->hash);
		*effect = CACHE_KV_DELETED;
		return CACHE_DELETED;
	}
	rc = retime(ctx, r, x, ttl);
	if (rc)
		return retime_failed(out, rc);
	*effect = CACHE_KV_WROTE;
	return CACHE_STORED;
}

enum cache_outcome cache_kv_exec(const struct cache_kv_ctx *ctx, const struct cache_req *r,
				 const struct cache_kv *kv, struct reply *out,
				 enum cache_kv_effect *effect)
{
	struct item x;
	int found = 0;

	*effect = CACHE_KV_UNCHANGED;
	if (kv->op == CACHE_KV_COUNT) {
		struct store_counts sc;
		store_counts(ctx->st, &sc);
		reply_int(out, (int64_t)sc.items);
		return CACHE_FAILED;    /* counts as nothing */
	}
	if (kv->op == CACHE_KV_FLUSH) {
		store_flush(ctx->st, UINT32_MAX);
		reply_kind(out, REPLY_OK);
		return CACHE_FAILED;
	}
	found = read_item(ctx->st, ctx->now, r, &x);
	if (found < 0) {
		reply_error(out, err_damaged);
		return CACHE_FAILED;
	}
	switch (kv->op) {
	case CACHE_KV_SET:
		return kv_set(ctx, r, kv, &x, found, out, effect);
	case CACHE_KV_INCRBY:
		return kv_incrby(ctx, r, kv, &x, found, out, effect);
	case CACHE_KV_APPEND:
		return kv_append(ctx, r, &x, found, out, effect);
	case CACHE_KV_GETDEL:
		if (!found) {
			reply_kind(out, REPLY_NIL);
			return CACHE_MISS;
		}
		if (reply_before_delete(ctx, &x, out))
			return retime_failed(out, -ENOMEM);
		store_delete(ctx->st, r->key, r->key_len, r->hash);
		*effect = CACHE_KV_DELETED;
		return CACHE_DELETED;
	case CACHE_KV_GETEX:
		if (!found) {
			reply_kind(out, REPLY_NIL);
			return CACHE_MISS;
		}
		return kv_getex(ctx, r, kv, &x, out, effect);
	case CACHE_KV_EXPIRE:
		if (!found) {
			reply_int(out, 0);
			return CACHE_ABSENT;
		}
		return kv_expire(ctx, r, kv, &x, out, effect);
	case CACHE_KV_PERSIST:
		reply_int(out, found && x.it.expires);
		if (!found || !x.it.expires)
			return CACHE_ABSENT;
		int rc = retime(ctx, r, &x, 0);
		if (rc)
			return retime_failed(out, rc);
		*effect = CACHE_KV_WROTE;
		return CACHE_STORED;
	default:
		reply_error(out, "ERR unknown operation");
		return CACHE_FAILED;
	}
}
