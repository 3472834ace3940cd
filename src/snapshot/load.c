/*
 * load.c - every shard loads a share of the snapshot at start (snap_load).
 *
 * The key hash's seed is drawn anew at every start (ringcache/hash.h), and
 * the shard count may have changed, so an item's owner now has nothing to
 * do with the shard that saved it.  The work is split by blocks, not by
 * owner: each shard claims the next unread block (one atomic counter, so
 * shards that go faster take more), reads it with its own io_uring, checks
 * it, and for each record hashes the key with this process's seed:
 *
 *   its own key  -> store_set() into its store, at once
 *   another's    -> appended to a chunk for that shard; a full chunk goes
 *                   over the ring [me * n + owner]; the owner stores it
 *
 *   shard 0: read block 0, 2, 5 ... ──chunks──▶ shard 1 stores what it owns
 *   shard 1: read block 1, 3, 4 ... ──chunks──▶ shard 0
 *
 * Every shard stores only into its own store, as always.  Up to READS_MAX
 * reads are in flight per shard, so the disk and the CPU work overlap.
 * Memory is bounded: READS_MAX block buffers and one chunk per peer in
 * the making, plus at most OUTSTANDING_MAX bytes of chunks sent and not yet
 * taken (a shard over it stores what others sent it until it is under
 * again: everyone always drains, so this cannot deadlock).
 *
 * The end: a shard that has no block left to claim and has sent all its
 * chunks leaves `producers` (a release); it keeps storing what arrives
 * until `producers` reads 0 (an acquire, so every chunk sent is then
 * visible in its rings), drains them once more and is done.  At that
 * point every block of the file has been checked, so a failure anywhere
 * is known to everyone: each shard then drops everything it loaded
 * (store_flush), and the file is refused whole.
 *
 * Each record's blob is checked as the cache would read it (repr_unpack),
 * so a record that passed its block's CRC but is not a value the cache
 * made refuses the file too.  Records larger than this daemon's
 * --max-value are skipped unread (counted), not refused: a daemon may be
 * restarted with a smaller limit.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/repr.h"
#include "ringcache/clock.h"
#include "ringcache/hash.h"
#include "ringcache/ring.h"
#include "ringcache/store.h"
#include "snap_int.h"

#define READS_MAX        4u
#define OUTSTANDING_MAX  (16u << 20)
#define WAIT_NS          200000       /* a wait for a read, between looks at the rings */

/* Items for one shard: [u64 hash][record] ... */
struct chunk {
	uint32_t len, cap;
	uint8_t data[];
};

/* A record to store here: where it is, and its key's hash. */
struct own {
	const uint8_t *rec;
	uint64_t hash;
};

/* The most records a block (or a chunk, smaller) can hold: each takes at
 * least a header and a byte of key. */
#define OWN_MAX (SNAP_BLOCK_SIZE / (SNAP_REC_HDR + 1) + 1)
/* How many records ahead of its store_set() a key's index buckets are
 * prefetched: enough to overlap the cache misses of a few. */
#define PREFETCH_AHEAD 8u

struct read {
	uint8_t *buf;
	size_t cap;
	uint32_t block;
	bool busy;
};

struct loader {
	struct snap *s;
	unsigned me, n;
	struct snap_shard *sh;
	struct store *st;
	struct io_uring ring;
	bool ring_ok;
	struct read reads[READS_MAX];
	unsigned inflight;
	bool no_more;                   /* every block claimed */
	struct chunk **out;             /* one chunk in the making per peer */
	uint32_t now;                   /* the store clock, and the two clocks */
	uint64_t mono_ns, wall_ns;      /* read with it: for TTLs */
	struct own *own;                /* records of a block or chunk this shard stores */
	uint32_t nown;
};

static void take_time(struct loader *l)
{
	store_tick(l->st, clock_store_now());
	l->now = store_now(l->st);
	l->mono_ns = clock_mono_ns();
	l->wall_ns = snap_wall_ns();
}

static bool failed(const struct loader *l)
{
	return atomic_load_explicit(&l->s->failed, memory_order_relaxed) != 0;
}

