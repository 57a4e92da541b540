/*
 * log.c: the one logging module.
 *
 * Lines go to stderr (journald under systemd) as text or JSON, whole lines
 * per write(2) so lines from different threads never interleave.  Access
 * lines (one per request) are batched (batch.c): they wait in memory up to
 * [log] flush_interval and go out many per write(2); every other line is
 * written at once, after the access lines queued before it, so the order
 * of the lines is the order they were logged in.  When stderr
 * is the journal (JOURNAL_STREAM names the device and inode of fd 2, see
 * systemd.exec(5)), each line starts with its sd-daemon priority ("<3>"
 * error ... "<7>" debug), which journald strips and files the line under,
 * so `journalctl -p err` shows the server's errors.  Messages are
 * formatted by the caller; anything that came from the network must pass
 * through log_escape() first.  Secrets are never logged: log_secret_id()
 * gives the first 8 hex digits of a secret's SHA-256 for correlation.
 * Safe from any thread; never blocks beyond the write to stderr.  Nothing
 * queued is lost on exit() or fatal() (batch.c flushes at exit); a
 * SIGKILL or a crash loses the access lines of the last flush interval.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "k8sauth.h"

#define LOG_LINE_STACK 1024 /* a text line formatted without malloc */

static enum log_level log_level = LOGL_INFO;
static int log_json;
static int log_journal = -1; /* stderr is the journal; -1: not checked */
static struct batch log_batch =
    BATCH_INITIALIZER("log", STDERR_FILENO, BATCH_FLUSH_MS, BATCH_SIZE, NULL);

static const char *const log_level_names[] = { "debug", "info", "warning",
	"error" };

/* sd-daemon.h's SD_DEBUG, SD_INFO, SD_WARNING, SD_ERR, by level. */
static const char *const log_journal_prefixes[] = { "<7>", "<6>", "<4>",
	"<3>" };

/*
 * Whether fd is the journal stream JOURNAL_STREAM ("DEV:INODE", decimal,
 * set by systemd for a service whose stderr is the journal) names.  A
 * stale JOURNAL_STREAM inherited by a process whose stderr was redirected
 * does not match, so its file gets no prefixes.
 */
int
log_journal_match(const char *env, int fd)
{
	unsigned long long dev, ino;
	struct stat st;
	char *end;

	if (env == NULL || *env < '0' || *env > '9')
		return (0);
	errno = 0;
	dev = strtoull(env, &end, 10);
	if (errno != 0 || *end != ':' || end[1] < '0' || end[1] > '9')
		return (0);
	ino = strtoull(end + 1, &end, 10);
	if (errno != 0 || *end != '\0' || fstat(fd, &st) == -1)
		return (0);
	return ((unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino);
}

/* Whether stderr is the journal (checked once, before threads start). */
static int
log_to_journal(void)
{
	if (log_journal == -1)
		log_journal =
		    log_journal_match(getenv("JOURNAL_STREAM"), STDERR_FILENO);
	return (log_journal);
}

/*
 * The priority prefix for a line at a level written to stderr other than
 * through log_msg() (a subcommand's error): "<3>" etc. or "".
 */
const char *
log_prefix(enum log_level level)
{
	return (log_to_journal() ? log_journal_prefixes[level] : "");
}

/* Set the level and format; may be called again on reload. */
void
log_open(enum log_level level, int json)
{
	log_level = level;
	log_json = json;
	log_to_journal();
}

/*
 * How long access lines may wait in memory (ms; 0: written at once) and
 * the size at which they are written at once.
 */
void
log_set_batching(int flush_ms, size_t max_bytes)
{
	batch_set_limits(&log_batch, flush_ms, max_bytes);
}

/* Change the level. */
void
log_set_level(enum log_level level)
{
	log_level = level;
}

/* Return the level. */
enum log_level
log_get_level(void)
{
	return (log_level);
}

/* Parse a level name; returns 0 or -1. */
int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof log_level_names / sizeof *log_level_names; i++) {
		if (strcasecmp(s, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return (0);
		}
	}
	if (strcasecmp(s, "warn") == 0) {
		*out = LOGL_WARN;
		return (0);
	}
	if (strcasecmp(s, "err") == 0) {
		*out = LOGL_ERR;
		return (0);
	}
	return (-1);
}

/*
 * Escape a string for a log line: control characters, quotes, backslashes
 * and non-ASCII bytes become \xNN or \", so a hostile string can neither
 * forge a line nor break JSON.  At most max input bytes are kept (0: 256).
 */
char *
log_escape(const char *s, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	char *out, *o;
	size_t n, i;

	if (s == NULL)
		return (xstrdup("(null)"));
	if (max == 0)
		max = 256;
	n = strnlen(s, max);
	o = out = xmalloc(n * 4 + 4);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			*o++ = '\\';
			*o++ = 'x';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 0xf];
		} else
			*o++ = (char)c;
	}
	if (s[n] != '\0') {
		memcpy(o, "...", 3);
		o += 3;
	}
	*o = '\0';
	return (out);
}

/* First 8 hex digits of a secret's SHA-256: safe to log, good to match. */
void
log_secret_id(const char *secret, char out[9])
{
	char hex[65];

	util_sha256_hex(secret, strlen(secret), hex);
	memcpy(out, hex, 8);
	out[8] = '\0';
}

/*
 * The current time as util_timestamp() formats it, with the date and the
 * seconds formatted once a second per thread (a printf and a gmtime_r
 * that were half of an access line's cost) and only the microseconds
 * per line.
 */
