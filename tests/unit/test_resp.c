/*
 * test_resp.c - the RESP parser and renderer (src/resp/).
 *
 * Every command is parsed whole, then fed at every split point (and a byte
 * at a time): the result, the frame length and the arguments must not depend
 * on how the bytes arrived.  Each input sits at the end of a buffer followed
 * by a guard page, so a read past the bytes given faults.  Errors are
 * checked for Redis's words (networking.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "ringcache/resp.h"

static const struct resp_limits lim = { .max_bulk = 1024, .max_command = 4096 };

/* n bytes of s placed right before a PROT_NONE page. */
static char *guarded(const char *s, size_t n, void **map, size_t *maplen)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (n + pg - 1) / pg + 1;
	char *m = mmap(NULL, (pages + 1) * pg, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	mprotect(m + pages * pg, pg, PROT_NONE);
	char *p = m + pages * pg - n;
	memcpy(p, s, n);
	*map = m;
	*maplen = (pages + 1) * pg;
	return p;
}

/* Parses s fed as prefixes of growing length, starting with the first `first`
 * bytes, then one more byte each time; returns the final result. */
static int parse_fed(const char *s, size_t n, size_t first, struct resp_cmd *cmd,
		     struct resp_parser *ps)
{
	int rc = RESP_AGAIN;

	resp_parser_init(ps);
	for (size_t len = first; len <= n; len++) {
		void *map;
		size_t maplen;
		char *p = guarded(s, len, &map, &maplen);
		rc = resp_parse(ps, p, len, &lim, cmd);
		if (rc == 1) {
			/* the frame must be usable after the call: point at s */
			cmd->frame = s;
		}
		munmap(map, maplen);
		if (rc != RESP_AGAIN)
			return rc;
	}
	return rc;
}

/* Joins the arguments as "a|b|c" for comparison; resp_args() must give the
 * first of them as resp_next() does (its own scratch: an inline argument is
 * decoded there). */
static void join_args(const struct resp_cmd *cmd, char *out, size_t n)
{
	enum { MAX = 5 };       /* past RESP_ARGS_KEPT: resp_args() walks on */
	struct resp_iter it = { 0 };
	struct resp_str a, v[MAX];
	char *scratch = malloc(cmd->len + 1), *scratch2 = malloc(cmd->len + 1);
	uint32_t got = resp_args(cmd, v, MAX, scratch2);
	size_t k = 0;

	struct resp_str two[2];
	uint32_t got2 = resp_args(cmd, two, 2, scratch2);

	CHECK_EQ(got, cmd->argc < MAX ? cmd->argc : MAX);
	CHECK_EQ(got2, cmd->argc < 2 ? cmd->argc : 2);
	for (uint32_t j = 0; j < got2; j++)
		CHECK(two[j].p == v[j].p && two[j].len == v[j].len);
	out[0] = '\0';
	while (resp_next(cmd, &it, &a, scratch)) {
		uint32_t j = it.index - 1;
		if (j < got && (v[j].len != a.len || memcmp(v[j].p, a.p, a.len) != 0)) {
			fprintf(stderr, "resp_args: argument %u differs\n", j);
			CHECK(0);
		}
		if (it.index > 1 && k + 1 < n)
			out[k++] = '|';
		for (size_t i = 0; i < a.len && k + 1 < n; i++)
			out[k++] = a.p[i];
		out[k] = '\0';
	}
	free(scratch);
	free(scratch2);
}

/*
 * s (n bytes) must parse to `want` (1, 0 or -error) with a frame of
 * `frame_len` bytes and arguments "a|b" at every split point.
 */
static void expect(const char *s, size_t n, int want, size_t frame_len, const char *args)
{
	/* every split point of short inputs; of long ones, a few (each run
	 * still feeds the rest a byte at a time) */
	size_t step = n > 256 ? n / 4 : 1;

	for (size_t first = 0; first <= n; first += step) {
		struct resp_cmd cmd;
		struct resp_parser ps;
		int rc = parse_fed(s, n, first, &cmd, &ps);
		if (rc != want) {
			fprintf(stderr, "split %zu of %.*s: rc %d, want %d\n", first,
				(int)(n < 60 ? n : 60), s, rc, want);
			CHECK(rc == want);
			return;
		}
		if (rc == 1) {
			char got[2048];
			join_args(&cmd, got, sizeof(got));
			if (cmd.len != frame_len || strcmp(got, args) != 0) {
				fprintf(stderr, "split %zu of %.*s: len %zu args '%s', want %zu '%s'\n",
					first, (int)n, s, cmd.len, got, frame_len, args);
				CHECK(0);
				return;
			}
		}
	}
	CHECK(1);
}

