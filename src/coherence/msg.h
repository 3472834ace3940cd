/*
 * msg.h - what the coherence thread needs of msg.c beyond coherence.h.
 */
#ifndef RINGCACHE_COH_MSG_H
#define RINGCACHE_COH_MSG_H

struct coh_msg;

/* A new message with m's op, shard, hash, key, ctype, value, ttl and seq;
 * NULL when out of memory.  Any thread. */
struct coh_msg *coh_msg_copy(const struct coh_msg *m);

#endif
