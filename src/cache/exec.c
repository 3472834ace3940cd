/*
 * exec.c - the cache executor: one parsed /cache/ request in, one struct
 * reply out, on the shard that owns the key.
 *
 * Writes do the work: a PUT picks the Content-Type, hashes the value for
 * its ETag and stores it (repr.c); a compressible one is also copied into a
 * job for the compression workers (zip.h), whose blob with the br and gzip
 * variants cache_zip_poll() installs later if the write is still the item.
 * Reads only look up, negotiate and point: a GET hit is one store_get(), an
 * inline unpack (a bit test for plain values), at most one Accept-Encoding
 * scan, and a reply whose body and Content-Type point into the store.  The
 * protocol's renderer (http_render) writes it.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache/cache.h"
#include "ringcache/clock.h"
#include "ringcache/hash.h"
#include "ringcache/hist.h"
#include "cache/compress.h"
#include "cache/negotiate.h"
#include "cache/repr.h"
#include "cache/tags.h"
#include "cache/zip_int.h"

_Static_assert((int)NEGOTIATE_BR == (int)REPR_BR && (int)NEGOTIATE_GZIP == (int)REPR_GZIP &&
		       (int)NEGOTIATE_IDENTITY == (int)REPR_IDENTITY,
	       "negotiate and repr number the codings alike");
_Static_assert((int)REPLY_BR == (int)REPR_BR && (int)REPLY_GZIP == (int)REPR_GZIP &&
		       (int)REPLY_IDENTITY == (int)REPR_IDENTITY,
	       "reply and repr number the codings alike");
_Static_assert(REPR_ETAG_MAX < REPLY_ETAG_MAX, "a formatted ETag fits in a reply");

/* Blob bytes one cache_zip_poll() installs at most (one blob at least):
 * each costs a copy into the arena, and the shard serves nothing meanwhile. */
#define POLL_BYTES (256u << 10)

#define STALE_MAX_TEXT "31536000"
_Static_assert(CACHE_STALE_MAX == 31536000u, "STALE_MAX_TEXT spells CACHE_STALE_MAX");
_Static_assert(CACHE_EXT_MAX == REPR_EXT_MAX, "cache.h's CACHE_EXT_MAX is repr.h's");

/* Longest Accept-Encoding value remembered (browsers send ~25 bytes). */
#define AE_MEMO_MAX 96

/* Writes that found the compression queue full, remembered (the newest
 * RETRY_MAX) so they get their variants once it has room, if they are still
 * the item then: after a burst of writes its last values get variants
 * instead of staying without until rewritten.  64 x ~1 KiB per shard. */
#define RETRY_MAX 64

struct retry {
	struct zip_write w;
	uint16_t key_len;
	uint8_t key[STORE_KEY_MAX];
};

struct cache {
	struct store *st;
	struct cache_config cfg;
	struct tags *tags;      /* the tag index; NULL until the first tagged write */
	bool served;            /* a request was executed: the store holds only what
				 * this cache wrote (or a load it has indexed) */
	uint32_t now;           /* store clock, from cache_tick(); 1 until then */
	/* a stack of writes to retry: retry[(retry_top - k) % RETRY_MAX] for
	 * k = 1..retry_n, newest first; a push onto a full one drops the oldest */
	struct retry *retry;
	uint32_t retry_top, retry_n;
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
	if (cfg->zip && !(c->retry = calloc(RETRY_MAX, sizeof(*c->retry)))) {
		free(c);
		return -ENOMEM;
	}
	c->st = st;
	c->cfg = *cfg;
	if (!c->cfg.compress_max)
		c->cfg.compress_max = SIZE_MAX;
	c->now = 1;
	if (!c->cfg.tags_memory) {
		struct store_stats ss;
		store_stats(st, &ss);
		c->cfg.tags_memory = ss.arena_bytes / 4;
	}
	if (c->cfg.max_value > UINT32_MAX)
		c->cfg.max_value = UINT32_MAX;
	*out = c;
	return 0;
}

void cache_destroy(struct cache *c)
{
	if (!c)
		return;
	tags_destroy(c->tags);
	free(c->retry);
	free(c);
}

static void tags_sweep_slice(struct cache *c);
static void tags_index_loaded(struct cache *c);

