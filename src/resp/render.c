/*
 * render.c - struct reply to RESP2/RESP3 bytes (resp.h).
 *
 * The executor's replies (REPLY_REPR) say what happened to a key in HTTP's
 * terms: 200 with a value, 404, 201/204 stored, an error status with a line
 * of text.  The command's form says what a Redis client expects for it:
 *
 *   form      200           201/204   404     error status
 *   VALUE     $n value      +OK       nil     -ERR <text>
 *   DELETED                 :1 (204)  :0
 *   EXISTS    :1                      :0
 *   STRLEN    :n                      :0
 *   TTL/PTTL  :max_age|-1             :-2
 *   REPLY     +OK           +OK
 *
 * Replies of the other kinds (integers, nil, errors the command layer made)
 * are what they say.  RESP3 differs here only for nil ("_").
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ringcache/decimal.h"
#include "ringcache/resp.h"

/* Room for a type byte, an int64 and CRLF. */
#define NUM_MAX 24

static int add(struct buf *out, const void *p, size_t n)
{
	return buf_append(out, p, n) ? -ENOMEM : 0;
}

/* "<type><v>\r\n" at p (at most NUM_MAX bytes); its length.  No
 * snprintf(): a bulk's length is rendered for every GET, and it cost more
 * than the rest of the answer. */
