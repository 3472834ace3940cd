/*
 * msg.h - what the coherence thread needs of msg.c beyond coherence.h.
 */
#ifndef RINGCACHE_COH_MSG_H
#define RINGCACHE_COH_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coh_msg;
struct redisReply;

/* What Redis' replies to a GET + PTTL pair say (coh_get_decode). */
struct coh_got {
	uint8_t status;            /* enum coh_status: OK, MISS, ERROR or BAD_DATA */
	bool raw;                  /* OK: a plain value, not our frame */
	uint32_t ttl;              /* OK: seconds left in Redis, rounded up; 0: none */
	size_t ctype_off, ctype_len, value_off;   /* OK: the parts of value->str */
	size_t ext_off, ext_len;   /* OK: an RCV2 frame's extension header (len 0: none) */
};

/*
 * Decodes the replies to GET (value; NULL if it never came) and PTTL, the
 * one place that knows what they mean: nil or a key gone by the PTTL is a
 * miss, WRONGTYPE or a corrupt frame bad data, another error reply an
 * error.  Any thread.
 */
void coh_get_decode(const struct redisReply *value, const struct redisReply *pttl,
		    struct coh_got *g);
/*
 * Gives m (a COH_GET) the value g decoded from `value`: value->str itself
 * (value->str becomes NULL) unless copy, then a copy.  Sets value, ctype,
 * ttl and flags.  0 or -ENOMEM (m unchanged).  Any thread.
 */
int coh_msg_take_value(struct coh_msg *m, struct redisReply *value, const struct coh_got *g,
		       uint16_t flags, bool copy);

/* A new message with m's op, shard, hash, key, ctype, value, ttl and seq;
 * NULL when out of memory.  Any thread. */
struct coh_msg *coh_msg_copy(const struct coh_msg *m);

#endif
