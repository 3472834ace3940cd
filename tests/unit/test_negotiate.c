/*
 * test_negotiate.c - Accept-Encoding selection (RFC 9110 12.5.3),
 * If-None-Match weak comparison and Cache-Control max-age, on the edge cases
 * a client can send.
 */
#include <string.h>

#include "check.h"
#include "cache/negotiate.h"

#define ID NEGOTIATE_IDENTITY
#define BR NEGOTIATE_BR
#define GZ NEGOTIATE_GZIP
#define NONE NEGOTIATE_NONE

#define ALL ((1u << ID) | (1u << BR) | (1u << GZ))
#define ID_ONLY (1u << ID)
#define ID_GZ ((1u << ID) | (1u << GZ))

static int neg(const char *s, unsigned avail)
{
	return negotiate_encoding(s, strlen(s), avail);
}

static void test_encoding(void)
{
	static const struct {
		const char *ae;
		unsigned avail;
		int want;
	} cases[] = {
		/* absent or empty: identity */
		{ "", ALL, ID },
		{ "", ID_ONLY, ID },
		/* plain lists: ties prefer br, then gzip, then identity */
		{ "gzip, deflate, br", ALL, BR },
		{ "gzip, deflate, br, zstd", ALL, BR },
		{ "gzip, deflate", ALL, GZ },
		{ "gzip", ID_ONLY, ID },
		{ "br", ID_GZ, ID },
		{ "br, gzip", ID_GZ, GZ },
		{ "identity", ALL, ID },
		{ "identity, gzip", ALL, GZ },
		/* case, whitespace, x-gzip */
		{ "  GZIP ,\tBr  ", ALL, BR },
		{ "X-Gzip", ALL, GZ },
		{ "br ; q=0.5 , gzip ; q = 0.4", ALL, BR },
		/* q-values: the highest wins */
		{ "br;q=0.5, gzip", ALL, GZ },
		{ "br;q=0.5, gzip;q=0.6", ALL, GZ },
		{ "br;q=0.6, gzip;q=0.5", ALL, BR },
		{ "br;q=0.500, gzip;q=0.5", ALL, BR },
		{ "br;q=1.0, gzip;q=1", ALL, BR },
		{ "br;q=0.001, gzip;q=0", ALL, BR },
		{ "gzip;q=0.8, identity", ALL, ID },
		{ "identity;q=0.9, br;q=0.9", ALL, BR },
		{ "Br;Q=0.2", ALL, BR },
		/* q=0 excludes */
		{ "br;q=0", ALL, ID },
		{ "br;q=0, gzip;q=0", ALL, ID },
		{ "br;q=0.0, gzip;q=0.000", ALL, ID },
		{ "identity;q=0", ALL, NONE },
		{ "identity;q=0", ID_ONLY, NONE },
		{ "identity;q=0, gzip", ALL, GZ },
		{ "identity;q=0, gzip", ID_ONLY, NONE },
		{ "identity;q=0, br;q=0.1", ALL, BR },
		/* identity not listed: acceptable, least preferred */
		{ "gzip;q=0.5", ALL, GZ },
		{ "gzip;q=0.001", ALL, GZ },
		{ "deflate", ALL, ID },
		{ "deflate;q=0", ID_ONLY, ID },
		/* "*" covers what is not listed, identity included */
		{ "*", ALL, BR },
		{ "*", ID_ONLY, ID },
		{ "*;q=0", ALL, NONE },
		{ "*;q=0", ID_ONLY, NONE },
		{ "*;q=0, identity", ALL, ID },
		{ "*;q=0, gzip", ALL, GZ },
		{ "*;q=0.5, gzip", ALL, GZ },
		{ "*;q=0.5, identity", ALL, ID },
		{ "gzip, *;q=0", ID_ONLY, NONE },
		{ "br;q=0, *", ALL, GZ },
		/* the first entry for a coding counts */
		{ "gzip;q=0, gzip", ALL, ID },
		{ "gzip, gzip;q=0", ALL, GZ },
		/* malformed q: the member is ignored */
		{ "br;q=2, gzip", ALL, GZ },
		{ "br;q=0.1234, gzip;q=0.1", ALL, GZ },
		{ "br;q=, gzip;q=0.1", ALL, GZ },
		{ "br;q=abc", ALL, ID },
		{ "identity;q=x", ALL, ID },
		{ "identity;q=1.5", ID_ONLY, ID },
		{ "br;q=1.001", ALL, ID },
		/* other parameters are ignored, odd separators tolerated */
		{ "br;level=5", ALL, BR },
		{ "br;level=5;q=0", ALL, ID },
		{ ",,, ,gzip,,", ALL, GZ },
		{ ",", ALL, ID },
		{ ";q=0", ALL, ID },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = neg(cases[i].ae, cases[i].avail);
		CHECK_EQ(got, cases[i].want);
		if (got != cases[i].want)
			fprintf(stderr, "  Accept-Encoding: \"%s\" avail %u\n", cases[i].ae,
				cases[i].avail);
	}

	/* weigh() then pick() is negotiate_encoding() without the shortcut. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct negotiate_weights w;
		negotiate_weigh(cases[i].ae, strlen(cases[i].ae), &w);
		CHECK_EQ(negotiate_pick(&w, cases[i].avail), cases[i].want);
	}
	struct negotiate_weights w;
	negotiate_weigh("br;q=0.25, *;q=0.5", 18, &w);
	CHECK_EQ(w.q[BR], 250);
	CHECK_EQ(w.q[GZ], 500);
	CHECK_EQ(w.q[ID], 500);
	negotiate_weigh("gzip", 4, &w);
	CHECK_EQ(w.q[BR], 0);
	CHECK_EQ(w.q[GZ], 1000);
	CHECK_EQ(w.q[ID], 1);

	/* Not NUL-terminated: only n bytes count. */
	CHECK_EQ(negotiate_encoding("gzipXXX", 4, ALL), GZ);
	CHECK_EQ(negotiate_encoding("br;q=0.5", 2, ALL), BR);
	CHECK_EQ(negotiate_encoding("identity;q=0", 8, ID_ONLY), ID);
}

