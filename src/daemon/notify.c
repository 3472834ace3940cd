/*
 * notify.c - sd_notify(3) without libsystemd (see notify.h).
 *
 * The protocol is one AF_UNIX datagram per message; the manager checks the
 * sender's credentials (NotifyAccess=main: our pid), which the kernel
 * attaches itself.  An abstract address ("@name") is the name with a
 * leading NUL byte and no terminator, its length counted exactly.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "notify.h"

static int parse_usec(const char *s, uint64_t *out)
{
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v == 0)
		return -EINVAL;
	*out = v;
	return 0;
}

int notify_setup(struct notify *n, char *(*env)(const char *name))
{
	const char *path = env("NOTIFY_SOCKET");
	const char *usec = env("WATCHDOG_USEC");
	const char *pid = env("WATCHDOG_PID");
	uint64_t wd = 0;
	size_t len;

	memset(n, 0, sizeof(*n));
	n->fd = -1;
	if (!path || !*path)
		return 0;
	if (usec && *usec && parse_usec(usec, &wd))
		return -EINVAL;
	/* the pings are for another process (a parent that forked us) */
	if (pid && *pid && strtoll(pid, NULL, 10) != (long long)getpid())
		wd = 0;

	len = strlen(path);
	n->addr.sun_family = AF_UNIX;
	if (path[0] == '@') {
		if (len < 2 || len > sizeof(n->addr.sun_path))
			return -EINVAL;
		n->addr.sun_path[0] = '\0';
		memcpy(n->addr.sun_path + 1, path + 1, len - 1);
		n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else if (path[0] == '/') {
		if (len >= sizeof(n->addr.sun_path))
			return -EINVAL;
		memcpy(n->addr.sun_path, path, len + 1);
		n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	} else {
		return strchr(path, ':') ? -EAFNOSUPPORT : -EINVAL;
	}

	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	struct timeval tv = { .tv_sec = 1 };
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1) {
		int e = errno;
		close(fd);
		return -e;
	}
	n->fd = fd;
	n->watchdog_usec = wd;
	return 0;
}

void notify_teardown(struct notify *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
}

int notify_send(const struct notify *n, const char *fmt, ...)
{
	char msg[NOTIFY_MSG_MAX + 1];
	va_list ap;
	int len;

	if (n->fd < 0)
		return 0;
	va_start(ap, fmt);
	len = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len > NOTIFY_MSG_MAX)
		return -EMSGSIZE;
	if (sendto(n->fd, msg, (size_t)len, MSG_NOSIGNAL, (const struct sockaddr *)&n->addr,
		   n->addrlen) == -1)
		return -errno;
	return 0;
}