static size_t fmt_num(char *p, char type, int64_t v)
{
	char *q = p;

	*q++ = type;
	if (v < 0)
		*q++ = '-';
	q = decimal_put_u64(q, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
	*q++ = '\r';
	*q++ = '\n';
	return (size_t)(q - p);
}

/* Room for `more` bytes past out->len: 0 or -ENOMEM. */
static inline int room(struct buf *out, size_t more)
{
	return out->cap - out->len < more && buf_reserve(out, more) ? -ENOMEM : 0;
}

/* A number line written in place: no copy through a temporary. */
static int add_num(struct buf *out, char type, int64_t v)
{
	if (room(out, NUM_MAX))
		return -ENOMEM;
	out->len += fmt_num(out->data + out->len, type, v);
	return 0;
}

/*
 * A bulk string's length line, with room reserved for its n bytes and CRLF
 * after it when `then` (the caller copies them in without a check of its
 * own); room for the line alone otherwise.
 */
static inline __attribute__((always_inline)) int
add_bulk_head(struct buf *out, size_t n, bool then)
{
	if (room(out, NUM_MAX + (then ? n + 2 : 0)))
		return -ENOMEM;
	out->len += fmt_num(out->data + out->len, '$', (int64_t)n);
	return 0;
}

/* The n bytes of a bulk string and its CRLF, into room add_bulk_head()
 * reserved. */
static void put_bulk_body(struct buf *out, const void *p, size_t n)
{
	char *q = out->data + out->len;

	if (n)
		memcpy(q, p, n);
	q[n] = '\r';
	q[n + 1] = '\n';
	out->len += n + 2;
}

int resp_add_int(struct buf *out, int64_t v)
{
	return add_num(out, ':', v);
}

int resp_add_array(struct buf *out, size_t n)
{
	return add_num(out, '*', (int64_t)n);
}

int resp_add_map(struct buf *out, size_t n, unsigned proto)
{
	return proto >= 3 ? add_num(out, '%', (int64_t)n) : add_num(out, '*', (int64_t)(2 * n));
}

int resp_add_set(struct buf *out, size_t n, unsigned proto)
{
	return add_num(out, proto >= 3 ? '~' : '*', (int64_t)n);
}

int resp_add_nil(struct buf *out, unsigned proto)
{
	return proto >= 3 ? add(out, "_\r\n", 3) : add(out, "$-1\r\n", 5);
}

int resp_add_bulk(struct buf *out, const void *p, size_t n)
{
	if (add_bulk_head(out, n, true))
		return -ENOMEM;
	put_bulk_body(out, p, n);
	return 0;
}

int resp_add_simple(struct buf *out, const char *s)
{
	size_t at = out->len;

	if (add(out, "+", 1) || add(out, s, strlen(s)) || add(out, "\r\n", 2)) {
		out->len = at;
		return -ENOMEM;
	}
	return 0;
}

/* An error line: CR and LF in the text become spaces, as Redis does, since
 * the text may quote what a client sent. */
static int add_error_n(struct buf *out, const char *prefix, const char *text, size_t n)
{
	size_t at = out->len;

	if (add(out, "-", 1) || add(out, prefix, strlen(prefix)))
		goto nomem;
	size_t from = out->len;
	if (add(out, text, n))
		goto nomem;
	for (size_t i = from; i < out->len; i++)
		if (out->data[i] == '\r' || out->data[i] == '\n')
			out->data[i] = ' ';
	if (add(out, "\r\n", 2))
		goto nomem;
	return 0;
nomem:
	out->len = at;
	return -ENOMEM;
}

int resp_add_error(struct buf *out, const char *text)
{
	return add_error_n(out, "", text, strlen(text));
}

int resp_add_verbatim(struct buf *out, const void *p, size_t n, unsigned proto)
{
	size_t at = out->len;

	if (proto < 3)
		return resp_add_bulk(out, p, n);
	if (add_num(out, '=', (int64_t)n + 4) || add(out, "txt:", 4) || add(out, p, n) ||
	    add(out, "\r\n", 2)) {
		out->len = at;
		return -ENOMEM;
	}
	return 0;
}

/* The error line of a REPR reply with an error status. */
static int add_status_error(struct buf *out, const struct reply *r)
{
	const char *text = r->body;
	size_t n = text ? r->body_len : 0;
	char tmp[48];

	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		n--;
	if (!n) {
		n = (size_t)snprintf(tmp, sizeof(tmp), "request failed (status %u)", r->status);
		text = tmp;
	}
	/* 503: made again for room, it could not be (fwd.h): a client may
	 * retry, which TRYAGAIN says in Redis's terms */
	return add_error_n(out, r->status == 507 ? "OOM " : r->status == 503 ? "TRYAGAIN " : "ERR ",
			   text, n);
}

/*
 * What a REPR reply is in RESP for its form: sets *kind (a reply kind
 * other than REPR) and *num, or returns false for an error line.
 */
static bool repr_as(const struct reply *r, unsigned form, uint8_t *kind, int64_t *num)
{
	unsigned st = r->status;
	bool found = st == 200 || st == 304;

	*num = 0;
	switch (form) {
	case RESP_FORM_VALUE:
		if (st == 200) {
			*kind = REPLY_BULK;
			return true;
		}
		if (st == 404) {
			*kind = REPLY_NIL;
			return true;
		}
		break;
	case RESP_FORM_DELETED:
		if (st == 204 || st == 404) {
			*kind = REPLY_INT;
			*num = st == 204;
			return true;
		}
		break;
	case RESP_FORM_EXISTS:
	case RESP_FORM_STRLEN:
	case RESP_FORM_TTL:
	case RESP_FORM_PTTL:
		if (!found && st != 404)
			break;
		*kind = REPLY_INT;
		if (form == RESP_FORM_EXISTS)
			*num = found;
		else if (form == RESP_FORM_STRLEN)
			*num = found ? (int64_t)r->body_len : 0;
		else if (!found)
			*num = -2;
		else if (!r->has_max_age)
			*num = -1;
		else
			*num = form == RESP_FORM_TTL ? (int64_t)r->max_age
						     : (int64_t)r->max_age * 1000;
		return true;
	default:
		break;
	}
	if (st < 400) {
		*kind = REPLY_OK;
		return true;
	}
	return false;
}

/*
 * resp_render_head(); `copy`: the caller copies a bulk body in after the
 * head, and room for it is reserved with the head's.  Inlined into both
 * callers: a GET's answer passed through *body and a call cost more than
 * the head.
 */
static inline __attribute__((always_inline)) int
render_head(struct buf *out, const struct reply *r, const struct resp_answer_to *to,
	    const void **body, size_t *body_len, bool copy)
{
	uint8_t kind = r->kind;
	int64_t num = r->num;

	*body = NULL;
	*body_len = 0;
	if (to->form == RESP_FORM_NONE)
		return 0;
	if (kind == REPLY_REPR && !repr_as(r, to->form, &kind, &num))
		return add_status_error(out, r);
	switch (kind) {
	case REPLY_INT: return resp_add_int(out, num);
	case REPLY_NIL: return resp_add_nil(out, to->proto);
	case REPLY_OK: return add(out, "+OK\r\n", 5);
	case REPLY_BULK:
		if (add_bulk_head(out, r->body_len, copy))
			return -ENOMEM;
		/* an empty value may have no address (an empty buffer's data is
		 * NULL): its CRLF still follows, or the client reads the next
		 * reply as its bytes */
		*body = r->body ? r->body : "";
		*body_len = r->body_len;
		return 0;
	case REPLY_SIMPLE: {
		size_t at = out->len;
		if (add(out, "+", 1) || add(out, r->body, r->body_len) || add(out, "\r\n", 2)) {
			out->len = at;
			return -ENOMEM;
		}
		return 0;
	}
	case REPLY_ERROR: return add_error_n(out, "", r->body, r->body_len);
	case REPLY_RAW: return add(out, r->body, r->body_len);
	default: return add_status_error(out, r);
	}
}

int resp_render_head(struct buf *out, const struct reply *r, const struct resp_answer_to *to,
		     const void **body, size_t *body_len)
{
	return render_head(out, r, to, body, body_len, false);
}

int resp_render(struct buf *out, const struct reply *r, const struct resp_answer_to *to)
{
	const void *body;
	size_t n;

	if (render_head(out, r, to, &body, &n, true))
		return -ENOMEM;
	if (body)
		put_bulk_body(out, body, n);
	return 0;
}

size_t resp_render_size(const struct reply *r, const struct resp_answer_to *to)
{
	uint8_t kind = r->kind;
	int64_t num;

	if (to->form == RESP_FORM_NONE)
		return 0;
	if (kind == REPLY_REPR && !repr_as(r, to->form, &kind, &num))
		return r->body_len + 64;
	switch (kind) {
	case REPLY_BULK:
	case REPLY_SIMPLE:
	case REPLY_ERROR:
	case REPLY_RAW:
		return r->body_len + NUM_MAX + 2;
	default:
		return NUM_MAX;
	}
}
