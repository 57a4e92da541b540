/*
 * audit.c: the audit trail.
 *
 * One JSON object per line for every login (who logged in from where, with
 * which result and reason, and the audit id of the token issued: the
 * identity the cluster confirmed as namespace/service_account/pod, one
 * that only the JWT claims, on a login refused before the review confirmed
 * it, as claimed_namespace/claimed_service_account/claimed_pod) and for
 * every admin change or refused admin action (caller, action, object id,
 * result), written with a single write(2) in O_APPEND mode to
 * [log] audit_file, or to stderr without one.  Never a secret: no JWT, no
 * token, only the token's audit id.  Any thread; a write to a local file
 * does not block in practice.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8sauth.h"

static int audit_fd = STDERR_FILENO;
static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;

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

/* Serialise and write one record (takes ownership of o). */
static void
audit_write(cJSON *o)
{
	char *line, *text;
	size_t len;
	ssize_t n;

	text = json_print(o);
	cJSON_Delete(o);
	len = (size_t)xasprintf(&line, "%s\n", text);
	free(text);
	pthread_mutex_lock(&audit_lock);
	do {
		n = write(audit_fd, line, len);
	} while (n == -1 && errno == EINTR);
	pthread_mutex_unlock(&audit_lock);
	if (n != (ssize_t)len)
		log_err("audit: write failed: %s", strerror(errno));
	free(line);
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
