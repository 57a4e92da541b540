/*
 * k8s_selector.c: Kubernetes label selectors (a role's
 * bound_namespace_selector), parsed and matched as apimachinery does.
 *
 * A selector is the JSON form of a metav1.LabelSelector:
 *
 *   {"matchLabels": {"team": "payments"},
 *    "matchExpressions": [{"key": "env", "operator": "In",
 *                          "values": ["prod", "staging"]}]}
 *
 * Every requirement must hold (AND).  In: the label is set to one of the
 * values; NotIn: the label is unset or set to none of them; Exists and
 * DoesNotExist: the key is set or not, whatever its value.  Keys and
 * values are held to Kubernetes' own limits (IsQualifiedName,
 * IsValidLabelValue), so nothing a real cluster could not carry is ever
 * accepted.  An empty selector matches every namespace in Kubernetes; a
 * role must say that with ["*"] instead, so it is refused here.
 *
 * k8s_selector_check() validates on write (a 400 with a cause naming the
 * member); k8s_selector_match() decides at login against a namespace's
 * metadata.labels.  Owns nothing; pure functions, any thread.
 */
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define K8S_LABEL_NAME_MAX   63
#define K8S_LABEL_PREFIX_MAX 253

static const char *const k8s_selector_fields[] = { "matchLabels",
	"matchExpressions", NULL };
static const char *const k8s_selector_expr_fields[] = { "key", "operator",
	"values", NULL };

/* Is c alphanumeric (ASCII)? */
static int
k8s_selector_alnum(char c)
{
	return ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'));
}

/* Is s[0..len) a label name: [A-Za-z0-9._-], alphanumeric at both ends? */
static int
k8s_selector_name_span(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > K8S_LABEL_NAME_MAX || !k8s_selector_alnum(s[0]) ||
	    !k8s_selector_alnum(s[len - 1]))
		return (0);
	for (i = 0; i < len; i++) {
		if (!k8s_selector_alnum(s[i]) && s[i] != '.' && s[i] != '-' &&
		    s[i] != '_')
			return (0);
	}
	return (1);
}

/* Is s a label key: [DNS-1123 subdomain prefix (<= 253) '/'] name? */
int
k8s_selector_key_valid(const char *s)
{
	const char *slash;
	char *prefix;
	int ok;

	if ((slash = strchr(s, '/')) == NULL)
		return (k8s_selector_name_span(s, strlen(s)));
	if (slash == s || (size_t)(slash - s) > K8S_LABEL_PREFIX_MAX)
		return (0);
	prefix = xstrndup(s, (size_t)(slash - s));
	ok = k8s_name_subdomain(prefix) &&
	    k8s_selector_name_span(slash + 1, strlen(slash + 1));
	free(prefix);
	return (ok);
}

/* Is s a label value: empty, or a name of at most 63 characters? */
int
k8s_selector_value_valid(const char *s)
{
	return (*s == '\0' || k8s_selector_name_span(s, strlen(s)));
}

/* Check matchLabels: an object of at most max valid key -> value. */
static int
k8s_selector_check_labels(const cJSON *ml, size_t *terms, char **cause)
{
	const cJSON *it, *other;

	if (!cJSON_IsObject(ml)) {
		xasprintf(cause,
		    "bound_namespace_selector.matchLabels must be an object of label key to value");
		return (-1);
	}
	cJSON_ArrayForEach(it, ml)
	{
		if (++*terms > K8S_SELECTOR_MAX_TERMS) {
			xasprintf(cause,
			    "bound_namespace_selector may have at most %d requirements",
			    K8S_SELECTOR_MAX_TERMS);
			return (-1);
		}
		if (!k8s_selector_key_valid(it->string)) {
			xasprintf(cause,
			    "bound_namespace_selector.matchLabels: '%.300s' is not a valid label key (an optional DNS subdomain prefix of at most 253 characters and '/', then at most 63 of A-Z a-z 0-9 . _ - starting and ending alphanumeric)",
			    it->string);
			return (-1);
		}
		for (other = ml->child; other != it; other = other->next) {
			if (strcmp(other->string, it->string) == 0) {
				xasprintf(cause,
				    "bound_namespace_selector.matchLabels: the key '%s' appears twice",
				    it->string);
				return (-1);
			}
		}
		if (!cJSON_IsString(it) ||
		    !k8s_selector_value_valid(it->valuestring)) {
			xasprintf(cause,
			    "bound_namespace_selector.matchLabels.%s must be a valid label value (empty, or at most 63 of A-Z a-z 0-9 . _ - starting and ending alphanumeric)",
			    it->string);
			return (-1);
		}
	}
	return (0);
}

