/*
 * store_instance.c: Kubernetes auth instances in the database.
 *
 * Typed create/get/list/update/delete over the instances table.  The
 * reviewer token is plaintext in struct instance and only ever encrypted
 * (secret.c) in the reviewer_jwt_enc column; _get decrypts it, lists only
 * say whether one is set.  Deleting an instance deletes its roles through
 * the foreign key cascade.
 *
 * Runs on the thread that owns the struct db; blocks only as db.c does.
 */
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

/* Columns, in STORE_INSTANCE_COLUMNS order. */
enum {
	SI_ID = 0,
	SI_DOMAIN_ID,
	SI_NAME,
	SI_HOST,
	SI_CA_CERT,
	SI_REVIEWER_JWT_ENC,
	SI_DISABLE_LOCAL,
	SI_ENABLED,
	SI_CREATED_AT,
	SI_UPDATED_AT,
	SI_HOST_ADMIN,
	SI_SA_ANNOTATIONS,
	SI_JWT_SIGNATURE,
	SI_JWKS,
	SI_ISSUER,
	SI_REVIEW_CACHE_TTL
};

static int store_instance_read(struct db *, struct db_stmt *, void **);
static void store_instance_free(void *);

static const struct store_filter store_instance_filters[] = {
	{ "domain_id", 0 }, { "name", 0 }, { "enabled", 1 }, { NULL, 0 }
};

static const struct store_list_def store_instance_list_def = { "instance",
	"instances", STORE_INSTANCE_COLUMNS, store_instance_filters,
	store_instance_read, store_instance_free };

/* Bind every column (?1..?16); enc is the sealed reviewer token. */
static int
store_instance_bind(struct db_stmt *st, const struct instance *in,
    const char *enc)
{
	int bad = 0;

	bad |= store_bind_text(st, SI_ID + 1, in->id);
	bad |= store_bind_text(st, SI_DOMAIN_ID + 1, in->domain_id);
	bad |= store_bind_text(st, SI_NAME + 1, in->name);
	bad |= store_bind_text(st, SI_HOST + 1, in->host);
	bad |= store_bind_text(st, SI_CA_CERT + 1, in->ca_cert);
	bad |= store_bind_text(st, SI_REVIEWER_JWT_ENC + 1, enc);
	bad |= db_bind_int(st, SI_DISABLE_LOCAL + 1,
	    in->disable_local_ca_jwt != 0);
	bad |= db_bind_int(st, SI_ENABLED + 1, in->enabled != 0);
	bad |= store_bind_text(st, SI_CREATED_AT + 1, in->created_at);
	bad |= store_bind_text(st, SI_UPDATED_AT + 1, in->updated_at);
	bad |= db_bind_int(st, SI_HOST_ADMIN + 1, in->host_admin != 0);
	bad |= db_bind_int(st, SI_SA_ANNOTATIONS + 1,
	    in->service_account_annotations != 0);
	bad |= store_bind_text(st, SI_JWT_SIGNATURE + 1,
	    in->jwt_signature_skip ? "skip" : "verify");
	bad |= store_bind_text(st, SI_JWKS + 1, in->jwks);
	bad |= store_bind_text(st, SI_ISSUER + 1, in->issuer);
	bad |= db_bind_int(st, SI_REVIEW_CACHE_TTL + 1, in->review_cache_ttl);
	return (bad == 0 ? 0 : -1);
}

/* A new instance from the current row; the token is not decrypted. */
static int
store_instance_read(struct db *db, struct db_stmt *st, void **out)
{
	struct instance *in;

	in = xcalloc(1, sizeof *in);
	store_column_fixed(st, SI_ID, in->id, sizeof in->id);
	in->domain_id = store_column_text(st, SI_DOMAIN_ID);
	in->name = store_column_text(st, SI_NAME);
	in->host = store_column_text(st, SI_HOST);
	in->ca_cert = store_column_text(st, SI_CA_CERT);
	in->reviewer_jwt_set = !db_column_is_null(st, SI_REVIEWER_JWT_ENC);
	in->disable_local_ca_jwt = (int)db_column_int(st, SI_DISABLE_LOCAL);
	in->enabled = (int)db_column_int(st, SI_ENABLED);
	in->service_account_annotations =
	    (int)db_column_int(st, SI_SA_ANNOTATIONS);
	store_column_fixed(st, SI_CREATED_AT, in->created_at,
	    sizeof in->created_at);
	store_column_fixed(st, SI_UPDATED_AT, in->updated_at,
	    sizeof in->updated_at);
	in->host_admin = (int)db_column_int(st, SI_HOST_ADMIN);
	/* Anything but "skip" verifies: fail closed. */
	in->jwt_signature_skip = !db_column_is_null(st, SI_JWT_SIGNATURE) &&
	    db_column_text(st, SI_JWT_SIGNATURE) != NULL &&
	    strcmp(db_column_text(st, SI_JWT_SIGNATURE), "skip") == 0;
	in->jwks = store_column_text(st, SI_JWKS);
	in->issuer = store_column_text(st, SI_ISSUER);
	in->review_cache_ttl = (int)db_column_int(st, SI_REVIEW_CACHE_TTL);
	*out = in;
	return (STORE_OK);
}

/* store_list's free callback. */
static void
store_instance_free(void *p)
{
	instance_free(p);
}

/* Seal the reviewer token (NULL stays NULL); STORE_OK or STORE_ERROR. */
static int
store_instance_seal(const struct instance *in, char **enc)
{
	char *cause = NULL;

	*enc = NULL;
	if (in->reviewer_jwt == NULL)
		return (STORE_OK);
	if (!secret_loaded()) {
		log_err("store: instance %s: credential keys are missing, "
			"cannot store its reviewer token",
		    in->id);
		return (STORE_ERROR);
	}
	if ((*enc = secret_encrypt(in->reviewer_jwt, &cause)) == NULL) {
		log_err("store: instance %s: %s", in->id, cause);
		free(cause);
		return (STORE_ERROR);
	}
	return (STORE_OK);
}

