/*
 * test_coh_purge.c - a tag purge against Redis replies the test plays
 * (docs/coherence.md, "Tags"): the module is created as the daemon creates
 * it but not started, and the test feeds the command connection's reader
 * the replies a hostile Redis would send, the way the link does
 * (fuzz_coh_reply.c does the same with random bytes).  Checked: a purge
 * whose batches come back full forever still ends, answered COH_ERROR after
 * a bounded number of batches, and a normal purge adds up its batches and
 * publishes once.
 */
#include <hiredis/hiredis.h>
#include <string.h>

#include "check.h"
#include "coherence/conn.h"
#include "coherence/ops.h"
#include "coherence/state.h"
#include "ringcache/hash.h"

#define NSHARDS 1

static struct coh *make(void)
{
	struct coh_config cfg = { .redis_url = "redis://127.0.0.1:1", .instance_id = "purge-test",
				  .nshards = NSHARDS, .cpu = -1, .ring_size = 4 };
	struct coh *c = NULL;

	CHECK_EQ(coh_create(&c, &cfg, NULL, NULL), 0);
	/* the link as it is once both connections are ready */
	c->now = 1000000;
	c->cmd.state = c->sub.state = COH_CONN_READY;
	c->link_up = true;
	c->cmd.reply_max = c->sub.reply_max = 1 << 20;
	c->cmd.elements_max = c->sub.elements_max = 4096;
	return c;
}

/* The purge's answer on the shard's ring, or NULL while none came. */
static struct coh_msg *answer(struct coh *c)
{
	struct coh_shard *sh = &c->shards[0];
	struct coh_msg *m;

	ring_flush(sh->out);
	if ((m = ring_pop(sh->out)) != NULL) {
		ring_release(sh->out);
		return m;
	}
	if ((m = sh->backlog) != NULL)
		sh->backlog = m->next;
	return m;
}

/* Feeds replies to what is in flight, in order, as the link does. */
static void feed(struct coh *c, const char *resp)
{
	redisReply *r;

	c->cmd.out.len = 0;     /* what the link would have written */
	CHECK_EQ(coh_conn_feed(&c->cmd, resp, strlen(resp)), 0);
	while (coh_conn_reply(&c->cmd, &r) == 1) {
		struct coh_pend *p = coh_conn_front(&c->cmd);
		if (!p) {
			freeReplyObject(r);
			break;
		}
		struct coh_pend e = *p;
		coh_conn_pop(&c->cmd);
		coh_cmd_reply(c, &e, r);
	}
}

static struct coh_msg *purge(const char *tag)
{
	struct coh_msg *m = coh_msg_create(COH_PURGE, 0, 0, tag, strlen(tag), NULL, 0, 0);

	CHECK(m != NULL);
	return m;
}

/* Full batches forever: answered COH_ERROR, after a bound, not never. */
static void test_endless_batches(void)
{
	struct coh *c = make();
	struct coh_msg *m = NULL;
	unsigned fed = 0;

	coh_request(c, purge("t"));
	while (!(m = answer(c)) && fed < 1000000) {
		/* anything but the EVAL's replies (the PUBLISH's) is ignored */
		feed(c, "*2\r\n:500\r\n:0\r\n");
		fed++;
	}
	CHECK(m != NULL);
	if (!m)
		return;
	CHECK_EQ(m->op, COH_PURGE);
	CHECK_EQ(m->status, COH_ERROR);
	CHECK(fed > 1000 && fed < 1000000);
	CHECK_EQ(m->count, 0);
	printf("  endless batches: answered COH_ERROR after %u replies\n", fed);
	coh_msg_destroy(m);
	coh_destroy(c);
}

/* Two full batches and a short one: 1000 + 3 keys, answered OK. */
static void test_batches_add_up(void)
{
	struct coh *c = make();
	struct coh_msg *m;

	coh_request(c, purge("t"));
	feed(c, "*2\r\n:500\r\n:500\r\n");
	CHECK(answer(c) == NULL);
	feed(c, "*2\r\n:500\r\n:500\r\n");
	CHECK(answer(c) == NULL);
	feed(c, "*2\r\n:7\r\n:3\r\n");
	/* the PUBLISH follows the last batch; its reply answers nothing */
	m = answer(c);
	CHECK(m != NULL);
	if (m) {
		CHECK_EQ(m->status, COH_OK);
		CHECK_EQ(m->count, 1003);
		coh_msg_destroy(m);
	}
	feed(c, ":1\r\n");      /* the PUBLISH's reply */
	/* a reply that does not add up (more deleted than popped): bad data */
	coh_request(c, purge("u"));
	feed(c, "*2\r\n:1\r\n:2\r\n");
	m = answer(c);
	CHECK(m != NULL);
	if (m) {
		CHECK_EQ(m->status, COH_BAD_DATA);
		coh_msg_destroy(m);
	}
	coh_destroy(c);
}

int main(void)
{
	test_batches_add_up();
	test_endless_batches();
	return check_done("coh_purge");
}
