/*
 * parse.c - RESP commands off the wire (resp.h): validation as the bytes
 * arrive, then a walk over the arguments of a complete frame.
 *
 * Redis's own reader (networking.c, processMultibulkBuffer and
 * processInlineBuffer) is the reference for what is accepted and for the
 * words of every error; where it depends on how the bytes were split across
 * reads (a line over 64 KiB is refused only if no CR has arrived yet), this
 * parser decides on the bytes alone.  Like Redis, it does not check that the
 * two bytes after a bulk string are CRLF: it skips them.
 *
 * Multibulk, the state after each call:
 *
 *   *3\r\n $3\r\nSET\r\n $1\r\nk\r\n $5\r\nhel...
 *   ^count  ^ got=1      ^ got=2     ^ pos: header read, bulk=5, waiting
 *
 * Nothing is allocated: the state is a few offsets into the frame, which the
 * caller keeps at the start of its buffer between calls.
 *
 * A frame whose bytes have all come with the first call, its lengths of 1 to
 * 3 digits (a client's GET or SET), is read in one pass with no state kept
 * (parse_whole); anything else, and anything it doubts, goes the general way
 * above from the frame's start, which decides every error.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "ringcache/resp.h"

enum { KIND_NONE = 0, KIND_MULTIBULK, KIND_INLINE };

bool resp_parse_i64(const char *s, size_t slen, int64_t *out)
{
	const char *p = s;
	size_t plen = 0;
	bool negative = false;
	uint64_t v;

	/* Redis's string2ll(), LONG_STR_SIZE 21 */
	if (slen == 0 || slen >= 21)
		return false;
	if (slen == 1 && p[0] == '0') {
		*out = 0;
		return true;
	}
	if (p[0] == '-') {
		negative = true;
		p++;
		plen++;
		if (plen == slen)
			return false;
	}
	if (p[0] >= '1' && p[0] <= '9') {
		v = (uint64_t)(p[0] - '0');
		p++;
		plen++;
	} else {
		return false;
	}
	while (plen < slen && p[0] >= '0' && p[0] <= '9') {
		if (v > UINT64_MAX / 10)
			return false;
		v *= 10;
		if (v > UINT64_MAX - (uint64_t)(p[0] - '0'))
			return false;
		v += (uint64_t)(p[0] - '0');
		p++;
		plen++;
	}
	if (plen < slen)
		return false;
	if (negative) {
		if (v > (uint64_t)INT64_MAX + 1)
			return false;
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	} else {
		if (v > (uint64_t)INT64_MAX)
			return false;
		*out = (int64_t)v;
	}
	return true;
}

/* isspace() in the C locale, as sdssplitargs() uses it between words. */
static inline bool blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

static inline int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * One word of an inline line p[*pos..end), as sdssplitargs() reads it:
 * blanks skipped, "double quotes" with \n \r \t \b \a \xHH and \<any>,
 * 'single quotes' with \', and a closing quote that must end the word.
 * Decodes into out (NULL: only counts) and sets *n.  Returns 1 for a word,
 * 0 at the end of the line, -1 for unbalanced quotes.
 */