/* The operator of an expression, or K8S_SEL_BAD. */
static enum k8s_selector_op
k8s_selector_op(const char *s)
{
	if (strcmp(s, "In") == 0)
		return (K8S_SEL_IN);
	if (strcmp(s, "NotIn") == 0)
		return (K8S_SEL_NOT_IN);
	if (strcmp(s, "Exists") == 0)
		return (K8S_SEL_EXISTS);
	if (strcmp(s, "DoesNotExist") == 0)
		return (K8S_SEL_DOES_NOT_EXIST);
	return (K8S_SEL_BAD);
}

/* Check an expression's values against its operator; i for messages. */
static int
k8s_selector_check_values(const cJSON *values, enum k8s_selector_op op,
    size_t i, char **cause)
{
	const cJSON *v;
	int n;

	if (values != NULL && !cJSON_IsArray(values)) {
		xasprintf(cause,
		    "bound_namespace_selector.matchExpressions[%zu].values must be a list of strings",
		    i);
		return (-1);
	}
	n = values != NULL ? cJSON_GetArraySize(values) : 0;
	if ((op == K8S_SEL_IN || op == K8S_SEL_NOT_IN) &&
	    (n == 0 || n > K8S_SELECTOR_MAX_VALUES)) {
		xasprintf(cause,
		    "bound_namespace_selector.matchExpressions[%zu].values must have 1 to %d items with In and NotIn",
		    i, K8S_SELECTOR_MAX_VALUES);
		return (-1);
	}
	if ((op == K8S_SEL_EXISTS || op == K8S_SEL_DOES_NOT_EXIST) && n != 0) {
		xasprintf(cause,
		    "bound_namespace_selector.matchExpressions[%zu].values must be empty with Exists and DoesNotExist",
		    i);
		return (-1);
	}
	cJSON_ArrayForEach(v, values)
	{
		if (!cJSON_IsString(v) ||
		    !k8s_selector_value_valid(v->valuestring)) {
			xasprintf(cause,
			    "bound_namespace_selector.matchExpressions[%zu].values: each must be a valid label value (empty, or at most 63 of A-Z a-z 0-9 . _ - starting and ending alphanumeric)",
			    i);
			return (-1);
		}
	}
	return (0);
}

/* Check one expression {key, operator, values}; i for messages. */
static int
k8s_selector_check_expr(const cJSON *e, size_t i, char **cause)
{
	const cJSON *key, *op;
	char *where;
	int rc;

	if (!cJSON_IsObject(e)) {
		xasprintf(cause,
		    "bound_namespace_selector.matchExpressions[%zu] must be an object {key, operator, values}",
		    i);
		return (-1);
	}
	xasprintf(&where, "bound_namespace_selector.matchExpressions[%zu].", i);
	rc = json_check_fields_at(e, where, k8s_selector_expr_fields, cause);
	free(where);
	if (rc != 0)
		return (-1);
	key = cJSON_GetObjectItemCaseSensitive(e, "key");
	op = cJSON_GetObjectItemCaseSensitive(e, "operator");
	if (!cJSON_IsString(key) || !k8s_selector_key_valid(key->valuestring)) {
		xasprintf(cause,
		    "bound_namespace_selector.matchExpressions[%zu].key must be a valid label key (an optional DNS subdomain prefix of at most 253 characters and '/', then at most 63 of A-Z a-z 0-9 . _ - starting and ending alphanumeric)",
		    i);
		return (-1);
	}
	if (!cJSON_IsString(op) ||
	    k8s_selector_op(op->valuestring) == K8S_SEL_BAD) {
		xasprintf(cause,
		    "bound_namespace_selector.matchExpressions[%zu].operator must be one of In, NotIn, Exists, DoesNotExist",
		    i);
		return (-1);
	}
	return (k8s_selector_check_values(cJSON_GetObjectItemCaseSensitive(e,
					      "values"),
	    k8s_selector_op(op->valuestring), i, cause));
}

