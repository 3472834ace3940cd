/*
 * zip.c - the compression workers (zip.h) and the shard's side of them
 * (zip_int.h).
 *
 * Ownership: a lane (one per shard) is touched only by its shard: its
 * counts, the producer side of its job rings and the consumer side of its
 * done rings.  A worker owns its compressor, the consumer side of its job
 * rings and the producer side of its done rings.  The job itself moves
 * with the ring slots: written by the shard before it is published, by the
 * worker after it popped it, by the shard again after it took it back.  The
 * rings' release/acquire pairs order those writes (ring.h).
 *
 * A lane never has more than ZIP_QUEUE_JOBS jobs out, so no ring between a
 * lane and a worker (ZIP_QUEUE_JOBS slots each) is ever full: a worker can
 * always hand a job back without waiting, and a shard never blocks.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ringcache/ring.h"
#include "cache/compress.h"
#include "cache/repr.h"
#include "cache/zip_int.h"

_Static_assert((ZIP_QUEUE_JOBS & (ZIP_QUEUE_JOBS - 1)) == 0 && ZIP_QUEUE_JOBS >= 2,
	       "ZIP_QUEUE_JOBS sizes the rings: a power of two");

struct zip_worker {
	/* Written by shards (wake) and by the worker: on its own line. */
	alignas(RING_LINE) _Atomic int parked;  /* the futex word */

	alignas(RING_LINE) struct zip *z;
	unsigned id;
	unsigned next;                  /* lane to look at first: round robin */
	bool started;
	pthread_t thread;
	struct compress *c;
};

struct zip_lane {
	alignas(RING_LINE) uint32_t jobs;       /* out at the workers */
	uint32_t rr;                    /* where the search for a worker starts */
	uint32_t next_take;             /* worker whose done ring is read first */
	size_t bytes;                   /* job memory out at the workers */
	uint32_t *inflight;             /* [worker]: jobs out at each */
};

struct zip {
	unsigned nshards, nworkers;
	struct ring **jobs;             /* [lane * nworkers + worker] */
	struct ring **done;             /* [lane * nworkers + worker] */
	struct zip_worker *workers;
	struct zip_lane *lanes;
	struct zip_config cfg;
	struct cpuset cpus;
	_Atomic bool stop;
};

static struct ring *jobs_ring(const struct zip *z, unsigned lane, unsigned w)
{
	return z->jobs[lane * z->nworkers + w];
}

static struct ring *done_ring(const struct zip *z, unsigned lane, unsigned w)
{
	return z->done[lane * z->nworkers + w];
}

