/*
 * reason.c: the reason table of reason.h as data.
 *
 * Name, status and metric class of each enum reason, read by the replies
 * (http.c), the metrics (metrics.c) and the audit trail.  Constant data;
 * any thread.
 */
#include <string.h>

#include "k8sauth.h"

struct reason_entry {
	const char *name;
	int status;
	enum reason_metric metric;
};

#define REASON_ENTRY(n, s, m) { #n, s, m },
static const struct reason_entry reason_table[REASON_COUNT] = {
	{ "none", 0, REASON_M_NONE }, REASONS(REASON_ENTRY)
};
#undef REASON_ENTRY

/* The entry of r; an out-of-range value reads as internal_error. */
static const struct reason_entry *
reason_entry(enum reason r)
{
	if ((unsigned)r >= REASON_COUNT)
		r = REASON_internal_error;
	return (&reason_table[r]);
}

/* The reason code as sent in the error body ("none" for REASON_NONE). */
const char *
reason_name(enum reason r)
{
	return (reason_entry(r)->name);
}

/* The HTTP status a reason is always answered with (0 for REASON_NONE). */
int
reason_status(enum reason r)
{
	return (reason_entry(r)->status);
}

/* How a login ending with r is counted in k8sauth_logins_total. */
enum reason_metric
reason_metric(enum reason r)
{
	return (reason_entry(r)->metric);
}

/* The reason named name, or REASON_NONE. */
enum reason
reason_lookup(const char *name)
{
	int i;

	for (i = 1; i < REASON_COUNT; i++) {
		if (strcmp(reason_table[i].name, name) == 0)
			return ((enum reason)i);
	}
	return (REASON_NONE);
}
