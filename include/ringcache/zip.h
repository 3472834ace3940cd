/*
 * zip.h - the compression workers: threads that make the br and gzip
 * variants of stored values, so no shard compresses inside its loop
 * (issue 8; docs/fastlane.md, "Compression off the shard loop").
 *
 * One pool per process, shared by every shard.  Between each shard and each
 * worker there are two bounded SPSC rings (ring.h), one for jobs and one for
 * the finished jobs coming back:
 *
 *   shard s --jobs[s][w]-->  worker w  (compresses, builds the blob)
 *   shard s <--done[s][w]--  worker w  (the shard installs it, or not)
 *
 * A job carries copies of everything it needs (key, value, Content-Type)
 * and the identity of the write it belongs to; the owning shard alone
 * decides, when the job comes back, whether that write is still the item
 * (src/cache/exec.c).  Workers never touch a store.
 *
 * Bounded work: each shard may have at most ZIP_QUEUE_JOBS jobs and
 * ZIP_QUEUE_BYTES bytes of job memory out at the workers (one job of any
 * size when it has none out); a value that finds no room is stored without
 * variants and counted, so a writer never waits and memory never grows with
 * the backlog.
 *
 * Scheduling: workers run unpinned unless `cpus` is given.  When they may
 * share a CPU with a shard they run at SCHED_IDLE (zip_should_idle()): the
 * kernel then gives them only CPU time no shard wants, and a shard that
 * wakes preempts them at once.
 *
 * Parking: an idle worker stores `parked` and re-checks its job rings, the
 * store-then-load handshake of ring.h; a shard publishes its jobs and then
 * wakes a parked worker with a futex.  A worker that finishes a job
 * publishes it and calls `wake(wake_arg, shard)`, which must ring that
 * shard's doorbell if it is parked (the shard checks zip's rings before it
 * parks: cache_zip_waiting()).
 */
#ifndef RINGCACHE_ZIP_H
#define RINGCACHE_ZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcache/cpuset.h"

#define ZIP_THREADS_MAX 64u
#define ZIP_QUEUE_JOBS 16u                /* per shard; a power of two */
#define ZIP_QUEUE_BYTES (16u << 20)       /* per shard, job memory */

struct zip;

struct zip_config {
	unsigned threads;               /* 1..ZIP_THREADS_MAX */
	unsigned shards;                /* producers, one lane each */
	const struct cpuset *cpus;      /* the workers' CPUs; NULL or empty: unpinned */
	bool idle;                      /* run at SCHED_IDLE */
	int brotli_quality;             /* 0..11 */
	int gzip_level;                 /* libdeflate 1..12 */
	void (*wake)(void *arg, unsigned shard);
	void *wake_arg;
	bool paused;                    /* create without starting the threads (tests):
					 * zip_start() starts them */
};

/*
 * Creates the pool and starts its threads (unless cfg->paused).  0, -EINVAL
 * for a bad count or level, a CPU the process may not use or a refused
 * SCHED_IDLE, -ENOMEM, or another -errno from pthread_create.
 */
int zip_create(struct zip **out, const struct zip_config *cfg);

/* Starts the threads of a pool created paused.  0 or -errno. */
int zip_start(struct zip *z);

/*
 * Stops and joins the workers, then frees the jobs still in the rings.
 * Call after every shard that used the pool has stopped; accepts NULL.
 */
void zip_destroy(struct zip *z);

/*
 * Whether workers on `workers` (empty: every CPU of the process) may share a
 * CPU with a shard pinned on `shard_cpus` (its first `nshards` entries; more
 * shards than entries means unpinned shards, which may run anywhere): then
 * they must run at SCHED_IDLE so they never take a shard's CPU time.
 */
bool zip_should_idle(const struct cpuset *workers, const struct cpuset *shard_cpus,
		     unsigned nshards);

#endif