static void
log_timestamp(char out[TIMESTAMP_LEN + 1])
{
	static __thread time_t cached_sec = -1;
	static __thread char cached[TIMESTAMP_LEN + 1];
	struct timespec ts;
	long usec;
	int i;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached_sec) {
		util_format_time((double)ts.tv_sec, cached);
		cached_sec = ts.tv_sec;
	}
	memcpy(out, cached, TIMESTAMP_LEN + 1);
	usec = ts.tv_nsec / 1000;
	for (i = TIMESTAMP_LEN - 2; i >= TIMESTAMP_LEN - 7; i--) {
		out[i] = (char)('0' + usec % 10);
		usec /= 10;
	}
}

/*
 * Write one whole line: queued when batched (an access line), else at
 * once after the lines queued before it.
 */
static void
log_write(const char *line, size_t len, int batched)
{
	if (batched)
		batch_add(&log_batch, line, len);
	else
		batch_write(&log_batch, line, len);
}

/*
 * Queue a whole line that is not a log line (an audit record when the
 * audit trail goes to stderr): one batch per fd keeps large writes from
 * two flusher threads from interleaving.
 */
void
log_queue_raw(const char *line, size_t len)
{
	batch_add(&log_batch, line, len);
}

/* JSON-escape msg (already free of control characters from callers). */
static char *
log_json_string(const char *msg)
{
	cJSON *s;
	char *out;

	s = cJSON_CreateString(msg);
	if (s == NULL)
		fatalx("log: out of memory");
	out = cJSON_PrintUnformatted(s);
	cJSON_Delete(s);
	if (out == NULL)
		fatalx("log: out of memory");
	return (out);
}

/*
 * One log line, newline included (allocated): text or JSON, with the
 * journal's priority prefix when journal is set.
 */
char *
log_format(enum log_level level, int json, int journal, const char *ts,
    const char *msg)
{
	const char *pri = journal ? log_journal_prefixes[level] : "";
	char *line, *js;

	if (json) {
		js = log_json_string(msg);
		xasprintf(&line,
		    "%s{\"time\":\"%s\",\"level\":\"%s\",\"msg\":%s}\n", pri,
		    ts, log_level_names[level], js);
		free(js);
	} else
		xasprintf(&line, "%s%s %s: %s\n", pri, ts,
		    log_level_names[level], msg);
	return (line);
}

/*
 * A text line's "<6>TIMESTAMP info: " into buf (LOG_LINE_STACK bytes, far
 * more than the prefix); returns its length.
 */
static int
log_text_prefix(char *buf, int journal, enum log_level level, const char *ts)
{
	const char *name = log_level_names[level];
	size_t n = 0, len;

	if (journal) {
		memcpy(buf, log_journal_prefixes[level], 3);
		n = 3;
	}
	memcpy(buf + n, ts, TIMESTAMP_LEN);
	n += TIMESTAMP_LEN;
	buf[n++] = ' ';
	len = strlen(name);
	memcpy(buf + n, name, len);
	n += len;
	buf[n++] = ':';
	buf[n++] = ' ';
	return ((int)n);
}

/*
 * Format and write (or queue, when batched) one line at a level.  A text
 * line that fits LOG_LINE_STACK bytes (every access line) is formatted on
 * the stack: no allocation per request; longer ones and JSON go through
 * log_format.
 */
static void
log_emit(enum log_level level, int batched, const char *fmt, va_list ap)
{
	char ts[TIMESTAMP_LEN + 1], buf[LOG_LINE_STACK], *msg, *line;
	int n, m, journal;
	va_list aq;

	if (level < log_level)
		return;
	log_timestamp(ts);
	journal = log_to_journal();
	if (!log_json) {
		va_copy(aq, ap);
		n = log_text_prefix(buf, journal, level, ts);
		m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, aq);
		va_end(aq);
		if (m >= 0 && (size_t)n + (size_t)m < sizeof buf - 1) {
			n += m;
			buf[n++] = '\n';
			log_write(buf, (size_t)n, batched);
			return;
		}
	}
	xvasprintf(&msg, fmt, ap);
	line = log_format(level, log_json, journal, ts, msg);
	log_write(line, strlen(line), batched);
	free(line);
	free(msg);
}

/* Format and write one line at a level, at once. */
void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	log_emit(level, 0, fmt, ap);
}

/* One access line (info level), batched: see the comment at the top. */
void
log_access(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOGL_INFO, 1, fmt, ap);
	va_end(ap);
}

/* Log at a level. */
void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

/* Log at debug level. */
void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOGL_DEBUG, fmt, ap);
	va_end(ap);
}

/* Log at info level. */
void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOGL_INFO, fmt, ap);
	va_end(ap);
}

/* Log at warning level. */
void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOGL_WARN, fmt, ap);
	va_end(ap);
}

/* Log at error level. */
void
log_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOGL_ERR, fmt, ap);
	va_end(ap);
}

/* Log an error with errno's text and exit. */
__dead void
fatal(const char *fmt, ...)
{
	va_list ap;
	char *msg;
	int saved = errno;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	log_err("fatal: %s: %s", msg, strerror(saved));
	exit(1);
}

/* Log an error and exit. */
__dead void
fatalx(const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		msg = NULL;
	va_end(ap);
	log_err("fatal: %s", msg != NULL ? msg : fmt);
	exit(1);
}
