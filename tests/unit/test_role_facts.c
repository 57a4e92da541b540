/*
 * test_role_facts.c: which restriction roles a non-admin may delegate
 * (API.md §7): names from [policy] delegable_roles, case-insensitive,
 * protected_roles as an extra denylist, and Keystone's role inferences
 * followed transitively (cycles included).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "k8sauth.h"

/* Keystone's GET /v3/role_inferences, as bootstrap makes it plus extras:
 * admin -> member -> reader, manager -> member, sneaky -> admin,
 * loop1 <-> loop2 (member-named), chain -> sneaky. */
static const char inferences_json[] =
	"{\"role_inferences\": ["
	"{\"prior_role\": {\"id\": \"A\", \"name\": \"admin\"},"
	" \"implies\": [{\"id\": \"M\", \"name\": \"member\"}]},"
	"{\"prior_role\": {\"id\": \"M\", \"name\": \"member\"},"
	" \"implies\": [{\"id\": \"R\", \"name\": \"reader\"}]},"
	"{\"prior_role\": {\"id\": \"G\", \"name\": \"manager\"},"
	" \"implies\": [{\"id\": \"M\", \"name\": \"member\"}]},"
	"{\"prior_role\": {\"id\": \"S\", \"name\": \"member\"},"
	" \"implies\": [{\"id\": \"A\", \"name\": \"admin\"}]},"
	"{\"prior_role\": {\"id\": \"L1\", \"name\": \"reader\"},"
	" \"implies\": [{\"id\": \"L2\", \"name\": \"reader\"}]},"
	"{\"prior_role\": {\"id\": \"L2\", \"name\": \"reader\"},"
	" \"implies\": [{\"id\": \"L1\", \"name\": \"reader\"}]},"
	"{\"prior_role\": {\"id\": \"C\", \"name\": \"Member\"},"
	" \"implies\": [{\"id\": \"S\", \"name\": \"member\"}]}"
	"]}";

/* Annotate one role {id, name} and return its "delegable". */
static int
judge(const struct config *cfg, const cJSON *inf, const char *id,
    const char *name, cJSON **implies)
{
	cJSON *roles, *ro;
	int ok;

	roles = cJSON_CreateArray();
	ro = cJSON_CreateObject();
	cJSON_AddStringToObject(ro, "id", id);
	if (name != NULL)
		cJSON_AddStringToObject(ro, "name", name);
	cJSON_AddItemToArray(roles, ro);
	role_facts_annotate(cfg, inf, roles);
	assert_true(cJSON_IsBool(cJSON_GetObjectItem(ro, "delegable")));
	ok = cJSON_IsTrue(cJSON_GetObjectItem(ro, "delegable"));
	if (implies != NULL)
		*implies = cJSON_Duplicate(cJSON_GetObjectItem(ro, "implies"), 1);
	cJSON_Delete(roles);
	return (ok);
}

static void
test_names_only(void **state)
{
	struct config *cfg = config_new();

	(void)state;
	assert_true(judge(cfg, NULL, "M", "member", NULL));
	assert_true(judge(cfg, NULL, "M", "MEMBER", NULL));
	assert_true(judge(cfg, NULL, "R", "Reader", NULL));
	assert_true(judge(cfg, NULL, "G", "manager", NULL));
	assert_false(judge(cfg, NULL, "A", "admin", NULL));
	assert_false(judge(cfg, NULL, "A", "Admin", NULL));
	assert_false(judge(cfg, NULL, "X", "service", NULL));
	assert_false(judge(cfg, NULL, "X", "load-balancer_admin", NULL));
	assert_false(judge(cfg, NULL, "X", NULL, NULL));
	assert_false(judge(cfg, NULL, "X", "member2", NULL));
	assert_false(judge(cfg, NULL, "X", "membe", NULL));
	config_unref(cfg);
}

static void
test_configured_lists(void **state)
{
	struct config *cfg = config_new();

	(void)state;
	free(cfg->policy_delegable_roles);
	cfg->policy_delegable_roles = xstrdup(" member , swift_operator,admin");
	free(cfg->policy_protected_roles);
	cfg->policy_protected_roles = xstrdup("ADMIN");
	assert_true(judge(cfg, NULL, "X", "Swift_Operator", NULL));
	assert_true(judge(cfg, NULL, "M", "member", NULL));
	assert_false(judge(cfg, NULL, "R", "reader", NULL));
	/* protected_roles wins over delegable_roles */
	assert_false(judge(cfg, NULL, "A", "admin", NULL));
	config_unref(cfg);
}

