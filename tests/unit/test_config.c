/*
 * test_config.c - flag parsing: defaults, every kind of value, and errors
 * that name the flag; the defaults --help shows; the --config file (its
 * syntax, hostile bytes, errors naming FILE:LINE and the key, flags over
 * the file) and the effective configuration --check-config prints.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "ringcache/config.h"

static int parse(struct config *cfg, char *err, const char *a1, const char *a2, const char *a3)
{
	char *argv[5] = { "ringcached", (char *)a1, (char *)a2, (char *)a3, NULL };
	int argc = 1 + (a1 != NULL) + (a2 != NULL) + (a3 != NULL);
	err[0] = '\0';
	return config_parse(cfg, argc, argv, err, 256);
}

static void defaults(void)
{
	struct config c;
	char err[256];

	CHECK_EQ(parse(&c, err, NULL, NULL, NULL), CONFIG_OK);
	CHECK(!strcmp(c.listen.at[0].host, "127.0.0.1"));
	CHECK_EQ(c.listen.at[0].port, 8080);
	CHECK_EQ(c.shards, CONFIG_COUNT_AUTO);
	CHECK_EQ(c.coherence_cpu, CONFIG_CPU_AUTO);
	CHECK_EQ(c.cpuset.n, 0);
	CHECK_EQ(c.max_value, 16u << 20);
	CHECK_EQ(c.hugepages, CONFIG_HUGEPAGES_AUTO);
	CHECK(!c.prefault);
	CHECK(!strcmp(c.redis_prefix, "ringcache:"));
	CHECK(!c.hash_seed.fixed);
}

/* --conn-memory: "auto" (the default) or a size above 0. */
static void conn_memory(void)
{
	struct config c;
	char err[256];

	CHECK_EQ(parse(&c, err, NULL, NULL, NULL), CONFIG_OK);
	CHECK_EQ(c.conn_memory, CONFIG_SIZE_AUTO);
	CHECK_EQ(parse(&c, err, "--conn-memory", "512M", NULL), CONFIG_OK);
	CHECK_EQ(c.conn_memory, 512ull << 20);
	CHECK_EQ(parse(&c, err, "--conn-memory", "auto", NULL), CONFIG_OK);
	CHECK_EQ(c.conn_memory, CONFIG_SIZE_AUTO);
	CHECK_EQ(parse(&c, err, "--conn-memory", "0", NULL), -EINVAL);
	CHECK(strstr(err, "--conn-memory") != NULL);
}

/* --hash-seed: "random" (the default) or a fixed 64-bit number. */
static void hash_seed(void)
{
	struct config c;
	char err[256];

	CHECK_EQ(parse(&c, err, "--hash-seed", "0x72696e6763616368", NULL), CONFIG_OK);
	CHECK(c.hash_seed.fixed);
	CHECK_EQ(c.hash_seed.value, 0x72696e6763616368ull);
	CHECK_EQ(parse(&c, err, "--hash-seed=18446744073709551615", NULL, NULL), CONFIG_OK);
	CHECK_EQ(c.hash_seed.value, UINT64_MAX);
	CHECK_EQ(parse(&c, err, "--hash-seed", "random", NULL), CONFIG_OK);
	CHECK(!c.hash_seed.fixed);
	CHECK_EQ(parse(&c, err, "--hash-seed", "18446744073709551616", NULL), -EINVAL);
	CHECK(strstr(err, "--hash-seed") != NULL);
	CHECK_EQ(parse(&c, err, "--hash-seed", "-1", NULL), -EINVAL);
	CHECK_EQ(parse(&c, err, "--hash-seed", "12abc", NULL), -EINVAL);
}

