/*
 * test_notify.c: the sd_notify sender (src/notify.c) against sockets the
 * test binds: a path and an abstract ("@name") address get the datagram
 * exactly; no NOTIFY_SOCKET is "not under systemd"; an address that is no
 * socket address, or no one listening, is an error.
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "k8sauth.h"

/* Bind a datagram socket at sun_path[0..n) (abstract when it starts 0). */
static int
bind_at(const char *path, size_t n)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, n);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(fd != -1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun,
			     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)),
	    0);
	return (fd);
}

/* Receive one datagram (non-blocking) as a string. */
static void
recv_one(int fd, char *buf, size_t size)
{
	ssize_t n;

	n = recv(fd, buf, size - 1, MSG_DONTWAIT);
	assert_true(n >= 0);
	buf[n] = '\0';
}

static void
test_path(void **state)
{
	char dir[] = "/tmp/test_notify.XXXXXX", path[128], buf[256];
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/notify", dir);
	fd = bind_at(path, strlen(path));
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(notify_send("READY=1\nSTATUS=serving"), 0);
	recv_one(fd, buf, sizeof buf);
	assert_string_equal(buf, "READY=1\nSTATUS=serving");
	close(fd);
	unlink(path);
	rmdir(dir);
	/* nobody listening any more */
	assert_int_equal(notify_send("STOPPING=1"), -1);
}

static void
test_abstract(void **state)
{
	char name[64], buf[256];
	int fd;

	snprintf(name, sizeof name, "@test_notify.%ld", (long)getpid());
	name[0] = '\0';
	fd = bind_at(name, strlen(name + 1) + 1);
	name[0] = '@';
	setenv("NOTIFY_SOCKET", name, 1);
	assert_int_equal(notify_send("RELOADING=1"), 0);
	recv_one(fd, buf, sizeof buf);
	assert_string_equal(buf, "RELOADING=1");
	close(fd);
}

static void
test_not_under_systemd(void **state)
{
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(notify_send("READY=1"), 1);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(notify_send("READY=1"), 1);
}

static void
test_bad_address(void **state)
{
	char longname[200];

	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(notify_send("READY=1"), -1);
	setenv("NOTIFY_SOCKET", "@", 1);
	assert_int_equal(notify_send("READY=1"), -1);
	memset(longname, 'a', sizeof longname - 1);
	longname[0] = '/';
	longname[sizeof longname - 1] = '\0';
	setenv("NOTIFY_SOCKET", longname, 1);
	assert_int_equal(notify_send("READY=1"), -1);
	unsetenv("NOTIFY_SOCKET");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_abstract),
		cmocka_unit_test(test_not_under_systemd),
		cmocka_unit_test(test_bad_address),
	};

	log_open(LOGL_ERR + 1, 0); /* the expected errors stay quiet */
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
