/*
 * caller.c: the credentials of whoever calls the admin API (struct
 * caller), shared by auth.c, keystone_token.c and the policy engine.
 * Kept apart so that tools linking the policy engine (policy-check) do
 * not pull in the HTTP layer.  Any thread.
 */
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

/* Free what a caller holds and reset it. */
void
caller_clear(struct caller *c)
{
	free(c->user_id);
	free(c->user_domain_id);
	free(c->project_id);
	free(c->project_domain_id);
	free(c->domain_id);
	strlist_free(&c->roles);
	memset(c, 0, sizeof *c);
}