void cache_tick(struct cache *c, uint32_t now)
{
	c->now = now;
	store_tick(c->st, now);
	if (!c->served)
		tags_index_loaded(c);
	tags_sweep_slice(c);
}

size_t cache_blob_max(size_t max_value)
{
	return REPR_EXT_MAX + REPR_HDR_MAX + max_value + 2 * (max_value / 10 * 9 + 9);
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

static enum cache_outcome miss(struct reply *out)
{
	reply_status(out, 404, NULL);
	out->cache = REPLY_CACHE_MISS;
	return CACHE_MISS;
}

/*
 * Whether a GET may have an item `late` seconds past its fresh-until (0:
 * the first stale second) with windows swr and sie: within swr always;
 * within swr + sie when the request's Cache-Control carries stale-if-error
 * or max-stale, bare or with N >= late.  A malformed request directive
 * counts as absent.
 */
static bool stale_allowed(const struct cache_req *r, uint64_t late, const struct repr_ext *e)
{
	if (late < e->swr)
		return true;
	if (late >= (uint64_t)e->swr + e->sie || !r->cache_control.len)
		return false;
	static const char *const directives[] = { "stale-if-error", "max-stale" };
	for (unsigned i = 0; i < 2; i++) {
		uint32_t n = 0;
		int rc = negotiate_cc_secs(r->cache_control.p, r->cache_control.len,
					   directives[i], &n);
		if (rc == 2 || (rc == 1 && late <= n))
			return true;
	}
	return false;
}

static enum cache_outcome exec_get(struct cache *c, const struct cache_req *r,
				   struct reply *out)
{
	struct store_item it;
	struct repr_view v;

	if (store_get(c->st, r->key, r->key_len, r->hash, &it) != 0)
		return miss(out);
	if (repr_unpack(it.value, it.value_len, it.flags, it.etag, &v) != 0)
		return fail(out, 500, "stored value is damaged\n");
	/* past its TTL an item with windows is stale, or a miss (cache.h) */
	uint32_t fresh_until = repr_fresh_until(it.expires, &v);
	bool stale = fresh_until && fresh_until <= c->now;
	if (stale && (!r->stale_ok || !stale_allowed(r, c->now - fresh_until, &v.ext)))
		return miss(out);

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
	/* a value with variants keeps the stamp of the write it came from (repr.h) */
	uint32_t stamp = it.flags & (REPR_F_BR | REPR_F_GZIP) ? v.stamp : it.stamp;
	out->etag_len = (uint8_t)repr_format_etag(out->etag, part->etag, stamp, coding);
	bool not_modified = r->if_none_match.len &&
			    negotiate_etag_match(r->if_none_match.p, r->if_none_match.len,
						 out->etag, out->etag_len);
	out->status = not_modified ? 304 : 200;
	out->cache = stale ? REPLY_CACHE_STALE : REPLY_CACHE_HIT;
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
	if (stale) {
		/* Age: seconds since the write (repr.h: stored_at) */
		uint32_t stored_at = fresh_until > v.ext.ttl ? fresh_until - v.ext.ttl : 0;
		out->has_age = true;
		out->age = c->now - stored_at;
		return CACHE_STALE;
	}
	if (fresh_until) {
		out->has_max_age = true;
		/* the extra second put_ttl() added is not promised to caches */
		out->max_age = fresh_until > c->now + 1 ? fresh_until - c->now - 1 : 0;
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
static uint32_t put_ttl(const struct cache *c, const struct cache_req *r, uint64_t windows)
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
	/* room for the stale windows past it too (the store's expiry is
	 * ttl + windows); a TTL so long they do not fit gives them up first */
	uint64_t room = UINT32_MAX - c->now;
	room = room > windows ? room - windows : 0;
	return ttl > room ? (uint32_t)room : (uint32_t)ttl;
}

/*
 * A stale window of a PUT: ?q= (the route checked its syntax; -1: absent),
 * else the Cache-Control directive.  0 with *secs (0 when absent), or
 * -EINVAL when malformed or above CACHE_STALE_MAX.
 */
static int put_window(const struct cache_req *r, int64_t q, const char *directive,
		      uint32_t *secs)
{
	uint32_t v = 0;

	if (q >= 0) {
		if (q > CACHE_STALE_MAX)
			return -EINVAL;
		*secs = (uint32_t)q;
		return 0;
	}
	if (r->cache_control.len) {
		int rc = negotiate_cc_secs(r->cache_control.p, r->cache_control.len, directive, &v);
		if (rc < 0 || rc == 2 || v > CACHE_STALE_MAX)
			return -EINVAL;
	}
	*secs = v;
	return 0;
}

/* Owner-only counting into the shard's stats (stats.h: one writer, so a
 * relaxed load and store, never torn). */
static void count(_Atomic uint64_t *ctr, int64_t d)
{
	if (ctr)
		atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) +
					      (uint64_t)d, memory_order_relaxed);
}

