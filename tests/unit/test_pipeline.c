/*
 * test_pipeline.c - a connection's answers in request order (pipeline.h),
 * without io_uring: ordering across outstanding answers, the byte and slot
 * accounting back-pressure reads, status classes counted once, close,
 * latency timing (with a fake clock), orphaning, HEAD and failed renders.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "shard/pipeline.h"

static struct stats_shard stats;

static uint64_t hist_count(const struct hist *h)
{
	struct hist_snapshot s;
	hist_snapshot_init(&s);
	hist_merge(&s, h);
	return s.count;
}

static uint64_t hist_max(const struct hist *h)
{
	return atomic_load_explicit(&((struct hist *)h)->max, memory_order_relaxed);
}

/* Slots owned by "a message" (like struct fwd): counted when released or
 * orphaned, freed by the test. */
struct msg {
	struct slot slot;
	int released, orphaned;
};

static void msg_release(struct slot *s)
{
	((struct msg *)(void *)s)->released++;
	buf_deinit(&s->bytes);
}

static void msg_orphan(struct slot *s)
{
	((struct msg *)(void *)s)->orphaned++;
}

static struct pipeline_req req(uint8_t timing, uint64_t t0)
{
	struct pipeline_req q = { .to = { .proto = PROTO_HTTP,
					  .http = { .minor = 1, .keep_alive = true } },
				  .timing = timing, .t0 = t0 };
	return q;
}

static struct reply text(int status, const char *body)
{
	struct reply r;
	reply_status(&r, status, body);
	return r;
}

static size_t count_of(const struct pipeline *p, const char *needle)
{
	size_t n = 0, len = strlen(needle);
	for (size_t i = 0; i + len <= p->out.bytes.len; i++)
		n += memcmp(p->out.bytes.data + i, needle, len) == 0;
	return n;
}

/* The position of needle in out, or -1. */
static long pos_of(const struct pipeline *p, const char *needle)
{
	size_t len = strlen(needle);
	for (size_t i = 0; i + len <= p->out.bytes.len; i++)
		if (memcmp(p->out.bytes.data + i, needle, len) == 0)
			return (long)i;
	return -1;
}

static void test_order_and_accounting(void)
{
	struct pipeline p;
	struct msg w1, w2;
	struct pipeline_req q = req(PIPELINE_UNTIMED, 0);
	struct answer_to to = q.to;

	memset(&stats, 0, sizeof(stats));
	memset(&w1, 0, sizeof(w1));
	memset(&w2, 0, sizeof(w2));
	pipeline_init(&p, &stats, msg_release, msg_orphan);

	struct reply a = text(200, "A\n");
	CHECK_EQ(pipeline_answer(&p, &a, &q), 0);          /* straight to out */
	CHECK(pipeline_bytes(&p) == p.out.bytes.len && p.out.bytes.len > 0);
	CHECK_EQ(p.queued, 0);
	size_t after_a = p.out.bytes.len;

	pipeline_wait(&p, &w1.slot, &q, 0);                     /* outstanding */
	struct reply b = text(404, "B\n");
	CHECK_EQ(pipeline_answer(&p, &b, &q), 0);          /* behind w1 */
	pipeline_wait(&p, &w2.slot, &q, 0);
	struct reply c = text(201, NULL);
	CHECK_EQ(pipeline_answer(&p, &c, &q), 0);
	CHECK_EQ(p.queued, 4);
	CHECK_EQ(p.waiting, 2);
	CHECK_EQ(p.out.bytes.len, after_a);                        /* nothing jumped the queue */
	size_t queued = p.queued_bytes;
	CHECK(queued > 0);
	CHECK_EQ(pipeline_bytes(&p), after_a + queued);

	/* w2 answers first: still held behind w1 */
	struct reply r2 = text(200, "W2\n");
	pipeline_render(&w2.slot, &r2, &to);
	pipeline_complete(&p, &w2.slot, 0);
	CHECK_EQ(p.out.bytes.len, after_a);
	CHECK_EQ(p.waiting, 1);
	CHECK_EQ(w2.released, 0);
	CHECK(p.queued_bytes > queued);

	struct reply r1 = text(503, "W1\n");
	pipeline_render(&w1.slot, &r1, &to);
	pipeline_complete(&p, &w1.slot, 0);
	CHECK_EQ(p.queued, 0);
	CHECK_EQ(p.waiting, 0);
	CHECK_EQ(p.queued_bytes, 0);
	CHECK_EQ(w1.released, 1);
	CHECK_EQ(w2.released, 1);
	CHECK(pipeline_idle(&p) == false);                   /* out holds it all */

	long pa = pos_of(&p, "\r\n\r\nA\n"), pw1 = pos_of(&p, "\r\n\r\nW1\n"),
	     pb = pos_of(&p, "\r\n\r\nB\n"), pw2 = pos_of(&p, "\r\n\r\nW2\n"),
	     pc = pos_of(&p, "201 Created");
	CHECK(pa >= 0 && pa < pw1 && pw1 < pb && pb < pw2 && pw2 < pc);
	CHECK_EQ(count_of(&p, "HTTP/1.1 "), 5);

	/* every answer counted once, by class */
	CHECK_EQ(stats_get(&stats.responses_2xx), 3);
	CHECK_EQ(stats_get(&stats.responses_4xx), 1);
	CHECK_EQ(stats_get(&stats.responses_5xx), 1);
	CHECK_EQ(stats_get(&stats.errors), 2);
	CHECK(!p.close);

	/* interim bytes are in order and counted nowhere */
	pipeline_wait(&p, &w1.slot, &q, 0);
	CHECK_EQ(pipeline_interim(&p, "HTTP/1.1 100 Continue\r\n\r\n", 25), 0);
	CHECK_EQ(p.queued, 2);
	pipeline_render(&w1.slot, &r2, &to);
	pipeline_complete(&p, &w1.slot, 0);
	CHECK(pos_of(&p, "100 Continue") > pos_of(&p, "201 Created"));
	CHECK_EQ(stats_get(&stats.responses_2xx), 4);
	pipeline_deinit(&p);
}

