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
 * Records are batched (batch.c, as the access lines are): a record waits
 * in memory up to [log] flush_interval and goes out with the others of
 * that interval in one write(2) (at once when [log] buffer_size is
 * reached), so a busy server makes one write for many logins instead of
 * one each (bench/README.md: the profile).  Nothing is lost on a clean
 * exit, fatal() or the end of a SIGTERM drain (batch.c flushes at exit)
 * nor on SIGHUP (audit_open() flushes into the old file before
 * switching).  The crash window: a SIGKILL, abort or power loss loses the
 * records of the last flush interval at most (never more than
 * buffer_size).  Without an audit_file the records share the log's batch
 * (one batch per fd, so lines from two flushers never interleave).
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8sauth.h"

/* A write that failed: said on the log (its own batch, never this one). */
static void
audit_lost_cb(const char *name, size_t lost, int err)
{
	log_err("%s: write failed: %s; %zu bytes of records lost", name,
	    strerror(err), lost);
}

static struct batch audit_batch = BATCH_INITIALIZER("audit", STDERR_FILENO,
    BATCH_FLUSH_MS, BATCH_SIZE, audit_lost_cb);

/*
 * Without an audit_file the records go to stderr through the log's own
 * batch (log_queue_raw), not this one: two batches writing one fd from two
 * flusher threads could interleave a large write with another (a journal
 * stream socket takes a 32 KiB write in pieces), splitting lines.
 */
static atomic_int audit_on_stderr = 1;

/* How long records may wait in memory (ms) and the size written at once. */
void
audit_set_batching(int flush_ms, size_t max_bytes)
{
	batch_set_limits(&audit_batch, flush_ms, max_bytes);
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
	old = batch_set_fd(&audit_batch, fd); /* the old records: old file */
	atomic_store(&audit_on_stderr, fd == STDERR_FILENO);
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

/* Queue one record's text (taken over, freed); its '\0' becomes '\n'. */
static void
audit_queue(char *text)
{
	size_t len;

	len = strlen(text);
	text[len] = '\n';
	if (atomic_load(&audit_on_stderr))
		log_queue_raw(text, len + 1);
	else
		batch_add(&audit_batch, text, len + 1);
	free(text);
}

/*
 * A login record is written straight into text (json_out), not built as
 * a cJSON tree and printed: that was three allocations per field, some
 * fifty per login, on the hot path.  The text is byte for byte what cJSON
 * prints (tests/unit/test_log.c compares the two): same field order, same
 * string escapes (json_out's), same number format.
 */

/* ,"key":number, formatted as cJSON's print_number does. */
static void
audit_number(struct json_out *o, const char *key, double d)
{
	char num[32];
	double back = 0;
	int vi, n;

	vi = d >= INT_MAX ? INT_MAX : d <= (double)INT_MIN ? INT_MIN : (int)d;
	if (isnan(d) || isinf(d))
		n = snprintf(num, sizeof num, "null");
	else if (d == (double)vi)
		n = snprintf(num, sizeof num, "%d", vi);
	else {
		n = snprintf(num, sizeof num, "%1.15g", d);
		if (sscanf(num, "%lg", &back) != 1 ||
		    !(fabs(back - d) <=
			(fabs(back) > fabs(d) ? fabs(back) : fabs(d)) *
			    DBL_EPSILON))
			n = snprintf(num, sizeof num, "%1.17g", d);
	}
	json_out_key(o, key);
	json_out_raw(o, num, (size_t)n);
}

/* ,"key":<the JSON of v>. */
static void
audit_json(struct json_out *o, const char *key, const cJSON *v)
{
	char *s = json_print(v);

	json_out_key(o, key);
	json_out_raw(o, s, strlen(s));
	free(s);
}

/* A login record's text (allocated, NUL-terminated), stamped ts. */
char *
audit_login_text(const struct audit_login *a, const char *ts)
{
	char stack[1024], *text;
	struct json_out o;

	json_out_init(&o, stack, sizeof stack);
	json_out_open(&o, NULL, '{');
	json_out_string(&o, "time", ts);
	json_out_string(&o, "type", "login");
	json_out_string(&o, "instance", a->instance_id);
	json_out_string(&o, "role", a->role);
	json_out_string(&o, "namespace", a->namespace);
	json_out_string(&o, "service_account", a->service_account);
	json_out_string(&o, "pod", a->pod);
	json_out_string(&o, "claimed_namespace", a->claimed_namespace);
	json_out_string(&o, "claimed_service_account",
	    a->claimed_service_account);
	json_out_string(&o, "claimed_pod", a->claimed_pod);
	json_out_string(&o, "node", a->node);
	json_out_string(&o, "result", a->status == 200 ? "success" : "failure");
	audit_number(&o, "status", a->status);
	json_out_string(&o, "reason", a->reason);
	json_out_string(&o, "token_audit_id", a->token_audit_id);
	json_out_string(&o, "jwt_sha256", a->jwt_id);
	json_out_string(&o, "client", a->client);
	audit_number(&o, "latency_ms", a->latency_ms);
	if (a->policy != NULL)
		audit_json(&o, "policy", a->policy);
	if (a->annotations != NULL)
		audit_json(&o, "service_account_annotations", a->annotations);
	json_out_close(&o, '}');
	text = xmalloc(o.len + 1);
	memcpy(text, o.buf, o.len);
	text[o.len] = '\0';
	json_out_free(&o);
	return (text);
}

/* Serialise and queue one record (takes ownership of o). */
static void
audit_write(cJSON *o)
{
	char *text = json_print(o);

	cJSON_Delete(o);
	audit_queue(text);
}

/* One login, whatever its outcome. */
void
audit_login(const struct audit_login *a)
{
	char ts[TIMESTAMP_LEN + 1];

	util_timestamp(ts);
	audit_queue(audit_login_text(a, ts));
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
