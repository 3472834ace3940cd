/*
 * test_config.c - flag parsing: defaults, every kind of value, and errors
 * that name the flag.
 */
#include <errno.h>
#include <string.h>

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
	CHECK(!strcmp(c.listen.host, "127.0.0.1"));
	CHECK_EQ(c.listen.port, 8080);
	CHECK_EQ(c.shards, 0);
	CHECK_EQ(c.cpuset.n, 0);
	CHECK_EQ(c.max_value, 16u << 20);
	CHECK_EQ(c.hugepages, CONFIG_HUGEPAGES_AUTO);
	CHECK(!c.prefault);
	CHECK(!strcmp(c.redis_prefix, "ringcache:"));
	CHECK(!c.hash_seed.fixed);
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
	CHECK(!strcmp(c.listen.host, "0.0.0.0"));
	CHECK_EQ(c.listen.port, 9000);
	CHECK(c.prefault);
	CHECK_EQ(parse(&c, err, "--listen=[::1]:81", NULL, NULL), CONFIG_OK);
	CHECK(!strcmp(c.listen.host, "::1"));
	CHECK_EQ(c.listen.port, 81);
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

int main(void)
{
	defaults();
	values();
	errors();
	cpusets();
	hash_seed();
	return check_done("config");
}
