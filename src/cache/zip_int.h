/*
 * zip_int.h - a compression job, and the shard's side of the worker pool
 * (zip.h), for the executor (exec.c).  Every function here is called only
 * by the shard that owns `lane`.
 *
 * A job is one malloc() block, written by the shard, compressed in place by
 * a worker, read back and freed by the shard:
 *
 *   struct zip_job | key | ct | header room | value | room for br + gzip
 *                                ^ blob_off   ^ value_off
 *
 * The worker writes the br variant right after the value and the gzip one
 * right after br, then the blob header (repr.h) right before the value, so
 * the finished blob [header | value | br | gzip] is contiguous and the
 * shard installs it with one store_set() of one iovec.  The header room is
 * the largest header a value with this Content-Type can need.
 */
#ifndef RINGCACHE_CACHE_ZIP_INT_H
#define RINGCACHE_CACHE_ZIP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcache/zip.h"

/* What identifies one write of a key in its store (exec.c's install rule). */
struct zip_write {
	uint64_t hash;                  /* the key's hash */
	uint64_t put_ns;                /* clock_mono_ns() when it was stored (zip_lag) */
	uint32_t stamp;                 /* the write's store stamp */
	uint32_t etag;                  /* the identity's content hash */
	uint32_t stored_len;            /* length of the blob the write stored */
	uint8_t flags;                  /* the write's store flags */
};

struct zip_job {
	/* The write this job belongs to: set by the shard, read-only after. */
	struct zip_write w;
	size_t size;                    /* bytes of this block (the lane's budget) */
	uint32_t key_len;
	uint32_t value_len;             /* identity bytes */
	uint32_t value_off;             /* where they sit in data[] */
	uint8_t ct_len;                 /* Content-Type, after the key */
	/* The worker's answer. */
	uint8_t out_flags;              /* flags of the blob with variants */
	uint32_t out_etag;              /* its identity content hash (== etag) */
	uint32_t blob_off;              /* the finished blob in data[] */
	uint32_t blob_len;              /* 0: no variant saved 10 %, nothing to install */
	uint8_t data[];
};

/* Room for a value of n bytes: each variant must fit in floor(0.9 n). */
static inline size_t zip_variant_cap(size_t n)
{
	return (size_t)((uint64_t)n * 9 / 10);
}

/* The block size of a job for this key, Content-Type and value length. */
size_t zip_job_size(uint32_t key_len, uint8_t ct_len, uint32_t value_len);

/* Lays out a job in a block of zip_job_size() bytes and copies key, ct and
 * value in; the caller sets the write's identity (w). */
void zip_job_init(struct zip_job *j, size_t size, const void *key, uint32_t key_len,
		  const char *ct, uint8_t ct_len, const void *value, uint32_t value_len);

static inline const uint8_t *zip_job_key(const struct zip_job *j)
{
	return j->data;
}

static inline const char *zip_job_ct(const struct zip_job *j)
{
	return (const char *)j->data + j->key_len;
}

static inline const uint8_t *zip_job_value(const struct zip_job *j)
{
	return j->data + j->value_off;
}

/* Compresses a job and builds its blob (what a worker does; tests call it
 * directly too).  `z` is a struct compress (compress.h). */
struct compress;
void zip_job_run(struct compress *z, struct zip_job *j);

/* Whether the lane has room for a job of `size` bytes (zip.h's bounds). */
bool zip_room(const struct zip *z, unsigned lane, size_t size);

/* Hands a job to a worker (the least busy one of this lane); false when
 * zip_room() would have said no.  Published by zip_publish(). */
bool zip_submit(struct zip *z, unsigned lane, struct zip_job *j);

/* The next finished job of this lane, or NULL.  The caller owns (frees) it. */
struct zip_job *zip_take(struct zip *z, unsigned lane);

/* Publishes the jobs submitted since the last call and wakes the parked
 * workers they went to.  True if it published anything. */
bool zip_publish(struct zip *z, unsigned lane);

/* Before parking (seq_cst, ring.h): has a worker published a finished job
 * this lane has not taken? */
bool zip_waiting(const struct zip *z, unsigned lane);

/* Jobs of this lane out at the workers (submitted, not yet taken). */
uint32_t zip_outstanding(const struct zip *z, unsigned lane);

#endif
