/*
 * bench-store.c - the store alone, in process, no network: nanoseconds per
 * set, get (hit and miss), overwrite and delete at a given key count, and
 * the memory each item costs (resident-set growth and the store's own
 * accounting).  Keys and hashes are made before the clock starts, so the
 * figures are the store's cost only (hashing is reported on its own line).
 *
 *   bench-store [-n KEYS] [-k KEYLEN] [-v VALUELEN] [-m MEMORY_MIB] [-H auto|on|off]
 *   bench-store -F X [-m MEMORY_MIB]     (fragmentation, below)
 *
 * Defaults: 1M keys named key:N, 100-byte values, memory sized to hold
 * them all, hugepages off.  -k 16 pads keys to 16 bytes (the 10M-key
 * figure of issue 3: bench-store -n 10000000 -k 16 -m 1600).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ringcache/hash.h"
#include "ringcache/store.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, double secs, size_t n)
{
	printf("  %-22s %8.1f ns/op  (%.2f M ops/s)\n", what, secs * 1e9 / (double)n,
	       (double)n / secs / 1e6);
}

/*
 * -F X: random overwrites with mixed value sizes (0-2.5 KB, one in sixteen
 * up to 7.5 KB) over a key space of X times the arena, then the share of
 * the arena that holds live data and how many keys survived.
 */
static int fragmentation(double times, size_t mem_mib)
{
	struct store_config cfg = { .memory = mem_mib << 20, .hugepages = STORE_HUGEPAGES_OFF,
				    .numa_node = -1 };
	static uint8_t v[8192];
	struct iovec iov = { v, 0 };
	struct store_stats ss;
	struct store *st;
	unsigned nkeys = (unsigned)(times * (double)(mem_mib << 20) / 1450);
	uint64_t x = 88172645463325252ull;
	char k[32];

	if (store_create(&st, &cfg) < 0 || nkeys == 0)
		return 1;
	memset(v, 'f', sizeof(v));
	for (unsigned i = 0; i < 50 * nkeys + 1000000; i++) {
		unsigned key, len;
		int kl;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		key = (unsigned)(x % nkeys);
		len = (unsigned)((x >> 32) % 2500) * ((x >> 60) == 0 ? 3 : 1);
		kl = snprintf(k, sizeof(k), "frag:%u", key);
		iov.iov_len = len;
		store_set(st, k, (size_t)kl, hash_key(k, (size_t)kl), &iov, 1, 0, 0, 0, NULL);
	}
	store_stats(st, &ss);
	printf("fragmentation: key space %.2fx of a %zu MiB arena, %u keys, %u overwrites: "
	       "%llu keys cached, live/arena %.2f, live/used %.2f, %llu evicted, %llu copied\n",
	       times, mem_mib, nkeys, 50 * nkeys + 1000000, (unsigned long long)ss.items,
	       (double)ss.live_bytes / (double)ss.arena_bytes,
	       (double)ss.live_bytes / (double)ss.used_bytes, (unsigned long long)ss.evictions,
	       (unsigned long long)ss.compacted);
	store_destroy(st);
	return 0;
}