/* Decrypt a sealed reviewer token into in; STORE_OK or STORE_ERROR. */
static int
store_instance_unseal(struct instance *in, const char *enc)
{
	char *cause = NULL;

	if (enc == NULL)
		return (STORE_OK);
	if (!secret_loaded()) {
		log_err("store: instance %s: credential keys are missing, "
			"cannot read its reviewer token",
		    in->id);
		return (STORE_ERROR);
	}
	if ((in->reviewer_jwt = secret_decrypt(enc, &cause)) == NULL) {
		log_err("store: instance %s: reviewer token: %s", in->id,
		    cause);
		free(cause);
		return (STORE_ERROR);
	}
	in->reviewer_jwt_set = 1;
	return (STORE_OK);
}

/* Write the whole instance with statement id; STORE_* result. */
static int
store_instance_put(struct db *db, enum db_stmt_id id, struct instance *in)
{
	struct db_stmt *st;
	char *enc;
	int result;

	if ((result = store_instance_seal(in, &enc)) != STORE_OK)
		return (result);
	if ((result = store_begin(db)) != STORE_OK)
		goto out;
	if ((st = db_stmt(db, id)) == NULL ||
	    store_instance_bind(st, in, enc) != 0) {
		db_stmt_done(db, st);
		result = STORE_ERROR;
	} else
		result = store_write(db, st, STORE_ERROR, "instance");
	if (result == STORE_OK && id == DB_INSTANCE_UPDATE &&
	    db_changes(db) == 0)
		result = STORE_NOT_FOUND;
	result = store_finish(db, result);
	if (result == STORE_OK)
		in->reviewer_jwt_set = enc != NULL;
out:
	free(enc);
	return (result);
}

/* Insert a new instance (id generated when empty, timestamps set). */
int
store_instance_create(struct db *db, struct instance *in)
{
	if (in->id[0] == '\0')
		util_new_id(in->id);
	store_stamp(in->created_at, in->updated_at);
	return (store_instance_put(db, DB_INSTANCE_INSERT, in));
}

/* Write every field of an existing instance and bump updated_at. */
int
store_instance_update(struct db *db, struct instance *in)
{
	store_stamp(NULL, in->updated_at);
	return (store_instance_put(db, DB_INSTANCE_UPDATE, in));
}

/* Load one instance, its reviewer token decrypted. */
int
store_instance_get(struct db *db, const char *id, struct instance **out)
{
	struct db_stmt *st;
	struct instance *in = NULL;
	char *enc = NULL;
	void *p;
	int result;

	*out = NULL;
	if ((st = db_stmt(db, DB_INSTANCE_GET)) == NULL)
		return (STORE_ERROR);
	store_bind_text(st, 1, id);
	result = store_get_row(db, st, "instance");
	if (result == STORE_OK) {
		store_instance_read(db, st, &p);
		in = p;
		enc = store_column_text(st, SI_REVIEWER_JWT_ENC);
	}
	if (db_stmt_done(db, st) != 0 && result == STORE_OK)
		result = STORE_ERROR;
	if (result == STORE_OK)
		result = store_instance_unseal(in, enc);
	free(enc);
	if (result != STORE_OK) {
		instance_free(in);
		return (result);
	}
	*out = in;
	return (STORE_OK);
}

/* One page of instances matching the query's filters. */
int
store_instance_list(struct db *db, const struct store_query *q,
    struct instance ***out, size_t *count, int *more)
{
	void **arr;
	int result;

	result = store_list(db, &store_instance_list_def, q, &arr, count, more);
	*out = (struct instance **)arr;
	return (result);
}

/* Delete an instance and, by cascade, its roles. */
int
store_instance_delete(struct db *db, const char *id)
{
	return (store_delete(db, DB_INSTANCE_DELETE, id, STORE_IN_USE,
	    "instance delete"));
}

/*
 * What makes an instance protected (role_facts_protected): each of its
 * roles with its version and the version of the restriction it binds, as
 * store_print_join's text (snapshot_instance_print gives the same text
 * for a snapshot).  Run inside the write transaction after the
 * instance's row was locked (store_unchanged), which every role write
 * also locks first.  STORE_OK or a failure.
 */
int
store_instance_print(struct db *db, const char *id, char **out)
{
	struct db_stmt *st;
	char **lines = NULL;
	size_t n = 0;
	int rc, result = STORE_OK;

	*out = NULL;
	st = db_stmt_sql(db,
	    "SELECT r.id, r.updated_at, r.token_restriction_id, s.updated_at "
	    "FROM roles r LEFT JOIN restrictions s "
	    "ON s.id = r.token_restriction_id WHERE r.auth_instance_id = ?1");
	if (st == NULL)
		return (STORE_ERROR);
	store_bind_text(st, 1, id);
	while ((rc = db_step(st)) == DB_ROW) {
		lines = xreallocarray(lines, n + 1, sizeof *lines);
		lines[n++] = store_print_line(db_column_text(st, 0),
		    db_column_text(st, 1), db_column_text(st, 2),
		    db_column_text(st, 3));
	}
	if (rc != DB_DONE)
		result = store_error(db, rc, STORE_ERROR, "instance roles");
	if (db_stmt_done(db, st) != 0 && result == STORE_OK)
		result = STORE_ERROR;
	*out = store_print_join(lines, n);
	if (result != STORE_OK) {
		free(*out);
		*out = NULL;
	}
	return (result);
}
