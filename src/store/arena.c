/*
 * arena.c - maps a shard's arena once, at startup.
 *
 * Huge pages matter for a cache whose working set is the whole arena: a hit
 * touches an index bucket and an item at random addresses, and with 4 KiB
 * pages each of those is also a TLB miss.  hugetlb pages are the surest way
 * (they must be reserved through vm.nr_hugepages, and MAP_HUGETLB fails at
 * mmap time when they are not); transparent huge pages need a 2 MiB-aligned
 * range and MADV_HUGEPAGE, and the kernel may still hand out small pages.
 *
 * NUMA: the arena is bound to a node with mbind() before anything touches it,
 * or, without a node, first touched by the calling (pinned) thread.
 */
#include <dirent.h>
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif

#define HUGEPAGE_DIR "/sys/kernel/mm/hugepages"
#define THP_ENABLED "/sys/kernel/mm/transparent_hugepage/enabled"
#define THP_SIZE (2u << 20)
#define MAX_HUGE_SIZES 8

/* The hugetlb page sizes this kernel offers, largest first. */
static int hugetlb_sizes(size_t *out, int max)
{
	DIR *d = opendir(HUGEPAGE_DIR);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL && n < max) {
		unsigned long kb;
		if (sscanf(e->d_name, "hugepages-%lukB", &kb) == 1 && kb)
			out[n++] = (size_t)kb << 10;
	}
	closedir(d);
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && out[j] > out[j - 1]; j--) {
			size_t t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return n;
}

static int log2_size(size_t v)
{
	return 63 - __builtin_clzll((unsigned long long)v);
}

static int map_hugetlb(struct arena *a, size_t len, size_t unit)
{
	size_t sizes[MAX_HUGE_SIZES];
	int n = hugetlb_sizes(sizes, MAX_HUGE_SIZES);

	for (int i = 0; i < n; i++) {
		size_t step = sizes[i] > unit ? sizes[i] : unit;
		size_t l = len / step * step;
		void *p;

		if (l == 0 || step % sizes[i] || step % unit)
			continue;
		p = mmap(NULL, l, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB |
				 (log2_size(sizes[i]) << MAP_HUGE_SHIFT),
			 -1, 0);
		if (p == MAP_FAILED)
			continue;
		a->base = p;
		a->len = a->map_len = l;
		a->page_size = sizes[i];
		a->backing = STORE_BACKING_HUGETLB;
		return 0;
	}
	return -ENOMEM;
}

static bool thp_possible(void)
{
	char buf[128];
	FILE *f = fopen(THP_ENABLED, "r");
	bool ok = false;

	if (!f)
		return false;
	if (fgets(buf, sizeof(buf), f))
		ok = strstr(buf, "[always]") || strstr(buf, "[madvise]");
	fclose(f);
	return ok;
}

/* Normal pages, with the range 2 MiB-aligned and MADV_HUGEPAGE if thp. */
static int map_normal(struct arena *a, size_t len, size_t unit, bool thp)
{
	size_t l = len / unit * unit;
	size_t extra = thp ? THP_SIZE : 0;
	uint8_t *p;

	if (l == 0)
		return -EINVAL;
	p = mmap(NULL, l + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	a->base = p;
	a->len = l;
	a->map_len = l + extra;
	a->page_size = (size_t)sysconf(_SC_PAGESIZE);
	a->backing = STORE_BACKING_NORMAL;
	if (!thp)
		return 0;

	uintptr_t aligned = ((uintptr_t)p + THP_SIZE - 1) & ~(uintptr_t)(THP_SIZE - 1);
	size_t head = aligned - (uintptr_t)p;

	if (head)
		munmap(p, head);
	if (extra - head)
		munmap((uint8_t *)aligned + l, extra - head);
	a->base = (uint8_t *)aligned;
	a->map_len = l;
	if (thp_possible() && madvise(a->base, l, MADV_HUGEPAGE) == 0)
		a->backing = STORE_BACKING_THP;
	return 0;
}

static int bind_node(struct arena *a, int node)
{
	struct bitmask *bm;
	long r;

	if (numa_available() < 0)
		return node == 0 ? 0 : -EINVAL;
	if (node > numa_max_node())
		return -EINVAL;
	bm = numa_allocate_nodemask();
	if (!bm)
		return -ENOMEM;
	numa_bitmask_setbit(bm, (unsigned)node);
	r = mbind(a->base, a->len, MPOL_BIND, bm->maskp, bm->size + 1, 0);
	numa_free_nodemask(bm);
	return r == -1 ? -errno : 0;
}

static int prefault(struct arena *a)
{
	if (madvise(a->base, a->len, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	/* Kernels before 5.14: touch one byte per page. */
	for (size_t off = 0; off < a->len; off += a->page_size)
		((volatile uint8_t *)a->base)[off] = 0;
	return 0;
}

int arena_create(struct arena *a, size_t len, size_t unit, const struct store_config *cfg)
{
	int r = -ENOMEM;

	memset(a, 0, sizeof(*a));
	if (cfg->hugepages != STORE_HUGEPAGES_OFF)
		r = map_hugetlb(a, len, unit);
	if (r < 0 && cfg->hugepages == STORE_HUGEPAGES_ON)
		return -ENOMEM;
	if (r < 0)
		r = map_normal(a, len, unit, cfg->hugepages == STORE_HUGEPAGES_AUTO);
	if (r < 0)
		return r;
	if (cfg->numa_node >= 0 && (r = bind_node(a, cfg->numa_node)) < 0)
		goto fail;
	if (cfg->prefault && (r = prefault(a)) < 0)
		goto fail;
	return 0;
fail:
	arena_destroy(a);
	return r;
}

void arena_destroy(struct arena *a)
{
	if (a && a->base) {
		munmap(a->base, a->map_len);
		a->base = NULL;
	}
}
