/*
 * pipeline.h - a connection's answers, in request order.
 *
 * Every request a connection parses gets exactly one answer, and answers
 * leave in the order the requests came, although some are made elsewhere
 * (another shard's store, Redis) and come back later.  The pipeline is that
 * ordering, and the one place an answer is counted and rendered:
 *
 *   out:  bytes ready to send, in order
 *   head -> [slot: GET k7 @shard1, WAITING] -> [slot: 404, DONE] -> [slot ...]
 *           the FIFO drains into `out` from the head while its slots are DONE
 *
 * While nothing is outstanding an answer is rendered straight into `out`;
 * once one is, every later answer gets a DONE slot behind it.  A WAITING slot
 * belongs to a message that travels (struct fwd, forward.h): its owner
 * renders the answer into the slot with pipeline_render() (on whichever
 * shard holds the value), and the connection's shard completes it with
 * pipeline_complete().
 *
 * Accounting happens here and only here, when an answer is final: its status
 * class (stats responses_Nxx, errors), and for answers a store gave, their
 * latency from the request's completion to the submission of the send that
 * carries them (docs/stats.md).
 *
 * A pipeline is plain memory, touched only by its connection's shard; it
 * does no I/O, so tests drive it without io_uring.
 */
#ifndef RINGCACHE_PIPELINE_H
#define RINGCACHE_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outq.h"
#include "ringcache/buf.h"
#include "ringcache/http_render.h"
#include "ringcache/reply.h"
#include "ringcache/resp.h"
#include "ringcache/stats.h"

/* How an answer's latency is recorded (stats.h STATS_HISTS). */
enum pipeline_timing {
	PIPELINE_UNTIMED = 0,   /* not a store's answer: refusals, admin paths */
	PIPELINE_LOCAL,         /* this shard's store: local_all, and local if a hit */
	PIPELINE_REMOTE,        /* another shard's store: forwarded_all / forwarded */
};

/* The protocol of a connection, chosen by the listener that accepted it. */
enum answer_proto { PROTO_HTTP = 0, PROTO_RESP };

/* How an answer is written: the protocol, and what of the request its
 * renderer needs (http_render.h, resp.h). */
struct answer_to {
	uint8_t proto;          /* enum answer_proto */
	union {
		struct http_answer_to http;
		struct resp_answer_to resp;
	};
};

/* The request an answer is for. */
struct pipeline_req {
	struct answer_to to;
	uint8_t timing;         /* enum pipeline_timing */
	bool uncounted;         /* a part of an answer counted elsewhere (MGET's values) */
	uint64_t t0;            /* mono ns: the completion that delivered its last byte */
};

enum slot_state { SLOT_WAITING = 0, SLOT_DONE };

/* One answer queued behind one still outstanding. */
struct slot {
	struct slot *next;
	uint8_t state;          /* enum slot_state */
	uint8_t timing;         /* enum pipeline_timing */
	bool own;               /* allocated by the pipeline; else the owner's (release) */
	bool hit;               /* a 200 or 304 from L1 (latency: the hit histograms) */
	bool close;             /* the connection ends after this answer */
	bool failed;            /* no memory to render it: the connection must end */
	bool uncounted;         /* not counted in the status counters (pipeline_req) */
	uint16_t status;        /* for the status counters */
	size_t room;            /* WAITING: bytes reserved for its answer (pipeline_wait) */
	size_t held;            /* not own: bytes its owner holds until it is released (a
				 * fwd's copy of its request), set before pipeline_wait;
				 * more meanwhile with pipeline_hold() */
	uint64_t t0;
	struct buf bytes;       /* the rendered answer */
	struct outq_ref ref;    /* and its value, left in its store (pin NULL: none) */
};

struct pipeline {
	struct outq out;                /* answers ready to send, in order */
	struct slot *head, *tail;       /* answers behind one still outstanding */
	uint32_t queued;                /* slots in the FIFO */
	uint32_t waiting;               /* of which WAITING */
	size_t queued_bytes;            /* bytes of the answers in DONE slots */
	size_t queued_refs;             /* of which values left in their stores */
	size_t reserved;                /* room reserved for the WAITING slots' answers */
	size_t held;                    /* `held` of the slots in the FIFO, WAITING or DONE */
	bool close;                     /* an answer ends the connection: no more requests */
	bool broken;                    /* an answer could not be rendered (no memory) */
	/* answers rendered straight into `out`, timed when it is sent: those
	 * still in `out`, and those handed to a send and not yet timed */
	uint64_t batch_t0, sent_t0;
	uint32_t batch_timed, batch_hits, sent_timed, sent_hits;
	struct stats_shard *stats;
	void (*release)(struct slot *); /* frees a slot the pipeline did not allocate */
	void (*orphan)(struct slot *);  /* a WAITING slot whose connection is gone */
};

