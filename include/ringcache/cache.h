/*
 * cache.h - the cache executor: the semantics of /cache/ between the parsed
 * request and the store.  It turns one request into one struct reply
 * (reply.h); the connection's protocol renders it.
 *
 * One struct cache per shard, called only by the shard that owns its store.
 * A request may reach the owner through a cross-shard ring; everything
 * cache_exec() reads is in struct cache_req (and the bytes it points at), so
 * the forwarding shard copies exactly that into its message.
 *
 * The fast lane (issue 4) is decided at write time: a PUT stores the raw
 * value with its Content-Type and a strong ETag per representation (layout
 * in src/cache/repr.h).  A GET only looks up, negotiates Accept-Encoding
 * against what is stored and points the reply at the chosen bytes.
 *
 * The brotli and gzip variants are made off the shard (issue 8): a PUT of a
 * compressible value stores the identity representation at once, answers,
 * and hands a copy to the compression workers (zip.h).  When the variants
 * come back, cache_zip_poll() swaps them into the item only if the item is
 * still that write (same stamp, content hash, flags and length); an
 * overwrite, delete, eviction, expiry or move meanwhile discards them.
 * Until then GETs get the identity representation with its own ETag.
 *
 * Stale serving (issue 9, docs/stale-and-tags.md): a PUT may give windows
 * (Cache-Control stale-while-revalidate=S, stale-if-error=E, or ?swr= ?sie=)
 * and the item is kept S + E seconds past its TTL; the windows travel in the
 * blob's extension header (repr.h).  Within S past expiry a GET with
 * stale_ok gets it as CACHE_STALE (X-Cache: STALE, Age); within S + E only if
 * its Cache-Control carries stale-if-error[=N] or max-stale[=N] (N bounds the
 * seconds past expiry it accepts); otherwise, and always without stale_ok,
 * the item is a miss.
 *
 * Replies:
 *   GET/HEAD   200 hit (cache HIT), 304 If-None-Match matched,
 *              200/304 stale (cache STALE, Age),
 *              404 miss (cache MISS), 406 no acceptable coding stored
 *   PUT/POST   201 new key, 204 replaced (both with the ETag),
 *              400 bad Content-Type or stale window, 413 over max_value or larger than the
 *              store can hold, 507 the store could not make room, 500 else
 *   DELETE     204 deleted, 404 absent
 * A hit's body and type point into the store: render the reply before the
 * store changes (reply.h).
 *
 * Time: the executor reads the store clock from cache_tick(), which the shard
 * calls instead of store_tick(), so TTLs and remaining max-age use the same
 * "now" as the store's expiry decisions.
 */
#ifndef RINGCACHE_CACHE_H
#define RINGCACHE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcache/buf.h"
#include "ringcache/http.h"
#include "ringcache/reply.h"
#include "ringcache/store.h"

struct cache;
struct hist;
struct zip;

/*
 * What the compression off the shard does, for the shard's /stats: one
 * table, from which the shard's counters (stats.h STATS_METRICS) and the
 * pointers below are both made, so they cannot drift.  X(name, type, help)
 * as in STATS_METRICS.  Every write that qualifies for variants is counted
 * once in zip_queued or zip_queue_full; of the latter, those queued later
 * (the newest 64 of a shard are remembered and retried when the queue has
 * room, if still the item) once more in zip_retried and zip_queued.  Every
 * queued one is counted once more when it comes back, in zip_installed,
 * zip_stale, zip_unprofitable or zip_refused.  zip_pending is what may
 * still get variants: values at the workers and values remembered for a
 * retry; 0 means nothing more will be installed until the next write.
 */