static void test_close(void)
{
	struct pipeline p;
	struct msg w;
	struct pipeline_req q = req(PIPELINE_UNTIMED, 0);
	struct reply r = text(200, "x");

	memset(&w, 0, sizeof(w));
	pipeline_init(&p, &stats, msg_release, msg_orphan);
	q.to.http.keep_alive = false;
	CHECK_EQ(pipeline_answer(&p, &r, &q), 0);
	CHECK(p.close);
	CHECK(pos_of(&p, "Connection: close\r\n") >= 0);
	pipeline_deinit(&p);

	/* a reply that insists on closing (an error), known only at completion */
	pipeline_init(&p, &stats, msg_release, msg_orphan);
	q.to.http.keep_alive = true;
	pipeline_wait(&p, &w.slot, &q, 0);
	r.close = true;
	pipeline_render(&w.slot, &r, &q.to);
	CHECK(!p.close);
	pipeline_complete(&p, &w.slot, 0);
	CHECK(p.close);
	pipeline_deinit(&p);
}

static void test_timing(void)
{
	struct pipeline p;
	struct msg w;
	struct reply hit = text(200, "v");
	struct reply miss = text(404, NULL);

	hit.cache = REPLY_CACHE_HIT;
	miss.cache = REPLY_CACHE_MISS;
	memset(&stats, 0, sizeof(stats));
	memset(&w, 0, sizeof(w));
	hist_init(&stats.lat_local);
	hist_init(&stats.lat_local_all);
	hist_init(&stats.lat_forwarded);
	hist_init(&stats.lat_forwarded_all);
	pipeline_init(&p, &stats, msg_release, msg_orphan);

	/* two local answers in out: handed to a send, timed at the turn's flush */
	struct pipeline_req q = req(PIPELINE_LOCAL, 1000);
	CHECK_EQ(pipeline_answer(&p, &hit, &q), 0);
	q.t0 = 1500;
	CHECK_EQ(pipeline_answer(&p, &miss, &q), 0);
	struct pipeline_req admin = req(PIPELINE_UNTIMED, 0);
	struct reply health = text(200, "OK\n");
	CHECK_EQ(pipeline_answer(&p, &health, &admin), 0);
	CHECK_EQ(hist_count(&stats.lat_local_all), 0);
	pipeline_sent(&p);
	CHECK_EQ(hist_count(&stats.lat_local_all), 0);      /* not before the flush */
	pipeline_timed(&p, 5000);
	CHECK_EQ(hist_count(&stats.lat_local_all), 2);
	CHECK_EQ(hist_count(&stats.lat_local), 1);
	CHECK_EQ(hist_max(&stats.lat_local_all), 4000);     /* from the first answer's t0 */
	pipeline_sent(&p);                                   /* nothing new: nothing recorded */
	pipeline_timed(&p, 9000);
	CHECK_EQ(hist_count(&stats.lat_local_all), 2);
	/* two sends before one flush: timed together from the earlier start */
	q.t0 = 6000;
	CHECK_EQ(pipeline_answer(&p, &miss, &q), 0);
	pipeline_sent(&p);
	q.t0 = 7000;
	CHECK_EQ(pipeline_answer(&p, &hit, &q), 0);
	pipeline_sent(&p);
	pipeline_timed(&p, 20000);
	CHECK_EQ(hist_count(&stats.lat_local_all), 4);
	CHECK_EQ(hist_count(&stats.lat_local), 2);
	CHECK_EQ(hist_max(&stats.lat_local), 14000);        /* from 6000, not 7000 */

	/* a remote hit and a local answer behind it: timed at release */
	struct pipeline_req rq = req(PIPELINE_REMOTE, 10000);
	pipeline_wait(&p, &w.slot, &rq, 0);
	q.t0 = 11000;
	CHECK_EQ(pipeline_answer(&p, &hit, &q), 0);
	pipeline_render(&w.slot, &hit, &rq.to);
	pipeline_complete(&p, &w.slot, 30000);
	CHECK_EQ(hist_count(&stats.lat_forwarded_all), 1);
	CHECK_EQ(hist_count(&stats.lat_forwarded), 1);
	CHECK_EQ(hist_max(&stats.lat_forwarded), 20000);
	CHECK_EQ(hist_count(&stats.lat_local_all), 5);
	CHECK_EQ(hist_max(&stats.lat_local), 19000);

	/* HIT-L2 is not an L1 hit */
	struct reply l2hit = hit;
	l2hit.cache = REPLY_CACHE_HIT_L2;
	pipeline_wait(&p, &w.slot, &rq, 0);
	pipeline_render(&w.slot, &l2hit, &rq.to);
	pipeline_complete(&p, &w.slot, 40000);
	CHECK_EQ(hist_count(&stats.lat_forwarded_all), 2);
	CHECK_EQ(hist_count(&stats.lat_forwarded), 1);
	pipeline_deinit(&p);
}

