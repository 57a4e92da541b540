/*
 * batch.c: lines gathered in memory and written out in batches.
 *
 * A batch is a named buffer in front of one fd.  batch_add() queues whole
 * lines; a flusher thread (one per batch, started on the first line)
 * writes them out flush_ms after the first of them, or at once when the
 * buffer reaches max_bytes, so a busy server makes one write(2) for many
 * lines instead of one each.  batch_write() writes the pending lines and
 * its own at once, in that order, in one write(2) when they fit: a
 * warning never appears before the lines queued ahead of it.
 *
 * Nothing is lost on a clean exit: every batch that was used is flushed by
 * an atexit handler (exit(), fatal(), the end of a SIGTERM drain), and
 * batch_set_fd() flushes into the old fd before switching (SIGHUP).  The
 * crash window: a SIGKILL, abort or power loss loses what was queued in
 * the last flush_ms at most, never more than max_bytes.  With flush_ms 0,
 * or without a flusher thread (pthread_create failed), every line is
 * written at once.
 *
 * Any thread.  The lock is held across the write(2), so lines from
 * different threads never interleave; a write blocks only as long as the
 * fd does (a local file, a pipe or the journal's socket).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "k8sauth.h"

#define BATCH_STACK (64 << 10) /* the flusher's stack: it only writes */

static pthread_mutex_t batch_list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct batch *batch_list; /* every batch with a flusher or data */
static int batch_atexit_set;

/*
 * Write len bytes to fd, all of them unless it fails.  Returns the bytes
 * that could not be written (0 when all went) and their errno in *err.
 */
static size_t
batch_write_fd(int fd, const char *data, size_t len, int *err)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, data, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			*err = n == 0 ? EIO : errno;
			break;
		}
		data += n;
		len -= (size_t)n;
	}
	return (len);
}

/* Write the pending lines out (b->lock held); the buffer is emptied. */
static size_t
batch_flush_locked(struct batch *b, int *err)
{
	size_t lost;

	lost = batch_write_fd(b->fd, b->buf, b->len, err);
	b->len = 0;
	return (lost);
}

/* Tell the owner about lost bytes (b->lock not held: it may log). */
static void
batch_report(struct batch *b, size_t lost, int err)
{
	if (lost > 0 && b->lost_cb != NULL)
		b->lost_cb(b->name, lost, err);
}

/* Flush one batch now. */
void
batch_flush(struct batch *b)
{
	size_t lost;
	int err = 0;

	pthread_mutex_lock(&b->lock);
	lost = batch_flush_locked(b, &err);
	pthread_mutex_unlock(&b->lock);
	batch_report(b, lost, err);
}

/*
 * atexit: every batch is flushed.  A lock is waited for at most a second:
 * an exit from a fatal error raised while one is held (out of memory in
 * batch_add) must not hang.
 */
static void
batch_flush_at_exit(void)
{
	struct timespec ts;
	struct batch *b;
	int err;

	pthread_mutex_lock(&batch_list_lock);
	for (b = batch_list; b != NULL; b = b->next) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (pthread_mutex_timedlock(&b->lock, &ts) != 0)
			continue;
		batch_flush_locked(b, &err);
		pthread_mutex_unlock(&b->lock);
	}
	pthread_mutex_unlock(&batch_list_lock);
}

/*
 * Put b on the list flushed at exit, once (b->lock not held: the exit
 * handler takes the two locks in the other order).
 */
static void
batch_register(struct batch *b)
{
	if (__atomic_load_n(&b->registered, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&batch_list_lock);
	if (!b->registered) {
		b->next = batch_list;
		batch_list = b;
		__atomic_store_n(&b->registered, 1, __ATOMIC_RELEASE);
	}
	if (!batch_atexit_set) {
		batch_atexit_set = 1;
		atexit(batch_flush_at_exit);
	}
	pthread_mutex_unlock(&batch_list_lock);
}

/* The flusher: waits for a first line, lets a batch gather, writes it. */
static void *
batch_flusher_main(void *arg)
{
	struct batch *b = arg;
	struct timespec ts;
	size_t lost;
	int err = 0, ms;

	for (;;) {
		pthread_mutex_lock(&b->lock);
		while (b->len == 0)
			pthread_cond_wait(&b->cond, &b->lock);
		ms = b->flush_ms;
		pthread_mutex_unlock(&b->lock);
		ts.tv_sec = ms / 1000;
		ts.tv_nsec = (ms % 1000) * 1000000L;
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&b->lock);
		lost = batch_flush_locked(b, &err);
		pthread_mutex_unlock(&b->lock);
		batch_report(b, lost, err);
	}
	return (NULL);
}

