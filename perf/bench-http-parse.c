/*
 * bench-http-parse.c - cost of http_parse_request on a few typical heads,
 * in ns per parse from the clock and, under callgrind, in instructions:
 *
 *   build-x/perf/bench-http-parse            # ns per parse, 2M iterations
 *   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
 *       build-x/perf/bench-http-parse 100000 wrk-default
 *   callgrind_annotate --inclusive=yes /tmp/cg.out | grep bench_
 *
 * and divide bench_oneshot's inclusive count by the iterations.
 * Also times a head fed one byte at a time, the cost a slow client imposes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ringcache/http.h"

static const struct {
	const char *name;
	const char *raw;
} heads[] = {
	{ "wrk-default", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n" },
	{ "cache-get", "GET /cache/key HTTP/1.1\r\nHost: x\r\n\r\n" },
	{ "browser-get",
	  "GET /cache/images/logo.png?v=3 HTTP/1.1\r\nHost: cache.example.com\r\n"
	  "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0\r\n"
	  "Accept: image/avif,image/webp,*/*\r\nAccept-Language: en-US,en;q=0.5\r\n"
	  "Accept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n"
	  "If-None-Match: \"5f3a-1c2b\"\r\nCache-Control: max-age=0\r\n\r\n" },
	{ "put-cl", "PUT /cache/key?ttl=60 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
		    "X-API-Key: secret\r\n\r\n" },
	/* absolute-form, out of the common path */
	{ "absolute-get", "GET http://127.0.0.1:8080/cache/key HTTP/1.1\r\nHost: x\r\n\r\n" },
};

static const struct http_limits lim = HTTP_LIMITS(8192, 16384, 100);

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static unsigned long sum;

/* Separate functions so that callgrind reports each loop on its own. */
__attribute__((noinline)) static void bench_oneshot(const char *raw, size_t n, long iters)
{
	struct http_request r;

	for (long i = 0; i < iters; i++) {
		size_t scanned = 0;
		/* keep the compiler from hoisting the parse out */
		__asm__ volatile("" : : "r"(raw) : "memory");
		int rc = http_parse_request(raw, n, &scanned, &lim, &r);
		sum += (unsigned)rc + r.path.len;
	}
}

__attribute__((noinline)) static void bench_bytewise(const char *raw, size_t n, long iters)
{
	struct http_request r;

	for (long i = 0; i < iters; i++) {
		size_t scanned = 0;
		for (size_t k = 1; k <= n; k++) {
			__asm__ volatile("" : : "r"(raw) : "memory");
			sum += (unsigned)http_parse_request(raw, k, &scanned, &lim, &r);
		}
	}
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 2000000;
	const char *only = argc > 2 ? argv[2] : NULL;
	long slow = iters / 100 > 0 ? iters / 100 : 1;

	for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
		if (only && strcmp(only, heads[h].name) != 0)
			continue;
		const char *raw = heads[h].raw;
		size_t n = strlen(raw);
		double t0 = now();
		bench_oneshot(raw, n, iters);
		double t1 = now();
		bench_bytewise(raw, n, slow);
		double t2 = now();
		printf("%-12s %4zu bytes  %6.1f ns/parse  byte-at-a-time %7.1f ns/request "
		       "(%.2f ns/byte)\n", heads[h].name, n, (t1 - t0) / (double)iters,
		       (t2 - t1) / (double)slow, (t2 - t1) / (double)slow / (double)n);
	}
	printf("%ld one-shot parses, %ld byte-at-a-time requests per head (checksum %lu)\n",
	       iters, slow, sum);
	return 0;
}
