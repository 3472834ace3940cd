/*
 * chunked.c - incremental decoder for the chunked transfer coding
 * (RFC 9112 7.1), byte-exact at any split of the input.
 *
 * The decoder is a state machine over the body bytes; everything it must
 * remember between calls fits in struct http_chunked.  `state` packs the
 * state number (low 4 bits) with a count of the bytes spent in the current
 * framing line (the rest): the digits of a chunk size, the length of its
 * extension, or the size of the trailer section, each of which is bounded
 * so that a peer cannot keep one body open with framing alone.
 *
 *   SIZE --hex--> SIZE --SP/HTAB--> SIZE_WS --;--> EXT --CR--> SIZE_LF
 *     |                                 \---;------/  \--LF--.     |LF
 *     +------------------------------CR/LF---------------------+---'
 *                                                              v
 *        size > 0: DATA --(size bytes)--> DATA_CR --CR--> DATA_LF --LF--> SIZE
 *                                                 \--LF-----------------> SIZE
 *        size = 0: TRAILER --CR--> END_LF --LF--> done
 *                     |  \--LF--> done
 *                     `--tchar--> NAME --:--> FIELD --CR--> FIELD_LF --LF--> TRAILER
 *                                                  \--LF---------------------^
 *
 * Trailer fields are checked as the head's field lines are (a token, ':',
 * a field value; no obs-fold, no control bytes, no bare CR) and then
 * dropped: the cache has no use for them, and a body whose framing a
 * front end could read differently is refused, not skipped over.
 */
#include "ringcache/http.h"
#include "ctab.h"

enum {
	S_SIZE,       /* chunk-size digits; count = digits so far */
	S_SIZE_WS,    /* BWS after the size, before ';' or the line end */
	S_EXT,        /* chunk extension, skipped */
	S_SIZE_LF,    /* CR seen at the end of the size line */
	S_DATA,       /* `remaining` data bytes to copy */
	S_DATA_CR,    /* CRLF after the data */
	S_DATA_LF,
	S_TRAILER,    /* at the start of a trailer line */
	S_NAME,       /* in a trailer field's name */
	S_FIELD,      /* in a trailer field's value, skipped */
	S_FIELD_LF,   /* CR seen at the end of a trailer field line */
	S_END_LF,     /* CR of the final empty line seen */
	S_DONE,       /* complete: further calls consume nothing */
};

#define MAX_SIZE_DIGITS 15
#define MAX_SIZE_LINE 4096u      /* size, BWS and extension of one chunk */
#define MAX_TRAILER 16384u       /* the whole trailer section */

#define STATE(st, count) ((uint32_t)(st) | (uint32_t)(count) << 4)

static inline int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int http_chunked_feed(struct http_chunked *c, const char *in, size_t len,
		      size_t *used, struct buf *out, uint64_t max)
{
	uint32_t st = c->state & 15, count = c->state >> 4;
	size_t i = 0;
	int rc = st == S_DONE ? 1 : HTTP_AGAIN;

	while (i < len && rc == HTTP_AGAIN) {
		uint8_t ch = (uint8_t)in[i];

		switch (st) {
		case S_SIZE: {
			int h = hexval(ch);
			if (h >= 0) {
				if (count == MAX_SIZE_DIGITS) {
					rc = -400;
					goto out;
				}
				c->remaining = c->remaining << 4 | (uint64_t)h;
				count++;
				i++;
				continue;
			}
			if (count == 0) {
				rc = -400;
				goto out;
			}
			if (ch == ' ' || ch == '\t')
				st = S_SIZE_WS;
			else if (ch == ';')
				st = S_EXT;
			else if (ch == '\r')
				st = S_SIZE_LF;
			else if (ch != '\n') {
				rc = -400;
				goto out;
			}
			break;
		}
		case S_SIZE_WS:
			if (ch == ';')
				st = S_EXT;
			else if (ch == '\r')
				st = S_SIZE_LF;
			else if (ch != ' ' && ch != '\t' && ch != '\n') {
				rc = -400;
				goto out;
			}
			break;
		case S_EXT:
			/* token or quoted-string, not checked further: it
			 * only has to end where every reader sees it end */
			if (ch == '\r')
				st = S_SIZE_LF;
			else if (ch != '\n' && !(http_ctab[ch] & C_VALUE)) {
				rc = -400;
				goto out;
			}
			break;
		case S_SIZE_LF:
			if (ch != '\n') {
				rc = -400;
				goto out;
			}
			break;
		case S_DATA: {
			size_t n = len - i;
			if (n > c->remaining)
				n = (size_t)c->remaining;
			/* out of memory is the server's fault, and 500 is what
			 * the server answers for it (http.h) */
			if (out && buf_append(out, in + i, n) != 0) {
				rc = -500;
				goto out;
			}
			c->remaining -= n;
			c->total += n;
			i += n;
			if (c->remaining == 0)
				st = S_DATA_CR;
			continue;
		}
		case S_DATA_CR:
			if (ch == '\r') {
				st = S_DATA_LF;
				i++;
				continue;
			}
			if (ch != '\n') {
				rc = -400;
				goto out;
			}
			st = S_SIZE;
			count = 0;
			i++;
			continue;
		case S_DATA_LF:
			if (ch != '\n') {
				rc = -400;
				goto out;
			}
			st = S_SIZE;
			count = 0;
			i++;
			continue;
		case S_TRAILER:
			if (ch == '\r') {
				st = S_END_LF;
			} else if (ch == '\n') {
				i++;
				st = S_DONE;
				rc = 1;
				goto out;
			} else if (http_ctab[ch] & C_TCHAR) {
				st = S_NAME;
			} else {
				/* obs-fold, an empty name, a control byte */
				rc = -400;
				goto out;
			}
			break;
		case S_NAME:
			if (ch == ':') {
				st = S_FIELD;
			} else if (!(http_ctab[ch] & C_TCHAR)) {
				rc = -400;
				goto out;
			}
			break;
		case S_FIELD:
			if (ch == '\r') {
				st = S_FIELD_LF;
			} else if (ch == '\n') {
				st = S_TRAILER;
			} else if (!(http_ctab[ch] & C_VALUE)) {
				rc = -400;
				goto out;
			}
			break;
		case S_FIELD_LF:
			if (ch != '\n') {
				rc = -400;
				goto out;
			}
			st = S_TRAILER;
			break;
		case S_END_LF:
			if (ch != '\n') {
				rc = -400;
				goto out;
			}
			i++;
			st = S_DONE;
			rc = 1;
			goto out;
		}

		/* a framing byte: count it against its line's budget */
		i++;
		count++;
		if (st >= S_TRAILER) {
			if (count > MAX_TRAILER) {
				rc = -400;
				goto out;
			}
			continue;
		}
		if (count > MAX_SIZE_LINE) {
			rc = -400;
			goto out;
		}
		if (ch != '\n')
			continue;

		/* the size line is complete */
		if (c->remaining == 0) {
			st = S_TRAILER;
			count = 0;
			continue;
		}
		if (c->total > max || c->remaining > max - c->total) {
			rc = -413;
			goto out;
		}
		st = S_DATA;
		count = 0;
	}
out:
	c->state = STATE(st, count);
	*used = i;
	return rc;
}