static void
test_inferences(void **state)
{
	struct config *cfg = config_new();
	cJSON *inf, *implies = NULL;

	(void)state;
	inf = cJSON_Parse(inferences_json);
	assert_non_null(inf);
	assert_true(judge(cfg, inf, "M", "member", &implies));
	assert_int_equal(cJSON_GetArraySize(implies), 1);
	assert_string_equal(cJSON_GetArrayItem(implies, 0)->valuestring,
	    "reader");
	cJSON_Delete(implies);
	assert_true(judge(cfg, inf, "G", "manager", &implies));
	assert_int_equal(cJSON_GetArraySize(implies), 2); /* member, reader */
	cJSON_Delete(implies);
	/* a delegable name implying admin is not delegable */
	assert_false(judge(cfg, inf, "S", "member", &implies));
	assert_int_equal(cJSON_GetArraySize(implies), 3);
	cJSON_Delete(implies);
	/* ... nor what implies it, two steps away */
	assert_false(judge(cfg, inf, "C", "Member", NULL));
	/* cycles end */
	assert_true(judge(cfg, inf, "L1", "reader", &implies));
	assert_int_equal(cJSON_GetArraySize(implies), 1);
	cJSON_Delete(implies);
	cJSON_Delete(inf);
	config_unref(cfg);
}

/*
 * A Keystone on MySQL finds a role by its id in any case: a restriction
 * holding "s" for Keystone's "S" (member, implying admin) must still be
 * judged by what "S" implies.
 */
static void
test_id_case(void **state)
{
	struct config *cfg = config_new();
	struct restriction_role roles[1] = { { "s", "member" } };
	struct restriction rs;
	cJSON *inf, *implies = NULL;

	(void)state;
	inf = cJSON_Parse(inferences_json);
	assert_false(judge(cfg, inf, "s", "member", &implies));
	assert_int_equal(cJSON_GetArraySize(implies), 3);
	cJSON_Delete(implies);
	assert_false(judge(cfg, inf, "c", "Member", NULL));
	memset(&rs, 0, sizeof rs);
	rs.roles = roles;
	rs.nroles = 1;
	assert_false(role_facts_delegable(cfg, inf, &rs));
	/* a cycle through differently-cased ids still ends */
	assert_true(judge(cfg, inf, "l1", "reader", NULL));
	cJSON_Delete(inf);
	config_unref(cfg);
}

/*
 * A chain of more member-named roles than role_facts follows, ending in
 * admin: what was not followed might be admin, so not delegable.
 */
static void
test_long_chain(void **state)
{
	struct config *cfg = config_new();
	cJSON *inf, *list, *inf1, *prior, *implies, *to;
	char id[32], next[32];
	int i, n = 1100;

	(void)state;
	inf = cJSON_CreateObject();
	list = cJSON_AddArrayToObject(inf, "role_inferences");
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof id, "c%d", i);
		snprintf(next, sizeof next, "c%d", i + 1);
		inf1 = cJSON_CreateObject();
		prior = cJSON_AddObjectToObject(inf1, "prior_role");
		cJSON_AddStringToObject(prior, "id", id);
		cJSON_AddStringToObject(prior, "name", "member");
		implies = cJSON_AddArrayToObject(inf1, "implies");
		to = cJSON_CreateObject();
		cJSON_AddStringToObject(to, "id", i + 1 < n ? next : "A");
		cJSON_AddStringToObject(to, "name",
		    i + 1 < n ? "member" : "admin");
		cJSON_AddItemToArray(implies, to);
		cJSON_AddItemToArray(list, inf1);
	}
	assert_false(judge(cfg, inf, "c0", "member", NULL));
	/* near the end of the chain it is all followed: still admin */
	assert_false(judge(cfg, inf, "c1000", "member", NULL));
	cJSON_Delete(inf);
	config_unref(cfg);
}

static void
test_restriction_delegable(void **state)
{
	struct config *cfg = config_new();
	struct restriction_role roles[2] = { { "M", "member" }, { "S",
		"member" } };
	struct restriction rs;
	cJSON *inf;

	(void)state;
	inf = cJSON_Parse(inferences_json);
	memset(&rs, 0, sizeof rs);
	rs.roles = roles;
	rs.nroles = 1;
	assert_true(role_facts_delegable(cfg, inf, &rs));
	rs.nroles = 2;
	assert_false(role_facts_delegable(cfg, inf, &rs));
	assert_true(role_facts_delegable(cfg, NULL, &rs)); /* names only */
	roles[1].name = NULL;
	assert_false(role_facts_delegable(cfg, NULL, &rs));
	cJSON_Delete(inf);
	config_unref(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_only),
		cmocka_unit_test(test_configured_lists),
		cmocka_unit_test(test_inferences),
		cmocka_unit_test(test_restriction_delegable),
		cmocka_unit_test(test_id_case),
		cmocka_unit_test(test_long_chain),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
