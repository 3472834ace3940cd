/*
 * check.h - the unit tests' only framework: CHECK() records a failure with
 * its location and goes on; check_done() prints "N passed, N failed" for the
 * executable and returns its exit status.
 */
#ifndef RINGCACHE_CHECK_H
#define RINGCACHE_CHECK_H

#include <stdio.h>

static unsigned check_passed, check_failed;

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (cond) {                                                          \
			check_passed++;                                              \
		} else {                                                             \
			check_failed++;                                              \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
				#cond);                                              \
		}                                                                    \
	} while (0)

#define CHECK_EQ(a, b)                                                               \
	do {                                                                         \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);      \
		if (check_a_ == check_b_) {                                          \
			check_passed++;                                              \
		} else {                                                             \
			check_failed++;                                              \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", \
				__FILE__, __LINE__, #a, #b, check_a_, check_b_);     \
		}                                                                    \
	} while (0)

static inline int check_done(const char *name)
{
	printf("%s: %u passed, %u failed\n", name, check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
