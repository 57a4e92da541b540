/*
 * audit.c: the audit trail.
 *
 * One JSON object per line for every login (who logged in from where, with
 * which result and reason, and the audit id of the token issued: the
 * identity the cluster confirmed as namespace/service_account/pod, one
 * that only the JWT claims, on a login refused before the review confirmed
 * it, as claimed_namespace/claimed_service_account/claimed_pod) and for
 * every admin change or refused admin action (caller, action, object id,
 * result), appended in O_APPEND mode to [log] audit_file, or to stderr
 * without one.  Never a secret: no JWT, no token, only the token's audit
 * id.  Any thread; a write to a local file does not block in practice.
 *
 * Records are batched: a record goes into a process-wide buffer, which a
 * flusher thread writes out AUDIT_FLUSH_MS after its first record (at
 * once when it reaches AUDIT_BATCH_BYTES), so a busy server makes one
 * write(2) for many logins instead of one each (bench/README.md: the
 * profile).  Nothing is lost on a clean exit (an atexit handler flushes)
 * nor on SIGHUP (audit_open() flushes into the old file before switching).
 * The crash window: a SIGKILL, abort or power loss loses the records of
 * the last AUDIT_FLUSH_MS at most (never more than AUDIT_BATCH_BYTES).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "k8sauth.h"

#define AUDIT_FLUSH_MS    50         /* longest a record waits in memory */
#define AUDIT_BATCH_BYTES (32 << 10) /* written at once from this size */

/* audit_lock guards the fd and the pending batch. */
static int audit_fd = STDERR_FILENO;
static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t audit_cond = PTHREAD_COND_INITIALIZER;
static char *audit_buf;
static size_t audit_len, audit_cap;
static int audit_flusher; /* started */

/* Write the pending batch out (audit_lock held); the batch is emptied. */
static void
audit_flush_locked(void)
{
	size_t off = 0;
	ssize_t n;

	while (off < audit_len) {
		n = write(audit_fd, audit_buf + off, audit_len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_err("audit: write failed: %s; %zu bytes of records lost",
			    n == 0 ? "no progress" : strerror(errno),
			    audit_len - off);
			break;
		}
		off += (size_t)n;
	}
	audit_len = 0;
}

/*
 * atexit: nothing pending is left behind on a clean exit.  The lock is
 * waited for at most a second: an exit from a fatal error raised while it
 * is held (out of memory in audit_write) must not hang.
 */
static void
audit_flush_at_exit(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 1;
	if (pthread_mutex_timedlock(&audit_lock, &ts) != 0)
		return;
	audit_flush_locked();
	pthread_mutex_unlock(&audit_lock);
}

/* The flusher: waits for a first record, lets a batch gather, writes it. */
static void *
audit_flusher_main(void *arg)
{
	struct timespec ts = { AUDIT_FLUSH_MS / 1000,
		(AUDIT_FLUSH_MS % 1000) * 1000000L };

	for (;;) {
		pthread_mutex_lock(&audit_lock);
		while (audit_len == 0)
			pthread_cond_wait(&audit_cond, &audit_lock);
		pthread_mutex_unlock(&audit_lock);
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&audit_lock);
		audit_flush_locked();
		pthread_mutex_unlock(&audit_lock);
	}
	return (NULL);
}

/*
 * Start the flusher on the first record (audit_lock held); without one
 * (pthread_create failed) records are written at once.
 */
static void
audit_start_flusher(void)
{
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;

	if (audit_flusher != 0)
		return;
	audit_flusher = -1;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with main */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, audit_flusher_main, NULL) == 0)
		audit_flusher = 1;
	else
		log_warn(
		    "audit: no flusher thread; records written one by one");
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	atexit(audit_flush_at_exit);
}

