/*
 * bench-compress.c - how long the write-time compression of the fast lane
 * holds a shard: brotli and gzip through the same functions a PUT uses
 * (src/cache/compress.c), on generated JSON records and English-like text
 * of several sizes.  Prints CPU microseconds per value (best of 7 rounds),
 * per KB, and the size ratio.  A benchmark, not a test: it asserts nothing and is not run by
 * `meson test`.
 *
 *   bench-compress [brotli-quality [gzip-level]]      (defaults 4 and 6)
 *
 * It tunes malloc as ringcached does (compress_tune_malloc); set
 * BENCH_GLIBC_DEFAULTS=1 to measure with glibc's defaults instead.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/compress.h"

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static const char *const words[] = {
	"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with",
	"be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which",
	"but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we",
	"cache", "request", "server", "value", "memory", "shard", "ring", "client",
	"response", "header", "latency", "through", "between", "because", "without",
	"performance", "measurement", "connection", "representation", "compression",
	"thousand", "several", "important", "different", "following", "question",
};

static const char *const tags[] = { "red", "green", "blue", "admin", "beta", "eu", "us",
				     "mobile", "web", "premium" };

/* JSON records like an API would cache: ids, names, numbers, dates. */
static size_t gen_json(char *p, size_t n)
{
	size_t len = 0;
	p[len++] = '[';
	while (len + 256 < n) {
		len += (size_t)snprintf(p + len, n - len,
			"{\"id\":%u,\"user\":\"user_%u\",\"email\":\"user_%u@example.com\","
			"\"score\":%u.%02u,\"active\":%s,\"tags\":[\"%s\",\"%s\"],"
			"\"created\":\"2024-%02u-%02uT%02u:%02u:%02uZ\",\"note\":\"%s %s %s\"},",
			100000 + rnd(900000), rnd(100000), rnd(100000), rnd(100), rnd(100),
			rnd(2) ? "true" : "false", tags[rnd(10)], tags[rnd(10)], 1 + rnd(12),
			1 + rnd(28), rnd(24), rnd(60), rnd(60),
			words[rnd(sizeof(words) / sizeof(words[0]))],
			words[rnd(sizeof(words) / sizeof(words[0]))],
			words[rnd(sizeof(words) / sizeof(words[0]))]);
	}
	while (len < n - 1)
		p[len++] = ' ';
	p[n - 1] = ']';
	return n;
}

static size_t gen_text(char *p, size_t n)
{
	size_t len = 0;
	while (len < n) {
		const char *w = words[rnd(sizeof(words) / sizeof(words[0]))];
		size_t l = strlen(w);
		for (size_t i = 0; i <= l && len < n; i++)
			p[len++] = i < l ? w[i] : (rnd(12) == 0 ? '\n' : ' ');
	}
	return n;
}

/* CPU time of this thread: time spent descheduled on a shared machine does
 * not count, which is what "how long the shard is busy" means. */
static double cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

typedef size_t (*compress_fn)(struct compress *, const void *, size_t, void *, size_t);

/* Best of 7 rounds of ~10 ms each: the least disturbed figure. */
static double time_one(compress_fn fn, struct compress *z, const char *in, size_t n,
		       uint8_t *out, size_t cap, size_t *out_len)
{
	double best = 1e30;

	*out_len = fn(z, in, n, out, cap);
	for (int round = 0; round < 7; round++) {
		int iters = 0;
		double t0 = cpu_us(), t;
		do {
			fn(z, in, n, out, cap);
			iters++;
			t = cpu_us();
		} while (t - t0 < 10000);
		if ((t - t0) / iters < best)
			best = (t - t0) / iters;
	}
	return best;
}

int main(int argc, char **argv)
{
	int quality = argc > 1 ? atoi(argv[1]) : 4;
	int level = argc > 2 ? atoi(argv[2]) : 6;
	static const size_t sizes[] = { 1024, 4096, 16384, 65536, 262144, 1048576 };
	struct compress *z;

	if (!getenv("BENCH_GLIBC_DEFAULTS"))
		compress_tune_malloc(); /* as ringcached does */

	if (compress_create(&z, quality, level) != 0) {
		fprintf(stderr, "bad quality %d or level %d\n", quality, level);
		return 2;
	}
	size_t max = sizes[sizeof(sizes) / sizeof(sizes[0]) - 1];
	char *in = malloc(max);
	uint8_t *out = malloc(max + 1024);

	printf("brotli quality %d, gzip (libdeflate) level %d\n", quality, level);
	printf("%-5s %8s | %10s %8s %6s | %10s %8s %6s\n", "kind", "bytes", "br us",
	       "us/KB", "ratio", "gzip us", "us/KB", "ratio");
	for (int kind = 0; kind < 2; kind++) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			size_t n = sizes[i], bl, gl;
			if (kind == 0)
				gen_json(in, n);
			else
				gen_text(in, n);
			double tb = time_one(compress_br, z, in, n, out, max + 1024, &bl);
			double tg = time_one(compress_gzip, z, in, n, out, max + 1024, &gl);
			double kb = (double)n / 1024.0;
			printf("%-5s %8zu | %10.1f %8.2f %6.3f | %10.1f %8.2f %6.3f\n",
			       kind == 0 ? "json" : "text", n, tb, tb / kb, (double)bl / (double)n,
			       tg, tg / kb, (double)gl / (double)n);
		}
	}
	compress_destroy(z);
	free(in);
	free(out);
	return 0;
}
