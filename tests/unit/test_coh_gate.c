/*
 * test_coh_gate.c - the gate the shards' read connections honour (read.c,
 * link.c), without a redis-server: the module is created but not started,
 * and the test sets the connection states the link would be in.
 *
 * Checked: the gate published when the subscription is lost, before
 * link_check() has taken the link down (coh_sub_lost() publishes its new
 * epoch first), is open, so no read is sent during the outage; and it is
 * not the value published once the link is back up.  A read sent under a
 * closed gate of the new epoch would find that same value at its reply
 * after the reconnect and be cached although an invalidation may have been
 * missed (the gate's ABA).  The ordering on ARM64 (the fence after that
 * store in coh_sub_lost()) cannot be checked here: no test on x86 fails
 * without it.
 */
#include <stdatomic.h>

#include "check.h"
#include "coherence/conn.h"
#include "coherence/state.h"

static uint64_t gate(struct coh *c)
{
	return atomic_load_explicit(&c->gate, memory_order_seq_cst);
}

static void test_loss_publishes_open(void)
{
	struct coh_config cfg = { .redis_url = "redis://127.0.0.1:1", .instance_id = "gate-test",
				  .nshards = 1, .cpu = -1, .ring_size = 4 };
	struct coh *c = NULL;

	CHECK_EQ(coh_create(&c, &cfg, NULL, NULL), 0);
	if (!c)
		return;
	/* up: both connections ready, the gate closed */
	c->cmd.state = c->sub.state = COH_CONN_READY;
	c->link_up = true;
	coh_gate_publish(c);
	uint64_t up = gate(c);
	CHECK_EQ(up & COH_GATE_OPEN, 0);

	/* coh_sub_lost(): the subscription closed, the epoch bumped and
	 * published while link_up still says up */
	c->sub.state = COH_CONN_DOWN;
	c->sub_epoch++;
	coh_gate_publish(c);
	uint64_t lost = gate(c);
	CHECK_EQ(lost >> 1, c->sub_epoch);
	CHECK_EQ(lost & COH_GATE_OPEN, COH_GATE_OPEN);

	/* link_check() then takes the link down: still open */
	c->link_up = false;
	coh_gate_publish(c);
	CHECK_EQ(gate(c) & COH_GATE_OPEN, COH_GATE_OPEN);

	/* back up: closed again, and no value published during the loss is
	 * this one (a read that took it would pass the check at its reply) */
	c->sub.state = COH_CONN_READY;
	c->link_up = true;
	coh_gate_publish(c);
	uint64_t again = gate(c);
	CHECK_EQ(again & COH_GATE_OPEN, 0);
	CHECK(again != up);
	CHECK(again != lost);
	coh_destroy(c);
}

int main(void)
{
	test_loss_publishes_open();
	return check_done("coh_gate");
}
