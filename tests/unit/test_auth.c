/*
 * test_auth.c - API keys: loading files (good and bad) and checking keys in
 * both headers, including the near misses an attacker would try.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "ringcache/auth.h"

static char dir[] = "/tmp/test_auth.XXXXXX";
static char path[256];

/* Writes `len` bytes of `text` to the test's key file with `mode`. */
static const char *keyfile(const void *text, size_t len, mode_t mode)
{
	snprintf(path, sizeof(path), "%s/keys", dir);
	unlink(path);
	FILE *f = fopen(path, "w");
	if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(2);
	}
	chmod(path, mode);
	return path;
}

static const char *keys_str(const char *text)
{
	return keyfile(text, strlen(text), 0600);
}

static bool xkey(const struct auth *a, const char *k)
{
	return auth_check(a, k, strlen(k), NULL, 0);
}

static bool bearer(const struct auth *a, const char *v)
{
	return auth_check(a, NULL, 0, v, strlen(v));
}

static void test_single(void)
{
	struct auth *a = NULL;
	struct auth_info info;

	CHECK_EQ(auth_create(&a, keys_str("s3cr3t-key-0123456789\n"), &info), 0);
	CHECK_EQ(info.keys, 1);
	CHECK_EQ(info.line, 0);
	CHECK(!info.other_readable);

	CHECK(xkey(a, "s3cr3t-key-0123456789"));
	CHECK(bearer(a, "Bearer s3cr3t-key-0123456789"));
	CHECK(!xkey(a, "s3cr3t-key-0123456788"));     /* same length, last byte */
	CHECK(!xkey(a, "t3cr3t-key-0123456789"));     /* same length, first byte */
	CHECK(!xkey(a, "s3cr3t-key-012345678"));      /* prefix */
	CHECK(!xkey(a, "s3cr3t-key-01234567899"));    /* longer */
	CHECK(!xkey(a, "s"));
	CHECK(!xkey(a, ""));
	CHECK(!auth_check(a, NULL, 0, NULL, 0));
	CHECK(!auth_check(a, "s3cr3t-key-0123456789", 0, NULL, 0));
	/* Padding bytes are zero: a candidate with trailing NULs is not the key. */
	CHECK(!auth_check(a, "s3cr3t-key-0123456789\0\0", 23, NULL, 0));

	/* Either header suffices; a wrong one does not spoil a right one. */
	CHECK(auth_check(a, "wrong", 5, "Bearer s3cr3t-key-0123456789", 28));
	CHECK(auth_check(a, "s3cr3t-key-0123456789", 21, "Bearer nope", 11));
	CHECK(!auth_check(a, "wrong", 5, "Bearer nope", 11));

	/* Surrounding whitespace of a header value is not part of it. */
	CHECK(xkey(a, "  s3cr3t-key-0123456789\t"));

	/* Bearer: any case, one or more spaces; nothing else. */
	CHECK(bearer(a, "bearer s3cr3t-key-0123456789"));
	CHECK(bearer(a, "BEARER s3cr3t-key-0123456789"));
	CHECK(bearer(a, "BeArEr    s3cr3t-key-0123456789"));
	CHECK(bearer(a, "Bearer s3cr3t-key-0123456789  "));
	CHECK(!bearer(a, "Bearers3cr3t-key-0123456789"));
	CHECK(!bearer(a, "Bearer\ts3cr3t-key-0123456789"));
	CHECK(!bearer(a, "Basic s3cr3t-key-0123456789"));
	CHECK(!bearer(a, "s3cr3t-key-0123456789"));
	CHECK(!bearer(a, "Bearer "));
	CHECK(!bearer(a, "Bearer"));
	CHECK(!bearer(a, "Bearer s3cr3t-key-012345678"));
	CHECK(!bearer(a, "Bearer s3cr3t-key-0123456789x"));
	CHECK(!bearer(a, "Bearer s3cr3t-key-0123456789 x"));
	auth_destroy(a);
	auth_destroy(NULL);
}

