/*
 * test_zip.c - the compression workers (zip.h) on their own: threads,
 * rings, bounds and the park/wake handshake, without a store.
 *
 * - two producer threads play two shards against three workers: every job
 *   comes back exactly once to the lane that sent it, with a blob whose
 *   identity is the value and whose br and gzip decode to it.  Each
 *   producer parks the way a shard does (store `parked`, then re-check with
 *   zip_waiting()) and is woken only by the pool's wake callback: a lost
 *   wake-up hangs the test, and meson's timeout fails it;
 * - the bounds: ZIP_QUEUE_JOBS jobs or ZIP_QUEUE_BYTES per lane, and one job
 *   of any size when the lane has none out;
 * - jobs left in the rings at zip_destroy() are freed (ASan checks it);
 * - zip_create() refuses bad settings, a CPU it cannot pin to, and puts its
 *   threads at SCHED_IDLE when asked;
 * - zip_should_idle(): idle unless pinned apart from every shard.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/decode.h>
#include <libdeflate.h>

#include "check.h"
#include "cache/compress.h"
#include "cache/repr.h"
#include "cache/zip_int.h"
#include "ringcache/zip.h"

#define LANES 2
#define JOBS_PER_LANE 1500u

struct lane {
	_Atomic int parked;
	sem_t bell;
	unsigned id;
	unsigned received;
	unsigned bad;
	unsigned wrong_lane;
	unsigned unprofitable;
	unsigned char *seen;
};

static struct lane lanes[LANES];
static struct zip *pool;

/* What a worker calls after publishing a finished job: ring the lane's
 * doorbell only if it said it is parking (as shard_wake() does). */
static void wake_lane(void *arg, unsigned lane)
{
	struct lane *l = &((struct lane *)arg)[lane];

	if (atomic_load_explicit(&l->parked, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&l->parked, 0, memory_order_seq_cst))
		sem_post(&l->bell);
}

/* The value of job i of a lane: JSON-like text, or random bytes for one
 * in seven (no variant saves 10 %: blob_len 0). */
static size_t make_value(unsigned lane, unsigned i, uint8_t *out)
{
	size_t n = 300 + (i * 7919u + lane * 104729u) % 3700;
	uint64_t x = (uint64_t)lane << 32 | i;

	if (i % 7 == 3) {
		for (size_t k = 0; k < n; k++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			out[k] = (uint8_t)(x >> 56);
		}
		return n;
	}
	size_t k = 0;
	while (k < n) {
		int w = snprintf((char *)out + k, n - k + 1, "{\"lane\":%u,\"job\":%u,\"k\":%zu},",
				 lane, i, k);
		k += (size_t)w < n - k ? (size_t)w : n - k;
	}
	return n;
}

static bool br_is(const uint8_t *p, size_t len, const uint8_t *want, size_t n)
{
	uint8_t *out = malloc(n + 1);
	size_t out_len = n + 1;
	bool ok = BrotliDecoderDecompress(len, p, &out_len, out) == BROTLI_DECODER_RESULT_SUCCESS &&
		  out_len == n && memcmp(out, want, n) == 0;
	free(out);
	return ok;
}

static bool gz_is(const uint8_t *p, size_t len, const uint8_t *want, size_t n)
{
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	uint8_t *out = malloc(n + 1);
	size_t out_len = 0;
	bool ok = libdeflate_gzip_decompress(d, p, len, out, n + 1, &out_len) ==
			  LIBDEFLATE_SUCCESS &&
		  out_len == n && memcmp(out, want, n) == 0;
	free(out);
	libdeflate_free_decompressor(d);
	return ok;
}

/* A job came back: is it the one we sent, finished as promised? */
static void check_result(struct lane *l, struct zip_job *j)
{
	uint8_t want[4096];
	unsigned i = j->w.stamp;
	struct repr_view v;

	if (j->w.hash != l->id || i >= JOBS_PER_LANE) {
		l->wrong_lane++;
		return;
	}
	l->seen[i]++;
	l->received++;
	size_t n = make_value(l->id, i, want);
	bool ok = j->value_len == n && memcmp(zip_job_value(j), want, n) == 0 &&
		  j->key_len == 8 && memcmp(zip_job_key(j), &i, sizeof(i)) == 0;
	if (!j->blob_len) {
		l->unprofitable++;
		l->bad += !ok || i % 7 != 3;
		return;
	}
	const uint8_t *blob = j->data + j->blob_off;
	ok = ok && repr_unpack(blob, j->blob_len, j->out_flags, j->out_etag, &v) == 0 &&
	     j->out_etag == j->w.etag && v.stamp == j->w.stamp && v.type == 1 &&
	     v.part[REPR_IDENTITY].len == n && memcmp(v.part[REPR_IDENTITY].p, want, n) == 0 &&
	     (v.avail & 6u) != 0;
	if (ok && (v.avail & (1u << REPR_BR)))
		ok = br_is(v.part[REPR_BR].p, v.part[REPR_BR].len, want, n);
	if (ok && (v.avail & (1u << REPR_GZIP)))
		ok = gz_is(v.part[REPR_GZIP].p, v.part[REPR_GZIP].len, want, n);
	l->bad += !ok;
}