#define EXPECT_OK(lit, len, args) expect(lit, sizeof(lit) - 1, 1, len, args)
#define EXPECT_RC(lit, rc) expect(lit, sizeof(lit) - 1, rc, 0, "")

static void test_multibulk(void)
{
	EXPECT_OK("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 20, "GET|k");
	EXPECT_OK("*1\r\n$4\r\nPING\r\n", 14, "PING");
	EXPECT_OK("*3\r\n$3\r\nSET\r\n$0\r\n\r\n$2\r\na\0\r\n", 27, "SET||a");
	/* what follows a frame is not part of it */
	EXPECT_OK("*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", 14, "PING");
	/* binary in a bulk string, CRLF included */
	EXPECT_OK("*2\r\n$4\r\nECHO\r\n$4\r\n\r\n\r\n\r\n", 24, "ECHO|\r\n\r\n");
	/* past the arguments whose places the parse keeps (RESP_ARGS_KEPT):
	 * resp_next() reads the later ones' lengths itself */
	EXPECT_OK("*6\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$4\r\nx\r\ny\r\n"
		  "$1\r\nc\r\n", 52, "MSET|a|1|b|x\r\ny|c");
	EXPECT_OK("*5\r\n$3\r\nDEL\r\n$2\r\nk1\r\n$2\r\nk2\r\n$2\r\nk3\r\n$2\r\nk4\r\n", 45,
		  "DEL|k1|k2|k3|k4");
	/* empty commands: skipped by the caller */
	EXPECT_OK("*0\r\n", 4, "");
	EXPECT_OK("*-1\r\n", 5, "");
	/* Redis skips the two bytes after a bulk without looking at them */
	EXPECT_OK("*1\r\n$4\r\nPINGxy", 14, "PING");
	/* a CR not followed by LF still ends a length line, as in Redis */
	EXPECT_OK("*1\rX$4\rXPINGxy", 14, "PING");
	/* lengths of 1, 2, 3 and 4 digits: a whole frame of short lines is read
	 * in one pass (parse.c, parse_whole), any other by the general path,
	 * with one result */
	EXPECT_OK("*3\r\n$3\r\nSET\r\n$10\r\n0123456789\r\n$100\r\n"
		  "0123456789012345678901234567890123456789012345678901234567890123456789"
		  "012345678901234567890123456789\r\n", 138,
		  "SET|0123456789|0123456789012345678901234567890123456789012345678901234567890123456789"
		  "012345678901234567890123456789");
	{
		static char big[1100], want[1100];
		size_t n = (size_t)sprintf(big, "*2\r\n$4\r\nECHO\r\n$1000\r\n");
		memset(big + n, 'v', 1000);
		memcpy(big + n + 1000, "\r\n", 2);
		memcpy(want, "ECHO|", 5);
		memset(want + 5, 'v', 1000);
		expect(big, n + 1002, 1, n + 1002, want);
	}
	/* an empty command followed by more bytes, and a frame ending exactly
	 * at the bytes given with a short last line */
	EXPECT_OK("*0\r\n*1\r\n", 4, "");
	EXPECT_OK("*1\r\n$0\r\n\r\n", 10, "");
	/* incomplete: more is needed */
	EXPECT_RC("*2\r\n$3\r\nGET\r\n$1\r\nk", RESP_AGAIN);
	EXPECT_RC("*2\r\n$3\r\nGET\r\n$100\r\nk\r\n", RESP_AGAIN);
	EXPECT_RC("*", RESP_AGAIN);
}

static void test_multibulk_errors(void)
{
	char msg[96];
	struct resp_parser ps;

	EXPECT_RC("*abc\r\n", -RESP_E_MBULK_LEN);
	EXPECT_RC("*+1\r\n", -RESP_E_MBULK_LEN);
	EXPECT_RC("*01\r\n", -RESP_E_MBULK_LEN);
	EXPECT_RC("*1048577\r\n", -RESP_E_MBULK_LEN);
	EXPECT_RC("*9223372036854775808\r\n", -RESP_E_MBULK_LEN);
	EXPECT_RC("*1\r\n$-1\r\n", -RESP_E_BULK_LEN);
	EXPECT_RC("*1\r\n$x\r\n", -RESP_E_BULK_LEN);
	EXPECT_RC("*1\r\n$1025\r\n", -RESP_E_BULK_LEN);        /* over max_bulk */
	EXPECT_RC("*1\r\n:1\r\n", -RESP_E_EXPECTED_DOLLAR);
	/* leading zeros and signs in a short line, with the whole frame there */
	EXPECT_RC("*1\r\n$01\r\nx\r\n", -RESP_E_BULK_LEN);
	EXPECT_RC("*1\r\n$00\r\n\r\n", -RESP_E_BULK_LEN);
	EXPECT_RC("*1\r\n$+1\r\nx\r\n", -RESP_E_BULK_LEN);
	EXPECT_RC("*01\r\n$1\r\nx\r\n", -RESP_E_MBULK_LEN);
	EXPECT_RC("*1\r\n$1x\r\nx\r\n", -RESP_E_BULK_LEN);
	/* the limits hold for a whole frame read in one pass too */
	{
		static const struct resp_limits small = { .max_bulk = 5, .max_command = 22 };
		static const char bulk6[] = "*1\r\n$6\r\nabcdef\r\n";
		static const char cmd23[] = "*2\r\n$3\r\nabc\r\n$4\r\nabcd\r\n";
		static const char cmd22[] = "*2\r\n$3\r\nabc\r\n$3\r\nabc\r\n";
		struct resp_cmd cmd;
		resp_parser_init(&ps);
		CHECK_EQ(resp_parse(&ps, bulk6, sizeof(bulk6) - 1, &small, &cmd), -RESP_E_BULK_LEN);
		resp_parser_init(&ps);
		CHECK_EQ(resp_parse(&ps, cmd23, sizeof(cmd23) - 1, &small, &cmd),
			 -RESP_E_COMMAND_TOO_BIG);
		resp_parser_init(&ps);
		CHECK_EQ(resp_parse(&ps, cmd22, sizeof(cmd22) - 1, &small, &cmd), 1);
		CHECK_EQ(cmd.len, 22);
	}
	/* 4 bulks of 1000 bytes: over max_command before the bytes come */
	EXPECT_RC("*4\r\n$1000\r\n", RESP_AGAIN);
	{
		static char big[5000];
		size_t n = (size_t)sprintf(big, "*5\r\n");
		for (int i = 0; i < 4; i++) {
			n += (size_t)sprintf(big + n, "$1000\r\n");
			memset(big + n, 'x', 1000);
			n += 1000;
			n += (size_t)sprintf(big + n, "\r\n");
		}
		n += (size_t)sprintf(big + n, "$100\r\n");
		/* 4 + 4 x 1007 + 6 + 100 + 2 > 4096 */
		expect(big, n, -RESP_E_COMMAND_TOO_BIG, 0, "");
	}
	/* a length line with no CR in 64 KiB */
	{
		size_t n = RESP_LINE_MAX + 8;
		char *s = malloc(n);
		s[0] = '*';
		memset(s + 1, '1', n - 1);
		struct resp_cmd cmd;
		resp_parser_init(&ps);
		CHECK_EQ(resp_parse(&ps, s, n, &lim, &cmd), -RESP_E_MBULK_TOO_BIG);
		resp_parser_init(&ps);
		CHECK_EQ(resp_parse(&ps, s, RESP_LINE_MAX, &lim, &cmd), RESP_AGAIN);
		memcpy(s, "*1\r\n$", 5);
		resp_parser_init(&ps);
		CHECK_EQ(resp_parse(&ps, s, n, &lim, &cmd), -RESP_E_BULK_TOO_BIG);
		free(s);
	}
	resp_parser_init(&ps);
	ps.bad = ':';
	CHECK(!strcmp(resp_error_text(-RESP_E_EXPECTED_DOLLAR, &ps, msg, sizeof(msg)),
		      "Protocol error: expected '$', got ':'"));
	CHECK(!strcmp(resp_error_text(-RESP_E_MBULK_LEN, &ps, msg, sizeof(msg)),
		      "Protocol error: invalid multibulk length"));
	CHECK(!strcmp(resp_error_text(-RESP_E_BULK_LEN, &ps, msg, sizeof(msg)),
		      "Protocol error: invalid bulk length"));
	CHECK(!strcmp(resp_error_text(-RESP_E_UNBALANCED, &ps, msg, sizeof(msg)),
		      "Protocol error: unbalanced quotes in request"));
	CHECK(!strcmp(resp_error_text(-RESP_E_INLINE_TOO_BIG, &ps, msg, sizeof(msg)),
		      "Protocol error: too big inline request"));
}

static void test_inline(void)
{
	EXPECT_OK("PING\r\n", 6, "PING");
	EXPECT_OK("PING\n", 5, "PING");
	EXPECT_OK("set k v\r\n", 9, "set|k|v");
	EXPECT_OK("  set   k\tv  \r\n", 15, "set|k|v");
	EXPECT_OK("\r\n", 2, "");
	EXPECT_OK("\n", 1, "");
	EXPECT_OK("set \"a b\" 'c d'\r\n", 17, "set|a b|c d");
	EXPECT_OK("echo \"\\x41\\n\\q\"\n", 16, "echo|A\nq");
	EXPECT_OK("echo 'it\\'s'\n", 13, "echo|it's");
	EXPECT_OK("echo foo\"bar baz\"\n", 18, "echo|foobar baz");
	EXPECT_OK("echo \"\"\n", 8, "echo|");
	/* a NUL ends the line as Redis's C string would */
	EXPECT_OK("echo a\0b c\n", 11, "echo|a");
	EXPECT_RC("echo \"abc\n", -RESP_E_UNBALANCED);
	EXPECT_RC("echo \"abc\"x\n", -RESP_E_UNBALANCED);
	EXPECT_RC("echo 'abc\n", -RESP_E_UNBALANCED);
	EXPECT_RC("PING", RESP_AGAIN);
	{
		size_t n = RESP_LINE_MAX + 1;
		char *s = malloc(n + 1);
		struct resp_parser ps;
		struct resp_cmd cmd;
		memset(s, 'a', n + 1);
		resp_parser_init(&ps);
		CHECK_EQ(resp_parse(&ps, s, n, &lim, &cmd), -RESP_E_INLINE_TOO_BIG);
		resp_parser_init(&ps);
		CHECK_EQ(resp_parse(&ps, s, n - 1, &lim, &cmd), RESP_AGAIN);
		s[n - 1] = '\n';
		resp_parser_init(&ps);
		CHECK_EQ(resp_parse(&ps, s, n, &lim, &cmd), 1);
		CHECK_EQ(cmd.len, n);
		free(s);
	}
}

static void test_i64(void)
{
	int64_t v = 7;

	CHECK(resp_parse_i64("0", 1, &v) && v == 0);
	CHECK(resp_parse_i64("-12", 3, &v) && v == -12);
	CHECK(resp_parse_i64("9223372036854775807", 19, &v) && v == INT64_MAX);
	CHECK(resp_parse_i64("-9223372036854775808", 20, &v) && v == INT64_MIN);
	v = 7;
	CHECK(!resp_parse_i64("9223372036854775808", 19, &v) && v == 7);
	CHECK(!resp_parse_i64("-0", 2, &v));
	CHECK(!resp_parse_i64("01", 2, &v));
	CHECK(!resp_parse_i64("+1", 2, &v));
	CHECK(!resp_parse_i64(" 1", 2, &v));
	CHECK(!resp_parse_i64("1 ", 2, &v));
	CHECK(!resp_parse_i64("", 0, &v));
	CHECK(!resp_parse_i64("-", 1, &v));
}

static int rendered(const struct reply *r, unsigned form, unsigned proto, const char *want)
{
	struct resp_answer_to to = { .proto = (uint8_t)proto, .form = (uint8_t)form };
	struct buf b = { 0 };
	int ok = resp_render(&b, r, &to) == 0 && b.len == strlen(want) &&
		 (b.len == 0 || memcmp(b.data, want, b.len) == 0) &&
		 resp_render_size(r, &to) >= b.len;

	if (!ok)
		fprintf(stderr, "rendered '%.*s', want '%s'\n", (int)b.len, b.data ? b.data : "",
			want);
	buf_deinit(&b);
	return ok;
}

static void test_render(void)
{
	struct reply r;

	reply_status(&r, 200, NULL);
	r.body = "hello";
	r.body_len = 5;
	r.has_max_age = true;
	r.max_age = 42;
	CHECK(rendered(&r, RESP_FORM_VALUE, 2, "$5\r\nhello\r\n"));
	CHECK(rendered(&r, RESP_FORM_EXISTS, 2, ":1\r\n"));
	CHECK(rendered(&r, RESP_FORM_STRLEN, 2, ":5\r\n"));
	CHECK(rendered(&r, RESP_FORM_TTL, 2, ":42\r\n"));
	CHECK(rendered(&r, RESP_FORM_PTTL, 2, ":42000\r\n"));
	CHECK(rendered(&r, RESP_FORM_NONE, 2, ""));
	r.has_max_age = false;
	CHECK(rendered(&r, RESP_FORM_TTL, 2, ":-1\r\n"));
	reply_status(&r, 404, NULL);
	CHECK(rendered(&r, RESP_FORM_VALUE, 2, "$-1\r\n"));
	CHECK(rendered(&r, RESP_FORM_VALUE, 3, "_\r\n"));
	CHECK(rendered(&r, RESP_FORM_TTL, 2, ":-2\r\n"));
	CHECK(rendered(&r, RESP_FORM_DELETED, 2, ":0\r\n"));
	CHECK(rendered(&r, RESP_FORM_EXISTS, 2, ":0\r\n"));
	reply_status(&r, 204, NULL);
	CHECK(rendered(&r, RESP_FORM_DELETED, 2, ":1\r\n"));
	CHECK(rendered(&r, RESP_FORM_REPLY, 2, "+OK\r\n"));
	reply_status(&r, 201, NULL);
	CHECK(rendered(&r, RESP_FORM_VALUE, 2, "+OK\r\n"));
	reply_status(&r, 507, "no room in the store\n");
	CHECK(rendered(&r, RESP_FORM_REPLY, 2, "-OOM no room in the store\r\n"));
	reply_status(&r, 413, "value too large\n");
	CHECK(rendered(&r, RESP_FORM_VALUE, 2, "-ERR value too large\r\n"));
	reply_status(&r, 500, NULL);
	CHECK(rendered(&r, RESP_FORM_VALUE, 2, "-ERR request failed (status 500)\r\n"));

	reply_status(&r, 200, NULL);
	r.kind = REPLY_INT;
	r.num = -9;
	CHECK(rendered(&r, RESP_FORM_VALUE, 2, ":-9\r\n"));
	r.kind = REPLY_NIL;
	CHECK(rendered(&r, RESP_FORM_REPLY, 2, "$-1\r\n"));
	CHECK(rendered(&r, RESP_FORM_REPLY, 3, "_\r\n"));
	r.kind = REPLY_OK;
	CHECK(rendered(&r, RESP_FORM_REPLY, 2, "+OK\r\n"));
	r.kind = REPLY_SIMPLE;
	r.body = "PONG";
	r.body_len = 4;
	CHECK(rendered(&r, RESP_FORM_REPLY, 2, "+PONG\r\n"));
	r.kind = REPLY_ERROR;
	r.body = "ERR unknown command 'a\r\nb'";
	r.body_len = strlen(r.body);
	CHECK(rendered(&r, RESP_FORM_REPLY, 2, "-ERR unknown command 'a  b'\r\n"));
	r.kind = REPLY_RAW;
	r.body = ":1\r\n:2\r\n";
	r.body_len = 8;
	CHECK(rendered(&r, RESP_FORM_REPLY, 2, ":1\r\n:2\r\n"));

	/* a value sent from where it is: the head only, the caller adds CRLF */
	{
		struct resp_answer_to to = { 2, RESP_FORM_VALUE };
		struct buf b = { 0 };
		const void *body;
		size_t n;
		reply_status(&r, 200, NULL);
		r.body = "0123456789";
		r.body_len = 10;
		CHECK(resp_render_head(&b, &r, &to, &body, &n) == 0);
		CHECK(b.len == 5 && !memcmp(b.data, "$10\r\n", 5));
		CHECK(body == r.body && n == 10);
		buf_deinit(&b);
	}
	{
		struct buf b = { 0 };
		CHECK(resp_add_map(&b, 2, 2) == 0 && resp_add_map(&b, 2, 3) == 0 &&
		      resp_add_set(&b, 1, 3) == 0 && resp_add_verbatim(&b, "ab", 2, 3) == 0 &&
		      resp_add_verbatim(&b, "ab", 2, 2) == 0);
		const char *want = "*4\r\n%2\r\n~1\r\n=6\r\ntxt:ab\r\n$2\r\nab\r\n";
		CHECK(b.len == strlen(want) && !memcmp(b.data, want, b.len));
		buf_deinit(&b);
	}
	{
		/* integers, formatted by hand: both ends of int64, every length */
		static const struct { int64_t v; const char *s; } nums[] = {
			{ 0, ":0\r\n" }, { 7, ":7\r\n" }, { 10, ":10\r\n" }, { -1, ":-1\r\n" },
			{ 1234567890123, ":1234567890123\r\n" },
			{ INT64_MAX, ":9223372036854775807\r\n" },
			{ INT64_MIN, ":-9223372036854775808\r\n" },
		};
		for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
			struct buf b = { 0 };
			CHECK(resp_add_int(&b, nums[i].v) == 0);
			CHECK(b.len == strlen(nums[i].s) && !memcmp(b.data, nums[i].s, b.len));
			buf_deinit(&b);
		}
		struct buf b = { 0 };
		int64_t p10 = 1;
		for (int d = 1; d <= 18; d++, p10 *= 10) {
			b.len = 0;
			CHECK(resp_add_array(&b, (size_t)p10) == 0);
			char want[24];
			snprintf(want, sizeof(want), "*%lld\r\n", (long long)p10);
			CHECK(b.len == strlen(want) && !memcmp(b.data, want, b.len));
		}
		buf_deinit(&b);
	}
	{
		/* values of every length to 600 after one another in one buffer,
		 * as a GET's answer (REPR, form VALUE) and as resp_add_bulk():
		 * the length line, value and CRLF go into room reserved at once,
		 * and the buffer grows at every kind of place in them */
		static char val[600];
		struct resp_answer_to to = { .proto = 2, .form = RESP_FORM_VALUE };
		struct buf b = { 0 };
		size_t at = 0;
		int bad = 0;
		for (size_t i = 0; i < sizeof(val); i++)
			val[i] = (char)('a' + i % 26);
		for (size_t n = 0; n <= sizeof(val); n++) {
			struct reply rv;
			char head[16];
			int h = snprintf(head, sizeof(head), "$%zu\r\n", n);
			reply_status(&rv, 200, NULL);
			rv.kind = REPLY_REPR;
			rv.body = val;
			rv.body_len = n;
			for (int twice = 0; twice < 2; twice++) {
				if ((twice ? resp_add_bulk(&b, val, n) : resp_render(&b, &rv, &to)) != 0 ||
				    b.len != at + (size_t)h + n + 2 ||
				    memcmp(b.data + at, head, (size_t)h) != 0 ||
				    memcmp(b.data + at + h, val, n) != 0 ||
				    memcmp(b.data + at + h + n, "\r\n", 2) != 0)
					bad++;
				at = b.len;
			}
		}
		CHECK_EQ(bad, 0);
		buf_deinit(&b);
	}
}

int main(void)
{
	test_multibulk();
	test_multibulk_errors();
	test_inline();
	test_i64();
	test_render();
	return check_done("resp");
}
