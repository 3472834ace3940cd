/*
 * buf.h - a growable byte buffer, the unit in which responses are built.
 * Owned by one thread at a time; a buffer handed to another shard through a
 * ring changes owner with it.
 */
#ifndef RINGCACHE_BUF_H
#define RINGCACHE_BUF_H

#include <stddef.h>
#include <string.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

/* Makes room for `more` bytes past len; returns 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t more);
void buf_deinit(struct buf *b);
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);

static inline int buf_append(struct buf *b, const void *p, size_t n)
{
	if (b->cap - b->len < n && buf_reserve(b, n) != 0)
		return -12; /* -ENOMEM without pulling errno.h into every user */
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

#endif