#define CACHE_ZIP_STATS(X)                                                          \
	X(zip_queued, COUNTER,                                                      \
	  "Values handed to the compression workers for br/gzip variants.")        \
	X(zip_queue_full, COUNTER,                                                  \
	  "Compressible values stored without variants: the compression queue was full.") \
	X(zip_retried, COUNTER,                                                     \
	  "Of those, values queued later, when the queue had room and they were still current.") \
	X(zip_installed, COUNTER, "Values whose br/gzip variants were installed.") \
	X(zip_stale, COUNTER,                                                       \
	  "Variants discarded: the value was overwritten, deleted, evicted, expired or moved first.") \
	X(zip_unprofitable, COUNTER,                                                \
	  "Values compressed for nothing: neither variant saved 10 percent.")       \
	X(zip_refused, COUNTER,                                                     \
	  "Variants the store could not hold; the value was kept without them.")   \
	X(zip_pending, GAUGE,                                                       \
	  "Values waiting for variants: at the compression workers, or remembered for a retry.") \
	/* the tag index's (issue 9), in this table because it is the one the \
	 * shard wires into its stats */                                            \
	X(tag_index_bytes, GAUGE,                                                   \
	  "Bytes held by the tag index (tag -> keys); 0 until the first tagged write.") \
	X(tag_index_entries, GAUGE, "(tag, key) entries in the tag index.")        \
	X(tag_index_full, COUNTER,                                                  \
	  "Tagged writes refused (507): the tag index was at its memory bound.")   \
	X(tag_purged, COUNTER, "Keys removed by DELETE /tags/{tag}.")

/* Where the cache counts (the owning shard's stats); a NULL field is not
 * counted.  Owner-only updates: relaxed load + store, as stats.h does. */
struct cache_counters {
#define CACHE_COUNTER_PTR(name, type, help) _Atomic uint64_t *name;
	CACHE_ZIP_STATS(CACHE_COUNTER_PTR)
#undef CACHE_COUNTER_PTR
};

struct cache_config {
	size_t compress_min;    /* --compress-min: smallest value given variants (256) */
	size_t compress_max;    /* --compress-max: largest one (0: no limit) */
	uint32_t default_ttl;   /* --default-ttl, seconds; 0: no expiry */
	size_t max_value;       /* --max-value: largest raw value accepted (413 above) */
	struct zip *zip;        /* the compression workers; NULL: no variants are made */
	unsigned lane;          /* this shard's lane in zip (its shard id) */
	struct cache_counters counters;
	struct hist *zip_lag;   /* time from a PUT to its variants' install; NULL: none */
	size_t tags_memory;     /* bound of the tag index, bytes; 0: a quarter of the
				 * store's arena (allocated apart from it, on demand) */
};

/*
 * Creates the executor of one shard over its store (not owned: the shard
 * destroys the store after the cache).  Call from the owning thread.
 * Returns 0 or -ENOMEM.
 */
int cache_create(struct cache **out, struct store *st, const struct cache_config *cfg);

/* Jobs still at the workers stay with the pool, which frees them
 * (zip_destroy()).  Accepts NULL. */
void cache_destroy(struct cache *c);

/*
 * The shard's side of the compression workers, called once per loop
 * iteration: installs the variants that came back (those of writes that are
 * still the item), queues remembered writes that found the queue full if
 * there is room now, at most ~256 KiB of copies per call so one call stays
 * short, and publishes the jobs queued since the last call (waking parked
 * workers).  True if it did anything.  Without workers, or with c NULL (a
 * shard whose setup failed), false.
 */
bool cache_zip_poll(struct cache *c);

/*
 * Before the shard parks (after storing its `parked` flag, seq_cst): are
 * finished jobs waiting?  Then it must not park; a job finished later rings
 * the shard's doorbell (zip.h).
 */
bool cache_zip_waiting(const struct cache *c);

/* Values of this cache waiting for variants: at the workers (not yet back
 * through cache_zip_poll()) or remembered for a retry (zip_pending); what a
 * test or a benchmark waits on. */
uint32_t cache_zip_pending(const struct cache *c);

/*
 * Advances the store clock: calls store_tick(st, now) and remembers `now` for
 * TTL arithmetic.  The shard calls this instead of store_tick(), at least
 * once a second, with clock_store_now().
 */
void cache_tick(struct cache *c, uint32_t now);

/*
 * The largest value blob a PUT of max_value bytes can produce (raw value,
 * both variants, representation header).  Give it to the store as its
 * max_value; variants the store still refuses are not installed.
 */
size_t cache_blob_max(size_t max_value);

enum cache_op { CACHE_GET, CACHE_HEAD, CACHE_PUT, CACHE_DELETE, CACHE_TAG_PURGE };

/* serve_cache() (src/shard/route.c) and key_req() (src/shard/cmd.c) set
 * every field by name, with no memset first: a field added here is added
 * there too. */
