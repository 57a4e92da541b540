/*
 * fuzz_json.c: libFuzzer target for the request-body parser and its strict
 * field checks (json.c): json_parse, json_check_fields(_at),
 * json_find_field and the typed getters json_get_string, json_get_bool,
 * json_get_long and json_get_strlist, the way the admin API handlers call
 * them on a body.
 *
 * The whole input is the body.  Asserted: a parse failure and every getter
 * failure come with a cause naming the field; a parsed document prints and
 * parses again; a getter that says JSON_SET stored a value within its
 * bounds.  Any crash, leak or sanitizer report is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_json); run: `sh tests/run.sh
 * fuzz`, or by hand:
 *
 *	./tests/fuzz/build/fuzz_json -max_total_time=60 tests/tmp/fuzz-json \
 *	    tests/fuzz/corpus/json
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char *const fuzz_fields[] = { "name", "description",
	"enabled", "token_ttl", "bound_namespaces", "count", "big",
	"nested", NULL };

/* Log errors only: the parser's own logging is not under test. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_open(LOGL_ERR, 0);
	return (0);
}

/* A failed getter must say which field; a cause is never left behind. */
static void
fuzz_check_cause(int rc, const char *name, char *cause)
{
	if (rc == -1) {
		if (cause == NULL || strstr(cause, name) != cause)
			abort();
		free(cause);
	} else if (cause != NULL || rc < JSON_ABSENT || rc > JSON_NULL)
		abort();
}

/* Every typed getter on obj. */
static void
fuzz_getters(const cJSON *obj)
{
	struct strlist	 sl = { NULL, 0 };
	char		*s = NULL, *cause = NULL;
	long		 l = -7;
	int		 b = -1, rc;
	size_t		 i;

	rc = json_get_string(obj, "name", 1, 64, 0, &s, &cause);
	fuzz_check_cause(rc, "name", cause);
	if (rc == JSON_SET && (s == NULL || strlen(s) < 1 || strlen(s) > 64))
		abort();
	cause = NULL;
	rc = json_get_string(obj, "description", 0, 255, 1, &s, &cause);
	fuzz_check_cause(rc, "description", cause);
	if (rc == JSON_NULL && s != NULL)
		abort();
	free(s);
	cause = NULL;
	rc = json_get_bool(obj, "enabled", &b, &cause);
	fuzz_check_cause(rc, "enabled", cause);
	if (rc == JSON_SET && b != 0 && b != 1)
		abort();
	cause = NULL;
	rc = json_get_long(obj, "token_ttl", 60, 86400, 1, &l, &cause);
	fuzz_check_cause(rc, "token_ttl", cause);
	if (rc == JSON_SET && (l < 60 || l > 86400))
		abort();
	cause = NULL;
	rc = json_get_long(obj, "big", LONG_MIN, LONG_MAX, 0, &l, &cause);
	fuzz_check_cause(rc, "big", cause);
	cause = NULL;
	rc = json_get_strlist(obj, "bound_namespaces", 4, 16, 1, &sl, &cause);
	fuzz_check_cause(rc, "bound_namespaces", cause);
	if (rc == JSON_SET) {
		if (sl.n < 1 || sl.n > 4)
			abort();
		for (i = 0; i < sl.n; i++) {
			if (strlen(sl.v[i]) < 1 || strlen(sl.v[i]) > 16)
				abort();
		}
	}
	json_strlist_clear(&sl);
}

/*
 * json_out (the hot path's reply writer) must escape any byte string
 * exactly as cJSON prints it: the input up to its first NUL as a member
 * and as an element, in a buffer too small for it (the heap path), and the
 * text must parse back to the same string.
 */
static void
fuzz_json_out(const uint8_t *data, size_t size)
{
	struct json_out	 o;
	cJSON		*want, *obj, *back;
	char		 stack[16], *str, *printed, *cause = NULL;

	str = xmalloc(size + 1);
	memcpy(str, data, size);
	str[size] = '\0';
	want = cJSON_CreateArray();
	cJSON_AddItemToArray(want, cJSON_CreateString(str));
	cJSON_AddItemToArray(want, obj = cJSON_CreateObject());
	cJSON_AddStringToObject(obj, "k", str);
	cJSON_AddItemToArray(want, obj = cJSON_CreateObject());
	cJSON_AddStringToObject(obj, str, "v");
	printed = cJSON_PrintUnformatted(want);
	json_out_init(&o, stack, sizeof stack);
	json_out_open(&o, NULL, '[');
	json_out_string(&o, NULL, str);
	json_out_open(&o, NULL, '{');
	json_out_string(&o, "k", str);
	json_out_close(&o, '}');
	json_out_open(&o, NULL, '{');
	json_out_string(&o, str, "v");
	json_out_close(&o, '}');
	json_out_close(&o, ']');
	if (o.len != strlen(printed) || memcmp(o.buf, printed, o.len) != 0)
		abort();
	/* It parses back, strictly, to the same string. */
	if ((back = json_parse(o.buf, o.len, &cause)) == NULL)
		abort();
	if (strcmp(cJSON_GetArrayItem(back, 0)->valuestring, str) != 0)
		abort();
	cJSON_Delete(back);
	json_out_free(&o);
	free(printed);
	cJSON_Delete(want);
	free(str);
}

/* One input: one request body. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "nested", "count", NULL };
	cJSON		*doc, *again;
	const cJSON	*nested;
	char		*copy, *cause = NULL, *printed;

	/* A copy of exactly size bytes catches reads past the body. */
	fuzz_json_out(data, size);
	copy = xmalloc(size ? size : 1);
	memcpy(copy, data, size);
	doc = json_parse(copy, size, &cause);
	if (doc == NULL) {
		if (cause == NULL)
			abort();
		free(cause);
		free(copy);
		return (0);
	}
	if (cause != NULL)
		abort();
	printed = json_print(doc);
	if ((again = json_parse(printed, strlen(printed), &cause)) == NULL)
		abort();
	cJSON_Delete(again);
	free(printed);
	if (cJSON_IsObject(doc)) {
		if (json_check_fields(doc, fuzz_fields, &cause) != 0) {
			if (cause == NULL)
				abort();
			free(cause);
			cause = NULL;
		} else if (cause != NULL)
			abort();
		(void)json_find_field(doc, names);
		fuzz_getters(doc);
		nested = cJSON_GetObjectItemCaseSensitive(doc, "nested");
		if (cJSON_IsObject(nested)) {
			if (json_check_fields_at(nested, "nested.",
			    fuzz_fields, &cause) != 0) {
				if (cause == NULL ||
				    strstr(cause, "nested.") == NULL)
					abort();
				free(cause);
			}
			fuzz_getters(nested);
		}
	}
	cJSON_Delete(doc);
	free(copy);
	return (0);
}