static bool inm(const char *s, const char *etag)
{
	return negotiate_etag_match(s, strlen(s), etag, strlen(etag));
}

static void test_etag_match(void)
{
	const char *e = "\"0123abcd\"";
	CHECK(inm("\"0123abcd\"", e));
	CHECK(inm("  \"0123abcd\"  ", e));
	CHECK(inm("W/\"0123abcd\"", e));
	CHECK(inm("\"a\", \"0123abcd\"", e));
	CHECK(inm("\"a\",\"0123abcd\",\"b\"", e));
	CHECK(inm("\"a\" , W/\"0123abcd\"", e));
	CHECK(inm("*", e));
	CHECK(inm(" * ", e));
	CHECK(inm("W/\"0123abcd\"", "W/\"0123abcd\""));
	CHECK(inm("\"0123abcd\"", "W/\"0123abcd\""));

	CHECK(!inm("", e));
	CHECK(!inm("\"0123abce\"", e));
	CHECK(!inm("\"0123abcd-br\"", e));
	CHECK(!inm("0123abcd", e));
	CHECK(!inm("\"0123ABCD\"", e));
	CHECK(!inm("w/\"0123abcd\"", e));
	/* A comma inside an opaque tag does not split it. */
	CHECK(!inm("\"x,\"0123abcd\"\"", e));
	CHECK(!inm("\"x,0123abcd\"", e));
	CHECK(inm("\"x,y\", \"0123abcd\"", e));
	/* A malformed member is skipped. */
	CHECK(inm("junk, \"0123abcd\"", e));
	CHECK(inm("\"unterminated, \"0123abcd\"", e));
	CHECK(!inm("\"0123abcd", e));
	CHECK(!inm("*x", e));
	CHECK(inm("*x, \"0123abcd\"", e));
	/* Length given explicitly. */
	CHECK(negotiate_etag_match("\"0123abcd\"XYZ", 10, e, strlen(e)));
	CHECK(!negotiate_etag_match("\"0123abcd\"", 9, e, strlen(e)));
}