static void test_many(void)
{
	struct auth *a = NULL;
	struct auth_info info;
	char text[64 * 300] = "# production keys\n\n";
	char key[AUTH_KEY_MAX + 2];

	/* Keys of many lengths, several sharing prefixes, CRLF line ends. */
	for (int i = 0; i < 60; i++) {
		size_t at = strlen(text);
		snprintf(text + at, sizeof(text) - at, "k%0*d\r\n", 1 + i % 40, i);
	}
	strcat(text, "abc\nabcd\n   \n");
	memset(key, 'Z', AUTH_KEY_MAX);
	key[AUTH_KEY_MAX] = '\0';
	strcat(text, key);
	strcat(text, "\n");
	CHECK_EQ(auth_create(&a, keys_str(text), &info), 0);
	CHECK_EQ(info.keys, 63);

	unsigned ok = 0;
	for (int i = 0; i < 60; i++) {
		char b[AUTH_KEY_MAX + 16];
		snprintf(key, sizeof(key), "k%0*d", 1 + i % 40, i);
		snprintf(b, sizeof(b), "Bearer %s", key);
		ok += xkey(a, key) && bearer(a, b);
	}
	CHECK_EQ(ok, 60);
	CHECK(xkey(a, "abc"));
	CHECK(xkey(a, "abcd"));
	CHECK(!xkey(a, "ab"));
	CHECK(!xkey(a, "abcde"));
	CHECK(!xkey(a, "k"));
	CHECK(!xkey(a, "k60"));
	CHECK(!xkey(a, "k0\r"));
	CHECK(!xkey(a, "# production keys"));

	memset(key, 'Z', AUTH_KEY_MAX);
	key[AUTH_KEY_MAX] = '\0';
	CHECK(xkey(a, key));
	key[AUTH_KEY_MAX - 1] = 'Y';
	CHECK(!xkey(a, key));
	key[AUTH_KEY_MAX - 1] = 'Z';
	key[AUTH_KEY_MAX] = 'Z';
	key[AUTH_KEY_MAX + 1] = '\0';
	CHECK(!xkey(a, key)); /* one byte past the longest possible key */
	auth_destroy(a);
}

static void test_bad_files(void)
{
	struct auth *a = NULL, *sentinel = (struct auth *)&a;
	struct auth_info info;

	a = sentinel;
	CHECK_EQ(auth_create(&a, keys_str(""), &info), -EINVAL);
	CHECK_EQ(info.line, 0);
	CHECK_EQ(auth_create(&a, keys_str("# only a comment\n\n \r\n"), &info), -EINVAL);
	CHECK_EQ(info.keys, 0);
	CHECK_EQ(auth_create(&a, keys_str("good\nbad key\n"), &info), -EINVAL);
	CHECK_EQ(info.line, 2);
	CHECK_EQ(auth_create(&a, keys_str("good\n\n# c\n caret\n"), &info), -EINVAL);
	CHECK_EQ(info.line, 4);
	CHECK_EQ(auth_create(&a, keys_str("k\xc3\xa9y\n"), &info), -EINVAL);
	CHECK_EQ(info.line, 1);
	CHECK_EQ(auth_create(&a, keyfile("ab\0cd\n", 6, 0600), &info), -EINVAL);
	CHECK_EQ(info.line, 1);

	char longkey[AUTH_KEY_MAX + 3];
	memset(longkey, 'x', AUTH_KEY_MAX + 1);
	strcpy(longkey + AUTH_KEY_MAX + 1, "\n");
	CHECK_EQ(auth_create(&a, keys_str(longkey), &info), -EINVAL);
	CHECK_EQ(info.line, 1);

	size_t big = (AUTH_KEYS_MAX + 1) * 6;
	char *many = malloc(big + 1);
	many[0] = '\0';
	for (unsigned i = 0, at = 0; i <= AUTH_KEYS_MAX; i++)
		at += (unsigned)snprintf(many + at, big + 1 - at, "k%04u\n", i);
	CHECK_EQ(auth_create(&a, keys_str(many), &info), -E2BIG);
	CHECK_EQ(info.line, AUTH_KEYS_MAX + 1);
	many[AUTH_KEYS_MAX * 6] = '\0';
	CHECK_EQ(auth_create(&a, keys_str(many), &info), 0);
	CHECK_EQ(info.keys, AUTH_KEYS_MAX);
	CHECK(xkey(a, "k1023"));
	CHECK(!xkey(a, "k1024"));
	auth_destroy(a);
	free(many);

	a = sentinel;
	char missing[300];
	snprintf(missing, sizeof(missing), "%s/none", dir);
	CHECK_EQ(auth_create(&a, missing, &info), -ENOENT);
	CHECK(auth_create(&a, dir, NULL) < 0); /* a directory */
	CHECK(a == sentinel);                   /* untouched on failure */

	/* A key file others can read still loads; the flag says so.  Its group
	 * may read it (the unit's SupplementaryGroups=ringcached): no flag. */
	CHECK_EQ(auth_create(&a, keyfile("k\n", 2, 0644), &info), 0);
	CHECK(info.other_readable);
	auth_destroy(a);
	CHECK_EQ(auth_create(&a, keyfile("k", 1, 0640), &info), 0); /* no final newline */
	CHECK(!info.other_readable);
	CHECK(xkey(a, "k"));
	auth_destroy(a);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	test_single();
	test_many();
	test_bad_files();
	unlink(path);
	rmdir(dir);
	return check_done("test_auth");
}