/* Whether a value of this size and type is worth variants at all. */
static bool compressible(const struct cache *c, size_t n, const char *ct, size_t ct_len)
{
	return c->cfg.zip && n > 0 && n >= c->cfg.compress_min && n <= c->cfg.compress_max &&
	       zip_variant_cap(n) > 0 && !compress_type_is_compressed(ct, ct_len);
}

/*
 * Hands a copy of a stored value to the compression workers, with what
 * identifies its write.  False, with nothing queued, when the queue has no
 * room (zip.h's bounds) or there is no memory.
 */
static bool queue_job(struct cache *c, const uint8_t *key, uint32_t key_len, const char *ct,
		      size_t ct_len, const uint8_t *value, uint32_t len, const struct zip_write *w)
{
	size_t size = zip_job_size(key_len, (uint8_t)ct_len, len);
	struct zip_job *j = NULL;

	if (zip_room(c->cfg.zip, c->cfg.lane, size))
		j = malloc(size);
	if (!j)
		return false;
	zip_job_init(j, size, key, key_len, ct, (uint8_t)ct_len, value, len);
	j->w = *w;
	if (!zip_submit(c->cfg.zip, c->cfg.lane, j)) {
		free(j);        /* not reached: zip_room() said yes */
		return false;
	}
	count(c->cfg.counters.zip_queued, 1);
	count(c->cfg.counters.zip_pending, 1);
	return true;
}

/* Queues the variants of the write just stored, or (counted in
 * zip_queue_full) remembers it for later. */
static void queue_variants(struct cache *c, const struct cache_req *r, const char *ct,
			   size_t ct_len, const struct repr_blob *blob, uint32_t stamp)
{
	struct zip_write w = { .hash = r->hash, .put_ns = clock_mono_ns(), .stamp = stamp,
			       .etag = blob->etag, .flags = blob->flags };

	for (int i = 0; i < blob->iovcnt; i++)
		w.stored_len += (uint32_t)blob->iov[i].iov_len;
	if (queue_job(c, r->key, r->key_len, ct, ct_len, r->body, r->body_len, &w))
		return;
	count(c->cfg.counters.zip_queue_full, 1);
	struct retry *e = &c->retry[c->retry_top];
	c->retry_top = (c->retry_top + 1) % RETRY_MAX;
	if (c->retry_n < RETRY_MAX) {   /* else the oldest is forgotten for this one */
		c->retry_n++;
		count(c->cfg.counters.zip_pending, 1);
	}
	e->w = w;
	e->key_len = (uint16_t)r->key_len;
	memcpy(e->key, r->key, r->key_len);
}

/*
 * Whether `key` still holds write w: the same stamp (a new write, a
 * compaction's copy, a re-install all get new ones, docs/store.md), content
 * hash, flags and stored length; a deleted, evicted or expired key has no
 * item.  For a later write to pass, both its stamp and its content hash
 * must collide with w's (2^-64, as for the ETags).  *it is the item.
 */
static bool still_the_item(struct cache *c, const uint8_t *key, uint32_t key_len,
			   const struct zip_write *w, struct store_item *it)
{
	return store_get(c->st, key, key_len, w->hash, it) == 0 && it->stamp == w->stamp &&
	       it->etag == w->etag && it->flags == w->flags && it->value_len == w->stored_len &&
	       (!it->expires || it->expires > c->now);
}

/*
 * The newest remembered write, queued now if it is still the item (same
 * stamp, content hash, flags, length) and the queue has room for it; one
 * that is no longer the item is forgotten.  Its bytes are copied from the
 * store, here in the owning shard.  Returns the bytes copied, 0 when it
 * queued nothing; *stop when the queue has no room (the entry stays).
 */
