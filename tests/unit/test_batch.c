/*
 * test_batch.c: lines written in batches (src/batch.c).
 *
 * Queued lines stay in memory until the flush interval is over, the buffer
 * is full, a line is written at once (after them, in order) or the process
 * exits; a batch switched to another fd writes what it held to the old
 * one.  Every batch writes into a pipe the test reads without blocking.
 * The batches are static: a flusher thread and the exit handler keep
 * pointers to them for the life of the process.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "k8sauth.h"

#define LONG_MS 60000 /* a flush interval no test waits out */

/* A pipe whose read end does not block. */
static void
test_pipe(int fds[2])
{
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
}

/* What the pipe holds now (NUL-terminated; "" when empty). */
static char *
test_drain(int fd)
{
	static char buf[1 << 16];
	size_t len = 0;
	ssize_t n;

	while ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	assert_true(n == 0 || errno == EAGAIN);
	buf[len] = '\0';
	return (buf);
}

/* Add a string. */
static void
test_add(struct batch *b, const char *s)
{
	batch_add(b, s, strlen(s));
}

/* Queued lines wait; a line written at once goes out after them. */
static void
test_order(void **state)
{
	int fds[2];

	test_pipe(fds);
	{
		static struct batch b = BATCH_INITIALIZER("t", -1, LONG_MS,
		    4096, NULL);

		batch_set_fd(&b, fds[1]);

		test_add(&b, "access 1\n");
		test_add(&b, "access 2\n");
		test_add(&b, "access 3\n");
		assert_string_equal(test_drain(fds[0]), "");
		assert_int_equal(batch_pending(&b), 27);
		batch_write(&b, "error\n", 6);
		assert_string_equal(test_drain(fds[0]),
		    "access 1\naccess 2\naccess 3\nerror\n");
		assert_int_equal(batch_pending(&b), 0);
		/* Nothing pending: the line goes straight out. */
		batch_write(&b, "warning\n", 8);
		assert_string_equal(test_drain(fds[0]), "warning\n");
		/* A line too big to join the pending ones: they go first. */
		test_add(&b, "access 4\n");
		{
			char big[5000];

			memset(big, 'b', sizeof big - 1);
			big[sizeof big - 1] = '\n';
			batch_write(&b, big, sizeof big);
			assert_memory_equal(test_drain(fds[0]), "access 4\nbbb",
			    12);
		}
		batch_set_fd(&b, -1);
	}
	close(fds[0]);
	close(fds[1]);
}

/* A full buffer is written at once; an interval of 0 writes each line. */
static void
test_size_and_zero(void **state)
{
	int fds[2];

	test_pipe(fds);
	{
		static struct batch b = BATCH_INITIALIZER("t", -1, LONG_MS, 20,
		    NULL);

		batch_set_fd(&b, fds[1]);

		test_add(&b, "0123456789\n");
		assert_string_equal(test_drain(fds[0]), "");
		test_add(&b, "abcdefghij\n"); /* 22 bytes >= 20 */
		assert_string_equal(test_drain(fds[0]),
		    "0123456789\nabcdefghij\n");
		batch_set_limits(&b, 0, 20);
		test_add(&b, "now\n");
		assert_string_equal(test_drain(fds[0]), "now\n");
		batch_set_fd(&b, -1);
	}
	close(fds[0]);
	close(fds[1]);
}

/* The flusher writes the lines out once the interval is over. */
static void
test_interval(void **state)
{
	static struct batch b = BATCH_INITIALIZER("t", -1, 20, 4096, NULL);
	struct pollfd pfd;
	int fds[2];

	test_pipe(fds);
	batch_set_fd(&b, fds[1]);
	test_add(&b, "later\n");
	pfd.fd = fds[0];
	pfd.events = POLLIN;
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	assert_string_equal(test_drain(fds[0]), "later\n");
	assert_int_equal(batch_pending(&b), 0);
	batch_set_fd(&b, -1);
	close(fds[0]);
	close(fds[1]);
}

/* Switching fds: what was queued goes to the old one. */
static void
test_set_fd(void **state)
{
	int a[2], c[2];

	test_pipe(a);
	test_pipe(c);
	{
		static struct batch b = BATCH_INITIALIZER("t", -1, LONG_MS,
		    4096, NULL);

		batch_set_fd(&b, a[1]);

		test_add(&b, "old\n");
		assert_int_equal(batch_set_fd(&b, c[1]), a[1]);
		test_add(&b, "new\n");
		assert_string_equal(test_drain(a[0]), "old\n");
		assert_string_equal(test_drain(c[0]), "");
		batch_flush(&b);
		assert_string_equal(test_drain(c[0]), "new\n");
		batch_set_fd(&b, -1);
	}
	close(a[0]);
	close(a[1]);
	close(c[0]);
	close(c[1]);
}

/*
 * A child queues a line, then leaves by exit() (the line is written) or
 * by _exit(), standing for a crash (the line is lost: the crash window).
 */
static void
test_exit(void **state)
{
	static struct batch b = BATCH_INITIALIZER("t", -1, LONG_MS, 4096, NULL);
	int fds[2], crash, st;
	pid_t pid;

	for (crash = 0; crash < 2; crash++) {
		test_pipe(fds);
		if ((pid = fork()) == 0) {
			batch_set_fd(&b, fds[1]);
			test_add(&b, "last words\n");
			if (crash)
				_exit(0);
			exit(0);
		}
		assert_true(pid > 0);
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		assert_string_equal(test_drain(fds[0]),
		    crash ? "" : "last words\n");
		close(fds[0]);
		close(fds[1]);
	}
}

/* Lines from many threads arrive whole, each thread's in its order. */
struct test_thread {
	struct batch *b;
	int id;
};

static void *
test_thread_main(void *arg)
{
	struct test_thread *t = arg;
	char line[32];
	int i, n;

	for (i = 0; i < 1000; i++) {
		n = snprintf(line, sizeof line, "t%d %04d\n", t->id, i);
		if (i % 100 == 99)
			batch_write(t->b, line, (size_t)n);
		else
			batch_add(t->b, line, (size_t)n);
	}
	return (NULL);
}

static void
test_threads(void **state)
{
	static struct batch b = BATCH_INITIALIZER("t", -1, 5, 512, NULL);
	struct test_thread t[4];
	pthread_t th[4];
	char path[] = "/tmp/test_batch.XXXXXX", line[64];
	int fd, i, id, seq, next[4] = { 0 }, lines = 0;
	FILE *f;

	assert_true((fd = mkstemp(path)) != -1);
	unlink(path);
	batch_set_fd(&b, fd);
	for (i = 0; i < 4; i++) {
		t[i].b = &b;
		t[i].id = i;
		assert_int_equal(
		    pthread_create(&th[i], NULL, test_thread_main, &t[i]), 0);
	}
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	batch_flush(&b);
	assert_non_null(f = fdopen(dup(fd), "r"));
	rewind(f);
	while (fgets(line, sizeof line, f) != NULL) {
		assert_int_equal(sscanf(line, "t%d %d\n", &id, &seq), 2);
		assert_true(id >= 0 && id < 4);
		assert_int_equal(seq, next[id]);
		next[id]++;
		lines++;
	}
	assert_int_equal(lines, 4000);
	fclose(f);
	batch_set_fd(&b, -1);
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_size_and_zero),
		cmocka_unit_test(test_interval),
		cmocka_unit_test(test_set_fd),
		cmocka_unit_test(test_exit),
		cmocka_unit_test(test_threads),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