int main(int argc, char **argv)
{
	size_t n = 1000000, klen_min = 0, vlen = 100, mem_mib = 0;
	enum store_hugepages hp = STORE_HUGEPAGES_OFF;
	double frag = 0;
	int opt;

	while ((opt = getopt(argc, argv, "n:k:v:m:H:F:")) != -1) {
		switch (opt) {
		case 'n': n = strtoull(optarg, NULL, 10); break;
		case 'k': klen_min = strtoull(optarg, NULL, 10); break;
		case 'v': vlen = strtoull(optarg, NULL, 10); break;
		case 'm': mem_mib = strtoull(optarg, NULL, 10); break;
		case 'F': frag = strtod(optarg, NULL); break;
		case 'H':
			hp = !strcmp(optarg, "on") ? STORE_HUGEPAGES_ON :
			     !strcmp(optarg, "auto") ? STORE_HUGEPAGES_AUTO : STORE_HUGEPAGES_OFF;
			break;
		default:
			fprintf(stderr, "usage: %s [-n KEYS] [-k KEYLEN] [-v VALUELEN] "
				"[-m MEMORY_MIB] [-H auto|on|off] [-F KEYSPACE_TIMES_ARENA]\n",
				argv[0]);
			return 2;
		}
	}
	if (frag > 0)
		return fragmentation(frag, mem_mib ? mem_mib : 64);
	if (n == 0 || klen_min > 64)
		return 2;
	if (!mem_mib)
		mem_mib = (n * (vlen + 48 + klen_min) >> 20) + 64;

	/* Keys: key:N padded with '.' to klen_min, 64 bytes apart. */
	char *keys = malloc(n * 64);
	uint8_t *klens = malloc(n);
	uint64_t *hashes = malloc(n * sizeof(*hashes));
	uint32_t *order = malloc(n * sizeof(*order));
	uint8_t *value = malloc(vlen + 1);
	if (!keys || !klens || !hashes || !order || !value)
		return 1;
	memset(value, 'v', vlen);
	for (size_t i = 0; i < n; i++) {
		char *k = keys + i * 64;
		int l = snprintf(k, 64, "key:%zu", i);
		while ((size_t)l < klen_min)
			k[l++] = '.';
		klens[i] = (uint8_t)l;
		order[i] = (uint32_t)i;
	}
	uint64_t x = 0x2545f4914f6cdd1dull;
	for (size_t i = n - 1; i > 0; i--) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t j = x % (i + 1);
		uint32_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}

	double t0 = now_s();
	for (size_t i = 0; i < n; i++)
		hashes[i] = hash_key(keys + i * 64, klens[i]);
	double t_hash = now_s() - t0;

	struct store_config cfg = { .memory = mem_mib << 20, .max_value = 16u << 20,
				    .hugepages = hp, .numa_node = -1 };
	struct store *st;
	int r = store_create(&st, &cfg);
	if (r < 0) {
		fprintf(stderr, "store_create: %s\n", strerror(-r));
		return 1;
	}
	struct store_stats ss;
	struct store_item it;
	struct iovec iov = { value, vlen };
	size_t hits = 0;

	store_stats(st, &ss);
	printf("bench-store: %zu keys (key:N, at least %zu bytes), %zu-byte values, %zu MiB store, "
	       "%s pages, %llu KiB segments\n", n, klen_min, vlen, mem_mib,
	       store_backing_name(ss.backing), (unsigned long long)ss.segment_size >> 10);
	report("hash_bytes (key)", t_hash, n);

	long rss0 = rss_kib();
	t0 = now_s();
	for (size_t i = 0; i < n; i++)
		store_set(st, keys + i * 64, klens[i], hashes[i], &iov, 1, 0, 1, (uint32_t)i, NULL);
	report("set (insert)", now_s() - t0, n);
	long rss1 = rss_kib();

	t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		size_t j = order[i];
		hits += store_get(st, keys + j * 64, klens[j], hashes[j], &it) == 0;
	}
	report("get hit (random)", now_s() - t0, n);

	t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		size_t j = order[i];
		store_get(st, keys + j * 64, klens[j], hashes[j] ^ 0x5a5a5a5au, &it);
	}
	report("get miss (random)", now_s() - t0, n);

	store_stats(st, &ss);
	printf("  memory: %llu items, RSS growth %.1f bytes/item; store accounting "
	       "%.1f bytes/item (payload %.1f, header %.1f, index %.1f)\n",
	       (unsigned long long)ss.items, (double)(rss1 - rss0) * 1024 / (double)n,
	       (double)(ss.live_bytes + ss.index_bytes) / (double)ss.items,
	       (double)(ss.key_bytes + ss.value_bytes) / (double)ss.items,
	       (double)(ss.live_bytes - ss.key_bytes - ss.value_bytes) / (double)ss.items,
	       (double)ss.index_bytes / (double)ss.items);
	if (hits != n || ss.evictions)
		printf("  note: %zu of %zu hit, %llu evicted (memory too small for all keys)\n",
		       hits, n, (unsigned long long)ss.evictions);

	t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		size_t j = order[i];
		store_set(st, keys + j * 64, klens[j], hashes[j], &iov, 1, 0, 1, (uint32_t)i, NULL);
	}
	report("set (overwrite random)", now_s() - t0, n);

	/* Tail latency of writes under eviction: a second overwrite pass with
	 * each call timed (the clock reads add ~40 ns to every figure). */
	uint32_t *lat = malloc(n * sizeof(*lat));
	if (lat) {
		for (size_t i = 0; i < n; i++) {
			size_t j = order[(i * 7919) % n];
			double a = now_s();
			store_set(st, keys + j * 64, klens[j], hashes[j], &iov, 1, 0, 1, (uint32_t)i, NULL);
			double b = (now_s() - a) * 1e9;
			lat[i] = b > 4e9 ? UINT32_MAX : (uint32_t)b;
		}
		qsort(lat, n, sizeof(*lat), cmp_u32);
		printf("  %-22s p50 %u ns, p99 %u ns, p99.9 %u ns, p99.99 %u ns, max %u ns\n",
		       "set latency (timed)", lat[n / 2], lat[n * 99 / 100], lat[n * 999 / 1000],
		       lat[n * 9999 / 10000], lat[n - 1]);
		free(lat);
	}

	t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		size_t j = order[i];
		store_delete(st, keys + j * 64, klens[j], hashes[j]);
	}
	report("delete (random)", now_s() - t0, n);

	store_stats(st, &ss);
	printf("  after: %llu items, %llu evictions, %llu compacted\n",
	       (unsigned long long)ss.items, (unsigned long long)ss.evictions,
	       (unsigned long long)ss.compacted);
	store_destroy(st);
	free(keys);
	free(klens);
	free(hashes);
	free(order);
	free(value);
	return 0;
}