/*
 * Sets up an empty pipeline counting into `stats`.  release(s) frees a slot
 * that is not `own` once its answer has been moved to `out` (or the
 * pipeline is torn down); orphan(s) hands a WAITING slot over to whoever
 * holds it when the connection ends first: it must free it when it returns.
 */
void pipeline_init(struct pipeline *p, struct stats_shard *stats,
		   void (*release)(struct slot *), void (*orphan)(struct slot *));

/* Frees `out` and every slot; WAITING slots are orphaned, not freed. */
void pipeline_deinit(struct pipeline *p);

/*
 * The next answer, known now: rendered into `out`, or into a DONE slot
 * behind the outstanding ones.  0, or -ENOMEM (nothing queued; the caller
 * ends the connection).
 */
int pipeline_answer(struct pipeline *p, const struct reply *r, const struct pipeline_req *q);

/*
 * Interim bytes that are not an answer (100 Continue), in order with the
 * answers, counted nowhere.  0 or -ENOMEM.
 */
int pipeline_interim(struct pipeline *p, const char *bytes, size_t n);

/*
 * The next answer will come later: s (zeroed by its owner, not own) waits in
 * the FIFO until pipeline_complete(p, s).  `room` bytes are reserved for its
 * answer (pipeline_bytes() counts them) until it completes, and s->held
 * until it leaves the FIFO.
 */
void pipeline_wait(struct pipeline *p, struct slot *s, const struct pipeline_req *q, size_t room);

/* A WAITING slot's reservation becomes `room`. */
void pipeline_reserve(struct pipeline *p, struct slot *s, size_t room);

/*
 * Renders r into s, for the request `to`.  Touches nothing but s, so the
 * shard that holds the value calls it, whichever shard the connection is on.
 * Without memory for it, s gets a 500 that ends the connection, or if even
 * that fails, s->failed (the FIFO cannot skip an answer: p->broken).
 */
void pipeline_render(struct slot *s, const struct reply *r, const struct answer_to *to);

/* The bytes r takes rendered for `to`, body included (room checks). */
size_t pipeline_answer_size(const struct reply *r, const struct answer_to *to);

/* True when the answer r ends its connection. */
static inline bool pipeline_closes(const struct reply *r, const struct answer_to *to)
{
	return to->proto == PROTO_RESP ? r->close : http_render_closes(r, &to->http);
}

/*
 * s's answer has been rendered: count it, and move every DONE slot at the
 * head of the FIFO into `out` (timing those a store gave at `now`).
 */
void pipeline_complete(struct pipeline *p, struct slot *s, uint64_t now);

/*
 * `out` was handed to a send: the answers rendered straight into it since
 * the last call are timed by the next pipeline_timed(), not now, so that the
 * shard reads the clock once per loop turn rather than once per send.
 */
void pipeline_sent(struct pipeline *p);

/* The sends since the last call were submitted at `now`: their answers'
 * latency is recorded. */
void pipeline_timed(struct pipeline *p, uint64_t now);

/* Bytes of answers not yet sent that the pipeline holds or has promised:
 * `out`, DONE slots, and the room reserved for WAITING ones; and what the
 * owners of its slots hold until they are released (`held`). */
static inline size_t pipeline_bytes(const struct pipeline *p)
{
	return outq_len(&p->out) + p->queued_bytes + p->reserved + p->held;
}

/* s's owner holds n bytes more (hold) or fewer (unhold) for it than it
 * declared at pipeline_wait(), while s is in the FIFO: a gathered command's
 * parts out (keys.c).  Counted as `held` is. */
static inline void pipeline_hold(struct pipeline *p, struct slot *s, size_t n)
{
	s->held += n;
	p->held += n;
}

static inline void pipeline_unhold(struct pipeline *p, struct slot *s, size_t n)
{
	s->held -= n;
	p->held -= n;
}

/* Nothing to send and nothing outstanding. */
static inline bool pipeline_idle(const struct pipeline *p)
{
	return outq_len(&p->out) == 0 && p->head == NULL;
}

/* Drops a slot's value reference, if any (its pin released). */
void pipeline_slot_unref(struct slot *s);

#endif