static size_t retry_newest(struct cache *c, bool *stop)
{
	uint32_t top = (c->retry_top + RETRY_MAX - 1) % RETRY_MAX;
	const struct retry *e = &c->retry[top];
	struct store_item it;
	struct repr_view v;

	if (!still_the_item(c, e->key, e->key_len, &e->w, &it) ||
	    repr_unpack(it.value, it.value_len, it.flags, it.etag, &v) != 0) {
		c->retry_top = top;
		c->retry_n--;
		count(c->cfg.counters.zip_pending, -1);
		return 0;
	}
	const struct repr_part *id = &v.part[REPR_IDENTITY];
	uint32_t ct_len = v.type_len;
	const char *ct = v.type >= 0 ? repr_type_name((unsigned)v.type, &ct_len) : v.type_str;
	if (!queue_job(c, e->key, e->key_len, ct, ct_len, id->p, id->len, &e->w)) {
		*stop = true;
		return 0;
	}
	count(c->cfg.counters.zip_retried, 1);
	count(c->cfg.counters.zip_pending, -1);     /* queue_job() counted it again */
	c->retry_top = top;
	c->retry_n--;
	return id->len;
}

/* Stores a PUT's blob, queues its variants, describes the answer. */
static enum cache_outcome store_put(struct cache *c, const struct cache_req *r,
				    struct reply *out, const char *ct, size_t ct_len,
				    struct repr_blob *blob, uint32_t store_ttl)
{
	struct store_set_info set;
	int rc = store_set(c->st, r->key, r->key_len, r->hash, blob->iov, blob->iovcnt, store_ttl,
			   blob->flags, blob->etag, &set);
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
	if (compressible(c, r->body_len, ct, ct_len))
		queue_variants(c, r, ct, ct_len, blob, set.stamp);
	reply_status(out, set.replaced ? 204 : 201, NULL);
	out->etag_len = (uint8_t)repr_format_etag(out->etag, blob->etag, set.stamp, REPR_IDENTITY);
	return CACHE_STORED;
}

/* --- the tag index (tags.h) ---------------------------------------------------- */

static void tags_gauges(struct cache *c)
{
	const struct cache_counters *ctr = &c->cfg.counters;

	if (ctr->tag_index_bytes)
		atomic_store_explicit(ctr->tag_index_bytes, tags_memory(c->tags),
				      memory_order_relaxed);
	if (ctr->tag_index_entries)
		atomic_store_explicit(ctr->tag_index_entries, tags_entries(c->tags),
				      memory_order_relaxed);
}

/* The tags of an item's blob: their count, and the encoded list at *enc. */
static unsigned item_tags(const struct store_item *it, const uint8_t **enc, uint32_t *len)
{
	struct repr_ext e;

	if (!(it->flags & REPR_F_EXT) || repr_ext_decode(it->value, it->value_len, &e) != 0 ||
	    !(e.bits & REPR_EXT_TAGS))
		return 0;
	*enc = e.tags;
	*len = e.tags_len;
	return e.ntags;
}

/* The tags key's item has now, copied to buf: their count (0 too when the
 * index is empty: there is nothing to take out of it). */
static unsigned old_tags(struct cache *c, const uint8_t *key, uint32_t key_len, uint64_t hash,
			 uint8_t *buf, uint32_t *len)
{
	struct store_item it;
	const uint8_t *enc;
	unsigned n;

	if (!tags_entries(c->tags) || store_get(c->st, key, key_len, hash, &it) != 0 ||
	    !(n = item_tags(&it, &enc, len)))
		return 0;
	memcpy(buf, enc, *len);
	return n;
}

/* Takes key out of the index for each tag of enc[0..len). */
static void unindex(struct cache *c, const uint8_t *key, uint32_t key_len, uint64_t hash,
		    const uint8_t *enc, uint32_t len, unsigned n)
{
	const uint8_t *p = enc;

	(void)len;
	for (unsigned i = 0; i < n; i++, p += 1 + *p)
		tags_remove(c->tags, p + 1, *p, key, key_len, hash);
	if (n)
		tags_gauges(c);
}