static void test_orphan(void)
{
	struct pipeline p;
	struct msg w1, w2;
	struct pipeline_req q = req(PIPELINE_UNTIMED, 0);
	struct reply r = text(200, "x");

	memset(&w1, 0, sizeof(w1));
	memset(&w2, 0, sizeof(w2));
	pipeline_init(&p, &stats, msg_release, msg_orphan);
	pipeline_wait(&p, &w1.slot, &q, 0);
	CHECK_EQ(pipeline_answer(&p, &r, &q), 0);
	pipeline_wait(&p, &w2.slot, &q, 0);
	pipeline_render(&w2.slot, &r, &q.to);
	pipeline_complete(&p, &w2.slot, 0);                  /* DONE, behind w1 */
	pipeline_deinit(&p);
	CHECK_EQ(w1.orphaned, 1);                            /* still out: handed over */
	CHECK_EQ(w1.released, 0);
	CHECK_EQ(w2.released, 1);                            /* done: freed with the pipeline */
	CHECK_EQ(w2.orphaned, 0);
	CHECK(p.head == NULL && p.out.bytes.data == NULL);
}

/*
 * What a slot's owner holds until the slot leaves the FIFO (a fwd's copy of
 * its request: a PUT's body) counts in pipeline_bytes(), which stops the
 * parsing of more requests, from pipeline_wait() until the slot is released,
 * also while it waits DONE behind an answer still outstanding.
 */