/* Stores one record this shard owns. */
static void store_rec(struct loader *l, const struct snap_rec *r, uint64_t hash)
{
	struct snap_counts *c = &l->sh->counts;
	struct iovec iov = { (void *)r->value, r->value_len };
	uint32_t ttl = 0;
	int rc;

	if (r->expiry_ms && !(ttl = snap_wall_to_ttl(r->expiry_ms, l->now, l->mono_ns, l->wall_ns))) {
		c->expired++;
		return;
	}
	rc = store_set(l->st, r->key, r->key_len, hash, &iov, 1, ttl, r->flags, r->etag, NULL);
	if (rc == 0) {
		c->loaded++;
		c->bytes += r->value_len;
	} else if (rc == -E2BIG) {
		c->too_large++;
	} else {
		c->refused++;
	}
}

/*
 * Stores the records gathered in l->own, prefetching the index buckets of
 * the ones PREFETCH_AHEAD places further: a store_set() of a new key is two
 * cache misses in the index (a lookup, then the insert), which dominate a
 * load; this overlaps them.
 */
static void store_own(struct loader *l)
{
	for (uint32_t i = 0; i < l->nown && i < PREFETCH_AHEAD; i++)
		store_prefetch(l->st, l->own[i].hash);
	for (uint32_t i = 0; i < l->nown; i++) {
		struct snap_rec r;
		size_t off = 0;

		if (i + PREFETCH_AHEAD < l->nown)
			store_prefetch(l->st, l->own[i + PREFETCH_AHEAD].hash);
		/* checked when it was gathered: it decodes */
		snap_rec_next(l->own[i].rec, SIZE_MAX / 2, &off, &r);
		store_rec(l, &r, l->own[i].hash);
	}
	l->nown = 0;
}

/* Stores the items of a chunk another shard sent (unless the load failed). */
static void take_chunk(struct loader *l, struct chunk *k)
{
	size_t off = 0;

	if (failed(l))
		return;
	take_time(l);
	while (off + 8 <= k->len) {
		struct snap_rec r;
		uint64_t hash;

		if (l->nown == OWN_MAX)
			store_own(l);
		memcpy(&hash, k->data + off, 8);
		off += 8;
		l->own[l->nown] = (struct own){ k->data + off, hash };
		/* made by a shard of this process from a checked record */
		if (snap_rec_next(k->data, k->len, &off, &r) != SNAP_OK)
			break;
		l->nown++;
	}
	store_own(l);
}

/* Stores what the other shards sent.  True if there was anything. */
static bool drain(struct loader *l)
{
	bool any = false;

	for (unsigned p = 0; p < l->n; p++) {
		struct ring *rg;
		struct chunk *k;

		if (p == l->me)
			continue;
		rg = l->s->rings[p * l->n + l->me];
		while ((k = ring_pop(rg)) != NULL) {
			take_chunk(l, k);
			atomic_fetch_sub_explicit(&l->s->sh[p].outstanding, k->cap,
						  memory_order_relaxed);
			free(k);
			any = true;
		}
		ring_release(rg);
	}
	return any;
}

static void pause_briefly(void)
{
	struct timespec ts = { 0, 50000 };

	nanosleep(&ts, NULL);
}

/* Sends owner's chunk, waiting (and storing what arrives) while its ring is
 * full or too much of ours is still untaken.  After a failure anywhere,
 * nothing is sent: the chunk is dropped. */
static void send_chunk(struct loader *l, unsigned owner)
{
	struct chunk *k = l->out[owner];
	struct ring *rg = l->s->rings[l->me * l->n + owner];
	_Atomic uint64_t *mine = &l->sh->outstanding;

	l->out[owner] = NULL;
	while (!failed(l) && atomic_load_explicit(mine, memory_order_relaxed) > OUTSTANDING_MAX)
		if (!drain(l))
			pause_briefly();
	while (!failed(l) && !ring_push(rg, k))
		if (!drain(l))
			pause_briefly();
	if (failed(l)) {
		free(k);
		return;
	}
	atomic_fetch_add_explicit(mine, k->cap, memory_order_relaxed);
	ring_flush(rg);
}

