/*
 * buf.c - growth policy for struct buf: double, at least 256 bytes, and
 * exactly what is needed when that is more than double (a 70 KB answer in an
 * empty buffer takes 70 KB, not 128 KiB: connection memory is bounded by what
 * buffers hold, docs/architecture.md).
 */
#include <errno.h>
#include <stdlib.h>

#include "ringcache/buf.h"

int buf_reserve(struct buf *b, size_t more)
{
	size_t need = b->len + more;
	if (need < b->len)
		return -ENOMEM;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap * 2 : 256;
	if (cap < need || cap < b->cap)
		cap = need;
	char *p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

void buf_deinit(struct buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}
