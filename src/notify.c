/*
 * notify.c: telling systemd the service's state (the sd_notify protocol).
 *
 * With Type=notify, systemd passes NOTIFY_SOCKET, the address of a
 * datagram socket: a path, or an abstract name written with a leading '@'.
 * Each state change is one datagram of newline-separated assignments:
 * READY=1 once the listeners are bound and the keys, database and policies
 * are loaded (so `systemctl start` returns only then, and fails when the
 * start fails), RELOADING=1 ... READY=1 around a SIGHUP reload, STOPPING=1
 * at SIGTERM, and STATUS= lines for `systemctl status`.
 *
 * Written here rather than linking libsystemd's sd_notify(): the protocol
 * is one sendto(2), and libsystemd would be one more build dependency,
 * optional on non-systemd systems, which would then need a unit that is
 * Type=notify or not depending on how the binary was built.
 *
 * Safe from any thread (no state); never blocks (a datagram to a local
 * socket).  Without NOTIFY_SOCKET (not under systemd) it does nothing.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8sauth.h"

/*
 * Fill a sockaddr_un from a NOTIFY_SOCKET value; returns its length, or 0
 * for a value that is no usable address.
 */
static socklen_t
notify_address(const char *name, struct sockaddr_un *sun)
{
	size_t n = strlen(name);

	if ((name[0] != '/' && name[0] != '@') || n < 2 ||
	    n >= sizeof sun->sun_path)
		return (0);
	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, name, n);
	if (name[0] == '@') {
		sun->sun_path[0] = '\0'; /* abstract: no terminating NUL */
		return (
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
	}
	return ((socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1));
}

/*
 * Send one state datagram ("READY=1\nSTATUS=..."): 0 sent, 1 not under
 * systemd (no NOTIFY_SOCKET), -1 failed (logged).
 */
int
notify_send(const char *state)
{
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	ssize_t n;
	int fd;

	if (name == NULL || *name == '\0')
		return (1);
	if ((len = notify_address(name, &sun)) == 0) {
		log_err("notify: NOTIFY_SOCKET is not a socket address: %s",
		    name);
		return (-1);
	}
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1) {
		log_err("notify: socket: %s", strerror(errno));
		return (-1);
	}
	do
		n = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
		    (struct sockaddr *)&sun, len);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		log_err("notify: cannot send %.*s to systemd (%s): %s",
		    (int)strcspn(state, "\n"), state, name, strerror(errno));
	close(fd);
	return (n == -1 ? -1 : 0);
}
