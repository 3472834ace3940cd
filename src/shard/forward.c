/*
 * forward.c - requests for keys another shard owns.
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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"

static uint8_t *copy_str(uint8_t *dst, struct http_str *s)
{
	if (s->len)
		memcpy(dst, s->p, s->len);
	s->p = (const char *)dst;
	return dst + s->len;
}

struct fwd *fwd_create(struct conn *c, unsigned origin, const struct cache_req *r)
{
	size_t extra = (size_t)r->key_len + r->body_len + r->content_type.len +
		       r->accept_encoding.len + r->if_none_match.len + r->cache_control.len;
	struct fwd *f = malloc(sizeof(*f) + extra);

	if (!f)
		return NULL;
	memset(f, 0, sizeof(*f));
	f->conn = c;
	f->origin = (uint16_t)origin;
	f->remote = true;
	f->req = *r;

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
	copy_str(p, &f->req.cache_control);
	return f;
}

/*
 * Runs f's request against this shard's cache into f->resp (emptied first).
 * Out of memory: a 500 that closes the connection (f->close).  Sets and
 * returns f->outcome.
 */
enum cache_outcome fwd_exec(struct shard *sh, struct fwd *f)
{
	enum cache_outcome oc;

	f->resp.len = 0;
	if (cache_exec(sh->cache, &f->req, &f->resp, &oc)) {
		f->resp.len = 0;
		cache_respond_status(&f->resp, 500, f->req.minor, false, NULL, NULL);
		f->close = true;
		oc = CACHE_FAILED;
	}
	f->outcome = (uint8_t)oc;
	return oc;
}

void fwd_destroy(struct fwd *f)
{
	if (!f)
		return;
	buf_deinit(&f->resp);
	free(f);
}

static struct ring *ring_to(struct shard *sh, unsigned to)
{
	return sh->srv->rings[sh->id * sh->srv->nshards + to];
}

static struct ring *ring_from(struct shard *sh, unsigned from)
{
	return sh->srv->rings[from * sh->srv->nshards + sh->id];
}

void fwd_send(struct shard *sh, unsigned to, struct fwd *f)
{
	struct fwd_queue *q = &sh->backlog[to];

	f->qnext = NULL;
	if (!q->head && ring_push(ring_to(sh, to), f)) {
		sh->touched[to] = true;
		return;
	}
	if (q->tail)
		q->tail->qnext = f;
	else
		q->head = f;
	q->tail = f;
}

/* Publishes what was pushed this iteration; true while a backlog remains. */
bool fwd_flush(struct shard *sh)
{
	unsigned n = sh->srv->nshards;
	bool backlog = false;

	for (unsigned to = 0; to < n; to++) {
		struct fwd_queue *q = &sh->backlog[to];
		struct ring *r = ring_to(sh, to);

		while (q->head && ring_push(r, q->head)) {
			q->head = q->head->qnext;
			sh->touched[to] = true;
		}
		if (!q->head)
			q->tail = NULL;
		else
			backlog = true;
		if (sh->touched[to]) {
			sh->touched[to] = false;
			if (ring_flush(r))
				shard_wake(sh->srv->shards[to]);
		}
	}
	return backlog;
}

/* Handles everything the peers published to this shard; true if any. */
bool fwd_drain(struct shard *sh)
{
	unsigned n = sh->srv->nshards;
	bool any = false;

	for (unsigned from = 0; from < n; from++) {
		struct ring *r;
		struct fwd *f;

		if (from == sh->id)
			continue;
		r = ring_from(sh, from);
		while ((f = ring_pop(r)) != NULL) {
			any = true;
			if (f->reply) {
				conn_on_reply(sh, f);
			} else if (!conn_exec_forwarded(sh, f)) {
				f->reply = true;
				fwd_send(sh, f->origin, f);
			}
		}
		ring_release(r);
	}
	return any;
}

/* Parking check: has any peer published something?  (seq_cst, ring.h) */
bool fwd_pending(struct shard *sh)
{
	unsigned n = sh->srv->nshards;

	for (unsigned from = 0; from < n; from++)
		if (from != sh->id && ring_peek_sc(ring_from(sh, from)))
			return true;
	return false;
}

/* Messages still waiting for room in a ring to a peer. */
bool fwd_backlogged(const struct shard *sh)
{
	for (unsigned to = 0; to < sh->srv->nshards; to++)
		if (sh->backlog[to].head)
			return true;
	return false;
}

void shard_wake(struct shard *sh)
{
	uint64_t one = 1;

	if (atomic_load_explicit(&sh->parked, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&sh->parked, 0, memory_order_seq_cst)) {
		ssize_t rc = write(sh->event_fd, &one, sizeof(one));
		(void)rc; /* EAGAIN means a wake-up is already pending */
	}
}
