/*
 * save.c - writing the snapshot at stop: every shard writes its own store
 * into one file at once (snap_save), the main thread opens the file before
 * and seals it after (snap_save_begin, snap_save_end).
 *
 *   main: open PATH.tmp, read the clocks once for everyone
 *   each shard, in parallel, with its own io_uring:
 *     walk its store (store_iter: segment by segment, oldest first), pack
 *     records into 1 MiB blocks; claim the block's place in the file with
 *     one atomic add on the shared end offset; write it (up to WRITES_MAX
 *     blocks in flight, so packing and writing overlap); note (offset,
 *     length, records) in its own list
 *   main: the block table (the shards' lists merged by age) at the end, the
 *     header at 0, fdatasync, rename PATH.tmp -> PATH, fsync the directory
 *
 * No shard waits for another: the only shared thing is the end offset.  A
 * value that does not fit a block by itself gets a block of its own, written
 * with writev straight from the store (the store does not change any more:
 * the shard's loop has ended).  A crash at any point leaves PATH as it was
 * (the old snapshot, or nothing) and at worst a PATH.tmp, which the next
 * save removes before it creates its own.
 *
 * Expiry: the store's (monotonic) expiry of each item is written as the
 * wall-clock instant it stops being served, with the clocks read once by
 * snap_save_begin (format.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libdeflate.h>
#include <liburing.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ringcache/clock.h"
#include "ringcache/store.h"
#include "snap_int.h"

#define WRITES_MAX 4u

/* A block being filled or written. */
struct wbuf {
	uint8_t *p;             /* SNAP_BLOCK_SIZE bytes */
	uint32_t len;           /* bytes of p used (header included) */
	uint32_t records;
	bool busy;              /* a write of it is in flight */
	struct iovec iov[3];    /* what is written: p, or header + key + value */
	int iovcnt;
	uint64_t off;           /* where the unwritten rest goes */
};

struct saver {
	struct snap *s;
	unsigned me;
	struct snap_shard *sh;
	struct io_uring ring;
	struct wbuf w[WRITES_MAX];
	struct wbuf *cur;       /* being filled, or NULL */
	unsigned inflight;
	uint32_t seq;
	int err;
};

static int note_block(struct saver *v, uint64_t off, uint32_t len, uint32_t records)
{
	struct snap_shard *sh = v->sh;

	if (sh->nents == sh->cap) {
		uint32_t cap = sh->cap ? sh->cap * 2 : 64;
		struct snap_block_ent *e = realloc(sh->ents, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		sh->ents = e;
		sh->cap = cap;
	}
	sh->ents[sh->nents++] = (struct snap_block_ent){ off, len, records };
	return 0;
}

static void submit(struct saver *v, struct wbuf *b)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&v->ring);

	/* the ring has room for every buffer: at most WRITES_MAX in flight */
	io_uring_prep_writev(sqe, v->s->save_fd, b->iov, (unsigned)b->iovcnt, b->off);
	io_uring_sqe_set_data(sqe, b);
	io_uring_submit(&v->ring);
}

/* Waits for one write to complete; a short write is continued. */
static void reap_one(struct saver *v)
{
	struct io_uring_cqe *cqe;
	struct wbuf *b;
	int rc;

	do
		rc = io_uring_wait_cqe(&v->ring, &cqe);
	while (rc == -EINTR);
	if (rc) {
		/* cannot happen with writes in flight; do not wait forever */
		v->err = rc;
		v->inflight = 0;
		return;
	}
	b = io_uring_cqe_get_data(cqe);
	rc = cqe->res;
	io_uring_cqe_seen(&v->ring, cqe);
	if (rc < 0 || rc == 0) {
		if (!v->err)
			v->err = rc ? rc : -EIO;
		b->busy = false;
		v->inflight--;
		return;
	}
	/* advance past what was written; resubmit the rest (a full disk will
	 * then answer ENOSPC) */
	size_t done = (size_t)rc;
	b->off += done;
	while (b->iovcnt && done >= b->iov[0].iov_len) {
		done -= b->iov[0].iov_len;
		memmove(b->iov, b->iov + 1, sizeof(b->iov[0]) * (size_t)--b->iovcnt);
	}
	if (b->iovcnt) {
		b->iov[0].iov_base = (uint8_t *)b->iov[0].iov_base + done;
		b->iov[0].iov_len -= done;
		submit(v, b);
		return;
	}
	b->busy = false;
	v->inflight--;
}

