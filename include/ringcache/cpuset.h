/*
 * cpuset.h - CPU lists in taskset syntax ("0-3,8,10-11").
 */
#ifndef RINGCACHE_CPUSET_H
#define RINGCACHE_CPUSET_H

#include <stdint.h>

#define CPUSET_MAX 1024

struct cpuset {
	uint16_t n;
	uint16_t cpu[CPUSET_MAX];   /* ascending, no duplicates */
};

/* Parses a list; 0, or -EINVAL for syntax errors, CPUs >= CPUSET_MAX,
 * descending ranges or an empty list. */
int cpuset_parse(const char *s, struct cpuset *out);

/* The CPUs this process may run on (sched_getaffinity). */
int cpuset_allowed(struct cpuset *out);

#endif
