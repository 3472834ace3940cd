/*
 * resp.h - the Redis protocol (RESP2, RESP3) on the wire: an incremental,
 * allocation-free command parser and the renderer of replies.  Independent
 * of the server, like the HTTP parser (http.h): pointers in a parsed command
 * point into the caller's buffer.
 *
 * A command is either a multibulk frame ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", what
 * clients send) or an inline line ("GET k\r\n", what telnet sends), split as
 * Redis's sdssplitargs() splits it (quotes, \xHH escapes).  Parsing is two
 * passes: resp_parse() validates the frame as its bytes arrive and says how
 * long it is and how many arguments it has; resp_next() then walks the
 * arguments of a complete frame, so no argument vector is ever allocated for
 * a count the client announced.
 *
 * Return convention (the project's, as http.h):
 *
 *   > 0          done: the frame's length in bytes
 *   0            RESP_AGAIN: more input is needed
 *   < 0          -enum resp_error: a protocol error; resp_error_text() gives
 *                Redis's words for it; answer it and close the connection
 *
 * Bounds, each enforced before any byte past it is waited for: an inline
 * line or a length line of at most RESP_LINE_MAX bytes (Redis's
 * PROTO_INLINE_MAX_SIZE), at most RESP_ARGS_MAX arguments, a bulk string of
 * at most lim->max_bulk bytes (--max-value), a whole command of at most
 * lim->max_command bytes.  The result depends on the bytes only, not on how
 * they were split across calls.
 */
#ifndef RINGCACHE_RESP_H
#define RINGCACHE_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringcache/buf.h"
#include "ringcache/reply.h"

#define RESP_AGAIN 0
#define RESP_LINE_MAX (64u << 10)       /* inline commands, length lines */
#define RESP_ARGS_MAX (1u << 20)        /* arguments of one command */

enum resp_error {
	RESP_E_INLINE_TOO_BIG = 1,      /* "too big inline request" */
	RESP_E_UNBALANCED,              /* "unbalanced quotes in request" */
	RESP_E_MBULK_TOO_BIG,           /* "too big mbulk count string" */
	RESP_E_MBULK_LEN,               /* "invalid multibulk length" */
	RESP_E_BULK_TOO_BIG,            /* "too big bulk count string" */
	RESP_E_EXPECTED_DOLLAR,         /* "expected '$', got '%c'" */
	RESP_E_BULK_LEN,                /* "invalid bulk length" */
	RESP_E_COMMAND_TOO_BIG,         /* the whole command over max_command */
};

struct resp_limits {
	uint64_t max_bulk;              /* longest bulk string (--max-value) */
	uint64_t max_command;           /* longest command, all its bytes */
};

/* Arguments whose place a multibulk frame's parse remembers, so that
 * resp_next() does not read their lengths again (GET k, SET k v). */
#define RESP_ARGS_KEPT 4

/* The parser's state for one command: zero it (resp_parser_init) before the
 * first call and after every complete frame or error. */
struct resp_parser {
	uint64_t pos;                   /* bytes of the frame validated so far */
	uint64_t arg_at[RESP_ARGS_KEPT];  /* the first arguments' offsets in the frame */
	uint64_t arg_len[RESP_ARGS_KEPT];
	int64_t bulk;                   /* length of the bulk being waited for; -1: none */
	uint32_t argc;                  /* announced (multibulk) or counted (inline) */
	uint32_t got;                   /* multibulk: arguments complete */
	uint8_t kind;                   /* 0: not started, 1: multibulk, 2: inline */
	char bad;                       /* RESP_E_EXPECTED_DOLLAR: the byte found */
};

static inline void resp_parser_init(struct resp_parser *ps)
{
	ps->pos = 0;
	ps->bulk = -1;
	ps->argc = ps->got = 0;
	ps->kind = 0;
	ps->bad = 0;
}

/* A complete frame.  argc 0: an empty command (a blank line, "*0", "*-1"),
 * which Redis skips without an answer. */
struct resp_cmd {
	const char *frame;
	size_t len;
	uint32_t argc;
	bool inline_;
	uint64_t arg_at[RESP_ARGS_KEPT];  /* multibulk: the first min(argc, */
	uint64_t arg_len[RESP_ARGS_KEPT]; /* RESP_ARGS_KEPT) arguments */
};

struct resp_str {
	const char *p;
	size_t len;
};

/*
 * Validates the command at the start of buf[0..len).  Returns its length
 * (and fills *cmd), RESP_AGAIN, or -enum resp_error.  *ps carries what was
 * validated between calls: call again with the same frame start and more
 * bytes after it.
 */
int resp_parse(struct resp_parser *ps, const char *buf, size_t len,
	       const struct resp_limits *lim, struct resp_cmd *cmd);

/* Redis's message for a parse error ("Protocol error: invalid bulk length"),
 * without "-ERR ", into out (64 bytes are enough); returns out. */