static struct zip_job *new_job(unsigned lane, unsigned i)
{
	uint8_t v[4096];
	size_t n = make_value(lane, i, v);
	uint8_t key[8] = { 0 };
	size_t size = zip_job_size(sizeof(key), 16, (uint32_t)n);
	struct zip_job *j = malloc(size);
	struct repr_blob b;

	memcpy(key, &i, sizeof(i));
	zip_job_init(j, size, key, sizeof(key), "application/json", 16, v, (uint32_t)n);
	repr_build(&b, v, (uint32_t)n, "application/json", 16, NULL, 0, NULL, 0, 0);
	j->w.hash = lane;
	j->w.stamp = i;
	j->w.etag = b.etag;
	j->w.flags = b.flags;
	return j;
}

/* One shard's life: submit while there is room, take what came back,
 * park when neither is possible. */
static void *producer(void *arg)
{
	struct lane *l = arg;
	unsigned next = 0;

	while (l->received + l->wrong_lane < JOBS_PER_LANE) {
		bool work = false;
		while (next < JOBS_PER_LANE) {
			struct zip_job *j = new_job(l->id, next);
			if (!zip_submit(pool, l->id, j)) {
				free(j);
				break;
			}
			next++;
		}
		work |= zip_publish(pool, l->id);
		struct zip_job *j;
		while ((j = zip_take(pool, l->id))) {
			check_result(l, j);
			free(j);
			work = true;
		}
		if (work)
			continue;
		atomic_store_explicit(&l->parked, 1, memory_order_seq_cst);
		if (!zip_waiting(pool, l->id))
			sem_wait(&l->bell);
		atomic_store_explicit(&l->parked, 0, memory_order_relaxed);
	}
	return NULL;
}

static void test_stress(void)
{
	struct zip_config zc = { .threads = 3, .shards = LANES, .brotli_quality = 4,
				 .gzip_level = 6, .wake = wake_lane, .wake_arg = lanes };
	pthread_t t[LANES];

	CHECK_EQ(zip_create(&pool, &zc), 0);
	for (unsigned i = 0; i < LANES; i++) {
		memset(&lanes[i], 0, sizeof(lanes[i]));
		lanes[i].id = i;
		lanes[i].seen = calloc(JOBS_PER_LANE, 1);
		sem_init(&lanes[i].bell, 0, 0);
	}
	for (unsigned i = 0; i < LANES; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, producer, &lanes[i]), 0);
	for (unsigned i = 0; i < LANES; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < LANES; i++) {
		struct lane *l = &lanes[i];
		unsigned once = 0;
		for (unsigned k = 0; k < JOBS_PER_LANE; k++)
			once += l->seen[k] == 1;
		CHECK_EQ(once, JOBS_PER_LANE);
		CHECK_EQ(l->received, JOBS_PER_LANE);
		CHECK_EQ(l->wrong_lane, 0);
		CHECK_EQ(l->bad, 0);
		/* the random values, and only they, came back without a blob */
		CHECK_EQ(l->unprofitable, (JOBS_PER_LANE + 3) / 7);
		CHECK_EQ(zip_outstanding(pool, i), 0);
		free(l->seen);
		sem_destroy(&l->bell);
	}
	zip_destroy(pool);
	pool = NULL;
}

static void ignore_wake(void *arg, unsigned lane)
{
	(void)arg;
	(void)lane;
}

/* The lane's bounds, on a pool whose workers never run; the jobs left in
 * its rings, published or not, are freed by zip_destroy(). */