/* The sweep's question: does key's item still carry tag? */
static bool still_tagged(void *arg, const uint8_t *tag, size_t tag_len, const uint8_t *key,
			 uint32_t key_len, uint64_t hash)
{
	struct cache *c = arg;
	struct store_item it;
	const uint8_t *enc;
	uint32_t len;
	unsigned n;

	return store_get(c->st, key, key_len, hash, &it) == 0 &&
	       (n = item_tags(&it, &enc, &len)) && tags_has(enc, len, n, tag, tag_len);
}

/* Entries the index drops per store tick (4 a second) when their keys were
 * evicted, expired or rewritten behind its back. */
#define SWEEP_SLICE 256u

static void tags_sweep_slice(struct cache *c)
{
	if (c->tags && tags_entries(c->tags)) {
		tags_sweep(c->tags, SWEEP_SLICE, still_tagged, c);
		tags_gauges(c);
	}
}

/*
 * Stores a blob whose extension header is e, and keeps the tag index true:
 * the key leaves the index for the tags of the item it replaces and enters
 * it for its own.  A tagged write the index has no room for is refused
 * (507) rather than stored where a purge could not find it.
 */
static enum cache_outcome put_indexed(struct cache *c, const struct cache_req *r,
				      struct reply *out, const char *ct, size_t ct_len,
				      struct repr_blob *blob, uint32_t store_ttl,
				      const struct repr_ext *e)
{
	unsigned ntags = e->bits & REPR_EXT_TAGS ? e->ntags : 0;
	const struct cache_counters *ctr = &c->cfg.counters;

	if (ntags && ((!c->tags && tags_create(&c->tags, c->cfg.tags_memory) != 0) ||
		      !tags_room(c->tags, ntags, r->key_len))) {
		count(ctr->tag_index_full, 1);
		return fail(out, 507, "tag index full\n");
	}
	uint8_t old[REPR_TAGS_MAX * (1 + REPR_TAG_MAX)];
	uint32_t old_len = 0;
	unsigned old_n = old_tags(c, r->key, r->key_len, r->hash, old, &old_len);
	enum cache_outcome oc = store_put(c, r, out, ct, ct_len, blob, store_ttl);

	if (oc != CACHE_STORED)
		return oc;
	unindex(c, r->key, r->key_len, r->hash, old, old_len, old_n);
	const uint8_t *p = e->tags;
	for (unsigned i = 0; i < ntags; i++, p += 1 + *p) {
		if (tags_add(c->tags, p + 1, *p, r->key, r->key_len, r->hash) != 0) {
			/* not findable by its tags: not stored either */
			unindex(c, r->key, r->key_len, r->hash, e->tags, e->tags_len, i);
			store_delete(c->st, r->key, r->key_len, r->hash);
			count(ctr->tag_index_full, 1);
			return fail(out, 507, "tag index full\n");
		}
	}
	if (ntags)
		tags_gauges(c);
	return oc;
}

/*
 * Items in the store before the first request came from a snapshot
 * (--snapshot: stored by src/snapshot/ without this cache), and their tags
 * travel in their blobs: the index is rebuilt from them, once, by the tick
 * the shard gives after the load and before it serves.  An item the index
 * has no room for is dropped (a purge could not find it), counted in
 * tag_index_full.
 */
static void tags_index_loaded(struct cache *c)
{
	struct store_counts sc;
	struct store_iter *it;
	struct store_entry e;

	store_counts(c->st, &sc);
	if (!sc.items || store_iter_create(c->st, &it) != 0)
		return;
	c->served = true;       /* once */
	while (store_iter_next(it, &e) == 0) {
		const uint8_t *enc;
		uint32_t len;
		unsigned n = item_tags(&e.item, &enc, &len);
		if (!n)
			continue;
		uint64_t hash = hash_key(e.key, e.key_len);
		bool ok = (c->tags || tags_create(&c->tags, c->cfg.tags_memory) == 0);
		const uint8_t *p = enc;
		for (unsigned i = 0; ok && i < n; i++, p += 1 + *p)
			ok = tags_add(c->tags, p + 1, *p, e.key, e.key_len, hash) == 0;
		if (!ok) {
			if (c->tags)
				unindex(c, e.key, e.key_len, hash, enc, len, n);
			store_delete(c->st, e.key, e.key_len, hash);
			count(c->cfg.counters.tag_index_full, 1);
		}
	}
	store_iter_destroy(it);
	if (c->tags)
		tags_gauges(c);
}