/* Open (or reopen, on SIGHUP) the audit file; NULL means stderr. */
int
audit_open(const char *path, char **cause)
{
	int fd = STDERR_FILENO, old;

	if (path != NULL) {
		fd =
		    open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd == -1) {
			xasprintf(cause, "[log] audit_file %s: %s", path,
			    strerror(errno));
			return (-1);
		}
	}
	pthread_mutex_lock(&audit_lock);
	audit_flush_locked(); /* what was logged before goes where it was */
	old = audit_fd;
	audit_fd = fd;
	pthread_mutex_unlock(&audit_lock);
	if (old != STDERR_FILENO && old != fd)
		close(old);
	return (0);
}

/* Add "key": value when value is set. */
static void
audit_add(cJSON *o, const char *key, const char *value)
{
	if (value != NULL)
		cJSON_AddStringToObject(o, key, value);
}

/* A new record, stamped with its time and type. */
static cJSON *
audit_new(const char *type)
{
	cJSON *o = cJSON_CreateObject();
	char ts[TIMESTAMP_LEN + 1];

	util_timestamp(ts);
	cJSON_AddStringToObject(o, "time", ts);
	cJSON_AddStringToObject(o, "type", type);
	return (o);
}

/* Serialise and queue one record (takes ownership of o). */
static void
audit_write(cJSON *o)
{
	char *text;
	size_t len;

	text = json_print(o);
	cJSON_Delete(o);
	len = strlen(text);
	pthread_mutex_lock(&audit_lock);
	if (audit_len + len + 1 > audit_cap) {
		audit_cap = audit_len + len + 1 > AUDIT_BATCH_BYTES
		    ? audit_len + len + 1
		    : AUDIT_BATCH_BYTES;
		audit_buf = xreallocarray(audit_buf, audit_cap, 1);
	}
	memcpy(audit_buf + audit_len, text, len);
	audit_buf[audit_len + len] = '\n';
	if (audit_len == 0)
		pthread_cond_signal(&audit_cond);
	audit_len += len + 1;
	audit_start_flusher();
	if (audit_flusher != 1 || audit_len >= AUDIT_BATCH_BYTES)
		audit_flush_locked();
	pthread_mutex_unlock(&audit_lock);
	free(text);
}

/* One login, whatever its outcome. */
void
audit_login(const struct audit_login *a)
{
	cJSON *o = audit_new("login");

	audit_add(o, "instance", a->instance_id);
	audit_add(o, "role", a->role);
	audit_add(o, "namespace", a->namespace);
	audit_add(o, "service_account", a->service_account);
	audit_add(o, "pod", a->pod);
	audit_add(o, "claimed_namespace", a->claimed_namespace);
	audit_add(o, "claimed_service_account", a->claimed_service_account);
	audit_add(o, "claimed_pod", a->claimed_pod);
	audit_add(o, "node", a->node);
	cJSON_AddStringToObject(o, "result",
	    a->status == 200 ? "success" : "failure");
	cJSON_AddNumberToObject(o, "status", a->status);
	audit_add(o, "reason", a->reason);
	audit_add(o, "token_audit_id", a->token_audit_id);
	audit_add(o, "jwt_sha256", a->jwt_id);
	audit_add(o, "client", a->client);
	cJSON_AddNumberToObject(o, "latency_ms", a->latency_ms);
	if (a->policy != NULL)
		cJSON_AddItemToObject(o, "policy",
		    cJSON_Duplicate(a->policy, 1));
	if (a->annotations != NULL)
		cJSON_AddItemToObject(o, "service_account_annotations",
		    cJSON_Duplicate(a->annotations, 1));
	audit_write(o);
}

/* One admin change, or one refused admin action. */
void
audit_admin(const struct request *r, const char *action, const char *id,
    const char *result)
{
	static const char *const kinds[] = { "none", "bootstrap", "keystone",
		"restricted" };
	cJSON *o = audit_new("admin");

	cJSON_AddStringToObject(o, "caller", kinds[r->caller.kind]);
	audit_add(o, "user_id", r->caller.user_id);
	audit_add(o, "project_id", r->caller.project_id);
	audit_add(o, "domain_id", r->caller.domain_id);
	cJSON_AddStringToObject(o, "action", action);
	audit_add(o, "id", id);
	cJSON_AddStringToObject(o, "result", result);
	audit_add(o, "client", r->client_ip);
	audit_write(o);
}
