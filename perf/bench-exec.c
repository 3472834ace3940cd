/*
 * bench-exec.c - the cost of a local GET hit in the cache executor, from
 * cache_exec() entry to the response bytes in the output buffer, on a real
 * store.  Meant to run under callgrind so the figure is an instruction count
 * that does not depend on the machine's load.  Each scenario is one noinline
 * function (bench_*) that makes N + 1000 calls (1000 to warm up); collect
 * one at a time and divide:
 *
 *   valgrind --tool=callgrind --toggle-collect=bench_100 \
 *       --callgrind-out-file=/tmp/cg.out build/perf/bench-exec 20000
 *   callgrind_annotate /tmp/cg.out | grep 'PROGRAM TOTALS'    # / 21000
 *
 * The count covers cache_exec() from entry to the response in the buffer,
 * store_get() included, plus ~9 instructions of loop.  Scenarios: bench_100,
 * bench_100_ae, bench_10k_br, bench_10k_identity.  Without valgrind it
 * prints wall-clock ns per hit.
 *
 *   bench-exec [hits-per-scenario]          (default 1000000)
 */
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringcache/cache.h"
#include "ringcache/hash.h"
#include "ringcache/http_render.h"
#include "ringcache/zip.h"

static struct cache *cache;
static unsigned long calls;

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static struct cache_req mkreq(uint8_t op, const char *key)
{
	struct cache_req r;
	memset(&r, 0, sizeof(r));
	r.op = op;
	r.key = (const uint8_t *)key;
	r.key_len = (uint32_t)strlen(key);
	r.hash = hash_key(key, r.key_len);
	r.ttl = -1;
	return r;
}

static void no_wake(void *arg, unsigned lane)
{
	(void)arg;
	(void)lane;
}

static int put(const char *key, const char *val, size_t n, const char *ct)
{
	struct cache_req r = mkreq(CACHE_PUT, key);
	struct reply rep;
	r.body = (const uint8_t *)val;
	r.body_len = (uint32_t)n;
	r.content_type = (struct http_str){ ct, (uint32_t)strlen(ct) };
	return cache_exec(cache, &r, &rep) == CACHE_STORED ? 0 : -1;
}

/* N hits of one request, executed and rendered into one reused buffer, as a
 * shard does into its send buffer. */
static size_t hits(const struct cache_req *r, struct buf *out, unsigned long n,
		   const char *expect_encoding)
{
	static const struct http_answer_to to = { .minor = 1, .keep_alive = true };
	enum cache_outcome oc = CACHE_FAILED;
	struct reply rep;
	size_t len = 0;
	for (unsigned long i = 0; i < n; i++) {
		out->len = 0;
		oc = cache_exec(cache, r, &rep);
		http_render(out, &rep, &to);
	}
	calls += n;
	len = out->len;
	if (oc != CACHE_HIT || (expect_encoding && !memmem(out->data, out->len,
							  expect_encoding,
							  strlen(expect_encoding)))) {
		fprintf(stderr, "bench-exec: not the expected hit\n");
		exit(1);
	}
	return len;
}

__attribute__((noinline)) static size_t bench_100(unsigned long n, struct buf *out)
{
	struct cache_req r = mkreq(CACHE_GET, "bench:value:100");
	return hits(&r, out, n, NULL);
}

__attribute__((noinline)) static size_t bench_100_ae(unsigned long n, struct buf *out)
{
	struct cache_req r = mkreq(CACHE_GET, "bench:value:100");
	r.accept_encoding = (struct http_str){ "gzip, deflate, br", 17 };
	return hits(&r, out, n, NULL);
}

__attribute__((noinline)) static size_t bench_10k_br(unsigned long n, struct buf *out)
{
	struct cache_req r = mkreq(CACHE_GET, "bench:value:10k");
	r.accept_encoding = (struct http_str){ "gzip, deflate, br", 17 };
	return hits(&r, out, n, "Content-Encoding: br\r\n");
}

__attribute__((noinline)) static size_t bench_10k_identity(unsigned long n, struct buf *out)
{
	struct cache_req r = mkreq(CACHE_GET, "bench:value:10k");
	return hits(&r, out, n, NULL);
}

static void run(const char *name, size_t (*fn)(unsigned long, struct buf *), unsigned long n)
{
	struct buf out = { 0 };
	calls = 0;
	fn(1000, &out); /* warm: buffer grown, item in CPU caches */
	double t0 = now_ns();
	size_t len = fn(n, &out);
	double t1 = now_ns();
	printf("%-22s %8zu response bytes  %8.1f ns/hit  (%lu calls)\n", name, len,
	       (t1 - t0) / (double)n, calls);
	buf_deinit(&out);
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	struct store *st;
	struct store_config sc = { .memory = 64u << 20, .max_value = cache_blob_max(1u << 20),
				   .hugepages = STORE_HUGEPAGES_OFF, .numa_node = -1 };
	struct zip *zp;
	struct zip_config zc = { .threads = 1, .shards = 1, .brotli_quality = 4, .gzip_level = 6,
				 .wake = no_wake };

	if (zip_create(&zp, &zc) != 0) {
		fprintf(stderr, "bench-exec: cannot start the compression worker\n");
		return 1;
	}
	struct cache_config cc = { .compress_min = 256, .max_value = 1u << 20, .zip = zp };
	if (store_create(&st, &sc) != 0 || cache_create(&cache, st, &cc) != 0) {
		fprintf(stderr, "bench-exec: cannot create the store or the cache\n");
		return 1;
	}
	cache_tick(cache, 1);

	char v100[100];
	for (size_t i = 0; i < sizeof(v100); i++)
		v100[i] = (char)('a' + i % 26);
	size_t n10k = 10240;
	char *v10k = malloc(n10k + 64);
	size_t len = 0;
	for (unsigned i = 0; len < n10k; i++)
		len += (size_t)snprintf(v10k + len, n10k + 64 - len,
					"{\"id\":%u,\"name\":\"item-%u\",\"price\":%u.%02u},",
					1000 + i * 7, i * 13 % 997, i * 31 % 500, i % 100);
	if (put("bench:value:100", v100, sizeof(v100), "application/octet-stream") ||
	    put("bench:value:10k", v10k, n10k, "application/json")) {
		fprintf(stderr, "bench-exec: PUT failed\n");
		return 1;
	}
	/* the variants are made off the "shard" (issue 8): poll until they are in */
	while (cache_zip_poll(cache) || cache_zip_pending(cache))
		sched_yield();

	run("100 B identity", bench_100, n);
	run("100 B, Accept-Encoding", bench_100_ae, n);
	run("10 KB as br", bench_10k_br, n);
	run("10 KB identity", bench_10k_identity, n);

	cache_destroy(cache);
	store_destroy(st);
	zip_destroy(zp);
	free(v10k);
	return 0;
}
