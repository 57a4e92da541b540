/*
 * json.c: cJSON helpers that are strict, bounded and typed.
 *
 * Parsing rejects trailing garbage, nesting deeper than JSON_MAX_DEPTH,
 * strings carrying NUL (escaped) and raw control characters (U+0000 to
 * U+001F as bytes, which RFC 8259 forbids in strings and cJSON accepts: a
 * raw NUL would cut a stored value short) anywhere but as whitespace
 * (checked by a pre-scan, before cJSON builds a tree).  The typed getters are the one place where request fields are
 * checked for type, length and range, so the API handlers do not each
 * write their own; their causes always start with the field name so a
 * caller can prefix a path ("roles[2].").
 *
 * Owns nothing; pure functions, safe from any thread.  Never blocks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

/* Scanner state for json_prescan. */
struct json_scan {
	int depth;
	int in_string;
	int escape;
};

/* Step the pre-scan over one byte; -1 with cause on a violation. */
static int
json_prescan_byte(struct json_scan *s, const char *p, const char *end,
    char **cause)
{
	if (s->in_string) {
		if (s->escape) {
			s->escape = 0;
			if (*p == 'u' && end - p >= 5 &&
			    memcmp(p + 1, "0000", 4) == 0) {
				*cause =
				    xstrdup("strings must not contain NUL");
				return (-1);
			}
		} else if (*p == '\\')
			s->escape = 1;
		else if (*p == '"')
			s->in_string = 0;
		return (0);
	}
	if (*p == '"')
		s->in_string = 1;
	else if (*p == '{' || *p == '[') {
		if (++s->depth > JSON_MAX_DEPTH) {
			xasprintf(cause, "JSON nested deeper than %d levels",
			    JSON_MAX_DEPTH);
			return (-1);
		}
	} else if (*p == '}' || *p == ']')
		s->depth--;
	return (0);
}

/*
 * A raw control byte at p: inside a string never allowed, outside only
 * JSON's whitespace (tab, line feed, carriage return).  -1 with cause.
 */
static int
json_prescan_control(const struct json_scan *s, const char *buf, const char *p,
    char **cause)
{
	unsigned char c = (unsigned char)*p;

	if (c >= 0x20 ||
	    (!s->in_string && strchr("\t\n\r", c) != NULL && c != '\0'))
		return (0);
	xasprintf(cause,
	    "raw control character 0x%02x %s at offset %zu (escape it as \\u%04x)",
	    c, s->in_string ? "in a string" : "outside a string",
	    (size_t)(p - buf), c);
	return (-1);
}

/*
 * The bytes the two steps above act on outside an escape: control bytes,
 * quote, backslash and brackets.  Any other byte (most of a body: ids,
 * JWTs, white space padding) is skipped with one table load instead of two
 * calls and a strchr per byte.
 */
static const unsigned char json_scan_special[256] = {
	[0x00 ... 0x1f] = 1,
	['"'] = 1,
	['\\'] = 1,
	['{'] = 1,
	['}'] = 1,
	['['] = 1,
	[']'] = 1,
};

/*
 * Reject inputs cJSON would accept but we do not want (depth, NUL, raw
 * control characters).
 */
static int
json_prescan(const char *buf, size_t len, char **cause)
{
	struct json_scan s = { 0, 0, 0 };
	const char *p, *end = buf + len;

	for (p = buf; p < end; p++) {
		if (!json_scan_special[(unsigned char)*p] && !s.escape)
			continue; /* neither step would do anything */
		if (json_prescan_control(&s, buf, p, cause) != 0 ||
		    json_prescan_byte(&s, p, end, cause) != 0)
			return (-1);
	}
	return (0);
}

/* Parse exactly one JSON value from buf[0..len); NULL with cause. */
cJSON *
json_parse(const char *buf, size_t len, char **cause)
{
	cJSON *root;
	const char *end = NULL;
	char *why = NULL;
	size_t off;

	if (cause != NULL)
		*cause = NULL;
	if (buf == NULL || len == 0) {
		if (cause != NULL)
			*cause = xstrdup("empty body");
		return (NULL);
	}
	/* cause may be NULL: the pre-scan always gets somewhere to write. */
	if (json_prescan(buf, len, &why) != 0) {
		if (cause != NULL)
			*cause = why;
		else
			free(why);
		return (NULL);
	}
	root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
	if (root == NULL) {
		off = (end != NULL && end >= buf) ? (size_t)(end - buf) : 0;
		if (cause != NULL)
			xasprintf(cause, "malformed JSON near offset %zu", off);
		return (NULL);
	}
	for (off = (size_t)(end - buf); off < len; off++) {
		if (buf[off] != ' ' && buf[off] != '\t' && buf[off] != '\r' &&
		    buf[off] != '\n') {
			cJSON_Delete(root);
			if (cause != NULL)
				xasprintf(cause, "trailing data at offset %zu",
				    off);
			return (NULL);
		}
	}
	return (root);
}