bool cache_tag_valid(const uint8_t *tag, size_t len)
{
	return tags_valid(tag, len);
}

uint64_t cache_tag_count(const struct cache *c, const uint8_t *tag, size_t len)
{
	return c->tags ? tags_count(c->tags, tag, len) : 0;
}

int cache_tag_purge(struct cache *c, const uint8_t *tag, size_t len, uint32_t max,
		    uint64_t *removed, cache_removed_fn removed_fn, void *arg)
{
	struct tags_key k;
	int more = 1;

	if (!c->tags)
		return 0;
	for (uint32_t i = 0; i < max; i++) {
		if (!tags_take(c->tags, tag, len, &k)) {
			more = 0;
			break;
		}
		/* the item's own tags decide (tags.h): the key may have been
		 * rewritten without this tag behind the index's back */
		struct store_item it;
		const uint8_t *enc;
		uint32_t elen;
		unsigned n;
		if (store_get(c->st, k.key, k.len, k.hash, &it) != 0 ||
		    !(n = item_tags(&it, &enc, &elen)) || !tags_has(enc, elen, n, tag, len))
			continue;
		uint8_t own[REPR_TAGS_MAX * (1 + REPR_TAG_MAX)];
		memcpy(own, enc, elen);
		store_delete(c->st, k.key, k.len, k.hash);
		unindex(c, k.key, k.len, k.hash, own, elen, n);    /* its other tags */
		(*removed)++;
		count(c->cfg.counters.tag_purged, 1);
		if (removed_fn)
			removed_fn(arg, k.key, k.len, k.hash);
	}
	if (more)
		more = tags_count(c->tags, tag, len) > 0;
	tags_gauges(c);
	return more;
}

/* Whether the extension header of a value read back from L2 is damaged
 * (else decoded into *e): windows no PUT can give (put_window()) are a
 * damaged frame too. */
static bool l2_ext_bad(const uint8_t *ext, uint32_t len, struct repr_ext *e)
{
	return len > REPR_EXT_MAX || repr_ext_decode(ext, len, e) != 0 || e->len != len ||
	       e->swr > CACHE_STALE_MAX || e->sie > CACHE_STALE_MAX;
}

/*
 * A value read back from L2 with its extension header (cache_req.ext): the
 * header is checked (it came from Redis: hostile) and kept byte for byte,
 * so the windows, the write's TTL (for Age) and the tags stay those of the
 * original write; r->ttl is what Redis had left of the whole expiry.
 */
static enum cache_outcome put_from_l2(struct cache *c, const struct cache_req *r,
				      struct reply *out, const char *ct, size_t ct_len)
{
	struct repr_ext e;
	struct repr_blob blob;

	if (l2_ext_bad(r->ext, r->ext_len, &e))
		return fail(out, 400, "bad extension header\n");
	repr_build(&blob, r->body, r->body_len, ct, ct_len, NULL, 0, NULL, 0, 0);
	repr_blob_ext(&blob, r->ext, r->ext_len);
	/* Redis' time left, already rounded up: without put_ttl()'s extra
	 * second, so this copy turns stale within a second of the writer's */
	uint64_t ttl = r->ttl > 0 ? (uint64_t)r->ttl : 0, room = UINT32_MAX - c->now;
	return put_indexed(c, r, out, ct, ct_len, &blob, (uint32_t)(ttl > room ? room : ttl), &e);
}

bool cache_copy_answers(const struct cache *c, const struct cache_req *r, uint32_t ttl,
			const uint8_t *ext, uint32_t ext_len)
{
	struct repr_ext e;

	if (!ttl || !ext_len)
		return true;    /* no expiry, or no windows: fresh for its >= 1 s */
	/* tried all the same: put_from_l2() refuses it, and the read answers
	 * bad data (X-L2, l2_refused) whether or not L1 holds a copy */
	if (l2_ext_bad(ext, ext_len, &e))
		return true;
	if (!(e.bits & REPR_EXT_WINDOWS))
		return true;
	/* as exec_get() would see it, stored now with ttl (put_from_l2()) */
	uint64_t w = (uint64_t)e.swr + e.sie, expires = (uint64_t)c->now + ttl;
	uint64_t fresh_until = expires > w ? expires - w : 1;
	if (fresh_until > c->now)
		return true;
	return r->stale_ok && stale_allowed(r, c->now - fresh_until, &e);
}