static void values(void)
{
	struct config c;
	char err[256];

	CHECK_EQ(parse(&c, err, "--listen", "0.0.0.0:9000", "--prefault"), CONFIG_OK);
	CHECK(!strcmp(c.listen.at[0].host, "0.0.0.0"));
	CHECK_EQ(c.listen.at[0].port, 9000);
	CHECK(c.prefault);
	CHECK_EQ(parse(&c, err, "--listen=[::1]:81", NULL, NULL), CONFIG_OK);
	CHECK(!strcmp(c.listen.at[0].host, "::1"));
	CHECK_EQ(c.listen.at[0].port, 81);
	CHECK_EQ(parse(&c, err, "--memory", "2G", "--max-value=512K"), CONFIG_OK);
	CHECK_EQ(c.memory, 2ull << 30);
	CHECK_EQ(c.max_value, 512u << 10);
	CHECK_EQ(parse(&c, err, "--cpuset", "2-5,8,3", NULL), CONFIG_OK);
	CHECK_EQ(c.cpuset.n, 5);
	CHECK_EQ(c.cpuset.cpu[0], 2);
	CHECK_EQ(c.cpuset.cpu[3], 5);
	CHECK_EQ(c.cpuset.cpu[4], 8);
	CHECK_EQ(parse(&c, err, "--hugepages", "off", NULL), CONFIG_OK);
	CHECK_EQ(c.hugepages, CONFIG_HUGEPAGES_OFF);
	CHECK_EQ(parse(&c, err, "--help", NULL, NULL), CONFIG_HELP);
	CHECK_EQ(parse(&c, err, "--version", NULL, NULL), CONFIG_VERSION);

	uint64_t v;
	CHECK_EQ(config_parse_size("100", &v), 0);
	CHECK_EQ(v, 100);
	CHECK_EQ(config_parse_size("1k", &v), 0);
	CHECK_EQ(v, 1024);
	CHECK_EQ(config_parse_size("3MB", &v), 0);
	CHECK_EQ(v, 3u << 20);
	CHECK_EQ(config_parse_size("", &v), -EINVAL);
	CHECK_EQ(config_parse_size("-1", &v), -EINVAL);
	CHECK_EQ(config_parse_size("12Q", &v), -EINVAL);
	CHECK_EQ(config_parse_size("99999999999999999999", &v), -EINVAL);
	CHECK_EQ(config_parse_size("99999999999G", &v), -EINVAL);
}

static void error_names(const char *a1, const char *a2, const char *needle)
{
	struct config c;
	char err[256];

	CHECK_EQ(parse(&c, err, a1, a2, NULL), -EINVAL);
	if (!strstr(err, needle)) {
		check_failed++;
		fprintf(stderr, "error for %s %s does not name %s: '%s'\n", a1, a2 ? a2 : "", needle, err);
	} else {
		check_passed++;
	}
}

static void errors(void)
{
	error_names("--shards", "x", "--shards");
	error_names("--memory", "lots", "--memory");
	error_names("--memory", "1K", "--memory");
	error_names("--listen", "127.0.0.1", "--listen");
	error_names("--listen", "127.0.0.1:0", "--listen");
	error_names("--listen", "127.0.0.1:70000", "--listen");
	error_names("--cpuset", "5-2", "--cpuset");
	error_names("--cpuset", "1,,2", "--cpuset");
	error_names("--cpuset", "4096", "--cpuset");
	error_names("--hugepages", "maybe", "--hugepages");
	error_names("--ring-size", "100", "--ring-size");
	error_names("--bogus", NULL, "--bogus");
	error_names("--max-value", NULL, "--max-value");
	error_names("stray", NULL, "stray");
	error_names("--prefault=yes", NULL, "--prefault");
	error_names("--gzip-level", "0", "--gzip-level");
	error_names("--shards", "-1", "--shards");
	error_names("--shards", "2000", "--shards");
	error_names("--coherence-cpu", "4294967295", "--coherence-cpu");
	error_names("--coherence-cpu", "1024", "--coherence-cpu");
	error_names("--instance-id", "a\nb", "--instance-id");
	error_names("--config", NULL, "--config");
	error_names("--check-config=yes", NULL, "--check-config");
}

