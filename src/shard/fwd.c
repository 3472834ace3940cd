/*
 * fwd.c - requests for keys another shard owns, and the answers coming back
 * (fwd.h).
 *
 * The origin copies everything the request refers to (key, body, the few
 * header values the executor reads) into one allocation, so the owner needs
 * nothing from the origin's buffers, which keep changing.  Messages are
 * pushed unpublished and made visible once per loop iteration by
 * fwd_flush(): one release store per ring per batch, and a doorbell only for
 * a peer that said it is parking (ring.h explains why no wake-up is lost).
 * When a ring is full the message waits in a per-peer backlog, in order; no
 * shard ever waits for another.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "fill.h"
#include "fwd.h"
#include "ringcache/clock.h"
#include "ringcache/stats.h"
#include "keys.h"
#include "route.h"
#include "shard.h"

/* conn.h B counts a request's copy as its bytes plus CONN_ANSWER_HEAD */
_Static_assert(sizeof(struct fwd) <= CONN_ANSWER_HEAD, "struct fwd outgrew conn.h's bound B");

/* A FIFO of messages waiting for room in a ring to one peer. */
struct fwd_queue {
	struct fwd *head, *tail;
};

struct fwd_state {
	struct shard *sh;
	struct fwd_queue purges;        /* DELETE /tags/ parts to run here, in order */
	struct fwd_queue *backlog;      /* per peer: messages the ring had no room for */
	bool *touched;                  /* per peer: pushed since the last flush */
	struct fwd *live;               /* every fwd this shard created and not freed */
	uint64_t nlive;
};

int fwd_setup(struct shard *sh)
{
	unsigned n = sh->srv->nshards;
	struct fwd_state *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	st->sh = sh;
	st->backlog = calloc(n, sizeof(*st->backlog));
	st->touched = calloc(n, sizeof(*st->touched));
	sh->fwd = st;
	return st->backlog && st->touched ? 0 : -ENOMEM;
}

void fwd_teardown(struct shard *sh)
{
	struct fwd_state *st = sh->fwd;

	if (!st)
		return;
	while (st->live)
		fwd_destroy(st->live);
	free(st->backlog);
	free(st->touched);
	free(st);
	sh->fwd = NULL;
}

static uint8_t *copy_str(uint8_t *dst, struct http_str *s)
{
	if (s->len)
		memcpy(dst, s->p, s->len);
	s->p = (const char *)dst;
	return dst + s->len;
}

struct fwd *fwd_create(struct shard *sh, struct conn *c, const struct cache_req *r,
		       const struct answer_to *to)
{
	struct fwd_state *st = sh->fwd;
	size_t extra = (size_t)r->key_len + r->body_len + r->content_type.len +
		       r->accept_encoding.len + r->if_none_match.len + r->cache_control.len +
		       r->lease_token.len + r->tags.len;
	struct fwd *f = malloc(sizeof(*f) + extra);

	if (!f)
		return NULL;
	memset(f, 0, sizeof(*f));
	f->conn = c;
	f->home = st;
	f->origin = (uint16_t)sh->id;
	f->owner = (uint16_t)sh->id;
	f->room = SIZE_MAX;
	f->size = sizeof(*f) + extra;
	shard_memory_add(sh, (ssize_t)f->size);
	/* counted against its connection's CONN_OUT_MAX while its slot is in the
	 * pipeline: a PUT's body stays here until its answer leaves, so PUTs
	 * done behind an answer still being made (a lease wait, Redis) would
	 * otherwise pile up up to PEND_MAX bodies, not the bound of conn.h */
	f->slot.held = f->size;
	f->to = *to;
	f->req = *r;
	f->lease_get = r->fill_lease;

	uint8_t *p = f->data;
	if (r->key_len)
		memcpy(p, r->key, r->key_len);
	f->req.key = p;
	p += r->key_len;
	if (r->body_len)
		memcpy(p, r->body, r->body_len);
	f->req.body = p;
	p += r->body_len;
	p = copy_str(p, &f->req.content_type);
	p = copy_str(p, &f->req.accept_encoding);
	p = copy_str(p, &f->req.if_none_match);
	p = copy_str(p, &f->req.cache_control);
	p = copy_str(p, &f->req.lease_token);
	copy_str(p, &f->req.tags);

	f->next = st->live;
	if (st->live)
		st->live->prev = f;
	st->live = f;
	st->nlive++;
	return f;
}