/* A free buffer, waiting for a write to end if every one is in flight. */
static struct wbuf *free_buf(struct saver *v)
{
	for (;;) {
		for (unsigned i = 0; i < WRITES_MAX; i++)
			if (!v->w[i].busy) {
				v->w[i].len = SNAP_BLOCK_HDR;
				v->w[i].records = 0;
				return &v->w[i];
			}
		reap_one(v);
	}
}

/* Places block b (header still to fill, payload CRC given) in the file and
 * starts writing it. */
static void emit(struct saver *v, struct wbuf *b, uint32_t len, uint32_t payload_crc)
{
	uint64_t off;

	snap_block_seal(b->p, len - SNAP_BLOCK_HDR, b->records, payload_crc, v->me, v->seq++);
	off = atomic_fetch_add_explicit(&v->s->save_off, len, memory_order_relaxed);
	if (note_block(v, off, len, b->records)) {
		v->err = -ENOMEM;
		return;
	}
	b->off = off;
	b->busy = true;
	v->inflight++;
	submit(v, b);
}

/* Writes the block being filled, if it holds anything. */
static void flush_cur(struct saver *v)
{
	struct wbuf *b = v->cur;

	v->cur = NULL;
	if (!b || !b->records)
		return;
	b->iov[0] = (struct iovec){ b->p, b->len };
	b->iovcnt = 1;
	emit(v, b, b->len, libdeflate_crc32(0, b->p + SNAP_BLOCK_HDR, b->len - SNAP_BLOCK_HDR));
}

/* One record too large for a block of its own making: header in the
 * buffer, key and value gathered from the store. */
static void write_big(struct saver *v, const struct store_entry *e, const struct snap_rec *r,
		      uint64_t size)
{
	struct wbuf *b = free_buf(v);
	unsigned h = snap_rec_put_hdr(b->p + SNAP_BLOCK_HDR, r);
	uint32_t c;

	if (SNAP_BLOCK_HDR + size > UINT32_MAX) {
		v->err = -EFBIG;
		return;
	}
	c = libdeflate_crc32(0, b->p + SNAP_BLOCK_HDR, h);
	c = libdeflate_crc32(c, e->key, e->key_len);
	c = libdeflate_crc32(c, e->item.value, e->item.value_len);
	b->records = 1;
	b->iov[0] = (struct iovec){ b->p, SNAP_BLOCK_HDR + h };
	b->iov[1] = (struct iovec){ (void *)e->key, e->key_len };
	b->iov[2] = (struct iovec){ (void *)e->item.value, e->item.value_len };
	b->iovcnt = 3;
	emit(v, b, (uint32_t)(SNAP_BLOCK_HDR + size), c);
}

static void add(struct saver *v, const struct store_entry *e)
{
	struct snap_rec r = {
		.key_len = e->key_len,
		.value_len = e->item.value_len,
		.etag = e->item.etag,
		.flags = e->item.flags,
		.expiry_ms = snap_expiry_to_wall(e->item.expires, v->s->save_mono_ns,
						 v->s->save_wall_ns),
	};
	uint64_t size;

	if (r.expiry_ms == UINT64_MAX)
		return;         /* expired by now */
	size = snap_rec_size(r.key_len, r.value_len, r.expiry_ms != 0);
	v->sh->items++;
	v->sh->bytes += r.value_len;
	if (SNAP_BLOCK_HDR + size > SNAP_BLOCK_SIZE) {
		flush_cur(v);
		write_big(v, e, &r, size);
		return;
	}
	if (v->cur && v->cur->len + size > SNAP_BLOCK_SIZE)
		flush_cur(v);
	if (!v->cur)
		v->cur = free_buf(v);
	uint8_t *p = v->cur->p + v->cur->len;
	p += snap_rec_put_hdr(p, &r);
	memcpy(p, e->key, e->key_len);
	memcpy(p + e->key_len, e->item.value, e->item.value_len);
	v->cur->len += (uint32_t)size;
	v->cur->records++;
}