static void test_bounds(void)
{
	struct zip *z;
	struct zip_config zc = { .threads = 2, .shards = 2, .brotli_quality = 4, .gzip_level = 6,
				 .wake = ignore_wake, .paused = true };

	CHECK_EQ(zip_create(&z, &zc), 0);
	for (unsigned i = 0; i < ZIP_QUEUE_JOBS; i++) {
		struct zip_job *j = new_job(0, i);
		CHECK(zip_submit(z, 0, j));
		if (i == ZIP_QUEUE_JOBS / 2)
			zip_publish(z, 0);      /* some published, some not */
	}
	CHECK_EQ(zip_outstanding(z, 0), ZIP_QUEUE_JOBS);
	struct zip_job *extra = new_job(0, 99);
	CHECK(!zip_room(z, 0, extra->size));
	CHECK(!zip_submit(z, 0, extra));
	CHECK(zip_take(z, 0) == NULL);
	CHECK(!zip_waiting(z, 0));

	/* lane 1: one job larger than the byte bound goes when the lane is
	 * empty, nothing after it */
	size_t big = ZIP_QUEUE_BYTES + 1;
	CHECK(zip_room(z, 1, big));
	struct zip_job *j = malloc(sizeof(*j));
	memset(j, 0, sizeof(*j));
	j->size = big;          /* only the accounting reads it */
	CHECK(zip_submit(z, 1, j));
	CHECK(!zip_room(z, 1, extra->size));
	CHECK(!zip_submit(z, 1, extra));
	CHECK_EQ(zip_outstanding(z, 1), 1);
	free(extra);
	zip_destroy(z);
}

/* The policy of the pool's threads, read back from the kernel. */
static unsigned threads_named(const char *name, int policy)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	unsigned n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char path[300], comm[64] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
		if (strcmp(comm, name) == 0 && sched_getscheduler(atoi(e->d_name)) == policy)
			n++;
	}
	closedir(d);
	return n;
}

static void test_create(void)
{
	struct zip *z = NULL;
	struct zip_config ok = { .threads = 1, .shards = 1, .brotli_quality = 4, .gzip_level = 6,
				 .wake = ignore_wake };
	struct zip_config c;

	c = ok; c.threads = 0;
	CHECK_EQ(zip_create(&z, &c), -EINVAL);
	c = ok; c.threads = ZIP_THREADS_MAX + 1;
	CHECK_EQ(zip_create(&z, &c), -EINVAL);
	c = ok; c.shards = 0;
	CHECK_EQ(zip_create(&z, &c), -EINVAL);
	c = ok; c.brotli_quality = 12;
	CHECK_EQ(zip_create(&z, &c), -EINVAL);
	c = ok; c.gzip_level = 0;
	CHECK_EQ(zip_create(&z, &c), -EINVAL);
	c = ok; c.wake = NULL;
	CHECK_EQ(zip_create(&z, &c), -EINVAL);

	/* a CPU the process cannot run on */
	struct cpuset far = { .n = 1, .cpu = { CPUSET_MAX - 1 } };
	c = ok; c.cpus = &far;
	CHECK_EQ(zip_create(&z, &c), -EINVAL);

	/* SCHED_IDLE, on every worker */
	c = ok; c.threads = 3; c.idle = true;
	CHECK_EQ(zip_create(&z, &c), 0);
	CHECK_EQ(threads_named("ringcache-zip", SCHED_IDLE), 3);
	zip_destroy(z);
	c.idle = false;
	CHECK_EQ(zip_create(&z, &c), 0);
	CHECK_EQ(threads_named("ringcache-zip", SCHED_OTHER), 3);
	CHECK_EQ(threads_named("ringcache-zip", SCHED_IDLE), 0);
	zip_destroy(z);
	zip_destroy(NULL);
}

static void test_should_idle(void)
{
	struct cpuset none = { .n = 0 };
	struct cpuset c0 = { .n = 1, .cpu = { 0 } };
	struct cpuset c1 = { .n = 1, .cpu = { 1 } };
	struct cpuset c01 = { .n = 2, .cpu = { 0, 1 } };
	struct cpuset c23 = { .n = 2, .cpu = { 2, 3 } };

	CHECK(zip_should_idle(NULL, &c1, 1));           /* unpinned: anywhere */
	CHECK(zip_should_idle(&none, &c1, 1));
	CHECK(!zip_should_idle(&c0, &c1, 1));           /* a CPU of their own */
	CHECK(zip_should_idle(&c01, &c1, 1));           /* shares CPU 1 */
	CHECK(!zip_should_idle(&c23, &c01, 2));
	CHECK(zip_should_idle(&c23, &c01, 3));          /* a shard is unpinned */
	CHECK(zip_should_idle(&c1, &c01, 2));
}

int main(void)
{
	test_should_idle();
	test_create();
	test_bounds();
	test_stress();
	return check_done("test_zip");
}