static void futex_wait(_Atomic int *word, int val)
{
	syscall(SYS_futex, (int *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic int *word)
{
	syscall(SYS_futex, (int *)word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* The waker's half of the handshake: after publishing (seq_cst). */
static void wake_worker(struct zip_worker *w)
{
	if (atomic_load_explicit(&w->parked, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&w->parked, 0, memory_order_seq_cst))
		futex_wake(&w->parked);
}

/* --- jobs ---------------------------------------------------------------- */

/* The largest blob header a job with this Content-Type can need: the
 * stamp, both variants' lengths and tags, and the type if it is not a
 * well-known one (repr.h). */
static size_t hdr_room(uint8_t ct_len)
{
	return 20u + 1u + ct_len;
}

size_t zip_job_size(uint32_t key_len, uint8_t ct_len, uint32_t value_len)
{
	return sizeof(struct zip_job) + key_len + ct_len + hdr_room(ct_len) + value_len +
	       2 * zip_variant_cap(value_len);
}

void zip_job_init(struct zip_job *j, size_t size, const void *key, uint32_t key_len,
		  const char *ct, uint8_t ct_len, const void *value, uint32_t value_len)
{
	memset(j, 0, sizeof(*j));
	j->size = size;
	j->key_len = key_len;
	j->ct_len = ct_len;
	j->value_len = value_len;
	j->value_off = (uint32_t)(key_len + ct_len + hdr_room(ct_len));
	memcpy(j->data, key, key_len);
	if (ct_len)
		memcpy(j->data + key_len, ct, ct_len);
	memcpy(j->data + j->value_off, value, value_len);
}

void zip_job_run(struct compress *z, struct zip_job *j)
{
	size_t n = j->value_len, cap = zip_variant_cap(n);
	uint8_t *v = j->data + j->value_off;
	struct repr_blob b;

	size_t br = compress_br(z, v, n, v + n, cap);
	size_t gz = compress_gzip(z, v, n, v + n + br, cap);
	j->blob_len = 0;
	if (!br && !gz)
		return;
	repr_build(&b, v, (uint32_t)n, zip_job_ct(j), j->ct_len, br ? v + n : NULL,
		   (uint32_t)br, gz ? v + n + br : NULL, (uint32_t)gz, j->w.stamp);
	/* with a variant the blob has a header, and it fits the room (hdr_room) */
	size_t h = b.iov[0].iov_len;
	memcpy(v - h, b.hdr, h);
	j->blob_off = (uint32_t)(j->value_off - h);
	j->blob_len = (uint32_t)(h + n + br + gz);
	j->out_flags = b.flags;
	j->out_etag = b.etag;
}

/* --- the shard's side ---------------------------------------------------- */

bool zip_room(const struct zip *z, unsigned lane, size_t size)
{
	const struct zip_lane *l = &z->lanes[lane];

	if (l->jobs == 0)
		return true;
	/* bytes may exceed the bound by the one job that went alone */
	return l->jobs < ZIP_QUEUE_JOBS && size <= ZIP_QUEUE_BYTES &&
	       l->bytes <= ZIP_QUEUE_BYTES - size;
}

bool zip_submit(struct zip *z, unsigned lane, struct zip_job *j)
{
	struct zip_lane *l = &z->lanes[lane];
	unsigned best = 0;
	uint32_t best_n = UINT32_MAX;

	if (!zip_room(z, lane, j->size))
		return false;
	for (unsigned i = 0; i < z->nworkers; i++) {
		unsigned w = (l->rr + i) % z->nworkers;
		if (l->inflight[w] < best_n) {
			best = w;
			best_n = l->inflight[w];
		}
	}
	l->rr = (best + 1) % z->nworkers;
	if (!ring_push(jobs_ring(z, lane, best), j))
		return false;   /* not reached: a lane has at most ring-size jobs out */
	l->inflight[best]++;
	l->jobs++;
	l->bytes += j->size;
	return true;
}

struct zip_job *zip_take(struct zip *z, unsigned lane)
{
	struct zip_lane *l = &z->lanes[lane];

	if (!l->jobs)
		return NULL;
	for (unsigned i = 0; i < z->nworkers; i++) {
		unsigned w = (l->next_take + i) % z->nworkers;
		if (!l->inflight[w])
			continue;
		struct ring *r = done_ring(z, lane, w);
		struct zip_job *j = ring_pop(r);
		if (!j)
			continue;
		ring_release(r);
		l->next_take = (w + 1) % z->nworkers;
		l->inflight[w]--;
		l->jobs--;
		l->bytes -= j->size;
		return j;
	}
	return NULL;
}

bool zip_publish(struct zip *z, unsigned lane)
{
	bool any = false;

	for (unsigned w = 0; w < z->nworkers; w++) {
		if (ring_flush(jobs_ring(z, lane, w))) {
			any = true;
			wake_worker(&z->workers[w]);
		}
	}
	return any;
}

bool zip_waiting(const struct zip *z, unsigned lane)
{
	const struct zip_lane *l = &z->lanes[lane];

	for (unsigned w = 0; w < z->nworkers; w++)
		if (l->inflight[w] && ring_peek_sc(done_ring(z, lane, w)))
			return true;
	return false;
}

uint32_t zip_outstanding(const struct zip *z, unsigned lane)
{
	return z->lanes[lane].jobs;
}

/* --- the workers --------------------------------------------------------- */

static struct zip_job *next_job(struct zip *z, struct zip_worker *w, unsigned *lane)
{
	for (unsigned i = 0; i < z->nshards; i++) {
		unsigned s = (w->next + i) % z->nshards;
		struct ring *r = jobs_ring(z, s, w->id);
		struct zip_job *j = ring_pop(r);
		if (j) {
			ring_release(r);
			w->next = (s + 1) % z->nshards;
			*lane = s;
			return j;
		}
	}
	return NULL;
}

/* The sleeper's half of the handshake: store parked, then re-check. */
static void park(struct zip *z, struct zip_worker *w)
{
	atomic_store_explicit(&w->parked, 1, memory_order_seq_cst);
	bool work = atomic_load_explicit(&z->stop, memory_order_seq_cst);
	for (unsigned s = 0; s < z->nshards && !work; s++)
		work = ring_peek_sc(jobs_ring(z, s, w->id));
	if (!work)
		futex_wait(&w->parked, 1);      /* returns at once if a waker cleared it */
	atomic_store_explicit(&w->parked, 0, memory_order_relaxed);
}

static void *worker_main(void *arg)
{
	struct zip_worker *w = arg;
	struct zip *z = w->z;

	while (!atomic_load_explicit(&z->stop, memory_order_acquire)) {
		unsigned lane;
		struct zip_job *j = next_job(z, w, &lane);
		if (!j) {
			park(z, w);
			continue;
		}
		zip_job_run(w->c, j);
		struct ring *r = done_ring(z, lane, w->id);
		ring_push(r, j);        /* never full: see the top of this file */
		ring_flush(r);
		z->cfg.wake(z->cfg.wake_arg, lane);
	}
	return NULL;
}

bool zip_should_idle(const struct cpuset *workers, const struct cpuset *shard_cpus,
		     unsigned nshards)
{
	if (!workers || !workers->n || nshards > shard_cpus->n)
		return true;
	for (unsigned i = 0; i < workers->n; i++)
		for (unsigned s = 0; s < nshards; s++)
			if (workers->cpu[i] == shard_cpus->cpu[s])
				return true;
	return false;
}

static int start_worker(struct zip *z, struct zip_worker *w)
{
	pthread_attr_t attr;
	int rc = pthread_attr_init(&attr);

	if (rc)
		return -rc;
	if (z->cpus.n) {
		cpu_set_t set;
		CPU_ZERO(&set);
		for (unsigned i = 0; i < z->cpus.n; i++)
			CPU_SET(z->cpus.cpu[i], &set);
		rc = pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
	}
	if (!rc)
		rc = pthread_create(&w->thread, &attr, worker_main, w);
	pthread_attr_destroy(&attr);
	if (rc)
		return -rc;
	w->started = true;
	pthread_setname_np(w->thread, "ringcache-zip");
	if (z->cfg.idle) {
		/* glibc's thread attributes take no SCHED_IDLE: set it on the thread;
		 * until then it can only park (no job can be queued yet) */
		struct sched_param p = { .sched_priority = 0 };
		rc = pthread_setschedparam(w->thread, SCHED_IDLE, &p);
		if (rc)
			return -rc;
	}
	return 0;
}

int zip_start(struct zip *z)
{
	for (unsigned i = 0; i < z->nworkers; i++) {
		if (z->workers[i].started)
			continue;
		int rc = start_worker(z, &z->workers[i]);
		if (rc)
			return rc;
	}
	return 0;
}

int zip_create(struct zip **out, const struct zip_config *cfg)
{
	unsigned nw = cfg->threads, ns = cfg->shards;

	if (nw < 1 || nw > ZIP_THREADS_MAX || ns < 1 || !cfg->wake ||
	    cfg->brotli_quality < 0 || cfg->brotli_quality > 11 || cfg->gzip_level < 1 ||
	    cfg->gzip_level > 12)
		return -EINVAL;
	struct zip *z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	z->nshards = ns;
	z->nworkers = nw;
	z->cfg = *cfg;
	z->cfg.cpus = NULL;
	if (cfg->cpus)
		z->cpus = *cfg->cpus;
	atomic_init(&z->stop, false);
	z->jobs = calloc((size_t)ns * nw, sizeof(*z->jobs));
	z->done = calloc((size_t)ns * nw, sizeof(*z->done));
	z->workers = aligned_alloc(RING_LINE, nw * sizeof(*z->workers));
	z->lanes = aligned_alloc(RING_LINE, ns * sizeof(*z->lanes));
	if (!z->jobs || !z->done || !z->workers || !z->lanes) {
		free(z->workers);
		free(z->lanes);
		z->workers = NULL;
		z->lanes = NULL;
		zip_destroy(z);
		return -ENOMEM;
	}
	memset(z->workers, 0, nw * sizeof(*z->workers));
	memset(z->lanes, 0, ns * sizeof(*z->lanes));
	int rc = 0;
	for (unsigned i = 0; i < nw; i++) {
		struct zip_worker *w = &z->workers[i];
		atomic_init(&w->parked, 0);
		w->z = z;
		w->id = i;
		if (!rc)
			rc = compress_create(&w->c, cfg->brotli_quality, cfg->gzip_level);
	}
	for (unsigned s = 0; s < ns && !rc; s++) {
		z->lanes[s].inflight = calloc(nw, sizeof(uint32_t));
		if (!z->lanes[s].inflight)
			rc = -ENOMEM;
	}
	for (size_t i = 0; i < (size_t)ns * nw && !rc; i++) {
		z->jobs[i] = ring_create(ZIP_QUEUE_JOBS);
		z->done[i] = ring_create(ZIP_QUEUE_JOBS);
		if (!z->jobs[i] || !z->done[i])
			rc = -ENOMEM;
	}
	if (!rc && !cfg->paused)
		rc = zip_start(z);
	if (rc) {
		zip_destroy(z);
		return rc;
	}
	*out = z;
	return 0;
}

/* Frees the jobs left in a ring; nobody else uses it any more. */
static void drain(struct ring *r)
{
	void *j;

	if (!r)
		return;
	ring_flush(r);          /* jobs pushed by a shard that stopped before publishing */
	while ((j = ring_pop(r)))
		free(j);
	ring_destroy(r);
}

void zip_destroy(struct zip *z)
{
	if (!z)
		return;
	atomic_store_explicit(&z->stop, true, memory_order_seq_cst);
	for (unsigned i = 0; z->workers && i < z->nworkers; i++) {
		struct zip_worker *w = &z->workers[i];
		if (!w->started)
			continue;
		atomic_store_explicit(&w->parked, 0, memory_order_seq_cst);
		futex_wake(&w->parked);
		pthread_join(w->thread, NULL);
	}
	for (size_t i = 0; i < (size_t)z->nshards * z->nworkers; i++) {
		if (z->jobs)
			drain(z->jobs[i]);
		if (z->done)
			drain(z->done[i]);
	}
	for (unsigned i = 0; z->workers && i < z->nworkers; i++)
		compress_destroy(z->workers[i].c);
	for (unsigned s = 0; z->lanes && s < z->nshards; s++)
		free(z->lanes[s].inflight);
	free(z->jobs);
	free(z->done);
	free(z->workers);
	free(z->lanes);
	free(z);
}