void snap_save(struct snap *s, unsigned me, struct store *st)
{
	struct store_iter *it = NULL;
	struct store_entry e;
	struct saver v;
	bool ring_ok = false;

	if (!s || s->save_fd < 0)
		return;
	memset(&v, 0, sizeof(v));
	s->sh[me].save_from_ns = clock_mono_ns();
	v.s = s;
	v.me = me;
	v.sh = &s->sh[me];
	v.err = io_uring_queue_init(WRITES_MAX * 2, &v.ring, 0);
	ring_ok = v.err == 0;
	for (unsigned i = 0; !v.err && i < WRITES_MAX; i++)
		if (!(v.w[i].p = malloc(SNAP_BLOCK_SIZE)))
			v.err = -ENOMEM;
	if (!v.err)
		v.err = store_iter_create(st, &it);
	while (!v.err && store_iter_next(it, &e) == 0)
		add(&v, &e);
	if (!v.err)
		flush_cur(&v);
	while (v.inflight)
		reap_one(&v);
	store_iter_destroy(it);
	for (unsigned i = 0; i < WRITES_MAX; i++)
		free(v.w[i].p);
	if (ring_ok)
		io_uring_queue_exit(&v.ring);
	v.sh->err = v.err;
	v.sh->saved = true;
	v.sh->saved_ns = clock_mono_ns();
}

/* --- the main thread's part ------------------------------------------------ */

int snap_save_begin(struct snap *s, char *msg, size_t len)
{
	*msg = '\0';
	if (s->no_save) {
		snprintf(msg, len, "snapshot: not saved: %s is not a ringcached snapshot and is "
				   "left as it is", s->path);
		return -EEXIST;
	}
	/*
	 * A new file, never one found at PATH.tmp: opened with O_TRUNC, a
	 * symlink left there would have the snapshot written through it into
	 * its target, a hard link would truncate its other name, a file left
	 * by someone else would keep its mode (the snapshot holds every
	 * cached value: 0600), and a FIFO would block the stop for good.  A
	 * leftover of ours is simply removed; what cannot be (a directory)
	 * makes O_EXCL fail, and nothing is saved.
	 */
	(void)unlink(s->tmp);
	s->save_fd = open(s->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (s->save_fd == -1) {
		int err = errno;
		snprintf(msg, len, "snapshot: not saved: %s: %s", s->tmp, strerror(err));
		return -err;
	}
	for (unsigned i = 0; i < s->nshards; i++) {
		struct snap_shard *sh = &s->sh[i];
		sh->nents = 0;
		sh->items = sh->bytes = 0;
		sh->err = 0;
		sh->saved = false;
	}
	atomic_store_explicit(&s->save_off, SNAP_DATA_OFF, memory_order_relaxed);
	s->save_start_ns = clock_mono_ns();
	s->save_mono_ns = s->save_start_ns;
	s->save_wall_ns = snap_wall_ns();
	return 0;
}

static int write_all(int fd, const void *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -errno;
		p = (const uint8_t *)p + r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* fsync of the directory holding PATH, so the rename is durable too. */
static int sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, rc = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd == -1)
		return -errno;
	if (fsync(fd) == -1)
		rc = -errno;
	close(fd);
	return rc;
}

/*
 * The table and the header; then the data is made durable before the
 * rename makes it visible, so PATH is always a whole snapshot or the old
 * one, even after a power loss.
 */