/* Appends a record (and its hash) to owner's chunk. */
static int route_rec(struct loader *l, unsigned owner, const uint8_t *rec, size_t len,
		     uint64_t hash)
{
	struct chunk *k = l->out[owner];

	if (k && k->cap - k->len < len + 8) {
		send_chunk(l, owner);
		k = NULL;
	}
	if (!k) {
		size_t cap = len + 8 > l->s->chunk ? len + 8 : l->s->chunk;
		k = malloc(sizeof(*k) + cap);
		if (!k)
			return -ENOMEM;
		k->len = 0;
		k->cap = (uint32_t)cap;
		l->out[owner] = k;
	}
	memcpy(k->data + k->len, &hash, 8);
	memcpy(k->data + k->len + 8, rec, len);
	k->len += (uint32_t)(len + 8);
	return 0;
}

/* Checks block b, read into buf, routes the records other shards own and
 * stores this shard's own. */
static void take_block(struct loader *l, uint32_t b, const uint8_t *buf)
{
	const struct snap_block_ent *e = &l->s->blocks[b];
	size_t off = SNAP_BLOCK_HDR;
	enum snap_err err = snap_block_check(buf, e->len, e);

	take_time(l);
	for (uint32_t i = 0; err == SNAP_OK && i < e->records; i++) {
		size_t start = off;
		struct snap_rec r;
		struct repr_view v;
		uint64_t hash;
		unsigned owner;

		err = snap_rec_next(buf, e->len, &off, &r);
		if (err != SNAP_OK)
			break;
		if (repr_unpack(r.value, r.value_len, r.flags, r.etag, &v) != 0) {
			err = SNAP_E_CORRUPT;
			break;
		}
		hash = hash_key(r.key, r.key_len);
		owner = hash_shard(hash, l->n);
		if (owner == l->me && l->nown < OWN_MAX)
			l->own[l->nown++] = (struct own){ buf + start, hash };
		else if (owner == l->me)
			store_rec(l, &r, hash);
		else if (route_rec(l, owner, buf + start, off - start, hash))
			l->sh->counts.refused++;
	}
	if (err == SNAP_OK && off != e->len)
		err = SNAP_E_CORRUPT;
	if (err != SNAP_OK) {
		/* nothing of a block that does not check out is stored */
		l->nown = 0;
		snap_fail(l->s, err, b, 0);
		return;
	}
	store_own(l);
}

/* Claims the next block and starts reading it into a free buffer. */
static void start_read(struct loader *l, struct read *rd)
{
	uint32_t b = atomic_fetch_add_explicit(&l->s->next_block, 1, memory_order_relaxed);
	const struct snap_block_ent *e;
	struct io_uring_sqe *sqe;

	if (b >= l->s->hdr.blocks) {
		l->no_more = true;
		return;
	}
	e = &l->s->blocks[b];
	/* one record larger than this daemon's largest value: skipped unread */
	if (e->len > SNAP_BLOCK_SIZE &&
	    e->len - SNAP_BLOCK_HDR - SNAP_REC_HDR - SNAP_REC_EXP - SNAP_KEY_MAX > l->s->max_blob) {
		l->sh->counts.too_large++;
		return;
	}
	if (rd->cap < e->len) {
		uint8_t *p = realloc(rd->buf, e->len);
		if (!p) {
			snap_fail(l->s, SNAP_E_CORRUPT, b, ENOMEM);
			return;
		}
		rd->buf = p;
		rd->cap = e->len;
	}
	sqe = io_uring_get_sqe(&l->ring);
	io_uring_prep_read(sqe, l->s->fd, rd->buf, e->len, e->off);
	io_uring_sqe_set_data(sqe, rd);
	rd->block = b;
	rd->busy = true;
	l->inflight++;
}

/* Handles the reads that completed, waiting up to WAIT_NS for one. */
static void reap(struct loader *l)
{
	struct __kernel_timespec ts = { 0, WAIT_NS };
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;

	io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
	io_uring_for_each_cqe(&l->ring, head, cqe) {
		struct read *rd = io_uring_cqe_get_data(cqe);
		const struct snap_block_ent *e = &l->s->blocks[rd->block];

		seen++;
		rd->busy = false;
		l->inflight--;
		if (cqe->res < 0)
			snap_fail(l->s, SNAP_E_CORRUPT, rd->block, -cqe->res);
		else if ((uint32_t)cqe->res != e->len)   /* the file changed under us */
			snap_fail(l->s, SNAP_E_TRUNCATED, rd->block, 0);
		else if (!failed(l))
			take_block(l, rd->block, rd->buf);
	}
	io_uring_cq_advance(&l->ring, seen);
}

