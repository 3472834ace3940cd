/*
 * cpuset.c - taskset-style CPU lists.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ringcache/cpuset.h"

static int parse_num(const char **s, unsigned *out)
{
	const char *p = *s;
	unsigned v = 0;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned)(*p - '0');
		if (v >= CPUSET_MAX)
			return -EINVAL;
		p++;
	}
	*s = p;
	*out = v;
	return 0;
}

int cpuset_parse(const char *s, struct cpuset *out)
{
	bool seen[CPUSET_MAX];
	struct cpuset set = { 0 };

	memset(seen, 0, sizeof(seen));
	if (!s || !*s)
		return -EINVAL;
	for (;;) {
		unsigned lo, hi;
		if (parse_num(&s, &lo))
			return -EINVAL;
		hi = lo;
		if (*s == '-') {
			s++;
			if (parse_num(&s, &hi) || hi < lo)
				return -EINVAL;
		}
		for (unsigned c = lo; c <= hi; c++)
			seen[c] = true;
		if (*s == '\0')
			break;
		if (*s != ',')
			return -EINVAL;
		s++;
	}
	for (unsigned c = 0; c < CPUSET_MAX; c++)
		if (seen[c])
			set.cpu[set.n++] = (uint16_t)c;
	*out = set;
	return 0;
}

int cpuset_allowed(struct cpuset *out)
{
	cpu_set_t mask;

	CPU_ZERO(&mask);
	if (sched_getaffinity(0, sizeof(mask), &mask) == -1)
		return -errno;
	out->n = 0;
	for (unsigned c = 0; c < CPUSET_MAX && c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &mask))
			out->cpu[out->n++] = (uint16_t)c;
	return out->n ? 0 : -ENOENT;
}
