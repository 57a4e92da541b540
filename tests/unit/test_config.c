/*
 * test_config.c: the options table, parsing, validation and errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "k8sauth.h"

static char *
write_tmp(const char *text)
{
	char	 path[] = "/tmp/k8sauth-config-XXXXXX";
	int	 fd;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return (xstrdup(path));
}

static int
load_text(const char *text, struct config **out, char **cause)
{
	char	*path = write_tmp(text);
	int	 rc;

	*out = config_new();
	*cause = NULL;
	rc = config_load(*out, path, cause);
	unlink(path);
	free(path);
	return (rc);
}

static void
test_defaults(void **state)
{
	struct config	*cfg = config_new();

	assert_string_equal(cfg->listen, "https://0.0.0.0:5088");
	assert_int_equal(cfg->max_body_size, 65536);
	assert_int_equal(cfg->token_expiration, 3600);
	assert_int_equal(cfg->token_payload, TOKEN_PAYLOAD_PROJECT_SCOPED);
	assert_int_equal(cfg->token_cap_to_jwt_expiry, 1);
	assert_string_equal(cfg->auth_method, "mapped");
	assert_int_equal(cfg->k8s_max_jwt_size, 16384);
	assert_int_equal(cfg->k8s_allow_legacy_tokens, 0);
	assert_int_equal(cfg->fernet_max_active_keys, 3);
	config_free(cfg);
}

static void
test_good_file(void **state)
{
	struct config	*cfg;
	char		*cause;

	assert_int_equal(load_text("[server]\nlisten = http://127.0.0.1:1\n"
	    "workers = 2\n[token]\npayload = restricted\n"
	    "cap_to_jwt_expiry = no\n[log]\nlevel = debug\n", &cfg, &cause),
	    0);
	assert_null(cause);
	assert_int_equal(cfg->workers, 2);
	assert_int_equal(cfg->token_payload, TOKEN_PAYLOAD_RESTRICTED);
	assert_int_equal(cfg->token_cap_to_jwt_expiry, 0);
	assert_int_equal(cfg->log_level, LOGL_DEBUG);
	config_free(cfg);
}

static void
test_every_error_reported(void **state)
{
	struct config	*cfg;
	char		*cause;

	assert_int_equal(load_text("[server]\nlisten = http://127.0.0.1:1\n"
	    "workers = many\nbogus = 1\n[token]\nexpiration = 5\n"
	    "payload = jwt\n[auth]\nmethod = kerberos\n", &cfg, &cause), -1);
	assert_non_null(strstr(cause, "[server] workers: \"many\""));
	assert_non_null(strstr(cause, "[server] bogus: unknown option"));
	assert_non_null(strstr(cause, "[token] expiration: \"5\""));
	assert_non_null(strstr(cause, "[token] payload: \"jwt\""));
	assert_non_null(strstr(cause, "[auth] method: \"kerberos\""));
	free(cause);
	config_free(cfg);
}

static void
test_https_needs_cert(void **state)
{
	struct config	*cfg;
	char		*cause;

	/* Loads (other subcommands need no certificate), but cannot serve. */
	assert_int_equal(load_text("[server]\nlisten = https://127.0.0.1:1\n",
	    &cfg, &cause), 0);
	assert_int_equal(config_validate_serve(cfg, &cause), -1);
	assert_non_null(strstr(cause, "tls_cert"));
	free(cause);
	config_free(cfg);
	assert_int_equal(load_text("[server]\nlisten = https://127.0.0.1:1\n"
	    "tls_cert = /c\ntls_key = /k\n", &cfg, &cause), 0);
	assert_int_equal(config_validate_serve(cfg, &cause), 0);
	config_free(cfg);
	assert_int_equal(load_text("[server]\nlisten = ftp://x:1\n", &cfg,
	    &cause), -1);
	assert_non_null(strstr(cause, "[server] listen"));
	free(cause);
	config_free(cfg);
}

static void
test_syntax_error_and_missing_file(void **state)
{
	struct config	*cfg;
	char		*cause = NULL;

	assert_int_equal(load_text("[server\nlisten = x\n", &cfg, &cause), -1);
	assert_non_null(strstr(cause, "syntax error"));
	free(cause);
	config_free(cfg);
	cfg = config_new();
	cause = NULL;
	assert_int_equal(config_load(cfg, "/nonexistent/k.conf", &cause), -1);
	assert_non_null(strstr(cause, "/nonexistent/k.conf"));
	free(cause);
	config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_good_file),
		cmocka_unit_test(test_every_error_reported),
		cmocka_unit_test(test_https_needs_cert),
		cmocka_unit_test(test_syntax_error_and_missing_file),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