static int loader_init(struct loader *l, struct snap *s, unsigned me, struct store *st)
{
	memset(l, 0, sizeof(*l));
	l->s = s;
	l->me = me;
	l->n = s->nshards;
	l->sh = &s->sh[me];
	l->st = st;
	l->out = calloc(l->n, sizeof(*l->out));
	l->own = malloc(OWN_MAX * sizeof(*l->own));
	if (!l->out || !l->own)
		return -ENOMEM;
	for (unsigned i = 0; i < READS_MAX; i++) {
		l->reads[i].buf = malloc(SNAP_BLOCK_SIZE);
		if (!l->reads[i].buf)
			return -ENOMEM;
		l->reads[i].cap = SNAP_BLOCK_SIZE;
	}
	int rc = io_uring_queue_init(READS_MAX * 2, &l->ring, 0);
	if (rc)
		return rc;
	l->ring_ok = true;
	return 0;
}

static void loader_deinit(struct loader *l)
{
	if (l->ring_ok)
		io_uring_queue_exit(&l->ring);
	for (unsigned i = 0; i < READS_MAX; i++)
		free(l->reads[i].buf);
	for (unsigned i = 0; l->out && i < l->n; i++)
		free(l->out[i]);
	free(l->out);
	free(l->own);
}

/*
 * The items this shard will likely own (an even share, with room for the
 * spread of a random hash), but no more than its arena could hold at the
 * file's average item size: a file (hostile or from a larger daemon) does
 * not get the index grown beyond use.
 */
static uint64_t reserve_for(const struct snap *s, struct store *st)
{
	struct store_stats ss;
	uint64_t items = s->hdr.items, share, fit;

	if (!items)
		return 0;
	share = items / s->nshards + items / s->nshards / 32 + 64;
	store_stats(st, &ss);
	/* a record's bytes less its own header, plus the store's ~24 per item */
	fit = ss.arena_bytes / ((s->hdr.table_off - SNAP_DATA_OFF) / items + 24);
	return share < fit ? share : fit;
}

void snap_load(struct snap *s, unsigned me, struct store *st)
{
	struct loader l;
	int rc;

	if (!s || s->state != SNAP_READY)
		return;
	s->sh[me].start_ns = clock_mono_ns();
	store_reserve(st, reserve_for(s, st));
	rc = loader_init(&l, s, me, st);
	if (rc)
		snap_fail(s, SNAP_E_CORRUPT, 0, -rc);
	/* read, check, store or route, until no block is left */
	while (!rc) {
		for (unsigned i = 0; i < READS_MAX && !l.no_more && !failed(&l); i++)
			if (!l.reads[i].busy)
				start_read(&l, &l.reads[i]);
		if (l.n > 1)
			drain(&l);
		if (l.inflight)
			reap(&l);
		else if (l.no_more || failed(&l))
			break;
	}
	/* send what is left for the others, then leave the producers */
	for (unsigned p = 0; l.out && p < l.n; p++)
		if (l.out[p])
			send_chunk(&l, p);
	atomic_fetch_sub_explicit(&s->producers, 1, memory_order_release);
	/* store what the others still send, until none is left producing (a
	 * shard that could not start drains too, or its peers would wait) */
	while (l.n > 1) {
		bool last = atomic_load_explicit(&s->producers, memory_order_acquire) == 0;
		bool any = drain(&l);
		if (last)
			break;
		if (!any)
			pause_briefly();
	}
	if (atomic_load_explicit(&s->failed, memory_order_acquire))
		store_flush(st, store_now(st) + 1);
	struct store_counts sc;
	store_counts(st, &sc);
	l.sh->counts.held = sc.items;
	loader_deinit(&l);
	s->sh[me].done_ns = clock_mono_ns();
}