/* Print unformatted; never fails (allocation failure is fatal). */
char *
json_print(const cJSON *item)
{
	char *s;

	s = cJSON_PrintUnformatted(item);
	if (s == NULL)
		fatalx("cJSON_PrintUnformatted failed");
	return (s);
}

/* Index of name in a NULL-terminated list, or -1. */
static int
json_list_index(const char *const *list, const char *name)
{
	int i;

	for (i = 0; list[i] != NULL; i++) {
		if (strcmp(list[i], name) == 0)
			return (i);
	}
	return (-1);
}

/* Like json_check_fields, naming fields as prefix + key in the cause. */
int
json_check_fields_at(const cJSON *obj, const char *prefix,
    const char *const *allowed, char **cause)
{
	unsigned char seen[JSON_MAX_FIELDS];
	const cJSON *c;
	int i;

	memset(seen, 0, sizeof seen);
	cJSON_ArrayForEach(c, obj)
	{
		i = c->string == NULL ? -1
				      : json_list_index(allowed, c->string);
		if (i < 0 || i >= JSON_MAX_FIELDS) {
			xasprintf(cause, "unknown field %s%s", prefix,
			    c->string == NULL ? "" : c->string);
			return (-1);
		}
		if (seen[i]++) {
			xasprintf(cause, "duplicate field %s%s", prefix,
			    c->string);
			return (-1);
		}
	}
	return (0);
}

/* Every key of obj must be in allowed, once; -1 names the first bad one. */
int
json_check_fields(const cJSON *obj, const char *const *allowed, char **cause)
{
	return (json_check_fields_at(obj, "", allowed, cause));
}

/* First key of obj that appears in names, or NULL. */
const char *
json_find_field(const cJSON *obj, const char *const *names)
{
	const cJSON *c;

	cJSON_ArrayForEach(c, obj)
	{
		if (c->string != NULL && json_list_index(names, c->string) >= 0)
			return (c->string);
	}
	return (NULL);
}

/* Add value as a string, or JSON null when value is NULL. */
void
json_add_string_or_null(cJSON *obj, const char *name, const char *value)
{
	if (value == NULL)
		cJSON_AddNullToObject(obj, name);
	else
		cJSON_AddStringToObject(obj, name, value);
}

/* A JSON array of strings from a strlist (an empty array for NULL). */
cJSON *
json_strlist(const struct strlist *sl)
{
	cJSON *a;
	size_t i;

	a = cJSON_CreateArray();
	if (a == NULL)
		fatalx("cJSON_CreateArray failed");
	for (i = 0; sl != NULL && i < sl->n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(sl->v[i]));
	return (a);
}

/*
 * Look up a field: JSON_ABSENT, JSON_NULL (allowed only when nullable,
 * else -1 with cause), or JSON_SET with *item set.
 */
static int
json_lookup(const cJSON *obj, const char *name, int nullable, const char *what,
    const cJSON **item, char **cause)
{
	*item = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (*item == NULL)
		return (JSON_ABSENT);
	if (!cJSON_IsNull(*item))
		return (JSON_SET);
	if (nullable)
		return (JSON_NULL);
	xasprintf(cause, "%s must be %s", name, what);
	return (-1);
}

/* Check a string's length is within min..max; -1 with cause otherwise. */
static int
json_check_length(const char *name, const char *s, size_t min, size_t max,
    char **cause)
{
	size_t n = strlen(s);

	if (n >= min && n <= max)
		return (0);
	if (min == max)
		xasprintf(cause, "%s must be %zu characters long", name, min);
	else
		xasprintf(cause, "%s must be %zu to %zu characters long", name,
		    min, max);
	return (-1);
}

/*
 * A string field of min..max bytes.  JSON_SET stores a copy in *out
 * (freeing the old value); JSON_NULL sets *out to NULL (freeing it).
 */