void fwd_destroy(struct fwd *f)
{
	if (!f)
		return;
	struct fwd_state *st = f->home;
	if (f->prev)
		f->prev->next = f->next;
	else
		st->live = f->next;
	if (f->next)
		f->next->prev = f->prev;
	st->nlive--;
	shard_memory_add(st->sh, -(ssize_t)f->size);
	pipeline_slot_unref(&f->slot);
	buf_deinit(&f->slot.bytes);
	free(f);
}

void fwd_release(struct slot *s)
{
	fwd_destroy(fwd_of_slot(s));
}

void fwd_orphan(struct slot *s)
{
	struct fwd *f = fwd_of_slot(s);

	if (f->needs_room) {
		/* home, waiting for room to be sent again: nothing else holds it,
		 * and it would never come back to be freed */
		fwd_destroy(f);
		return;
	}
	f->conn = NULL;
	/* read by the owner before it begins (relaxed: a late look only costs
	 * the work it would have skipped) */
	atomic_store_explicit(&f->cancelled, true, memory_order_relaxed);
	if (f->lease_get)
		fill_orphaned(f->home->sh, f);  /* a waiter leaves now; may free f */
}

uint64_t fwd_alive(const struct shard *sh)
{
	return sh->fwd->nlive;
}

void fwd_send(struct shard *sh, unsigned to, struct fwd *f)
{
	struct fwd_queue *q = &sh->fwd->backlog[to];

	f->qnext = NULL;
	if (!q->head && ring_push(server_ring(sh->srv, sh->id, to), f)) {
		sh->fwd->touched[to] = true;
		return;
	}
	if (q->tail)
		q->tail->qnext = f;
	else
		q->head = f;
	q->tail = f;
}

bool fwd_send_conn(struct shard *sh, unsigned to, uintptr_t token)
{
	/* it may overtake a backlog of fwds: nothing orders it with them */
	if (!ring_push(server_ring(sh->srv, sh->id, to), (void *)token))
		return false;
	sh->fwd->touched[to] = true;
	return true;
}

/* f is back on its origin shard with its answer, or bounced. */
static void arrive_home(struct fwd *f)
{
	if (f->lease_granted)
		fill_home(f->home->sh, f);  /* its connection holds a lease now, or is gone */
	if (f->conn && !f->parent) {
		/* the token its fill ended, which the owner dropped from req
		 * (exec_local_leased() works on a copy instead; only a token
		 * that was the lease is dropped, so it had LEASE_TOKEN_LEN
		 * chars): without it the connection would go on remembering
		 * that lease, in place of one its client still holds (fill.h,
		 * FILL_NOTES_MAX) */
		if (f->lease_dropped)
			f->req.lease_token.len = LEASE_TOKEN_LEN;
		fill_answered(f->conn, &f->req, f->outcome, f->r.status);
	}
	if (f->parent && f->req.op == CACHE_TAG_PURGE) {
		route_purge_part_home(f, NULL);
	} else if (f->parent) {
		keys_part_home(f);      /* a part of a gathered answer */
	} else if (!f->conn) {
		fwd_destroy(f); /* its connection ended while it was out */
	} else if (f->bounced) {
		/* home now: from here only this shard touches f */
		f->bounced = false;
		f->needs_room = true;
		conn_bounced(f->conn, &f->slot);
	} else {
		conn_complete(f->conn, &f->slot);
	}
}

void fwd_home(struct shard *sh, struct fwd *f)
{
	if (f->remote) {
		f->reply = true;
		fwd_send(sh, f->origin, f);
	} else {
		arrive_home(f);
	}
}

/* Whether f's answer, a value, is larger than the room its connection holds
 * for it (then it is made again later: fwd.h).  Only reads bounce: what a
 * write or a RESP operation answers is not made twice. */
static bool too_large(const struct fwd *f)
{
	const struct reply *r = &f->r;

	if (r->status != 200 || r->kind != REPLY_REPR || f->kv.op)
		return false;
	if (f->to.proto == PROTO_RESP ? f->to.resp.form != RESP_FORM_VALUE : f->to.http.head)
		return false;
	return r->body_len + CONN_ANSWER_HEAD > f->room;
}

void fwd_answer(struct shard *sh, struct fwd *f)
{
	if (f->stage) {
		keys_l2_step(sh, f);    /* a RESP command between its steps with Redis */
		return;
	}
	if (f->to.proto == PROTO_HTTP)
		f->to.http.date = sh->date;  /* the renderer's: the origin's may be changing */
	if (too_large(f)) {
		f->bounced = true;
		f->needed = f->r.body_len + CONN_ANSWER_HEAD;
	} else {
		pipeline_render(&f->slot, &f->r, &f->to);
	}
	fwd_home(sh, f);
}

