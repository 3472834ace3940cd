/*
 * cmd.h - the RESP front end on a connection: its parse step, the table of
 * commands, their arguments and errors (Redis 7's, word for word), and the
 * commands that touch no key.  Key commands go on to keys.h.
 *
 * A connection accepted on --resp-listen has a struct cmd_session; conn.c
 * hands its input to cmd_handle() instead of the HTTP parser.  Answers go
 * through the same pipeline (pipeline.h) in the connection's protocol.
 *
 * A command of many keys (MGET, and those keys.h gathers) is sent a key at
 * a time while the connection is not congested (conn.h's bounds, and at
 * most KEYS_PARTS_MAX parts of its gathered commands out); otherwise the
 * connection pauses with the command's frame kept at the start of its input
 * and resumes where it stopped.
 */
#ifndef RINGCACHE_CMD_H
#define RINGCACHE_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcache/resp.h"

struct conn;
struct fwd;

struct cmd_session {
	struct resp_parser ps;
	uint8_t proto;          /* 2, or 3 after HELLO 3 */
	bool authed;            /* AUTH passed, or no keys configured */
	uint64_t id;            /* CLIENT ID */
	char *name;             /* CLIENT SETNAME; NULL: none */
	/* a command whose keys are being sent */
	uint8_t busy;           /* enum in cmd.c; 0: none */
	struct resp_cmd cmd;    /* its frame (re-pointed at each resume) */
	struct resp_iter it;    /* the next key */
	struct fwd *parent;     /* a gathered command's parent */
	uint32_t parts_out;     /* parts of its gathered commands not home yet (keys.c) */
};

/* Sets up c (accepted on --resp-listen) as a RESP connection.  0 or -ENOMEM. */
int cmd_session_create(struct conn *c);
/* After pipeline_deinit(): a gathered command being sent is abandoned. */
void cmd_session_destroy(struct conn *c);

/*
 * conn.c's parse step for a RESP connection: handles the command at the
 * start of p[0..n).  Returns the bytes it used (the whole command), 0 when
 * it is not complete yet (or its keys are still being sent: the connection
 * is then paused), or n after a protocol error (answered; the connection
 * closes after it).
 */
size_t cmd_handle(struct conn *c, const char *p, size_t n);

/* Whether c must wait for parts of its gathered commands to come home
 * before it sends or reads more. */
bool cmd_busy(const struct conn *c);

/* The answer to a request that cannot be answered in kind (conn.c: a
 * timeout): an error, and the connection closes. */
void cmd_protocol_error(struct conn *c, const char *text);

#endif