int
json_get_string(const cJSON *obj, const char *name, size_t min, size_t max,
    int nullable, char **out, char **cause)
{
	const cJSON *item;
	int rc;

	rc = json_lookup(obj, name, nullable,
	    nullable ? "a string or null" : "a string", &item, cause);
	if (rc == JSON_NULL) {
		free(*out);
		*out = NULL;
	}
	if (rc != JSON_SET)
		return (rc);
	if (!cJSON_IsString(item) || item->valuestring == NULL) {
		xasprintf(cause, "%s must be %s", name,
		    nullable ? "a string or null" : "a string");
		return (-1);
	}
	if (json_check_length(name, item->valuestring, min, max, cause) != 0)
		return (-1);
	free(*out);
	*out = xstrdup(item->valuestring);
	return (JSON_SET);
}

/* A boolean field (JSON true/false only, never null). */
int
json_get_bool(const cJSON *obj, const char *name, int *out, char **cause)
{
	const cJSON *item;
	int rc;

	rc = json_lookup(obj, name, 0, "a boolean", &item, cause);
	if (rc != JSON_SET)
		return (rc);
	if (!cJSON_IsBool(item)) {
		xasprintf(cause, "%s must be a boolean", name);
		return (-1);
	}
	*out = cJSON_IsTrue(item) ? 1 : 0;
	return (JSON_SET);
}

/* An integer field in min..max (no fraction); JSON_NULL leaves *out. */
int
json_get_long(const cJSON *obj, const char *name, long min, long max,
    int nullable, long *out, char **cause)
{
	const cJSON *item;
	double d;
	int rc;

	rc = json_lookup(obj, name, nullable,
	    nullable ? "an integer or null" : "an integer", &item, cause);
	if (rc != JSON_SET)
		return (rc);
	d = item->valuedouble;
	if (!cJSON_IsNumber(item) || !isfinite(d) || floor(d) != d) {
		xasprintf(cause, "%s must be %s", name,
		    nullable ? "an integer or null" : "an integer");
		return (-1);
	}
	/* (double)LONG_MAX rounds up to 2^63, which a long cannot hold. */
	if (d < (double)min || d > (double)max || d >= 0x1p63) {
		xasprintf(cause, "%s must be between %ld and %ld", name, min,
		    max);
		return (-1);
	}
	*out = (long)d;
	return (JSON_SET);
}

/* Check one array item is a string of 1..maxlen bytes. */
static int
json_check_list_item(const char *name, size_t i, const cJSON *c, size_t maxlen,
    char **cause)
{
	size_t n;

	if (!cJSON_IsString(c) || c->valuestring == NULL) {
		xasprintf(cause, "%s[%zu] must be a string", name, i);
		return (-1);
	}
	n = strlen(c->valuestring);
	if (n == 0 || n > maxlen) {
		xasprintf(cause, "%s[%zu] must be 1 to %zu characters long",
		    name, i, maxlen);
		return (-1);
	}
	return (0);
}

/*
 * A non-empty list of at most maxitems non-empty strings of at most maxlen
 * bytes.  JSON_SET replaces *out (freed first); JSON_NULL frees it.
 */
int
json_get_strlist(const cJSON *obj, const char *name, size_t maxitems,
    size_t maxlen, int nullable, struct strlist *out, char **cause)
{
	const cJSON *item, *c;
	const char *what;
	size_t n, i;
	int rc;

	what = nullable ? "a list of strings or null" : "a list of strings";
	rc = json_lookup(obj, name, nullable, what, &item, cause);
	if (rc == JSON_NULL)
		json_strlist_clear(out);
	if (rc != JSON_SET)
		return (rc);
	if (!cJSON_IsArray(item)) {
		xasprintf(cause, "%s must be %s", name, what);
		return (-1);
	}
	n = (size_t)cJSON_GetArraySize(item);
	if (n == 0 || n > maxitems) {
		xasprintf(cause, "%s must have 1 to %zu items", name, maxitems);
		return (-1);
	}
	i = 0;
	cJSON_ArrayForEach(c, item)
	{
		if (json_check_list_item(name, i++, c, maxlen, cause) != 0)
			return (-1);
	}
	json_strlist_clear(out);
	out->v = xcalloc(n, sizeof *out->v);
	i = 0;
	cJSON_ArrayForEach(c, item) out->v[i++] = xstrdup(c->valuestring);
	out->n = n;
	return (JSON_SET);
}

/* Free a strlist's items and leave it empty (the struct itself stays). */
void
json_strlist_clear(struct strlist *sl)
{
	size_t i;

	for (i = 0; i < sl->n; i++)
		free(sl->v[i]);
	free(sl->v);
	sl->v = NULL;
	sl->n = 0;
}

