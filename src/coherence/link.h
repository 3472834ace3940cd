/*
 * link.h - the link to Redis (link.c): the state machine of the command and
 * subscription connections, the breaker, reconnect with backoff, deadlines
 * of the commands in flight, and subscription loss.  Called by the thread's
 * loop (coh.c) and by the request logic (ops.c, registry.c) to report
 * failures.  Coherence thread only.
 */
#ifndef RINGCACHE_COH_LINK_H
#define RINGCACHE_COH_LINK_H

#include <stdbool.h>
#include <stdint.h>

struct coh;
struct coh_conn;

/* One failure (deadline passed, error reply) or success of a command, for
 * the breaker. */
void coh_fail(struct coh *c);
void coh_succeed(struct coh *c);

/* The command (subscription) connection failed: abandon what it carried,
 * close it, schedule a reconnect, re-evaluate the breaker. */
void coh_cmd_lost(struct coh *c);
void coh_sub_lost(struct coh *c);

/* Whether a shard reported a trip the thread has not seen (the parking
 * check: a seq_cst load after `parked` was stored). */
bool coh_link_tripped(struct coh *c);
/* Connects, times out handshakes and commands, sends heartbeats and the
 * subscription PING, as c->now says is due. */
void coh_link_timers(struct coh *c);
/* The earlier of t and the mono time at which coh_link_timers() has
 * something to do. */
uint64_t coh_link_next_wake(struct coh *c, uint64_t t);
/* Writes both connections' buffered commands. */
void coh_link_write(struct coh *c);
/* ppoll() reported revents on cn's socket: connect completion, replies,
 * errors. */
void coh_link_events(struct coh *c, struct coh_conn *cn, short revents);
/* At shutdown: says goodbye to the registry and waits (bounded) for the
 * command connection's replies. */
void coh_link_shutdown(struct coh *c);

#endif