static int seal(struct snap *s, uint64_t *items, uint64_t *bytes, uint64_t *sync_ns)
{
	struct snap_header h = { 0 };
	uint32_t nblocks = 0;
	uint8_t hdr[SNAP_HDR_LEN];
	uint8_t *table;
	struct snap_block_ent *all;
	uint32_t *next;         /* per shard: its next block to list */
	uint64_t t;
	int rc = 0;

	for (unsigned i = 0; i < s->nshards; i++) {
		if (!s->sh[i].saved)
			return -ECANCELED;      /* a shard did not take part */
		if (s->sh[i].err)
			return s->sh[i].err;
		nblocks += s->sh[i].nents;
		*items += s->sh[i].items;
		*bytes += s->sh[i].bytes;
	}
	if (nblocks > SNAP_BLOCKS_MAX)
		return -EFBIG;
	all = malloc(sizeof(*all) * (nblocks ? nblocks : 1));
	table = malloc((size_t)nblocks * SNAP_TABLE_ENT + 1);
	if (!all || !table) {
		free(all);
		free(table);
		return -ENOMEM;
	}
	/*
	 * The table in age order across the shards, not in file order: each
	 * shard's blocks are oldest first, but the shards claimed their places
	 * in the file as they went, so one shard's newest block can lie before
	 * another's oldest.  The loader claims blocks in table order, and a
	 * smaller --memory keeps what it stored last; so the shards' lists are
	 * merged by relative position (block k of a shard's n at (k + 1/2) / n)
	 * and every shard's newest blocks come last.
	 */
	next = calloc(s->nshards, sizeof(*next));
	if (!next) {
		free(all);
		free(table);
		return -ENOMEM;
	}
	for (uint32_t k = 0; k < nblocks; k++) {
		unsigned best = s->nshards;

		for (unsigned i = 0; i < s->nshards; i++)
			if (next[i] < s->sh[i].nents &&
			    (best == s->nshards ||
			     (2ull * next[i] + 1) * s->sh[best].nents <
			     (2ull * next[best] + 1) * s->sh[i].nents))
				best = i;
		all[k] = s->sh[best].ents[next[best]++];
	}
	free(next);
	for (uint32_t k = 0; k < nblocks; k++)
		snap_table_put(table + (size_t)k * SNAP_TABLE_ENT, &all[k]);
	h.shards = s->nshards;
	h.saved_ns = s->save_wall_ns;
	h.items = *items;
	h.table_off = atomic_load_explicit(&s->save_off, memory_order_relaxed);
	h.blocks = nblocks;
	h.file_len = h.table_off + (uint64_t)nblocks * SNAP_TABLE_ENT;
	h.table_crc = libdeflate_crc32(0, table, (size_t)nblocks * SNAP_TABLE_ENT);
	snprintf(h.host, sizeof(h.host), "%s", s->host);
	snap_header_encode(hdr, &h);
	rc = write_all(s->save_fd, table, (size_t)nblocks * SNAP_TABLE_ENT, h.table_off);
	if (!rc)
		rc = write_all(s->save_fd, hdr, sizeof(hdr), 0);
	/* the first block starts at 4 KiB: an empty snapshot (no block, no
	 * table) is still that long */
	if (!rc && ftruncate(s->save_fd, (off_t)h.file_len) == -1)
		rc = -errno;
	free(all);
	free(table);
	t = clock_mono_ns();
	if (!rc && fdatasync(s->save_fd) == -1)
		rc = -errno;
	if (close(s->save_fd) == -1 && !rc)
		rc = -errno;
	s->save_fd = -1;
	if (!rc && rename(s->tmp, s->path) == -1)
		rc = -errno;
	if (!rc)
		rc = sync_dir(s->path);
	*sync_ns = clock_mono_ns() - t;
	return rc;
}

int snap_save_end(struct snap *s, char *msg, size_t len)
{
	uint64_t items = 0, bytes = 0, sync_ns = 0, first = UINT64_MAX, last = 0;
	int rc;

	if (s->save_fd < 0)
		return -EBADF;
	for (unsigned i = 0; i < s->nshards; i++) {
		if (!s->sh[i].saved)
			continue;
		if (s->sh[i].save_from_ns < first)
			first = s->sh[i].save_from_ns;
		if (s->sh[i].saved_ns > last)
			last = s->sh[i].saved_ns;
	}
	rc = seal(s, &items, &bytes, &sync_ns);
	if (rc) {
		if (s->save_fd >= 0)
			close(s->save_fd);
		s->save_fd = -1;
		unlink(s->tmp);
		snprintf(msg, len, "snapshot: not saved (%s); %s is left as it was", strerror(-rc),
			 s->path);
		return rc;
	}
	/* stop: from the stop's start (connections closed first); writing:
	 * from the first shard's save to the last one's end */
	snprintf(msg, len, "snapshot %s: saved %" PRIu64 " items (%" PRIu64 " MiB of values) in "
			   "%" PRIu64 " ms: shards writing %" PRIu64 " ms, sync %" PRIu64 " ms (%" PRIu64
			   " ms since the stop began)",
		 s->path, items, bytes >> 20, (last > first ? last - first : 0) / 1000000 +
		 sync_ns / 1000000, (last > first ? last - first : 0) / 1000000, sync_ns / 1000000,
		 (clock_mono_ns() - s->save_start_ns) / 1000000);
	return 0;
}
