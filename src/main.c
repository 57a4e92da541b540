/*
 * main.c: argv, subcommands and startup order.
 *
 * keystone-k8s-auth SUBCOMMAND [--config FILE] [options]
 *
 * Each subcommand loads the configuration (an explicit --config must exist;
 * without it the default path is used when present, else the embedded
 * defaults), then does one thing.  `serve` hands over to server.c, which
 * owns the process from then on.  Runs on the main thread only.
 */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "k8sauth.h"

/*
 * GnuTLS is in the process only because Debian's libcurl links librtmp and
 * libldap, which link it; the server never speaks RTMP or LDAP (fetch.c
 * and agent.c allow HTTP(S) only) and its TLS is OpenSSL's.  GnuTLS's
 * library constructor would still run gnutls_global_init() before main:
 * its priority strings, cipher registration, p11-kit, about 1 MiB of idle
 * RSS for nothing.  libgnutls calls this weak hook through its PLT, so the
 * executable's definition wins and the implicit initialisation is skipped.
 * Nothing then runs on an uninitialised library: each user of GnuTLS
 * (libcurl's GnuTLS backend in curl_global_init, librtmp, libldap) calls
 * gnutls_global_init() itself before its first use.  configure exports the
 * symbol (BIN_LDFLAGS: -Wl,--export-dynamic-symbol); without the export
 * the hook is not seen and GnuTLS initialises as before.
 */
int _gnutls_global_init_skip(void);
int
_gnutls_global_init_skip(void)
{
	return (1);
}

struct main_cmd {
	const char *name;
	int (*fn)(struct config *, const char *, int, char **);
	const char *usage;
};

static int main_serve(struct config *, const char *, int, char **);
static int main_db_sync(struct config *, const char *, int, char **);
static int main_bootstrap(struct config *, const char *, int, char **);
static int main_credential_setup(struct config *, const char *, int, char **);
static int main_fernet_setup(struct config *, const char *, int, char **);
static int main_fernet_rotate(struct config *, const char *, int, char **);
static int main_config_check(struct config *, const char *, int, char **);
static int main_version(struct config *, const char *, int, char **);
static struct config *main_load_config(const char **, int, int);

static const struct main_cmd main_cmds[] = {
	{ "serve", main_serve, "serve [--config FILE]" },
	{ "db-sync", main_db_sync, "db-sync [--config FILE]" },
	{ "db-copy", NULL, "db-copy --from URL --to URL [--force]" },
	{ "bootstrap", main_bootstrap, "bootstrap [--config FILE] [--force]" },
	{ "credential-setup", main_credential_setup,
	    "credential-setup [--config FILE]" },
	{ "fernet-setup", main_fernet_setup, "fernet-setup [--config FILE]" },
	{ "fernet-rotate", main_fernet_rotate,
	    "fernet-rotate [--config FILE]" },
	{ "config-check", main_config_check,
	    "config-check [--config FILE] [--dump | --docs | --sample]" },
	{ "version", main_version, "version" },
	{ "policy-check", NULL,
	    "policy-check [--config FILE] --action NAME --credentials FILE --target FILE\n  policy-check [--config FILE] --login CTXFILE" },
	{ "agent", NULL,
	    "agent --url URL --instance ID --role NAME --token-file FILE [options]" },
};
#define MAIN_NCMDS (sizeof main_cmds / sizeof *main_cmds)

/* Print usage and exit. */
static __dead void
main_usage(int status)
{
	size_t i;
	FILE *f = status == 0 ? stdout : stderr;

	fprintf(f, "usage: %s SUBCOMMAND [options]\n\nsubcommands:\n",
	    K8SAUTH_NAME);
	for (i = 0; i < MAIN_NCMDS; i++)
		fprintf(f, "  %s\n", main_cmds[i].usage);
	fprintf(f, "\nThe default configuration file is %s.\n",
	    config_default_path());
	exit(status);
}

/* serve: run the server until SIGTERM. */
static int
main_serve(struct config *cfg, const char *path, int flags, char **cause)
{
	if (config_validate_serve(cfg, cause) != 0)
		return (-1);
	return (server_run(cfg, path));
}

/* db-sync: create or migrate the database. */
static int
main_db_sync(struct config *cfg, const char *path, int flags, char **cause)
{
	struct db *db;
	char *file;
	int rc;

	if ((file = config_db_path(cfg, cause)) == NULL)
		return (-1);
	db = db_open(file, cause);
	freezero_str(file); /* the connection string holds the password */
	if (db == NULL)
		return (-1);
	rc = db_migrate(db, cause);
	if (rc == 0)
		printf("database %s at schema version %d\n", db_name(db),
		    db_schema_version(db));
	db_close(db);
	return (rc);
}

/* bootstrap: write a random admin token file (mode 0600). */
static int
main_bootstrap(struct config *cfg, const char *path, int force, char **cause)
{
	if (auth_bootstrap(cfg->admin_token_file, force, cause) != 0)
		return (-1);
	printf("admin token in %s\n", cfg->admin_token_file);
	return (0);
}

/* credential-setup: create the at-rest encryption key repository. */
static int
main_credential_setup(struct config *cfg, const char *path, int flags,
    char **cause)
{
	if (secret_setup(cfg->credential_key_repository, cause) != 0)
		return (-1);
	printf("credential keys in %s\n", cfg->credential_key_repository);
	return (0);
}

/* fernet-setup: create a Keystone-compatible key repository. */
static int
main_fernet_setup(struct config *cfg, const char *path, int flags, char **cause)
{
	if (fernet_setup(cfg->fernet_key_repository,
		cfg->fernet_max_active_keys, cause) != 0)
		return (-1);
	printf("fernet keys in %s\n", cfg->fernet_key_repository);
	return (0);
}