/* "auto" for the computed defaults, and numbers where numbers are meant. */
static void autos(void)
{
	struct config c;
	char err[256], buf[64];

	CHECK_EQ(parse(&c, err, "--shards", "3", "--coherence-cpu=0"), CONFIG_OK);
	CHECK_EQ(c.shards, 3);
	CHECK_EQ(c.coherence_cpu, 0);
	CHECK(config_format(&c, "shards", buf, sizeof(buf)) > 0 && !strcmp(buf, "3"));
	CHECK(config_format(&c, "coherence-cpu", buf, sizeof(buf)) > 0 && !strcmp(buf, "0"));
	CHECK_EQ(parse(&c, err, "--shards", "auto", "--coherence-cpu=auto"), CONFIG_OK);
	CHECK_EQ(c.shards, CONFIG_COUNT_AUTO);
	CHECK_EQ(c.coherence_cpu, CONFIG_CPU_AUTO);
	/* the spelling of auto before there was a word for it */
	CHECK_EQ(parse(&c, err, "--shards", "0", NULL), CONFIG_OK);
	CHECK(config_format(&c, "shards", buf, sizeof(buf)) > 0 && !strcmp(buf, "auto"));
	CHECK_EQ(config_format(&c, "no-such-key", buf, sizeof(buf)), -ENOENT);
}

/* The help's text, captured. */
static char *usage_text(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	CHECK(f != NULL);
	if (!f)
		return NULL;
	config_usage(f);
	fclose(f);
	return text;
}

/*
 * Every default shown (by --help, the man page and --check-config) is what
 * the daemon means: it parses, it prints back as itself, it is not a
 * sentinel number, and the defaults computed at start show as words.
 */
static void shown_defaults(void)
{
	static const struct { const char *flag, *kind, *def; } table[] = {
#define ROW(flag, kind, field, def, meta, help) { flag, #kind, def },
		CONFIG_OPTIONS(ROW)
#undef ROW
	};
	/* computed at start: from the CPUs, the machine, getrandom() */
	static const struct { const char *flag, *word; } computed[] = {
		{ "shards", "auto" }, { "coherence-cpu", "auto" }, { "hash-seed", "random" },
	};
	struct config defaults, c;
	char err[256], buf[256], arg[300];
	char *help = usage_text();

	CHECK_EQ(parse(&defaults, err, NULL, NULL, NULL), CONFIG_OK);
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const char *def = table[i].def;
		int ok = config_format(&defaults, table[i].flag, buf, sizeof(buf)) >= 0 &&
			 !strcmp(buf, def);
		CHECK(ok);
		if (!ok)
			fprintf(stderr, "  --%s: default written '%s', means '%s'\n", table[i].flag,
				def, buf);
		snprintf(arg, sizeof(arg), "--%s=%s", table[i].flag, def);
		CHECK_EQ(parse(&c, err, arg, NULL, NULL), CONFIG_OK);
		/* not a sentinel: no all-ones, no negative numbers */
		char *end;
		errno = 0;
		unsigned long long v = strtoull(def, &end, 0);
		bool number = *def && !*end && !errno;
		bool sentinel = *def == '-' || errno == ERANGE ||
				(number && (v == UINT32_MAX || v == UINT64_MAX || v == INT32_MAX));
		CHECK(!sentinel);
		if (sentinel)
			fprintf(stderr, "  --%s shows a sentinel default '%s'\n", table[i].flag, def);
		/* --help shows it as written (a BOOL flag takes no value: none shown) */
		if (*def && help && strcmp(table[i].kind, "BOOL")) {
			char shown[300];
			snprintf(shown, sizeof(shown), "[%s]", def);
			char pat[80];
			snprintf(pat, sizeof(pat), "\n  --%s ", table[i].flag);
			const char *line = strstr(help, pat);
			const char *eol = line ? strchr(line + 1, '\n') : NULL;
			CHECK(line && eol && memmem(line, (size_t)(eol - line), shown,
						    strlen(shown)));
		}
	}
	for (size_t i = 0; i < sizeof(computed) / sizeof(computed[0]); i++) {
		CHECK(config_format(&defaults, computed[i].flag, buf, sizeof(buf)) > 0);
		CHECK(!strcmp(buf, computed[i].word));
		if (strcmp(buf, computed[i].word))
			fprintf(stderr, "  --%s: default shown '%s', want '%s'\n", computed[i].flag,
				buf, computed[i].word);
	}
	CHECK(help && !strstr(help, "4294967295") && !strstr(help, "18446744073709551615"));
	free(help);
}