struct cache_req {
	uint8_t op;                     /* enum cache_op; POST arrives as CACHE_PUT */
	bool stale_ok;                  /* GET/HEAD may be answered from a stale window
					 * (HTTP); false: past its TTL an item is gone (RESP) */
	bool fill_lease;                /* GET/HEAD with X-Cache-Fill: lease */
	uint32_t key_len;
	const uint8_t *key;             /* decoded key, 1..STORE_KEY_MAX bytes */
	uint64_t hash;                  /* hash_bytes(key, key_len, HASH_KEY_SEED) */
	const uint8_t *body;            /* PUT value */
	uint32_t body_len;
	uint32_t ext_len;
	int64_t ttl;                    /* from ?ttl=, -1: not given; 0: no expiry */
	int64_t swr, sie;               /* from ?swr=, ?sie= (<= CACHE_STALE_MAX), -1: not given */
	const uint8_t *ext;             /* PUT of a value read from L2: its extension
					 * header (repr.h), ext_len bytes, kept as is; ttl
					 * is then the store's whole TTL, windows included */
	struct http_str tags;           /* PUT: X-Cache-Tags (tags.h); len 0: none */
	struct http_str content_type;   /* header values, len 0 when absent */
	struct http_str accept_encoding;
	struct http_str if_none_match;
	struct http_str cache_control;
	struct http_str lease_token;    /* X-Cache-Lease of a PUT/DELETE (shard's fill.c) */
};

/* What a request did, for the shard's counters. */
enum cache_outcome {
	CACHE_HIT,              /* 200 */
	CACHE_MISS,             /* 404 on GET/HEAD */
	CACHE_NOT_MODIFIED,     /* 304 */
	CACHE_STORED,           /* 201/204 on PUT */
	CACHE_DELETED,          /* 204 on DELETE */
	CACHE_ABSENT,           /* 404 on DELETE */
	CACHE_FAILED,           /* 400, 406, 413, 500, 507 (507 also: tag index full) */
	CACHE_STALE,            /* 200 or 304 from a stale window (X-Cache: STALE) */
};

/* The largest stale-while-revalidate or stale-if-error window a PUT may
 * give, in seconds (one year); more is 400. */
#define CACHE_STALE_MAX 31536000u

/*
 * Executes one request on the owning shard and describes its answer in
 * *out.  Never fails: an error is a reply too (CACHE_FAILED).
 */
enum cache_outcome cache_exec(struct cache *c, const struct cache_req *r, struct reply *out);

/*
 * --- RESP operations (src/cache/kv.c) --------------------------------------
 *
 * What Redis's string commands do beyond GET, PUT and DELETE, on the shard
 * that owns the key, each as one step on its store (so atomic there): the
 * conditional and value-returning SET, INCRBY, APPEND, GETDEL, GETEX,
 * EXPIRE and PERSIST, and a shard's part of DBSIZE and FLUSHALL.  Values are
 * written through cache_exec() (variants, ETags, --default-ttl as for a PUT);
 * a change of TTL alone rewrites the stored blob as it is.  The store keeps
 * whole seconds: a TTL given in milliseconds is rounded up to seconds.
 */
enum cache_kv_op {
	CACHE_KV_NONE = 0,      /* req.op alone: GET, PUT or DELETE */
	CACHE_KV_SET,           /* SET with NX/XX/GET/KEEPTTL or an absolute expiry */
	CACHE_KV_INCRBY,        /* num */
	CACHE_KV_APPEND,        /* req.body */
	CACHE_KV_GETDEL,
	CACHE_KV_GETEX,         /* an expiry, PERSIST, or neither */
	CACHE_KV_EXPIRE,        /* at_ms (not after now: delete), NX/XX/GT/LT */
	CACHE_KV_PERSIST,
	CACHE_KV_COUNT,         /* the store's items: a part of DBSIZE */
	CACHE_KV_FLUSH,         /* drop every item: a part of FLUSHALL */
};

#define CACHE_KV_NX 0x01u
#define CACHE_KV_XX 0x02u
#define CACHE_KV_GT 0x04u
#define CACHE_KV_LT 0x08u
#define CACHE_KV_GET 0x10u      /* SET: answer the old value */
#define CACHE_KV_KEEPTTL 0x20u
#define CACHE_KV_PERSIST_F 0x40u /* GETEX PERSIST */
#define CACHE_KV_EXPIRY 0x80u   /* at_ms is given */

/* GETEX with an expiry Redis refuses only for a key that exists: at_ms says
 * which error the owner answers if it does. */
#define CACHE_KV_AT_INVALID INT64_MIN           /* "invalid expire time" */
#define CACHE_KV_AT_NOT_INT (INT64_MIN + 1)     /* "not an integer" */