int cache_item_ext(struct store *st, const struct cache_req *r, uint8_t *out,
		   struct cache_ext_tags *tags)
{
	struct store_item it;
	struct repr_ext e;

	tags->off = 0;
	tags->n = 0;
	if (store_get(st, r->key, r->key_len, r->hash, &it) != 0)
		return -ENOENT;
	if (!(it.flags & REPR_F_EXT) || repr_ext_decode(it.value, it.value_len, &e) != 0)
		return 0;
	memcpy(out, it.value, e.len);
	if (e.bits & REPR_EXT_TAGS) {
		tags->off = (uint32_t)(e.tags - it.value);
		tags->n = e.ntags;
	}
	return (int)e.len;
}

static enum cache_outcome exec_put(struct cache *c, const struct cache_req *r,
				   struct reply *out)
{
	const char *ct = NULL;
	size_t ct_len = 0;
	struct repr_blob blob;

	if (r->body_len > c->cfg.max_value)
		return fail(out, 413, "value too large\n");
	if (put_type(r, &ct, &ct_len) != 0)
		return fail(out, 400, "bad Content-Type\n");
	if (r->ext_len)
		return put_from_l2(c, r, out, ct, ct_len);
	struct repr_ext ext = { 0 };
	if (put_window(r, r->swr, "stale-while-revalidate", &ext.swr) != 0)
		return fail(out, 400, "bad stale-while-revalidate (swr): 0.." STALE_MAX_TEXT
				      " seconds\n");
	if (put_window(r, r->sie, "stale-if-error", &ext.sie) != 0)
		return fail(out, 400, "bad stale-if-error (sie): 0.." STALE_MAX_TEXT " seconds\n");
	uint8_t tagbuf[REPR_TAGS_MAX * (1 + REPR_TAG_MAX)];
	if (r->tags.len) {
		int n = tags_parse(r->tags.p, r->tags.len, tagbuf, &ext.tags_len);
		if (n < 0)
			return fail(out, 400,
				    n == -E2BIG ? "bad X-Cache-Tags: more than 8 tags\n"
				    : n == -ENAMETOOLONG
					    ? "bad X-Cache-Tags: a tag longer than 128 bytes\n"
					    : "bad X-Cache-Tags: a tag is visible ASCII but ','\n");
		ext.ntags = (uint8_t)n;
		ext.tags = tagbuf;
	}
	uint64_t windows = (uint64_t)ext.swr + ext.sie;
	uint32_t ttl = put_ttl(c, r, windows);
	uint8_t ext_hdr[REPR_EXT_MAX];
	uint32_t store_ttl = ttl;

	/* windows only mean something past a TTL: an item without one is
	 * never stale, and pays no byte for them */
	if (ttl && windows) {
		ext.bits = REPR_EXT_WINDOWS;
		ext.ttl = ttl;
		store_ttl = (uint32_t)(ttl + windows);
	}
	if (ext.ntags)
		ext.bits |= REPR_EXT_TAGS;
	repr_build(&blob, r->body, r->body_len, ct, ct_len, NULL, 0, NULL, 0, 0);
	repr_blob_ext(&blob, ext_hdr, repr_ext_encode(ext_hdr, &ext));
	return put_indexed(c, r, out, ct, ct_len, &blob, store_ttl, &ext);
}

/*
 * A job came back.  Its variants go into the item only if the item is still
 * the write the job was made from (still_the_item()).  Installing rewrites
 * the item with the blob [header | value | br | gzip], keeping its absolute
 * expiry, Content-Type (flags and header) and content hash; the header
 * carries the write's stamp, so its ETags do not change (repr.h).  Returns
 * the bytes it copied into the store.  The job stays counted in zip_pending
 * until install() has counted its outcome.
 */