static void cpusets(void)
{
	struct cpuset s;

	CHECK_EQ(cpuset_parse("0", &s), 0);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(cpuset_parse("0-3,2-5", &s), 0);
	CHECK_EQ(s.n, 6);
	CHECK_EQ(cpuset_parse("", &s), -EINVAL);
	CHECK_EQ(cpuset_parse("1-", &s), -EINVAL);
	CHECK_EQ(cpuset_parse("a", &s), -EINVAL);
	CHECK_EQ(cpuset_allowed(&s), 0);
	CHECK(s.n >= 1);
}

/* --- the --config file --------------------------------------------------- */

static char tmpdir[] = "/tmp/test_config_XXXXXX";

/* A file in tmpdir holding exactly `len` bytes of `text`. */
static const char *file_with(const char *name, const char *text, size_t len)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, text, len) == (ssize_t)len);
	close(fd);
	return path;
}

#define FILE_WITH(name, lit) file_with(name, lit, sizeof(lit) - 1)

/* config_parse with --config path, then up to two more flags. */
static int with_file(struct config *cfg, char *err, const char *path, const char *a1,
		     const char *a2)
{
	char *argv[6] = { "ringcached", "--config", (char *)path, (char *)a1, (char *)a2, NULL };
	int argc = 3 + (a1 != NULL) + (a2 != NULL);
	err[0] = '\0';
	return config_parse(cfg, argc, argv, err, 256);
}

static void file_syntax(void)
{
	struct config c;
	char err[256];
	const char *p = FILE_WITH("ok.conf",
		"# ringcached.conf\n"
		"\n"
		"listen = 127.0.0.1:9100\n"
		"   memory=1G\n"
		"\tshards\t=\t3\t\n"
		"  # indented comment\n"
		"hugepages = off\n"
		"prefault = true\n"
		"redis-prefix = a b:\n"
		"api-keys-file =\n"
		"cpuset = 0-1\n"
		"coherence-cpu = auto\n"
		"instance-id = host#1\n"
		"max-value = 1M");                  /* no newline at the end */

	CHECK_EQ(with_file(&c, err, p, NULL, NULL), CONFIG_OK);
	CHECK(!strcmp(c.listen.at[0].host, "127.0.0.1") && c.listen.at[0].port == 9100);
	CHECK_EQ(c.memory, 1ull << 30);
	CHECK_EQ(c.shards, 3);
	CHECK_EQ(c.hugepages, CONFIG_HUGEPAGES_OFF);
	CHECK(c.prefault);
	CHECK(!strcmp(c.redis_prefix, "a b:"));      /* inner blanks are the value's */
	CHECK(!strcmp(c.api_keys_file, ""));         /* empty: not set */
	CHECK_EQ(c.cpuset.n, 2);
	CHECK(!strcmp(c.instance_id, "host#1"));     /* '#' inside a value is the value's */
	CHECK_EQ(c.max_value, 1u << 20);
	CHECK(c.file && !strcmp(c.file, p));
	/* file-given strings live in the file's buffer, which config_deinit frees */
	CHECK(c.file_text && c.redis_prefix >= c.file_text &&
	      c.redis_prefix < c.file_text + CONFIG_FILE_MAX + 2);
	config_deinit(&c);
	CHECK(c.file_text == NULL);
	config_deinit(&c);                           /* twice is harmless */

	/* CRLF line ends and a UTF-8 byte-order mark, as Windows editors write */
	p = FILE_WITH("crlf.conf", "\xef\xbb\xbfmemory = 2G\r\n# c\r\nshards = 2\r\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), CONFIG_OK);
	CHECK_EQ(c.memory, 2ull << 30);
	CHECK_EQ(c.shards, 2);
	config_deinit(&c);

	/* an empty file and a file of comments are valid: the defaults */
	p = FILE_WITH("empty.conf", "");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), CONFIG_OK);
	CHECK_EQ(c.memory, 256u << 20);
	config_deinit(&c);
	CHECK_EQ(with_file(&c, err, "/dev/null", NULL, NULL), -EINVAL);   /* not a regular file */
	CHECK(strstr(err, "/dev/null") && strstr(err, "regular"));
}

/* An error message contains every needle. */
static void error_has(const char *what, const char *err, const char *n1, const char *n2,
		      const char *n3)
{
	const char *n[] = { n1, n2, n3 };
	for (int i = 0; i < 3; i++) {
		if (!n[i])
			continue;
		bool ok = strstr(err, n[i]) != NULL;
		CHECK(ok);
		if (!ok)
			fprintf(stderr, "  %s: '%s' does not say '%s'\n", what, err, n[i]);
	}
}