const char *resp_error_text(int rc, const struct resp_parser *ps, char *out, size_t n);

/* Where resp_next() is in a frame: zero it to start at the first argument. */
struct resp_iter {
	size_t pos;
	uint32_t index;
};

/*
 * The next argument of a complete frame into *out; false after the last.
 * A multibulk argument points into the frame.  An inline argument is decoded
 * (quotes, escapes) into `scratch`, which needs room for cmd->len bytes and
 * must not change while the arguments are used: each argument is decoded at
 * its own offset, so earlier ones stay valid.
 */
bool resp_next(const struct resp_cmd *cmd, struct resp_iter *it, struct resp_str *out,
	       char *scratch);

/* resp_args() for any frame (inline, or past the kept arguments). */
uint32_t resp_args_walk(const struct resp_cmd *cmd, struct resp_str *v, uint32_t max,
			char *scratch);

/*
 * The first min(cmd->argc, max) arguments of a complete frame into v, as
 * resp_next() from the first would give them (scratch as there); returns
 * how many.  A command's usual few arguments are read where the parse
 * found them, here, without a call.
 */
static inline uint32_t resp_args(const struct resp_cmd *cmd, struct resp_str *v, uint32_t max,
				 char *scratch)
{
	uint32_t n = cmd->argc;

	if (cmd->inline_ || n > RESP_ARGS_KEPT || n > max)
		return resp_args_walk(cmd, v, max, scratch);
	for (uint32_t i = 0; i < n; i++) {
		v[i].p = cmd->frame + cmd->arg_at[i];
		v[i].len = (size_t)cmd->arg_len[i];
	}
	return n;
}

/* --- replies ---------------------------------------------------------------- */

/*
 * How a REPLY_REPR reply (the executor's: status and a representation) reads
 * in RESP: what the command asked for decides.  Replies of the other kinds
 * render as their kind, whatever the form.
 */
enum resp_form {
	RESP_FORM_REPLY = 0,    /* 2xx: +OK; 4xx/5xx: an error line */
	RESP_FORM_VALUE,        /* GET: 200 the value (bulk); 404 nil */
	RESP_FORM_DELETED,      /* DEL: 204 :1; 404 :0 */
	RESP_FORM_EXISTS,       /* EXISTS: 200/304 :1; 404 :0 */
	RESP_FORM_STRLEN,       /* STRLEN: 200 :<length>; 404 :0 */
	RESP_FORM_TTL,          /* TTL: 200 :<max_age> or :-1 without one; 404 :-2 */
	RESP_FORM_PTTL,         /* PTTL: the same in milliseconds */
	RESP_FORM_NONE,         /* a part of a gathered answer: nothing is written */
};

/* What of the command shapes its reply. */
struct resp_answer_to {
	uint8_t proto;          /* 2 or 3 (after HELLO 3) */
	uint8_t form;           /* enum resp_form */
};

/*
 * Appends r as one RESP reply to out.  Errors: REPLY_ERROR's text as is
 * ("ERR ..."), a REPR status >= 400 as "-ERR <text>" ("-OOM" for 507), the
 * text being the body without its final newline.  Returns 0, or -ENOMEM
 * with out unchanged.
 */
int resp_render(struct buf *out, const struct reply *r, const struct resp_answer_to *to);

/*
 * As resp_render(), but a value is not copied: *body, *body_len say which
 * bytes follow what was appended, and the caller sends "\r\n" after them
 * (*body NULL: nothing follows, the reply is whole in out).
 */
int resp_render_head(struct buf *out, const struct reply *r, const struct resp_answer_to *to,
		     const void **body, size_t *body_len);

/* The bytes resp_render() would append for r (for room reservations). */
size_t resp_render_size(const struct reply *r, const struct resp_answer_to *to);

/* Building blocks for replies made of several parts (RESP3 where it
 * differs, per `proto`).  Each returns 0 or -ENOMEM. */
int resp_add_int(struct buf *out, int64_t v);
int resp_add_bulk(struct buf *out, const void *p, size_t n);
int resp_add_nil(struct buf *out, unsigned proto);
int resp_add_array(struct buf *out, size_t n);
int resp_add_map(struct buf *out, size_t n, unsigned proto);   /* n pairs */
int resp_add_set(struct buf *out, size_t n, unsigned proto);
int resp_add_simple(struct buf *out, const char *s);
int resp_add_error(struct buf *out, const char *text);        /* "ERR ..." */
int resp_add_verbatim(struct buf *out, const void *p, size_t n, unsigned proto); /* txt */

/* string2ll() of Redis: a decimal int64 with no sign but '-', no leading
 * zero, no space; false otherwise (and *out unchanged). */
bool resp_parse_i64(const char *p, size_t n, int64_t *out);

#endif