/* Check matchExpressions: a list of valid expressions. */
static int
k8s_selector_check_exprs(const cJSON *me, size_t *terms, char **cause)
{
	const cJSON *e;
	size_t i = 0;

	if (!cJSON_IsArray(me)) {
		xasprintf(cause,
		    "bound_namespace_selector.matchExpressions must be a list");
		return (-1);
	}
	cJSON_ArrayForEach(e, me)
	{
		if (++*terms > K8S_SELECTOR_MAX_TERMS) {
			xasprintf(cause,
			    "bound_namespace_selector may have at most %d requirements",
			    K8S_SELECTOR_MAX_TERMS);
			return (-1);
		}
		if (k8s_selector_check_expr(e, i++, cause) != 0)
			return (-1);
	}
	return (0);
}

/*
 * Check a selector as a role write gives it.  0, or -1 with a cause that
 * names the member (the API answers 400 invalid_value with it).
 */
int
k8s_selector_check(const cJSON *sel, char **cause)
{
	const cJSON *ml, *me;
	size_t terms = 0;

	if (!cJSON_IsObject(sel)) {
		xasprintf(cause,
		    "bound_namespace_selector must be an object {matchLabels, matchExpressions} or null");
		return (-1);
	}
	if (json_check_fields_at(sel, "bound_namespace_selector.",
		k8s_selector_fields, cause) != 0)
		return (-1);
	ml = cJSON_GetObjectItemCaseSensitive(sel, "matchLabels");
	me = cJSON_GetObjectItemCaseSensitive(sel, "matchExpressions");
	if ((ml != NULL && k8s_selector_check_labels(ml, &terms, cause) != 0) ||
	    (me != NULL && k8s_selector_check_exprs(me, &terms, cause) != 0))
		return (-1);
	if (terms == 0) {
		xasprintf(cause,
		    "bound_namespace_selector must have at least one requirement (an empty selector would bind every namespace: write [\"*\"] in bound_service_account_namespaces for that)");
		return (-1);
	}
	return (0);
}

/* The value of label key, or NULL when the namespace does not carry it. */
static const char *
k8s_selector_label(const cJSON *labels, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(labels, key);

	return (cJSON_IsString(v) ? v->valuestring : NULL);
}

/* Is s one of the strings of values? */
static int
k8s_selector_in(const cJSON *values, const char *s)
{
	const cJSON *v;

	cJSON_ArrayForEach(v, values)
	{
		if (cJSON_IsString(v) && strcmp(v->valuestring, s) == 0)
			return (1);
	}
	return (0);
}

/* Does one (checked) expression hold for labels? */
static int
k8s_selector_expr_match(const cJSON *e, const cJSON *labels)
{
	const char *key, *have;
	const cJSON *values;

	key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "key"));
	values = cJSON_GetObjectItemCaseSensitive(e, "values");
	have = k8s_selector_label(labels, key);
	switch (k8s_selector_op(cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(e, "operator")))) {
	case K8S_SEL_IN:
		return (have != NULL && k8s_selector_in(values, have));
	case K8S_SEL_NOT_IN:
		return (have == NULL || !k8s_selector_in(values, have));
	case K8S_SEL_EXISTS:
		return (have != NULL);
	case K8S_SEL_DOES_NOT_EXIST:
		return (have == NULL);
	default:
		return (0);
	}
}

/*
 * Does the selector (checked by k8s_selector_check) select a namespace
 * with these metadata.labels (an object of strings, or NULL for none)?
 * A selector that fails the check matches nothing (fail closed).
 */
int
k8s_selector_match(const cJSON *sel, const cJSON *labels)
{
	const cJSON *it;
	const char *have;
	char *cause = NULL;

	if (k8s_selector_check(sel, &cause) != 0) {
		free(cause);
		return (0);
	}
	cJSON_ArrayForEach(it,
	    cJSON_GetObjectItemCaseSensitive(sel, "matchLabels"))
	{
		have = k8s_selector_label(labels, it->string);
		if (have == NULL || strcmp(have, it->valuestring) != 0)
			return (0);
	}
	cJSON_ArrayForEach(it,
	    cJSON_GetObjectItemCaseSensitive(sel, "matchExpressions"))
	{
		if (!k8s_selector_expr_match(it, labels))
			return (0);
	}
	return (1);
}