/*
 * Start the flusher on the first queued line (b->lock held), with every
 * signal blocked (signals stay with the main thread).  Without one
 * (pthread_create failed) lines are written at once.
 */
static void
batch_start_flusher(struct batch *b)
{
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;

	if (b->flusher != 0)
		return;
	b->flusher = -1;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, BATCH_STACK);
	if (pthread_create(&t, &attr, batch_flusher_main, b) == 0)
		b->flusher = 1;
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/*
 * Append len bytes to the buffer (b->lock held), growing it if needed.
 * Out of memory, the pending lines and these are written at once instead
 * (no fatalx() here: it would log through this very lock).  Returns the
 * bytes lost, as batch_flush_locked().
 */
static size_t
batch_append_locked(struct batch *b, const char *data, size_t len, int *err)
{
	size_t want = b->len + len, cap, lost;
	char *p;

	if (want > b->cap) {
		cap = want > b->max_bytes ? want : b->max_bytes;
		if ((p = realloc(b->buf, cap)) == NULL) {
			lost = batch_flush_locked(b, err);
			return (lost + batch_write_fd(b->fd, data, len, err));
		}
		b->buf = p;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, data, len);
	b->len = want;
	return (0);
}

/*
 * Queue len bytes (whole lines).  Written at once when the buffer reaches
 * max_bytes, when flush_ms is 0 or when there is no flusher.
 */
void
batch_add(struct batch *b, const char *data, size_t len)
{
	size_t lost = 0;
	int err = 0;

	batch_register(b);
	pthread_mutex_lock(&b->lock);
	if (b->flush_ms > 0)
		batch_start_flusher(b);
	lost = batch_append_locked(b, data, len, &err);
	if (b->len == len)
		pthread_cond_signal(&b->cond);
	if (b->flusher != 1 || b->flush_ms <= 0 || b->len >= b->max_bytes)
		lost += batch_flush_locked(b, &err);
	pthread_mutex_unlock(&b->lock);
	batch_report(b, lost, err);
}

/*
 * Write the pending lines, then len bytes of data, now: one write(2) when
 * both fit the buffer, else the pending lines first.
 */
void
batch_write(struct batch *b, const char *data, size_t len)
{
	size_t lost = 0;
	int err = 0;

	pthread_mutex_lock(&b->lock);
	if (b->len > 0 && b->len + len <= b->max_bytes) {
		lost = batch_append_locked(b, data, len, &err);
		lost += batch_flush_locked(b, &err);
	} else {
		if (b->len > 0)
			lost = batch_flush_locked(b, &err);
		lost += batch_write_fd(b->fd, data, len, &err);
	}
	pthread_mutex_unlock(&b->lock);
	batch_report(b, lost, err);
}

/*
 * Point the batch at another fd: what was queued before goes to the old
 * one first.  Returns the old fd (the caller closes it if it should).
 */
int
batch_set_fd(struct batch *b, int fd)
{
	size_t lost;
	int old, err = 0;

	pthread_mutex_lock(&b->lock);
	lost = batch_flush_locked(b, &err);
	old = b->fd;
	b->fd = fd;
	pthread_mutex_unlock(&b->lock);
	batch_report(b, lost, err);
	return (old);
}

/*
 * Set how long a line may wait (ms; 0: written at once) and the size at
 * which the buffer is written at once (bytes).
 */
void
batch_set_limits(struct batch *b, int flush_ms, size_t max_bytes)
{
	pthread_mutex_lock(&b->lock);
	b->flush_ms = flush_ms < 0 ? 0 : flush_ms;
	b->max_bytes = max_bytes < 1 ? 1 : max_bytes;
	pthread_mutex_unlock(&b->lock);
	if (flush_ms <= 0)
		batch_flush(b);
}

/* Bytes waiting in the buffer (tests, metrics). */
size_t
batch_pending(struct batch *b)
{
	size_t len;

	pthread_mutex_lock(&b->lock);
	len = b->len;
	pthread_mutex_unlock(&b->lock);
	return (len);
}
