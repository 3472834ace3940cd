/*
 * pipeline.c - a connection's answers in request order (pipeline.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "ringcache/store.h"

void pipeline_init(struct pipeline *p, struct stats_shard *stats,
		   void (*release)(struct slot *), void (*orphan)(struct slot *))
{
	memset(p, 0, sizeof(*p));
	p->stats = stats;
	p->release = release;
	p->orphan = orphan;
}

void pipeline_slot_unref(struct slot *s)
{
	if (s->ref.pin) {
		store_unpin(s->ref.pin);
		s->ref.pin = NULL;
	}
}

/*
 * Renders r into b: a body large enough, in a store, is left there and
 * described in *ref (pinned); anything else is copied.  0 or -ENOMEM.
 */
static int render_into(struct buf *b, struct outq_ref *ref, const struct reply *r,
		       const struct http_answer_to *to)
{
	struct http_body body;
	_Atomic uint32_t *pin;

	if (!r->body_store || r->body_len < OUTQ_REF_MIN || to->head || r->status == 304 ||
	    !(pin = store_pin(r->body_store, r->body)))
		return http_render(b, r, to);   /* small, no body sent, or pins at their bound */
	if (http_render_head(b, r, to, &body)) {
		store_unpin(pin);
		return -ENOMEM;
	}
	if (!body.p) {
		store_unpin(pin);
		return 0;
	}
	ref->at = b->len;
	ref->p = body.p;
	ref->len = body.len;
	ref->pin = pin;
	return 0;
}

static void slot_free(struct pipeline *p, struct slot *s)
{
	pipeline_slot_unref(s);
	if (s->own) {
		buf_deinit(&s->bytes);
		free(s);
	} else {
		p->release(s);
	}
}

void pipeline_deinit(struct pipeline *p)
{
	for (struct slot *s = p->head, *next; s; s = next) {
		next = s->next;
		s->next = NULL;
		if (s->state == SLOT_WAITING)
			p->orphan(s);
		else
			slot_free(p, s);
	}
	p->head = p->tail = NULL;
	p->queued = p->waiting = 0;
	p->queued_bytes = p->queued_refs = p->reserved = 0;
	outq_deinit(&p->out);
}

/* The one place an answer's status is counted. */
static void count_status(struct pipeline *p, unsigned status)
{
	struct stats_shard *st = p->stats;

	switch (status / 100) {
	case 2: stats_inc(&st->responses_2xx); break;
	case 3: stats_inc(&st->responses_3xx); break;
	case 4: stats_inc(&st->responses_4xx); stats_inc(&st->errors); break;
	case 5: stats_inc(&st->responses_5xx); stats_inc(&st->errors); break;
	default: break;
	}
}

static bool is_hit(const struct reply *r)
{
	return r->cache == REPLY_CACHE_HIT && (r->status == 200 || r->status == 304);
}

static void time_answer(struct pipeline *p, uint8_t timing, bool hit, uint64_t ns)
{
	struct stats_shard *st = p->stats;

	if (timing == PIPELINE_LOCAL) {
		hist_record(&st->lat_local_all, ns);
		if (hit)
			hist_record(&st->lat_local, ns);
	} else if (timing == PIPELINE_REMOTE) {
		hist_record(&st->lat_forwarded_all, ns);
		if (hit)
			hist_record(&st->lat_forwarded, ns);
	}
}

static void enqueue(struct pipeline *p, struct slot *s)
{
	s->next = NULL;
	if (p->tail)
		p->tail->next = s;
	else
		p->head = s;
	p->tail = s;
	p->queued++;
}