static int inline_word(const char *line, size_t end, size_t *pos, char *out, size_t *n)
{
	size_t i = *pos, k = 0;
	bool inq = false, insq = false;

	while (i < end && blank(line[i]))
		i++;
	if (i == end) {
		*pos = i;
		return 0;
	}
	for (;;) {
		char ch = i < end ? line[i] : '\0';
		bool more = i + 1 < end;
		if (inq) {
			if (ch == '\\' && more && line[i + 1] == 'x' && i + 3 < end &&
			    hexval(line[i + 2]) >= 0 && hexval(line[i + 3]) >= 0) {
				if (out)
					out[k] = (char)(hexval(line[i + 2]) * 16 + hexval(line[i + 3]));
				k++;
				i += 3;
			} else if (ch == '\\' && more) {
				char c2 = line[++i];
				switch (c2) {
				case 'n': c2 = '\n'; break;
				case 'r': c2 = '\r'; break;
				case 't': c2 = '\t'; break;
				case 'b': c2 = '\b'; break;
				case 'a': c2 = '\a'; break;
				default: break;
				}
				if (out)
					out[k] = c2;
				k++;
			} else if (ch == '"') {
				/* the closing quote must be followed by a blank or nothing */
				if (more && !blank(line[i + 1]))
					return -1;
				i++;
				break;
			} else if (i >= end) {
				return -1;
			} else {
				if (out)
					out[k] = ch;
				k++;
			}
		} else if (insq) {
			if (ch == '\\' && more && line[i + 1] == '\'') {
				i++;
				if (out)
					out[k] = '\'';
				k++;
			} else if (ch == '\'') {
				if (more && !blank(line[i + 1]))
					return -1;
				i++;
				break;
			} else if (i >= end) {
				return -1;
			} else {
				if (out)
					out[k] = ch;
				k++;
			}
		} else {
			if (i >= end || ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
				break;
			if (ch == '"') {
				inq = true;
			} else if (ch == '\'') {
				insq = true;
			} else {
				if (out)
					out[k] = ch;
				k++;
			}
		}
		i++;
	}
	*pos = i;
	*n = k;
	return 1;
}

/* The part of an inline frame sdssplitargs() sees: up to the line end (a CR
 * before the LF excluded) or the first NUL, where a C string would end. */
static size_t inline_end(const char *frame, size_t line)
{
	const char *nul = memchr(frame, '\0', line);

	return nul ? (size_t)(nul - frame) : line;
}

static __attribute__((noinline)) int parse_inline(struct resp_parser *ps, const char *buf,
						  size_t len, struct resp_cmd *cmd)
{
	size_t limit = len < (size_t)RESP_LINE_MAX + 1 ? len : (size_t)RESP_LINE_MAX + 1;
	size_t from = ps->pos < limit ? (size_t)ps->pos : limit;
	const char *nl = memchr(buf + from, '\n', limit - from);

	if (!nl) {
		if (len > RESP_LINE_MAX)
			return -RESP_E_INLINE_TOO_BIG;
		ps->pos = len;  /* looked at already: not scanned again */
		return RESP_AGAIN;
	}
	size_t line = (size_t)(nl - buf);
	if (line > 0 && buf[line - 1] == '\r')
		line--;
	size_t end = inline_end(buf, line), pos = 0, n;
	uint32_t argc = 0;
	int rc;
	while ((rc = inline_word(buf, end, &pos, NULL, &n)) == 1)
		argc++;
	if (rc < 0)
		return -RESP_E_UNBALANCED;
	cmd->frame = buf;
	cmd->len = (size_t)(nl - buf) + 1;
	cmd->argc = argc;
	cmd->inline_ = true;
	return 1;
}

/* memchr(p, '\r', n), looking at a short line's bytes first: a command's
 * lines ("*2", "$3") are a few bytes, and memchr's setup costs more. */
static inline const char *cr_in(const char *p, size_t n)
{
	size_t quick = n < 8 ? n : 8;

	for (size_t i = 0; i < quick; i++)
		if (p[i] == '\r')
			return p + i;
	return n > 8 ? memchr(p + 8, '\r', n - 8) : NULL;
}

/*
 * A length line at buf[at..): its CR within RESP_LINE_MAX bytes, and a byte
 * after it.  Returns the CR's offset, 0 to wait, or -1 when no CR came in
 * RESP_LINE_MAX bytes.
 */
static long find_cr(const char *buf, size_t len, size_t at)
{
	size_t avail = len - at;
	size_t scan = avail < (size_t)RESP_LINE_MAX + 1 ? avail : (size_t)RESP_LINE_MAX + 1;
	const char *cr = cr_in(buf + at, scan);

	if (!cr)
		return avail > RESP_LINE_MAX ? -1 : 0;
	if ((size_t)(cr - buf) + 1 >= len)
		return 0;       /* the LF (or what stands for it) has not come */
	return cr - buf;
}

/*
 * A short length line at buf[at..): `type`, 1 to 3 digits with no leading
 * zero (or "0"), CR, and a byte after it, all before len.  Sets *n and
 * returns the offset after the line; 0: not so simple, the general path
 * decides (errors included).  Nearly every line of a command is this.
 */
static inline size_t short_line(const char *buf, size_t len, size_t at, char type, uint32_t *n)
{
	const unsigned char *p = (const unsigned char *)buf + at;
	unsigned d0, d1, d2;

	/* the longest such line, "$999\r\n", is 6 bytes: reading that many
	 * needs no check per byte; a shorter line this near the end is the
	 * general path's */
	if (len - at < 6 || p[0] != (unsigned char)type)
		return 0;
	d0 = (unsigned)p[1] - '0';
	if (d0 > 9)
		return 0;
	if (p[2] == '\r') {
		*n = d0;
		return at + 4;
	}
	d1 = (unsigned)p[2] - '0';
	if (d0 == 0 || d1 > 9)
		return 0;
	if (p[3] == '\r') {
		*n = d0 * 10 + d1;
		return at + 5;
	}
	d2 = (unsigned)p[3] - '0';
	if (d2 > 9 || p[4] != '\r')
		return 0;
	*n = d0 * 100 + d1 * 10 + d2;
	return at + 6;
}

/*
 * A whole multibulk frame in one pass, when every length line is short and
 * every byte has come (a client's usual command, read whole): fills *cmd and
 * returns 1, or returns 0 having changed nothing the general path reads,
 * which then parses the frame from its start.  It accepts only what the
 * general path accepts, with the same frame and arguments.
 */
static int parse_whole(const char *buf, size_t len, const struct resp_limits *lim,
		       struct resp_cmd *cmd)
{
	uint32_t argc, n;
	size_t pos = short_line(buf, len, 0, '*', &argc);

	if (!pos)
		return 0;
	for (uint32_t i = 0; i < argc; i++) {
		size_t at = short_line(buf, len, pos, '$', &n);
		if (!at || n > lim->max_bulk || (uint64_t)at + n + 2 > lim->max_command ||
		    len - at < (size_t)n + 2)
			return 0;
		if (i < RESP_ARGS_KEPT) {
			cmd->arg_at[i] = at;
			cmd->arg_len[i] = n;
		}
		pos = at + n + 2;
	}
	cmd->frame = buf;
	cmd->len = pos;
	cmd->argc = argc;
	cmd->inline_ = false;
	return 1;
}

/* The general multibulk path, as the bytes arrive.  Out of line: inlined,
 * its registers would be saved and restored around every one-pass parse. */
static __attribute__((noinline)) int parse_multibulk(struct resp_parser *ps, const char *buf,
						     size_t len, const struct resp_limits *lim,
						     struct resp_cmd *cmd)
{
	if (ps->pos == 0) {
		long cr = find_cr(buf, len, 0);
		int64_t n;
		if (cr < 0)
			return -RESP_E_MBULK_TOO_BIG;
		if (cr == 0)
			return RESP_AGAIN;
		if (!resp_parse_i64(buf + 1, (size_t)cr - 1, &n) || n > RESP_ARGS_MAX)
			return -RESP_E_MBULK_LEN;
		ps->pos = (uint64_t)cr + 2;
		ps->argc = n > 0 ? (uint32_t)n : 0;
		ps->got = 0;
		ps->bulk = -1;
	}
	while (ps->got < ps->argc) {
		if (ps->bulk < 0) {
			long cr = find_cr(buf, len, (size_t)ps->pos);
			int64_t n;
			if (cr < 0)
				return -RESP_E_BULK_TOO_BIG;
			if (cr == 0)
				return RESP_AGAIN;
			if (buf[ps->pos] != '$') {
				ps->bad = buf[ps->pos];
				return -RESP_E_EXPECTED_DOLLAR;
			}
			if (!resp_parse_i64(buf + ps->pos + 1, (size_t)cr - (size_t)ps->pos - 1, &n) ||
			    n < 0 || (uint64_t)n > lim->max_bulk)
				return -RESP_E_BULK_LEN;
			ps->pos = (uint64_t)cr + 2;
			if (ps->pos + (uint64_t)n + 2 > lim->max_command)
				return -RESP_E_COMMAND_TOO_BIG;
			ps->bulk = n;
			if (ps->got < RESP_ARGS_KEPT) {
				ps->arg_at[ps->got] = ps->pos;
				ps->arg_len[ps->got] = (uint64_t)n;
			}
		}
		if (len - ps->pos < (uint64_t)ps->bulk + 2)
			return RESP_AGAIN;
		ps->pos += (uint64_t)ps->bulk + 2;
		ps->bulk = -1;
		ps->got++;
	}
	cmd->frame = buf;
	cmd->len = (size_t)ps->pos;
	cmd->argc = ps->argc;
	cmd->inline_ = false;
	memcpy(cmd->arg_at, ps->arg_at, sizeof(cmd->arg_at));
	memcpy(cmd->arg_len, ps->arg_len, sizeof(cmd->arg_len));
	return 1;
}

int resp_parse(struct resp_parser *ps, const char *buf, size_t len,
	       const struct resp_limits *lim, struct resp_cmd *cmd)
{
	if (ps->kind == KIND_NONE) {
		if (len == 0)
			return RESP_AGAIN;
		if (buf[0] == '*' && parse_whole(buf, len, lim, cmd))
			return 1;
		ps->kind = buf[0] == '*' ? KIND_MULTIBULK : KIND_INLINE;
	}
	if (ps->kind == KIND_INLINE)
		return parse_inline(ps, buf, len, cmd);
	return parse_multibulk(ps, buf, len, lim, cmd);
}

const char *resp_error_text(int rc, const struct resp_parser *ps, char *out, size_t n)
{
	const char *what = "unknown error";

	switch (-rc) {
	case RESP_E_INLINE_TOO_BIG: what = "too big inline request"; break;
	case RESP_E_UNBALANCED: what = "unbalanced quotes in request"; break;
	case RESP_E_MBULK_TOO_BIG: what = "too big mbulk count string"; break;
	case RESP_E_MBULK_LEN: what = "invalid multibulk length"; break;
	case RESP_E_BULK_TOO_BIG: what = "too big bulk count string"; break;
	case RESP_E_BULK_LEN: what = "invalid bulk length"; break;
	case RESP_E_COMMAND_TOO_BIG: what = "command too large"; break;
	case RESP_E_EXPECTED_DOLLAR:
		/* Redis prints the byte with %c: a NUL ends its message there */
		if (ps->bad == '\0')
			snprintf(out, n, "Protocol error: expected '$', got '");
		else
			snprintf(out, n, "Protocol error: expected '$', got '%c'", ps->bad);
		return out;
	default: break;
	}
	snprintf(out, n, "Protocol error: %s", what);
	return out;
}

bool resp_next(const struct resp_cmd *cmd, struct resp_iter *it, struct resp_str *out,
	       char *scratch)
{
	if (it->index >= cmd->argc)
		return false;
	if (cmd->inline_) {
		size_t line = cmd->len - 1, n, start;
		if (line > 0 && cmd->frame[line - 1] == '\r')
			line--;
		size_t end = inline_end(cmd->frame, line), pos = it->pos;
		while (pos < end && blank(cmd->frame[pos]))
			pos++;
		start = pos;
		if (inline_word(cmd->frame, end, &pos, scratch + start, &n) != 1)
			return false;   /* cannot happen in a validated frame */
		out->p = scratch + start;
		out->len = n;
		it->pos = pos;
		it->index++;
		return true;
	}
	const char *f = cmd->frame;
	size_t pos = it->pos;
	if (it->index < RESP_ARGS_KEPT) {
		/* where the parse found it */
		out->p = f + cmd->arg_at[it->index];
		out->len = (size_t)cmd->arg_len[it->index];
		it->pos = (size_t)cmd->arg_at[it->index] + out->len + 2;
		it->index++;
		return true;
	}
	if (pos == 0)
		pos = (size_t)(cr_in(f, cmd->len) - f) + 2;
	const char *cr = cr_in(f + pos, cmd->len - pos);
	int64_t n = 0;
	resp_parse_i64(f + pos + 1, (size_t)(cr - f) - pos - 1, &n);
	pos = (size_t)(cr - f) + 2;
	out->p = f + pos;
	out->len = (size_t)n;
	it->pos = pos + (size_t)n + 2;
	it->index++;
	return true;
}

uint32_t resp_args_walk(const struct resp_cmd *cmd, struct resp_str *v, uint32_t max,
			char *scratch)
{
	uint32_t n = cmd->argc < max ? cmd->argc : max, i = 0;
	struct resp_iter it = { 0 };

	if (!cmd->inline_) {
		uint32_t kept = n < RESP_ARGS_KEPT ? n : RESP_ARGS_KEPT;
		for (; i < kept; i++) {
			v[i].p = cmd->frame + cmd->arg_at[i];
			v[i].len = (size_t)cmd->arg_len[i];
		}
		if (i == n)
			return n;
		it.pos = (size_t)cmd->arg_at[i - 1] + v[i - 1].len + 2;
		it.index = i;
	}
	for (; i < n && resp_next(cmd, &it, &v[i], scratch); i++)
		;
	return i;
}
