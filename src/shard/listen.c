/*
 * listen.c - listening sockets, and the claim on a port (listen.h).
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"

/* Resolves a for a passive socket; 0 or -EINVAL with the resolver's words. */
static int resolve(const struct config_addr *a, const char *flag, struct addrinfo **res,
		   char *err, size_t errlen)
{
	struct addrinfo hints;
	char port[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", a->port);
	rc = getaddrinfo(a->host, port, &hints, res);
	if (rc) {
		snprintf(err, errlen, "%s %s: %s", flag, a->host, gai_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

/*
 * The claim: "\0ringcached/tcp/<port>" in the abstract namespace of this
 * network namespace.  By port, not address, so that 0.0.0.0:8080 and
 * 127.0.0.1:8080 (which SO_REUSEPORT would also let share) exclude each other.
 */
static int claim_port(unsigned port, const char *flag, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	int fd, n;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "ringcached/tcp/%u", port);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "%s: claiming port %u: %s", flag, port, strerror(errno));
		return -errno;
	}
	if (bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) == -1) {
		int e = errno;
		close(fd);
		if (e == EADDRINUSE)
			snprintf(err, errlen,
				 "%s: port %u: address already in use (another ringcached "
				 "is starting or running with this port)", flag, port);
		else
			snprintf(err, errlen, "%s: claiming port %u: %s", flag, port, strerror(e));
		return -e;
	}
	return fd;
}

int listen_claim(const struct config_addr *a, const char *flag, char *err, size_t errlen)
{
	struct addrinfo *res = NULL;
	int one = 1, claim, fd, rc = 0;

	claim = claim_port(a->port, flag, err, errlen);
	if (claim < 0)
		return claim;
	if (resolve(a, flag, &res, err, errlen)) {
		close(claim);
		return -EINVAL;
	}
	/* a plain bind (no SO_REUSEPORT) fails while anyone listens on a */
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 && errno == EADDRINUSE) {
			snprintf(err, errlen,
				 "%s %s:%u: address already in use (another ringcached "
				 "or another server listens there)", flag, a->host, a->port);
			rc = -EADDRINUSE;
		}
		close(fd);
	}
	freeaddrinfo(res);
	if (rc) {
		close(claim);
		return rc;
	}
	return claim;
}

int listen_socket(const struct config_addr *a, const char *flag, char *err, size_t errlen)
{
	struct addrinfo *res = NULL;
	int one = 1, fd, rc;

	if (resolve(a, flag, &res, err, errlen))
		return -EINVAL;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 4096) == -1) {
		rc = -errno;
		if (fd != -1)
			close(fd);
		freeaddrinfo(res);
		snprintf(err, errlen, "%s %s:%u: %s", flag, a->host, a->port, strerror(-rc));
		return rc;
	}
	freeaddrinfo(res);
	return fd;
}
