/*
 * test_notify.c - the service manager protocol (src/daemon/notify.c):
 * $NOTIFY_SOCKET as a path and as an abstract name, received by a real
 * datagram socket of the test's; $WATCHDOG_USEC and $WATCHDOG_PID; the
 * values it refuses; no socket, no effect.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "daemon/notify.h"

/* The environment notify_setup reads, set per case. */
static const char *env_socket, *env_usec, *env_pid;

static char *fake_env(const char *name)
{
	if (!strcmp(name, "NOTIFY_SOCKET"))
		return (char *)env_socket;
	if (!strcmp(name, "WATCHDOG_USEC"))
		return (char *)env_usec;
	if (!strcmp(name, "WATCHDOG_PID"))
		return (char *)env_pid;
	return NULL;
}

static int setup(struct notify *n, const char *sock, const char *usec, const char *pid)
{
	env_socket = sock;
	env_usec = usec;
	env_pid = pid;
	return notify_setup(n, fake_env);
}

/* A datagram socket bound to `name` (a path, or "@abstract"). */
static int listener(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	socklen_t alen;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	if (name[0] == '@') {
		memcpy(sa.sun_path + 1, name + 1, len - 1);
		alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		memcpy(sa.sun_path, name, len + 1);
		alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	}
	CHECK_EQ(bind(fd, (struct sockaddr *)&sa, alen), 0);
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void receives(int fd, const char *want)
{
	char buf[2048];
	ssize_t got = recv(fd, buf, sizeof(buf) - 1, 0);

	CHECK(got >= 0);
	if (got < 0)
		return;
	buf[got] = '\0';
	CHECK(!strcmp(buf, want));
	if (strcmp(buf, want))
		fprintf(stderr, "  received '%s', want '%s'\n", buf, want);
}

static void path_socket(void)
{
	char dir[] = "/tmp/test_notify_XXXXXX", path[128];
	struct notify n;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/notify", dir);
	int fd = listener(path);
	CHECK_EQ(setup(&n, path, NULL, NULL), 0);
	CHECK(notify_active(&n));
	CHECK_EQ(n.watchdog_usec, 0);
	CHECK_EQ(notify_send(&n, "READY=1\nSTATUS=serving on %s", "127.0.0.1:8080"), 0);
	receives(fd, "READY=1\nSTATUS=serving on 127.0.0.1:8080");
	CHECK_EQ(notify_send(&n, "WATCHDOG=1"), 0);
	receives(fd, "WATCHDOG=1");
	/* the longest message fits; one byte more is refused, nothing sent */
	char big[NOTIFY_MSG_MAX + 2];
	memset(big, 'x', sizeof(big));
	big[NOTIFY_MSG_MAX] = '\0';
	CHECK_EQ(notify_send(&n, "%s", big), 0);
	receives(fd, big);
	big[NOTIFY_MSG_MAX] = 'x';
	big[NOTIFY_MSG_MAX + 1] = '\0';
	CHECK_EQ(notify_send(&n, "%s", big), -EMSGSIZE);
	/* the manager gone: an error, not a crash or a hang */
	close(fd);
	unlink(path);
	CHECK(notify_send(&n, "WATCHDOG=1") < 0);
	notify_teardown(&n);
	CHECK(!notify_active(&n));
	notify_teardown(&n);        /* twice is harmless */
	rmdir(dir);
}

static void abstract_socket(void)
{
	char name[64];
	struct notify n;

	snprintf(name, sizeof(name), "@ringcache-test-notify-%d", (int)getpid());
	int fd = listener(name);
	CHECK_EQ(setup(&n, name, "30000000", NULL), 0);
	CHECK_EQ(n.watchdog_usec, 30000000);
	CHECK_EQ(notify_send(&n, "STOPPING=1"), 0);
	receives(fd, "STOPPING=1");
	notify_teardown(&n);
	close(fd);
}

static void environment(void)
{
	struct notify n;
	char pid[32], other[32];

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	snprintf(other, sizeof(other), "%d", (int)getpid() + 1);

	/* no socket: inactive, and sending is a successful no-op */
	CHECK_EQ(setup(&n, NULL, "1000000", NULL), 0);
	CHECK(!notify_active(&n));
	CHECK_EQ(n.watchdog_usec, 0);
	CHECK_EQ(notify_send(&n, "READY=1"), 0);
	CHECK_EQ(setup(&n, "", NULL, NULL), 0);
	CHECK(!notify_active(&n));

	/* the pings are for WATCHDOG_PID only */
	CHECK_EQ(setup(&n, "/run/x", "1000000", pid), 0);
	CHECK_EQ(n.watchdog_usec, 1000000);
	notify_teardown(&n);
	CHECK_EQ(setup(&n, "/run/x", "1000000", other), 0);
	CHECK_EQ(n.watchdog_usec, 0);
	notify_teardown(&n);

	/* refused, with nothing left open */
	const char *bad_sockets[] = { "relative/path", "@", "vsock:2:1234" };
	for (unsigned i = 0; i < 3; i++) {
		int rc = setup(&n, bad_sockets[i], NULL, NULL);
		CHECK(rc == -EINVAL || rc == -EAFNOSUPPORT);
		CHECK(!notify_active(&n));
	}
	CHECK_EQ(setup(&n, "vsock:2:1234", NULL, NULL), -EAFNOSUPPORT);
	char long_path[200];
	memset(long_path, 'a', sizeof(long_path));
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	CHECK_EQ(setup(&n, long_path, NULL, NULL), -EINVAL);
	long_path[0] = '@';
	CHECK_EQ(setup(&n, long_path, NULL, NULL), -EINVAL);
	const char *bad_usec[] = { "0", "-5", "12x", "99999999999999999999999" };
	for (unsigned i = 0; i < 4; i++) {
		CHECK_EQ(setup(&n, "/run/x", bad_usec[i], NULL), -EINVAL);
		CHECK(!notify_active(&n) && n.watchdog_usec == 0);
	}
}

int main(void)
{
	path_socket();
	abstract_socket();
	environment();
	return check_done("notify");
}