/* s, or NULL when s is empty (an id or timestamp not assigned yet). */
const char *
json_or_null(const char *s)
{
	return (s[0] != '\0' ? s : NULL);
}

/*
 * json_out: a JSON text written straight into a buffer, for the replies of
 * the hot path (a login's and a validation's token document), where
 * building a cJSON tree of ~30 nodes, printing and freeing it cost more
 * than the rest of the reply.  The buffer starts on the caller's stack and
 * moves to the heap when it is outgrown.  Strings are escaped exactly as
 * cJSON prints them (tests/unit/test_json.c compares the two), so a reply
 * reads the same either way.  Commas are implied: a member or element that
 * does not follow an opening bracket or a key gets one.
 */
void
json_out_init(struct json_out *o, char *stack, size_t size)
{
	o->buf = stack;
	o->len = 0;
	o->cap = size;
	o->heap = 0;
}

/* Free what the text outgrew its stack buffer into. */
void
json_out_free(struct json_out *o)
{
	if (o->heap)
		free(o->buf);
	o->buf = NULL;
	o->len = o->cap = 0;
	o->heap = 0;
}

/* Append len bytes as they are. */
void
json_out_raw(struct json_out *o, const char *s, size_t len)
{
	char *nbuf;
	size_t ncap;

	if (len > o->cap - o->len) {
		ncap = o->cap * 2 > o->len + len ? o->cap * 2 : o->len + len;
		if (o->heap)
			nbuf = xreallocarray(o->buf, ncap, 1);
		else {
			nbuf = xmalloc(ncap);
			memcpy(nbuf, o->buf, o->len);
		}
		o->buf = nbuf;
		o->cap = ncap;
		o->heap = 1;
	}
	memcpy(o->buf + o->len, s, len);
	o->len += len;
}

/* A comma unless the text is empty or ends with an opening or a key. */
static void
json_out_sep(struct json_out *o)
{
	char c;

	if (o->len == 0)
		return;
	c = o->buf[o->len - 1];
	if (c != '{' && c != '[' && c != ':')
		json_out_raw(o, ",", 1);
}

/* A quoted, escaped string: cJSON's print_string_ptr, byte for byte. */
static void
json_out_quoted(struct json_out *o, const char *s)
{
	char esc[8];
	const char *run;

	json_out_raw(o, "\"", 1);
	for (run = s; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 32 && c != '"' && c != '\\')
			continue;
		json_out_raw(o, run, (size_t)(s - run));
		run = s + 1;
		switch (c) {
		case '"':
			json_out_raw(o, "\\\"", 2);
			break;
		case '\\':
			json_out_raw(o, "\\\\", 2);
			break;
		case '\b':
			json_out_raw(o, "\\b", 2);
			break;
		case '\f':
			json_out_raw(o, "\\f", 2);
			break;
		case '\n':
			json_out_raw(o, "\\n", 2);
			break;
		case '\r':
			json_out_raw(o, "\\r", 2);
			break;
		case '\t':
			json_out_raw(o, "\\t", 2);
			break;
		default:
			snprintf(esc, sizeof esc, "\\u%04x", c);
			json_out_raw(o, esc, 6);
		}
	}
	json_out_raw(o, run, (size_t)(s - run));
	json_out_raw(o, "\"", 1);
}

/* "key": (with the comma before it when one is due). */
void
json_out_key(struct json_out *o, const char *key)
{
	json_out_sep(o);
	json_out_quoted(o, key);
	json_out_raw(o, ":", 1);
}

/*
 * Open an object ('{') or array ('['): a member named key, or an element
 * (or the top level) when key is NULL.
 */
void
json_out_open(struct json_out *o, const char *key, char bracket)
{
	if (key != NULL)
		json_out_key(o, key);
	else
		json_out_sep(o);
	json_out_raw(o, &bracket, 1);
}

/* Close what json_out_open opened: '}' or ']'. */
void
json_out_close(struct json_out *o, char bracket)
{
	json_out_raw(o, &bracket, 1);
}

/*
 * A string member named key, or an element when key is NULL.  A NULL
 * value writes nothing, as cJSON_AddStringToObject adds nothing for one.
 */
void
json_out_string(struct json_out *o, const char *key, const char *value)
{
	if (value == NULL)
		return;
	if (key != NULL)
		json_out_key(o, key);
	else
		json_out_sep(o);
	json_out_quoted(o, value);
}