void fwd_resend(struct shard *sh, struct fwd *f, size_t room)
{
	f->room = room;
	f->needs_room = false;
	f->resent = true;
	f->reply = false;
	if (f->owner == sh->id)
		route_exec_forwarded(sh, f);
	else
		fwd_send(sh, f->owner, f);
}

bool fwd_conflicts(const struct fwd *f)
{
	for (const struct slot *s = f->slot.next; s; s = s->next) {
		if (s->own)
			continue;
		const struct fwd *g = fwd_of_slot((struct slot *)s);
		if (g->wide_write)
			return true;    /* writes keys it does not name in req */
		if ((g->req.op == CACHE_PUT || g->req.op == CACHE_DELETE) &&
		    g->req.hash == f->req.hash && g->req.key_len == f->req.key_len &&
		    memcmp(g->req.key, f->req.key, f->req.key_len) == 0)
			return true;
	}
	return false;
}

bool fwd_flush(struct shard *sh)
{
	struct fwd_state *st = sh->fwd;
	unsigned n = sh->srv->nshards;
	bool backlog = false;

	for (unsigned to = 0; to < n; to++) {
		struct fwd_queue *q = &st->backlog[to];
		struct ring *r = server_ring(sh->srv, sh->id, to);

		while (q->head && ring_push(r, q->head)) {
			q->head = q->head->qnext;
			st->touched[to] = true;
		}
		if (!q->head)
			q->tail = NULL;
		else
			backlog = true;
		if (st->touched[to]) {
			st->touched[to] = false;
			if (ring_flush(r))
				shard_wake(sh->srv->shards[to]);
		}
	}
	return backlog;
}

void fwd_purge_begin(struct shard *sh, struct fwd *f)
{
	struct fwd_queue *q = &sh->fwd->purges;

	if (!f->resent)
		stats_inc(f->remote ? &sh->stats->forwarded_requests : &sh->stats->local_requests);
	f->sum = 0;
	f->qnext = NULL;
	if (q->tail)
		q->tail->qnext = f;
	else
		q->head = f;
	q->tail = f;
}

/* Keys looked at per cache_tag_purge() call; calls repeat until the slice's
 * time is used. */
#define PURGE_KEYS 32u

/* A key the purge removed: its fill lease is revoked as a DELETE's is (a
 * refresh lease handed out with its stale value must not store it again). */
static void purge_removed(void *arg, const uint8_t *key, uint32_t key_len, uint64_t hash)
{
	fill_invalidated(arg, key, key_len, hash);
}

/* One slice of the oldest purge queued here: true if there was one. */
static bool purge_slice(struct shard *sh)
{
	struct fwd_queue *q = &sh->fwd->purges;
	struct fwd *f = q->head;

	if (!f)
		return false;
	uint64_t t0 = clock_mono_ns(), removed = 0;
	int more;
	do {
		more = cache_tag_purge(sh->cache, f->req.key, f->req.key_len, PURGE_KEYS, &removed,
				       purge_removed, sh);
	} while (more && clock_mono_ns() - t0 < FWD_PURGE_SLICE_NS);
	f->sum += (int64_t)removed;
	if (removed)
		route_count_store(sh);
	if (!more) {
		q->head = f->qnext;
		if (!q->head)
			q->tail = NULL;
		f->qnext = NULL;
		fwd_home(sh, f);
	}
	return true;
}

bool fwd_drain(struct shard *sh)
{
	unsigned n = sh->srv->nshards;
	bool any = false;

	for (unsigned from = 0; from < n; from++) {
		struct ring *r;
		struct fwd *f;

		if (from == sh->id)
			continue;
		r = server_ring(sh->srv, from, sh->id);
		while ((f = ring_pop(r)) != NULL) {
			any = true;
			if ((uintptr_t)f & 1)
				shard_adopt(sh, (uintptr_t)f);  /* a connection (fwd_send_conn) */
			else if (f->reply)
				arrive_home(f);
			else
				route_exec_forwarded(sh, f);
		}
		ring_release(r);
	}
	any |= purge_slice(sh);
	return any;
}

bool fwd_pending(struct shard *sh)
{
	unsigned n = sh->srv->nshards;

	if (sh->fwd->purges.head)
		return true;    /* a purge in slices: no parking until it is done */
	for (unsigned from = 0; from < n; from++)
		if (from != sh->id && ring_peek_sc(server_ring(sh->srv, from, sh->id)))
			return true;
	return false;
}

bool fwd_backlogged(const struct shard *sh)
{
	for (unsigned to = 0; to < sh->srv->nshards; to++)
		if (sh->fwd->backlog[to].head)
			return true;
	return false;
}