static void test_held(void)
{
	struct pipeline p;
	struct msg w1, w2;
	struct pipeline_req q = req(PIPELINE_UNTIMED, 0);
	struct reply r = text(201, NULL);

	memset(&w1, 0, sizeof(w1));
	memset(&w2, 0, sizeof(w2));
	pipeline_init(&p, &stats, msg_release, msg_orphan);
	w1.slot.held = 100;
	w2.slot.held = 1u << 20;
	pipeline_wait(&p, &w1.slot, &q, 64);
	pipeline_wait(&p, &w2.slot, &q, 64);
	CHECK_EQ(pipeline_bytes(&p), 128 + 100 + (1u << 20));
	pipeline_render(&w2.slot, &r, &q.to);
	pipeline_complete(&p, &w2.slot, 0);                  /* DONE behind w1: still held */
	CHECK_EQ(w2.released, 0);
	CHECK_EQ(pipeline_bytes(&p), 64 + p.queued_bytes + 100 + (1u << 20));
	pipeline_render(&w1.slot, &r, &q.to);
	pipeline_complete(&p, &w1.slot, 0);                  /* both released */
	CHECK_EQ(w1.released + w2.released, 2);
	CHECK_EQ(p.held, 0);
	CHECK_EQ(pipeline_bytes(&p), p.out.bytes.len);
	pipeline_deinit(&p);

	/* orphaned with the pipeline: nothing left counted */
	memset(&w1, 0, sizeof(w1));
	pipeline_init(&p, &stats, msg_release, msg_orphan);
	w1.slot.held = 4096;
	pipeline_wait(&p, &w1.slot, &q, 0);
	CHECK_EQ(p.held, 4096);
	pipeline_deinit(&p);
	CHECK_EQ(w1.orphaned, 1);
	CHECK_EQ(p.held, 0);

	/* more held while it waits (a gathered command's parts out), then
	 * given back: counted meanwhile, and nothing is left once it leaves */
	memset(&w1, 0, sizeof(w1));
	pipeline_init(&p, &stats, msg_release, msg_orphan);
	w1.slot.held = 100;
	pipeline_wait(&p, &w1.slot, &q, 64);
	pipeline_hold(&p, &w1.slot, 1u << 20);
	CHECK_EQ(pipeline_bytes(&p), 64 + 100 + (1u << 20));
	pipeline_unhold(&p, &w1.slot, 1u << 20);
	CHECK_EQ(pipeline_bytes(&p), 64 + 100);
	pipeline_render(&w1.slot, &r, &q.to);
	pipeline_complete(&p, &w1.slot, 0);
	CHECK_EQ(w1.released, 1);
	CHECK_EQ(p.held, 0);
	pipeline_deinit(&p);
}

static void test_head_and_304(void)
{
	struct pipeline p;
	struct pipeline_req q = req(PIPELINE_UNTIMED, 0);
	struct reply r = text(200, "twelve bytes");

	pipeline_init(&p, &stats, msg_release, msg_orphan);
	q.to.http.head = true;
	CHECK_EQ(pipeline_answer(&p, &r, &q), 0);
	CHECK(pos_of(&p, "Content-Length: 12\r\n") >= 0);
	CHECK(pos_of(&p, "twelve") < 0);
	r.status = 304;
	q.to.http.head = false;
	p.out.bytes.len = 0;
	CHECK_EQ(pipeline_answer(&p, &r, &q), 0);
	CHECK(pos_of(&p, "304 Not Modified\r\nContent-Length: 12\r\n") >= 0);
	CHECK(pos_of(&p, "twelve") < 0);
	CHECK(pos_of(&p, "Content-Type") < 0);
	pipeline_deinit(&p);
}

/* A render that cannot get memory: a 500 that closes, or if even that
 * cannot be rendered, a failed slot that breaks the connection. */
static void test_render_failure(void)
{
	struct pipeline p;
	struct msg w;
	struct pipeline_req q = req(PIPELINE_UNTIMED, 0);
	struct reply huge = text(200, NULL);

	memset(&w, 0, sizeof(w));
	huge.body = "";
	huge.body_len = SIZE_MAX / 2;   /* no allocator gives this */
	memset(&stats, 0, sizeof(stats));
	pipeline_init(&p, &stats, msg_release, msg_orphan);
	pipeline_wait(&p, &w.slot, &q, 0);
	pipeline_render(&w.slot, &huge, &q.to);
	CHECK(!w.slot.failed);
	CHECK_EQ(w.slot.status, 500);
	CHECK(w.slot.close);
	pipeline_complete(&p, &w.slot, 0);
	CHECK(pos_of(&p, "HTTP/1.1 500 Internal Server Error\r\n") == 0);
	CHECK(p.close && !p.broken);
	CHECK_EQ(stats_get(&stats.responses_5xx), 1);

	/* the same request answered in place: -ENOMEM, nothing queued */
	size_t before = p.out.bytes.len;
	CHECK(pipeline_answer(&p, &huge, &q) != 0);
	CHECK_EQ(p.out.bytes.len, before);
	CHECK_EQ(stats_get(&stats.responses_2xx), 0);

	/* a failed slot: the FIFO cannot skip it */
	pipeline_wait(&p, &w.slot, &q, 0);
	w.slot.failed = true;
	pipeline_complete(&p, &w.slot, 0);
	CHECK(p.broken);
	pipeline_deinit(&p);
}

int main(void)
{
	test_order_and_accounting();
	test_close();
	test_timing();
	test_orphan();
	test_held();
	test_head_and_304();
	test_render_failure();
	return check_done("pipeline");
}