static int max_age(const char *s, uint32_t *v)
{
	*v = 12345;
	return negotiate_max_age(s, strlen(s), v);
}

static void test_max_age(void)
{
	uint32_t v;
	CHECK_EQ(max_age("max-age=60", &v), 1);
	CHECK_EQ(v, 60);
	CHECK_EQ(max_age("public, max-age=3600", &v), 1);
	CHECK_EQ(v, 3600);
	CHECK_EQ(max_age("MAX-AGE=7, no-transform", &v), 1);
	CHECK_EQ(v, 7);
	CHECK_EQ(max_age("max-age=\"90\"", &v), 1);
	CHECK_EQ(v, 90);
	CHECK_EQ(max_age("max-age = 5", &v), 1);
	CHECK_EQ(v, 5);
	CHECK_EQ(max_age("max-age=0", &v), 1);
	CHECK_EQ(v, 0);
	CHECK_EQ(max_age("max-age=99999999999999999999", &v), 1);
	CHECK_EQ(v, 1u << 31);
	CHECK_EQ(max_age("no-cache=\"a, max-age=5\", max-age=9", &v), 1);
	CHECK_EQ(v, 9);

	CHECK_EQ(max_age("", &v), 0);
	CHECK_EQ(max_age("s-maxage=60", &v), 0);
	CHECK_EQ(max_age("x-max-age=60", &v), 0);
	CHECK_EQ(max_age("max-age", &v), 0);
	CHECK_EQ(max_age("max-age=", &v), 0);
	CHECK_EQ(max_age("max-age=-1", &v), 0);
	CHECK_EQ(max_age("max-age=6x", &v), 0);
	CHECK_EQ(max_age("max-age=\"60", &v), 0);
	CHECK_EQ(v, 12345);
}

static int cc(const char *s, const char *d, uint32_t *v)
{
	return negotiate_cc_secs(s, strlen(s), d, v);
}

/* The stale directives (issue 9): valued, bare, absent, malformed. */
static void test_cc_secs(void)
{
	uint32_t v = 7;

	CHECK_EQ(cc("max-age=5, stale-while-revalidate=30", "stale-while-revalidate", &v), 1);
	CHECK_EQ(v, 30);
	CHECK_EQ(cc("Stale-If-Error=\"86400\"", "stale-if-error", &v), 1);
	CHECK_EQ(v, 86400);
	CHECK_EQ(cc("max-stale", "max-stale", &v), 2);
	CHECK_EQ(cc("max-stale, max-stale=3", "max-stale", &v), 1);  /* a value wins */
	CHECK_EQ(v, 3);
	CHECK_EQ(cc("max-stale=99999999999999999999", "max-stale", &v), 1);
	CHECK_EQ(v, 1u << 31);
	CHECK_EQ(cc("stale-if-errors=5", "stale-if-error", &v), 0);
	CHECK_EQ(cc("", "max-stale", &v), 0);
	v = 9;
	CHECK_EQ(cc("stale-if-error=", "stale-if-error", &v), -1);
	CHECK_EQ(cc("stale-if-error=-1", "stale-if-error", &v), -1);
	CHECK_EQ(cc("stale-if-error=1.5", "stale-if-error", &v), -1);
	CHECK_EQ(cc("stale-if-error=\"5", "stale-if-error", &v), -1);
	CHECK_EQ(cc("stale-if-error=\"\"", "stale-if-error", &v), -1);
	CHECK_EQ(v, 9);
}

int main(void)
{
	test_encoding();
	test_cc_secs();
	test_etag_match();
	test_max_age();
	return check_done("test_negotiate");
}