int pipeline_answer(struct pipeline *p, const struct reply *r, const struct pipeline_req *q)
{
	if (!p->head) {
		struct outq_ref ref = { 0 };
		size_t at = p->out.bytes.len;
		if (render_into(&p->out.bytes, &ref, r, &q->to))
			return -ENOMEM;
		if (ref.pin && outq_add_ref(&p->out, ref.p, ref.len, ref.pin)) {
			p->out.bytes.len = at;
			return -ENOMEM;
		}
		if (q->timing != PIPELINE_UNTIMED) {
			/* timed with the send that carries it (pipeline_sent) */
			if (p->batch_timed++ == 0)
				p->batch_t0 = q->t0;
			p->batch_hits += is_hit(r);
		}
	} else {
		struct slot *s = calloc(1, sizeof(*s));
		if (!s)
			return -ENOMEM;
		s->own = true;
		s->state = SLOT_DONE;
		s->timing = q->timing;
		s->t0 = q->t0;
		s->hit = is_hit(r);
		s->status = r->status;
		if (render_into(&s->bytes, &s->ref, r, &q->to)) {
			free(s);
			return -ENOMEM;
		}
		enqueue(p, s);
		p->queued_bytes += s->bytes.len + s->ref.len;
		p->queued_refs += s->ref.len;
	}
	count_status(p, r->status);
	if (http_render_closes(r, &q->to))
		p->close = true;
	return 0;
}

int pipeline_interim(struct pipeline *p, const char *bytes, size_t n)
{
	if (!p->head)
		return outq_append(&p->out, bytes, n);
	struct slot *s = calloc(1, sizeof(*s));
	if (!s || buf_append(&s->bytes, bytes, n)) {
		free(s);
		return -ENOMEM;
	}
	s->own = true;
	s->state = SLOT_DONE;
	enqueue(p, s);
	p->queued_bytes += s->bytes.len;
	return 0;
}

void pipeline_wait(struct pipeline *p, struct slot *s, const struct pipeline_req *q, size_t room)
{
	s->state = SLOT_WAITING;
	s->own = false;
	s->timing = q->timing;
	s->t0 = q->t0;
	s->room = room;
	p->reserved += room;
	enqueue(p, s);
	p->waiting++;
}

void pipeline_reserve(struct pipeline *p, struct slot *s, size_t room)
{
	p->reserved += room - s->room;
	s->room = room;
}

void pipeline_render(struct slot *s, const struct reply *r, const struct http_answer_to *to)
{
	s->bytes.len = 0;
	pipeline_slot_unref(s);
	s->ref.len = 0;
	s->hit = is_hit(r);
	s->close = http_render_closes(r, to);
	s->status = r->status;
	if (render_into(&s->bytes, &s->ref, r, to) == 0)
		return;
	/* no room for the answer: a short 500 that ends the connection, or
	 * if even that fails, an empty slot that ends it at once */
	struct reply e;
	reply_status(&e, 500, NULL);
	e.close = true;
	buf_deinit(&s->bytes);
	s->hit = false;
	s->close = true;
	s->status = 500;
	if (http_render(&s->bytes, &e, to)) {
		buf_deinit(&s->bytes);
		s->failed = true;
	}
}

void pipeline_complete(struct pipeline *p, struct slot *s, uint64_t now)
{
	s->state = SLOT_DONE;
	p->waiting--;
	p->reserved -= s->room;
	s->room = 0;
	p->queued_bytes += s->bytes.len + s->ref.len;
	p->queued_refs += s->ref.len;
	count_status(p, s->status);
	if (s->close)
		p->close = true;
	while (p->head && p->head->state == SLOT_DONE) {
		struct slot *h = p->head;
		p->head = h->next;
		if (!p->head)
			p->tail = NULL;
		p->queued--;
		p->queued_bytes -= h->bytes.len + h->ref.len;
		p->queued_refs -= h->ref.len;
		if (h->failed || outq_append(&p->out, h->bytes.data, h->bytes.len)) {
			p->broken = true;       /* an answer is lost: nothing after it may go */
			pipeline_slot_unref(h);
		} else if (h->ref.pin && outq_add_ref(&p->out, h->ref.p, h->ref.len, h->ref.pin)) {
			p->broken = true;
		}
		h->ref.pin = NULL;              /* the queue holds the pin now, or released it */
		if (h->timing != PIPELINE_UNTIMED)
			time_answer(p, h->timing, h->hit, now - h->t0);
		slot_free(p, h);
	}
}

void pipeline_sent(struct pipeline *p, uint64_t now)
{
	if (!p->batch_timed)
		return;
	uint64_t ns = now - p->batch_t0;
	for (uint32_t i = 0; i < p->batch_timed; i++)
		hist_record(&p->stats->lat_local_all, ns);
	for (uint32_t i = 0; i < p->batch_hits; i++)
		hist_record(&p->stats->lat_local, ns);
	p->batch_timed = p->batch_hits = 0;
}
