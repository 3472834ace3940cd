/*
 * ops.h - what the coherence thread does with the shards' requests and with
 * Redis' replies to them (ops.c).  Coherence thread only.
 */
#ifndef RINGCACHE_COH_OPS_H
#define RINGCACHE_COH_OPS_H

struct coh;
struct coh_msg;
struct coh_pend;
struct redisReply;

/* A request popped from a shard's in ring. */
void coh_request(struct coh *c, struct coh_msg *m);
/* The reply r to the command connection's pending entry p; frees r. */
void coh_cmd_reply(struct coh *c, struct coh_pend *p, struct redisReply *r);
/* p's deadline passed (its reply may still come). */
void coh_pend_expire(struct coh *c, struct coh_pend *p);
/* p's connection is gone: its reply will never come. */
void coh_pend_abandon(struct coh *c, struct coh_pend *p);
/* The same for every entry of the command connection's queue, emptied. */
void coh_pend_abandon_all(struct coh *c);
/* A "message" push (array of at least 3) from the subscription. */
void coh_sub_message(struct coh *c, struct redisReply *r);
/* Sends the queued writes (the link just came up). */
void coh_replay_start(struct coh *c);
void coh_replay_drop_all(struct coh *c);

#endif
