/*
 * notify.h - the service manager's notification protocol (sd_notify(3)),
 * spoken directly: one datagram of "KEY=VALUE\n" lines to the Unix socket
 * named by $NOTIFY_SOCKET, so the daemon needs no libsystemd.
 *
 * systemd sets NOTIFY_SOCKET for Type=notify services (a path, or "@name"
 * for an abstract socket) and, with WatchdogSec=, WATCHDOG_USEC (and
 * WATCHDOG_PID: the pings are expected from that process only).  Without
 * NOTIFY_SOCKET every call is a no-op, so the daemon runs the same by hand.
 *
 * Not thread-safe: the daemon's main thread alone notifies.
 */
#ifndef RINGCACHE_NOTIFY_H
#define RINGCACHE_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#define NOTIFY_MSG_MAX 1024   /* longest message (the datagram) sent */

struct notify {
	int fd;                        /* -1: not under a service manager */
	struct sockaddr_un addr;
	socklen_t addrlen;
	uint64_t watchdog_usec;        /* 0: no watchdog expected */
};

/*
 * Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID from `env` (the
 * daemon passes getenv).  0 with n->fd == -1 when there is no socket; 0
 * with a socket; -EINVAL for a NOTIFY_SOCKET that is neither an absolute
 * path nor "@name" or is too long, or a WATCHDOG_USEC that is not a
 * positive number; -EAFNOSUPPORT for other address families (vsock:...);
 * -errno from socket().  On failure n->fd is -1 (nothing to close) and
 * n->watchdog_usec 0.
 */
int notify_setup(struct notify *n, char *(*env)(const char *name));

/* Closes the socket.  Accepts a notify that was never set up successfully. */
void notify_teardown(struct notify *n);

/*
 * Sends one message ("READY=1\nSTATUS=...", printf-style, at most
 * NOTIFY_MSG_MAX bytes: longer is -EMSGSIZE, nothing sent).  0 when sent or
 * when there is no socket; -errno from sendto (a send blocks at most a
 * second: the manager reads these datagrams promptly, and a daemon that
 * waited longer would stall its own watchdog).
 */
int notify_send(const struct notify *n, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline bool notify_active(const struct notify *n)
{
	return n->fd >= 0;
}

#endif
