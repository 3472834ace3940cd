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

/* render_into() for RESP: a bulk string's value by reference, its CRLF
 * after it in the bytes. */
static int render_resp(struct buf *b, struct outq_ref *ref, const struct reply *r,
		       const struct resp_answer_to *to)
{
	const void *p;
	size_t n, at = b->len;
	_Atomic uint32_t *pin;

	if (!r->body_store || r->body_len < OUTQ_REF_MIN ||
	    !(pin = store_pin(r->body_store, r->body)))
		return resp_render(b, r, to);   /* small, or pins at their bound: copied */
	if (resp_render_head(b, r, to, &p, &n)) {
		store_unpin_own(r->body_store, pin);
		return -ENOMEM;
	}
	if (!p) {
		store_unpin_own(r->body_store, pin);
		return 0;
	}
	if (buf_append(b, "\r\n", 2)) {
		store_unpin_own(r->body_store, pin);
		b->len = at;
		return -ENOMEM;
	}
	ref->at = b->len - 2;
	ref->p = p;
	ref->len = n;
	ref->pin = pin;
	return 0;
}

/*
 * Renders r into b in the protocol of `to`: a body large enough, in a
 * store, is left there and described in *ref (pinned); anything else is
 * copied.  0 or -ENOMEM.
 */
static inline int render_into(struct buf *b, struct outq_ref *ref, const struct reply *r,
			      const struct answer_to *to)
{
	struct http_body body;
	_Atomic uint32_t *pin;

	if (to->proto == PROTO_RESP)
		return render_resp(b, ref, r, &to->resp);
	if (!r->body_store || r->body_len < OUTQ_REF_MIN || to->http.head || r->status == 304 ||
	    !(pin = store_pin(r->body_store, r->body)))
		return http_render(b, r, &to->http); /* small, no body sent, or pins at their bound */
	if (http_render_head(b, r, &to->http, &body)) {
		store_unpin_own(r->body_store, pin);
		return -ENOMEM;
	}
	if (!body.p) {
		store_unpin_own(r->body_store, pin);
		return 0;
	}
	ref->at = b->len;
	ref->p = body.p;
	ref->len = body.len;
	ref->pin = pin;
	return 0;
}

size_t pipeline_answer_size(const struct reply *r, const struct answer_to *to)
{
	if (to->proto == PROTO_RESP)
		return resp_render_size(r, &to->resp);
	return (to->http.head ? 0 : r->body_len) + 1024;
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
	p->queued_bytes = p->queued_refs = p->reserved = p->held = 0;
	outq_deinit(&p->out);
}

static void count_status_rare(struct stats_shard *st, unsigned status)
{
	switch (status / 100) {
	case 3: stats_inc(&st->responses_3xx); break;
	case 4: stats_inc(&st->responses_4xx); stats_inc(&st->errors); break;
	case 5: stats_inc(&st->responses_5xx); stats_inc(&st->errors); break;
	default: break;
	}
}

/* The one place an answer's status is counted. */
static inline void count_status(struct pipeline *p, unsigned status)
{
	if (status - 200u < 100u)       /* most answers */
		stats_inc(&p->stats->responses_2xx);
	else
		count_status_rare(p->stats, status);
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

/* An answer rendered into `out` whose value stays in its store: the value
 * goes at ref->at, and what was rendered after that point (RESP's CRLF)
 * stays in the buffer, after it.  `at`: the buffer's length before. */
static int add_ref(struct pipeline *p, const struct outq_ref *ref, size_t at)
{
	size_t tail = p->out.bytes.len - ref->at;

	p->out.bytes.len = ref->at;
	if (outq_add_ref(&p->out, ref->p, ref->len, ref->pin)) {
		p->out.bytes.len = at;
		return -ENOMEM;
	}
	p->out.bytes.len += tail;
	return 0;
}

/* An answer behind one still outstanding: kept in its own slot. */
static int answer_behind(struct pipeline *p, const struct reply *r, const struct pipeline_req *q)
{
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
	return 0;
}

int pipeline_answer(struct pipeline *p, const struct reply *r, const struct pipeline_req *q)
{
	if (__builtin_expect(p->head != NULL, 0)) {
		if (answer_behind(p, r, q))
			return -ENOMEM;
	} else {
		/* most answers: straight into `out` */
		struct outq_ref ref = { 0 };
		size_t at = p->out.bytes.len;
		if (render_into(&p->out.bytes, &ref, r, &q->to) || (ref.pin && add_ref(p, &ref, at)))
			return -ENOMEM;
		if (q->timing != PIPELINE_UNTIMED) {
			/* timed with the send that carries it (pipeline_sent) */
			if (p->batch_timed++ == 0)
				p->batch_t0 = q->t0;
			p->batch_hits += is_hit(r);
		}
	}
	if (!q->uncounted)
		count_status(p, r->status);
	if (pipeline_closes(r, &q->to))
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
	s->uncounted = q->uncounted;
	s->t0 = q->t0;
	s->room = room;
	p->reserved += room;
	p->held += s->held;
	enqueue(p, s);
	p->waiting++;
}

void pipeline_reserve(struct pipeline *p, struct slot *s, size_t room)
{
	p->reserved += room - s->room;
	s->room = room;
}

void pipeline_render(struct slot *s, const struct reply *r, const struct answer_to *to)
{
	s->bytes.len = 0;
	pipeline_slot_unref(s);
	s->ref.len = 0;
	s->hit = is_hit(r);
	s->close = pipeline_closes(r, to);
	s->status = r->status;
	if (render_into(&s->bytes, &s->ref, r, to) == 0)
		return;
	/* no room for the answer: a short 500 that ends the connection, or
	 * if even that fails, an empty slot that ends it at once */
	struct reply e;
	struct outq_ref none = { 0 };
	reply_status(&e, 500, "out of memory\n");
	e.close = true;
	buf_deinit(&s->bytes);
	s->hit = false;
	s->close = true;
	s->status = 500;
	if (render_into(&s->bytes, &none, &e, to)) {
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
	if (!s->uncounted)
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
		p->held -= h->held;
		size_t cut = h->ref.pin ? h->ref.at : h->bytes.len;
		if (h->failed || outq_append(&p->out, h->bytes.data, cut)) {
			p->broken = true;       /* an answer is lost: nothing after it may go */
			pipeline_slot_unref(h);
		} else if (h->ref.pin && (outq_add_ref(&p->out, h->ref.p, h->ref.len, h->ref.pin) ||
					  outq_append(&p->out, h->bytes.data + cut,
						      h->bytes.len - cut))) {
			p->broken = true;
		}
		h->ref.pin = NULL;              /* the queue holds the pin now, or released it */
		if (h->timing != PIPELINE_UNTIMED)
			time_answer(p, h->timing, h->hit, now - h->t0);
		slot_free(p, h);
	}
}

void pipeline_sent(struct pipeline *p)
{
	if (!p->batch_timed)
		return;
	if (!p->sent_timed || p->batch_t0 < p->sent_t0)
		p->sent_t0 = p->batch_t0;       /* the earliest answer's start */
	p->sent_timed += p->batch_timed;
	p->sent_hits += p->batch_hits;
	p->batch_timed = p->batch_hits = 0;
}

void pipeline_timed(struct pipeline *p, uint64_t now)
{
	if (!p->sent_timed)
		return;
	uint64_t ns = now - p->sent_t0;
	hist_record_n(&p->stats->lat_local_all, ns, p->sent_timed);
	if (p->sent_hits)
		hist_record_n(&p->stats->lat_local, ns, p->sent_hits);
	p->sent_timed = p->sent_hits = 0;
}