static size_t install_job(struct cache *c, const struct zip_job *j)
{
	const struct cache_counters *ctr = &c->cfg.counters;
	const uint8_t *key = zip_job_key(j);
	struct store_item it;

	if (!j->blob_len) {
		count(ctr->zip_unprofitable, 1);
		return 0;
	}
	if (!still_the_item(c, key, j->key_len, &j->w, &it)) {
		count(ctr->zip_stale, 1);
		return 0;
	}
	uint32_t ttl = it.expires ? it.expires - c->now : 0;
	/* the worker's blob lacks the item's extension header (stale windows,
	 * tags): copied out of the store before the write that replaces it */
	uint8_t ext[REPR_EXT_MAX];
	struct repr_ext e = { 0 };
	if ((it.flags & REPR_F_EXT) && repr_ext_decode(it.value, it.value_len, &e) == 0)
		memcpy(ext, it.value, e.len);
	struct iovec iov[2] = { { ext, e.len }, { (void *)(j->data + j->blob_off), j->blob_len } };
	uint8_t flags = (uint8_t)(j->out_flags | (e.len ? REPR_F_EXT : 0));
	if (store_set(c->st, key, j->key_len, j->w.hash, e.len ? iov : iov + 1, e.len ? 2 : 1, ttl,
		      flags, j->out_etag, NULL) == 0) {
		count(ctr->zip_installed, 1);
		if (c->cfg.zip_lag)
			hist_record(c->cfg.zip_lag, clock_mono_ns() - j->w.put_ns);
		return j->blob_len;
	}
	/* A failed store_set() dropped the key (store.h): put the value back
	 * as it was, without variants (a new write: a new stamp). */
	struct repr_blob b;
	repr_build(&b, zip_job_value(j), j->value_len, zip_job_ct(j), j->ct_len, NULL, 0, NULL, 0,
		   0);
	repr_blob_ext(&b, ext, e.len);
	store_set(c->st, key, j->key_len, j->w.hash, b.iov, b.iovcnt, ttl, b.flags, b.etag, NULL);
	count(ctr->zip_refused, 1);
	return j->value_len;
}

static size_t install(struct cache *c, const struct zip_job *j)
{
	size_t n = install_job(c, j);

	/* after the outcome's counter (installed, stale, unprofitable,
	 * refused), not before the 64 KB copy of an install: a /stats that
	 * finds nothing pending then shows every outcome (the counters have
	 * one writer, this shard; a later /stats request is ordered after it
	 * by its own round trip) */
	count(c->cfg.counters.zip_pending, -1);
	return n;
}

bool cache_zip_poll(struct cache *c)
{
	struct zip_job *j;
	size_t done = 0;
	bool work = false;

	if (!c || !c->cfg.zip)
		return false;
	while (done < POLL_BYTES && (j = zip_take(c->cfg.zip, c->cfg.lane))) {
		done += install(c, j) + 1;
		free(j);
		work = true;
	}
	bool stop = false;
	while (c->retry_n && done < POLL_BYTES && !stop) {
		done += retry_newest(c, &stop) + 1;
		work |= !stop;
	}
	return zip_publish(c->cfg.zip, c->cfg.lane) || work;
}

bool cache_zip_waiting(const struct cache *c)
{
	return c && c->cfg.zip && zip_waiting(c->cfg.zip, c->cfg.lane);
}

uint32_t cache_zip_pending(const struct cache *c)
{
	return c->cfg.zip ? zip_outstanding(c->cfg.zip, c->cfg.lane) + c->retry_n : 0;
}

static enum cache_outcome exec_delete(struct cache *c, const struct cache_req *r,
				      struct reply *out)
{
	uint8_t old[REPR_TAGS_MAX * (1 + REPR_TAG_MAX)];
	uint32_t old_len = 0;
	unsigned old_n = old_tags(c, r->key, r->key_len, r->hash, old, &old_len);
	bool existed = store_delete(c->st, r->key, r->key_len, r->hash) == 0;

	unindex(c, r->key, r->key_len, r->hash, old, old_len, old_n);

	reply_status(out, existed ? 204 : 404, NULL);
	return existed ? CACHE_DELETED : CACHE_ABSENT;
}

enum cache_outcome cache_exec(struct cache *c, const struct cache_req *r, struct reply *out)
{
	c->served = true;
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