static void file_errors(void)
{
	struct config c;
	char err[256];
	const char *p;

	p = FILE_WITH("unknown.conf", "memory = 1G\n\nfrobnicate = 3\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("unknown key", err, "unknown.conf:3:", "frobnicate", NULL);
	CHECK(c.file_text == NULL);                  /* freed on failure */

	p = FILE_WITH("dash.conf", "--memory = 1G\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("key with dashes", err, "dash.conf:1:", "without --", NULL);

	p = FILE_WITH("bad.conf", "# x\nmemory = lots\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("bad value", err, "bad.conf:2:", "memory", "lots");

	/* duplicates are refused, naming both lines */
	p = FILE_WITH("dup.conf", "memory = 1G\nshards = 2\nmemory = 2G\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("duplicate", err, "dup.conf:3:", "memory", "line 1");

	p = FILE_WITH("noeq.conf", "memory 1G\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("no =", err, "noeq.conf:1:", "KEY = VALUE", NULL);

	p = FILE_WITH("nokey.conf", " = 1G\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("no key", err, "nokey.conf:1:", "key", NULL);

	p = FILE_WITH("novalue.conf", "memory =\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("no value", err, "novalue.conf:1:", "memory", "needs a value");

	/* a comment after a value is refused, not taken into the value */
	p = FILE_WITH("trailing.conf", "redis-prefix = app: # the app's\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("trailing comment", err, "trailing.conf:1:", "redis-prefix", "comment");
	p = FILE_WITH("trailing2.conf", "memory = 1G\t#\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("trailing comment", err, "trailing2.conf:1:", "memory", "comment");

	/* flags only: not keys */
	p = FILE_WITH("nested.conf", "config = /etc/other.conf\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("nested", err, "nested.conf:1:", "config", NULL);

	/* the cross-field rules blame the key the file set, with its line */
	p = FILE_WITH("cross.conf", "# x\nmax-request-line = 64K\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("cross-field", err, "cross.conf:2:", "max-request-line", NULL);
	p = FILE_WITH("ring.conf", "ring-size = 100\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("ring-size", err, "ring.conf:1:", "ring-size", "power of two");
	/* ... and the flag when a flag set it */
	CHECK_EQ(with_file(&c, err, p, "--ring-size", "64"), CONFIG_OK);
	config_deinit(&c);
	p = FILE_WITH("ok2.conf", "memory = 1G\n");
	CHECK_EQ(with_file(&c, err, p, "--ring-size", "100"), -EINVAL);
	error_has("flag blamed", err, "--ring-size", NULL, NULL);
	CHECK(!strstr(err, "ok2.conf"));

	CHECK_EQ(with_file(&c, err, "/nonexistent/ringcached.conf", NULL, NULL), -EINVAL);
	error_has("missing file", err, "/nonexistent/ringcached.conf", "No such file", NULL);
	char *argv[] = { "ringcached", "--config", "a", "--config=b", NULL };
	CHECK_EQ(config_parse(&c, 4, argv, err, sizeof(err)), -EINVAL);
	error_has("twice", err, "--config", "twice", NULL);
}

static void file_hostile(void)
{
	struct config c;
	char err[256];
	const char *p;

	p = file_with("nul.conf", "memory = 1G\nshards = 2\0junk\n", 26);
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("NUL", err, "nul.conf:2:", "NUL", NULL);

	p = FILE_WITH("ctl.conf", "memory = 1G\ninstance-id = a\x1b[2Jb\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("control", err, "ctl.conf:2:", "control", NULL);

	p = FILE_WITH("cr.conf", "memory = 1G\rshards = 2\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("lone CR", err, "cr.conf:1:", "control", NULL);

	/* a BOM anywhere but the start is not skipped: here it is in a key */
	p = FILE_WITH("bom2.conf", "memory = 1G\n\xef\xbb\xbfshards = 2\n");
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("inner BOM", err, "bom2.conf:2:", "unknown key", NULL);

	/* the longest line accepted, and one byte more */
	static char big[CONFIG_FILE_MAX + 64];
	size_t n = (size_t)snprintf(big, sizeof(big), "instance-id = ");
	memset(big + n, 'x', CONFIG_LINE_MAX - n);
	big[CONFIG_LINE_MAX] = '\n';
	p = file_with("longest.conf", big, CONFIG_LINE_MAX + 1);
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), CONFIG_OK);
	CHECK_EQ(strlen(c.instance_id), CONFIG_LINE_MAX - n);
	config_deinit(&c);
	memset(big + n, 'x', CONFIG_LINE_MAX + 1 - n);
	big[CONFIG_LINE_MAX + 1] = '\n';
	p = file_with("long.conf", big, CONFIG_LINE_MAX + 2);
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("long line", err, "long.conf:1:", "longer than", NULL);

	/* the largest file accepted (comments), and one byte more */
	memset(big, '#', sizeof(big));
	for (size_t i = 80; i < sizeof(big); i += 81)
		big[i] = '\n';
	p = file_with("largest.conf", big, CONFIG_FILE_MAX);
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), CONFIG_OK);
	config_deinit(&c);
	p = file_with("large.conf", big, CONFIG_FILE_MAX + 1);
	CHECK_EQ(with_file(&c, err, p, NULL, NULL), -EINVAL);
	error_has("large file", err, "large.conf", "larger than", NULL);

	/* a FIFO is refused at once, not waited on */
	char fifo[256];
	snprintf(fifo, sizeof(fifo), "%s/fifo.conf", tmpdir);
	CHECK_EQ(mkfifo(fifo, 0600), 0);
	CHECK_EQ(with_file(&c, err, fifo, NULL, NULL), -EINVAL);
	error_has("fifo", err, "fifo.conf", "regular", NULL);
	unlink(fifo);
	CHECK_EQ(with_file(&c, err, tmpdir, NULL, NULL), -EINVAL);   /* a directory */
	error_has("directory", err, "regular", NULL, NULL);
}

/* Flags override the file wherever --config stands; values persist. */
static void file_and_flags(void)
{
	struct config c;
	char err[256];
	const char *p = FILE_WITH("base.conf", "memory = 1G\nshards = 2\nprefault = true\n");

	CHECK_EQ(with_file(&c, err, p, "--memory", "2G"), CONFIG_OK);
	CHECK_EQ(c.memory, 2ull << 30);
	CHECK_EQ(c.shards, 2);
	config_deinit(&c);
	char *argv[] = { "ringcached", "--memory=3G", "--prefault=false", "--config", (char *)p,
			 NULL };
	CHECK_EQ(config_parse(&c, 5, argv, err, sizeof(err)), CONFIG_OK);
	CHECK_EQ(c.memory, 3ull << 30);
	CHECK(!c.prefault);
	config_deinit(&c);
	/* a bad flag is reported as the flag even with a file */
	CHECK_EQ(with_file(&c, err, p, "--memory", "lots"), -EINVAL);
	error_has("flag over file", err, "--memory", "lots", NULL);
	/* --help is answered before the file is read */
	CHECK_EQ(with_file(&c, err, "/nonexistent", "--help", NULL), CONFIG_HELP);
	/* --check-config: the same parse, another result */
	CHECK_EQ(with_file(&c, err, p, "--check-config", NULL), CONFIG_CHECK);
	config_deinit(&c);
	CHECK_EQ(with_file(&c, err, "/nonexistent", "--check-config", NULL), -EINVAL);
}

/* config_parse_text alone (the fuzz target's entry): in place, checked. */
static void file_reading(void)
{
	struct config c;
	char err[256];
	char text[] = "memory = 8M\nredis = redis://h:1\nmax-head = 63\n";

	CHECK_EQ(parse(&c, err, NULL, NULL, NULL), CONFIG_OK);
	CHECK_EQ(config_parse_text(&c, "t", text, strlen(text), err, sizeof(err)), -EINVAL);
	error_has("text", err, "t:3:", "max-head", NULL);
	CHECK_EQ(c.memory, 256u << 20);              /* untouched on failure */
	char text2[] = "memory = 8M\nredis = redis://h:1\n";
	CHECK_EQ(config_parse_text(&c, "t", text2, strlen(text2), err, sizeof(err)), 0);
	CHECK_EQ(c.memory, 8u << 20);
	CHECK(c.redis >= text2 && c.redis < text2 + sizeof(text2));
}

/* --check-config's output is a file that reads back to the same settings. */
static void printed(void)
{
	struct config a, b;
	char err[256], *out = NULL, *out2 = NULL;
	size_t len = 0, len2 = 0;
	char *argv[] = { "ringcached", "--listen", "[::1]:81", "--cpuset", "0-3,5,7-8",
			 "--memory", "1536M", "--hash-seed", "42", "--redis",
			 "redis://u:s3cret@h:6379/2", "--shards", "4", NULL };

	CHECK_EQ(config_parse(&a, 13, argv, err, sizeof(err)), CONFIG_OK);
	FILE *f = open_memstream(&out, &len);
	config_print(f, &a);
	fclose(f);
	CHECK(strstr(out, "\nlisten = [::1]:81\n") != NULL);
	CHECK(strstr(out, "\ncpuset = 0-3,5,7-8\n") != NULL);
	CHECK(strstr(out, "\nmemory = 1536M\n") != NULL);
	CHECK(strstr(out, "\nshards = 4\n") != NULL);
	CHECK(strstr(out, "\ncoherence-cpu = auto\n") != NULL);
	CHECK(strstr(out, "\napi-keys-file =\n") != NULL);
	/* the password is not printed */
	CHECK(strstr(out, "s3cret") == NULL);
	CHECK(strstr(out, "\nredis = redis://u:***@h:6379/2\n") != NULL);

	/* read back (without the masked URL), it prints the same */
	char *r = strstr(out, "\nredis = ");
	CHECK(r != NULL);
	if (r) {
		char *eol = strchr(r + 1, '\n');
		memmove(r + 1, eol + 1, strlen(eol + 1) + 1);
	}
	CHECK_EQ(parse(&b, err, NULL, NULL, NULL), CONFIG_OK);
	CHECK_EQ(config_parse_text(&b, "printed", out, strlen(out), err, sizeof(err)), 0);
	b.redis = a.redis;
	f = open_memstream(&out2, &len2);
	config_print(f, &b);
	fclose(f);
	char *again = NULL;
	size_t alen = 0;
	f = open_memstream(&again, &alen);
	config_print(f, &a);
	fclose(f);
	CHECK(!strcmp(out2, again));
	CHECK_EQ(b.hash_seed.value, 42);
	CHECK(b.hash_seed.fixed);
	free(out);
	free(out2);
	free(again);
}

static int parse_argv(struct config *c, char *err, char **argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	err[0] = '\0';
	return config_parse(c, argc, argv, err, 256);
}

/* LISTEN lists: TCP and unix: addresses, a flag given again adds, a list
 * in one value, the file's list replaced by the flags', and the errors. */
static void listens(void)
{
	struct config c;
	char err[256], out[512];

	char *two[] = { "ringcached", "--listen", "127.0.0.1:9000", "--listen",
			"unix:/run/ringcached/http.sock", NULL };
	CHECK_EQ(parse_argv(&c, err, two), CONFIG_OK);
	CHECK_EQ(c.listen.n, 2);
	CHECK_EQ(c.listen.at[0].port, 9000);
	CHECK(!c.listen.at[0].path[0]);
	CHECK(!strcmp(c.listen.at[1].path, "/run/ringcached/http.sock"));
	CHECK_EQ(c.listen.at[1].port, 0);
	CHECK(config_format(&c, "listen", out, sizeof(out)) > 0);
	CHECK(!strcmp(out, "127.0.0.1:9000, unix:/run/ringcached/http.sock"));

	/* one value, a list; blanks around commas */
	CHECK_EQ(parse(&c, err, "--listen", "unix:/tmp/a.sock ,[::1]:81", NULL), CONFIG_OK);
	CHECK_EQ(c.listen.n, 2);
	CHECK(!strcmp(c.listen.at[0].path, "/tmp/a.sock"));
	CHECK(!strcmp(c.listen.at[1].host, "::1"));
	/* unix only: the TCP default is gone */
	CHECK_EQ(parse(&c, err, "--listen", "unix:/tmp/a.sock", NULL), CONFIG_OK);
	CHECK_EQ(c.listen.n, 1);
	/* RESP on a socket; empty is off */
	CHECK_EQ(parse(&c, err, "--resp-listen", "unix:/tmp/r.sock", NULL), CONFIG_OK);
	CHECK_EQ(c.resp_listen.n, 1);
	CHECK_EQ(parse(&c, err, NULL, NULL, NULL), CONFIG_OK);
	CHECK_EQ(c.resp_listen.n, 0);
	CHECK_EQ(c.listen_mode, 0660);
	CHECK_EQ(parse(&c, err, "--listen-mode", "0600", NULL), CONFIG_OK);
	CHECK_EQ(c.listen_mode, 0600);
	CHECK(config_format(&c, "listen-mode", out, sizeof(out)) > 0);
	CHECK(!strcmp(out, "0600"));

	/* the flags' list replaces the file's */
	char path[300];
	snprintf(path, sizeof(path), "%s/listen.conf", tmpdir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fputs("listen = 127.0.0.1:7000, unix:/tmp/file.sock\n", f);
	fclose(f);
	char *over[] = { "ringcached", "--config", path, "--listen", "unix:/tmp/flag.sock", NULL };
	CHECK_EQ(parse_argv(&c, err, over), CONFIG_OK);
	CHECK_EQ(c.listen.n, 1);
	CHECK(!strcmp(c.listen.at[0].path, "/tmp/flag.sock"));
	config_deinit(&c);
	char *file_only[] = { "ringcached", "--config", path, NULL };
	CHECK_EQ(parse_argv(&c, err, file_only), CONFIG_OK);
	CHECK_EQ(c.listen.n, 2);
	config_deinit(&c);
	unlink(path);

	/* errors name the flag */
	error_names("--listen", "unix:relative.sock", "--listen");
	error_names("--listen", "unix:/tmp/dir/", "--listen");
	error_names("--listen", "unix:", "--listen");
	error_names("--listen", "", "--listen");
	error_names("--listen", "127.0.0.1:80,", "--listen");
	error_names("--listen", "127.0.0.1:80,,unix:/a", "--listen");
	error_names("--listen", "127.0.0.1:80, 0.0.0.0:80", "--listen");   /* one port twice */
	error_names("--listen", "unix:/a, unix:/a", "--listen");
	error_names("--listen", "unix:/a,unix:/b,unix:/c,unix:/d,unix:/e", "--listen"); /* > MAX */
	char longp[200] = "unix:/";
	memset(longp + 6, 'x', 120);
	longp[126] = '\0';
	error_names("--listen", longp, "--listen");
	error_names("--listen-mode", "660", "--listen-mode");
	error_names("--listen-mode", "01777", "--listen-mode");
	error_names("--listen-mode", "0668", "--listen-mode");
	char *same_port[] = { "ringcached", "--listen", "127.0.0.1:9000", "--resp-listen",
			      "0.0.0.0:9000", NULL };
	CHECK_EQ(parse_argv(&c, err, same_port), -EINVAL);
	CHECK(strstr(err, "--resp-listen") && strstr(err, "9000"));
	char *same_path[] = { "ringcached", "--listen", "unix:/tmp/s", "--resp-listen",
			      "unix:/tmp/s", NULL };
	CHECK_EQ(parse_argv(&c, err, same_path), -EINVAL);
	CHECK(strstr(err, "--resp-listen") && strstr(err, "/tmp/s"));
	char *again_dup[] = { "ringcached", "--listen", "unix:/tmp/s", "--listen", "unix:/tmp/s",
			      NULL };
	CHECK_EQ(parse_argv(&c, err, again_dup), -EINVAL);
	CHECK(strstr(err, "--listen") != NULL);
}

static void rmtree(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	CHECK_EQ(system(cmd), 0);
}

int main(void)
{
	defaults();
	values();
	errors();
	cpusets();
	hash_seed();
	conn_memory();
	CHECK(mkdtemp(tmpdir) != NULL);
	autos();
	shown_defaults();
	file_syntax();
	file_hostile();
	file_errors();
	file_and_flags();
	file_reading();
	printed();
	listens();
	rmtree();
	return check_done("config");
}