struct cache_kv {
	uint8_t op;             /* enum cache_kv_op */
	uint8_t flags;          /* CACHE_KV_* */
	int64_t num;            /* INCRBY's increment */
	int64_t at_ms;          /* the expiry, Unix time in milliseconds */
};

/* What an operation did to its key (with --redis, what to write through). */
enum cache_kv_effect { CACHE_KV_UNCHANGED = 0, CACHE_KV_WROTE, CACHE_KV_DELETED };

/* Where an operation runs: the owner's executor, store and clocks. */
struct cache_kv_ctx {
	struct cache *cache;
	struct store *st;
	uint32_t now;           /* store clock, as given to cache_tick() */
	uint64_t now_ms;        /* Unix time in milliseconds */
	size_t max_value;       /* --max-value */
	struct buf *scratch;    /* the owner's: values being built or copied */
};

/*
 * Executes one operation and describes its answer in *out (REPLY_INT,
 * REPLY_NIL, REPLY_OK, REPLY_BULK, REPLY_ERROR with Redis's words, or the
 * REPR error cache_exec() gave a write); *effect says what changed.  A
 * REPLY_BULK points into the store or into ctx->scratch: render it before
 * either changes.  Returns the outcome for the counters.  Owner shard only.
 */
enum cache_outcome cache_kv_exec(const struct cache_kv_ctx *ctx, const struct cache_req *r,
				 const struct cache_kv *kv, struct reply *out,
				 enum cache_kv_effect *effect);

/*
 * One slice of DELETE /tags/{tag} on this shard: takes up to `max` keys the
 * tag index holds for tag[0..len) and deletes each whose item still carries
 * the tag (its own tags decide, not the index), adding them to *removed.
 * Returns 1 while keys remain, 0 when the tag has none left here.  The
 * caller runs slices across loop iterations, so the shard is never held for
 * long (docs/stale-and-tags.md).  With removed_fn, each removed key is also
 * reported (for Redis).  Owner shard only.
 */
typedef void (*cache_removed_fn)(void *arg, const uint8_t *key, uint32_t key_len,
				 uint64_t hash);
int cache_tag_purge(struct cache *c, const uint8_t *tag, size_t len, uint32_t max,
		    uint64_t *removed, cache_removed_fn removed_fn, void *arg);

/* Keys the tag index holds for tag[0..len) on this shard (a purge's work). */
uint64_t cache_tag_count(const struct cache *c, const uint8_t *tag, size_t len);

/* Whether tag[0..len) is a valid tag (1..128 visible ASCII bytes but ','). */
bool cache_tag_valid(const uint8_t *tag, size_t len);

/*
 * The extension header (stale windows, tags; src/cache/repr.h) of key
 * r->key's item, copied to out (CACHE_EXT_MAX bytes of room): its length,
 * 0 when the item has none, -ENOENT without an item; *tags says where its
 * tags are in it (each a length byte and the tag).  For writing it
 * through to Redis with the value (docs/coherence.md, RCV2).
 */
#define CACHE_EXT_MAX 1046u
struct cache_ext_tags {
	uint32_t off;           /* where the encoded tags start in out */
	uint8_t n;              /* how many (0: none) */
};
int cache_item_ext(struct store *st, const struct cache_req *r, uint8_t *out,
		   struct cache_ext_tags *tags);

/*
 * Whether a copy of a value with `ttl` seconds left of its expiry (0:
 * none) and the extension header ext[0..ext_len) (RCV2, docs/coherence.md),
 * once stored, would answer r as a hit: fresh, or stale within what r
 * allows (cache_exec()'s rules).  For a value read back from Redis, which
 * replaces an L1 copy r misses only when it would answer r (src/shard/l2.c).
 * True for an extension header put_from_l2 refuses, so that the refusal
 * is counted and answered as bad data whatever L1 holds.
 */
bool cache_copy_answers(const struct cache *c, const struct cache_req *r, uint32_t ttl,
			const uint8_t *ext, uint32_t ext_len);

/*
 * The identity representation of key r->key and its Content-Type, for
 * writing it through to Redis after cache_kv_exec() changed it.  0, or
 * -ENOENT.  The pointers are valid until the store changes.
 */
int cache_kv_identity(struct store *st, const struct cache_req *r, const uint8_t **value,
		      uint32_t *len, const char **type, uint32_t *type_len);

#endif
