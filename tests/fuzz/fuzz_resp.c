/*
 * fuzz_resp.c - libFuzzer target for the RESP command parser (src/resp/).
 *
 * Properties, each aborting when it fails: the input parsed in one call
 * (a whole frame may take parse.c's one-pass path), a byte at a time and in
 * two parts gives one result (the same frame length, argument count and
 * kept argument places); a frame lies inside the input; its arguments,
 * walked with resp_next(), are exactly argc (resp_args() gives the first of
 * them alike), lie inside the frame (multibulk) or the scratch (inline), and
 * their bytes add up to at most the frame; every
 * frame after the first is parsed the same way until the input ends or an
 * error.  tests/fuzz/replay.c runs the saved corpus through this function
 * in the normal build.
 */
#include "fuzz.h"
#include "ringcache/resp.h"

static const struct resp_limits LIM = { .max_bulk = 512, .max_command = 4096 };

static int parse_split(const char *p, size_t n, size_t cut, struct resp_cmd *cmd)
{
	struct resp_parser ps;
	int rc;

	resp_parser_init(&ps);
	if (cut) {
		rc = resp_parse(&ps, p, cut, &LIM, cmd);
		if (rc != RESP_AGAIN)
			return rc;
	}
	return resp_parse(&ps, p, n, &LIM, cmd);
}

static int parse_bytewise(const char *p, size_t n, struct resp_cmd *cmd)
{
	struct resp_parser ps;
	int rc = RESP_AGAIN;

	resp_parser_init(&ps);
	for (size_t len = 1; len <= n && rc == RESP_AGAIN; len++)
		rc = resp_parse(&ps, p, len, &LIM, cmd);
	return rc;
}

static void check_args(const struct resp_cmd *cmd)
{
	char *scratch = malloc(cmd->len ? cmd->len : 1);
	struct resp_iter it = { 0 };
	struct resp_str a;
	size_t total = 0;
	uint32_t n = 0;

	enum { MAX = 6 };       /* past RESP_ARGS_KEPT */
	struct resp_str v[MAX];
	char *scratch2 = malloc(cmd->len ? cmd->len : 1);
	uint32_t got;

	FUZZ_ASSERT(scratch != NULL && scratch2 != NULL);
	got = resp_args(cmd, v, MAX, scratch2);
	FUZZ_ASSERT(got == (cmd->argc < MAX ? cmd->argc : MAX));
	while (resp_next(cmd, &it, &a, scratch)) {
		if (n < got)
			FUZZ_ASSERT(v[n].len == a.len && memcmp(v[n].p, a.p, a.len) == 0);
		n++;
		total += a.len;
		if (cmd->inline_)
			FUZZ_ASSERT(a.p >= scratch && a.p + a.len <= scratch + cmd->len);
		else
			FUZZ_ASSERT(a.p >= cmd->frame && a.p + a.len <= cmd->frame + cmd->len);
	}
	FUZZ_ASSERT(n == cmd->argc && total <= cmd->len);
	free(scratch);
	free(scratch2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		size_t n = size - off;
		char *p = fuzz_copy(data + off, n);
		struct resp_cmd one, two, bw;
		int rc = parse_split(p, n, 0, &one);

		FUZZ_ASSERT(rc <= 1);
		FUZZ_ASSERT(parse_bytewise(p, n, &bw) == rc);
		FUZZ_ASSERT(parse_split(p, n, n / 2, &two) == rc);
		if (rc == 1) {
			FUZZ_ASSERT(one.len > 0 && one.len <= n && one.frame == p);
			FUZZ_ASSERT(bw.len == one.len && bw.argc == one.argc);
			FUZZ_ASSERT(two.len == one.len && two.argc == one.argc);
			/* a whole frame may take a one-pass path (parse.c): the
			 * arguments it keeps are those the bytewise parse kept */
			if (!one.inline_)
				for (uint32_t i = 0; i < one.argc && i < RESP_ARGS_KEPT; i++)
					FUZZ_ASSERT(bw.arg_at[i] == one.arg_at[i] &&
						    bw.arg_len[i] == one.arg_len[i]);
			check_args(&one);
			off += one.len;
		}
		free(p);
		if (rc != 1)
			break;
	}
	return 0;
}