/* fernet-rotate: rotate the key repository as keystone-manage does. */
static int
main_fernet_rotate(struct config *cfg, const char *path, int flags,
    char **cause)
{
	if (fernet_rotate(cfg->fernet_key_repository,
		cfg->fernet_max_active_keys, cause) != 0)
		return (-1);
	printf("fernet keys rotated in %s\n", cfg->fernet_key_repository);
	return (0);
}

/* config-check: already loaded and validated by main; print results. */
static int
main_config_check(struct config *cfg, const char *path, int flags, char **cause)
{
	if (flags == 0 && config_validate_serve(cfg, cause) != 0)
		return (-1);
	if (flags == 1)
		config_dump(cfg, stdout);
	else if (flags == 2)
		config_write_docs(stdout);
	else if (flags == 3)
		config_write_sample(stdout);
	else
		printf("%s: ok\n", path != NULL ? path : "(embedded defaults)");
	return (0);
}

/* version: print the version. */
static int
main_version(struct config *cfg, const char *path, int flags, char **cause)
{
	printf("%s %s\n", K8SAUTH_NAME, K8SAUTH_VERSION);
	return (0);
}

/*
 * policy-check has options of its own (policy_check.c): find --config,
 * load it, and hand over the arguments.  Exit 0 allow, 1 deny, 2 error.
 */
static int
main_policy_check(int argc, char **argv)
{
	struct config *cfg;
	const char *path = config_default_path();
	int i, explicit = 0, rc;

	for (i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "--config") == 0 ||
			strcmp(argv[i], "-c") == 0) &&
		    i + 1 < argc) {
			path = argv[i + 1];
			explicit = 1;
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			path = argv[i] + 9;
			explicit = 1;
		}
	}
	cfg = main_load_config(&path, explicit, 2);
	log_open(cfg->log_level, strcmp(cfg->log_format, "json") == 0);
	rc = policy_check_main(cfg, argc, argv);
	config_unref(cfg);
	return (rc);
}

/* Load the configuration for a subcommand; exits on errors. */
static struct config *
main_load_config(const char **path, int explicit, int status)
{
	struct config *cfg;
	struct stat st;
	char *cause = NULL;

	cfg = config_new();
	if (!explicit && stat(*path, &st) == -1 && errno == ENOENT) {
		*path = NULL; /* embedded defaults */
		if (config_validate(cfg, &cause) != 0) {
			fprintf(stderr, "%s%s\n", log_prefix(LOGL_ERR), cause);
			exit(status);
		}
		return (cfg);
	}
	if (config_load(cfg, *path, &cause) != 0) {
		fprintf(stderr, "%s%s\n", log_prefix(LOGL_ERR), cause);
		exit(status);
	}
	return (cfg);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = { { "config", required_argument,
						      NULL, 'c' },
		{ "force", no_argument, NULL, 'f' },
		{ "dump", no_argument, NULL, 'd' },
		{ "docs", no_argument, NULL, 'D' },
		{ "sample", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	const struct main_cmd *cmd = NULL;
	struct config *cfg;
	const char *path = config_default_path();
	char *cause = NULL;
	size_t i;
	int ch, explicit = 0, flags = 0, force = 0, rc;

	if (argc < 2)
		main_usage(1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0)
		main_usage(0);
	if (strcmp(argv[1], "--version") == 0)
		argv[1] = (char *)"version";
	if (strcmp(argv[1], "policy-check") == 0)
		return (main_policy_check(argc - 1, argv + 1));
	/* Options of its own: two URLs instead of a configuration. */
	if (strcmp(argv[1], "db-copy") == 0)
		return (db_copy_main(argc - 1, argv + 1));
	/* The pod side: options of its own, no server configuration. */
	if (strcmp(argv[1], "agent") == 0)
		return (agent_main(argc - 1, argv + 1));
	for (i = 0; i < MAIN_NCMDS; i++) {
		if (strcmp(argv[1], main_cmds[i].name) == 0)
			cmd = &main_cmds[i];
	}
	if (cmd == NULL) {
		fprintf(stderr, "%s: unknown subcommand \"%s\"\n", K8SAUTH_NAME,
		    argv[1]);
		main_usage(1);
	}
	argc--;
	argv++;
	while ((ch = getopt_long(argc, argv, "c:fh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			explicit = 1;
			break;
		case 'f':
			force = 1;
			break;
		case 'd':
			flags = 1;
			break;
		case 'D':
			flags = 2;
			break;
		case 'S':
			flags = 3;
			break;
		case 'h':
			main_usage(0);
		default:
			main_usage(1);
		}
	}
	if (optind != argc)
		main_usage(1);

	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "curl_global_init failed\n");
		return (1);
	}
	if (cmd->fn == main_version) {
		printf("%s %s\n", K8SAUTH_NAME, K8SAUTH_VERSION);
		return (0);
	}
	cfg = main_load_config(&path, explicit, 1);
	log_open(cfg->log_level, strcmp(cfg->log_format, "json") == 0);
	if (cmd->fn == main_bootstrap)
		flags = force;
	else if (force)
		main_usage(1);
	rc = cmd->fn(cfg, path, flags, &cause);
	if (rc != 0 && cause != NULL)
		fprintf(stderr, "%s%s: %s: %s\n", log_prefix(LOGL_ERR),
		    K8SAUTH_NAME, cmd->name, cause);
	free(cause);
	config_unref(cfg);
	curl_global_cleanup();
	return (rc == 0 ? 0 : 1);
}
