/*
 * fuzz_config.c: libFuzzer target for config_load, the INI configuration
 * parser (inih callback, typed option values, config_validate and the
 * serve-only checks), then config_dump of what it accepted.
 *
 * config_load reads a path, so the input is written to one temporary file
 * made at start (and rewritten for every input); the file is removed at
 * exit.  Asserted: -1 comes with a cause, 0 with none.  Any crash, leak or
 * sanitizer report is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_config); run: `sh tests/run.sh
 * fuzz`, or ./tests/fuzz/build/fuzz_config -max_total_time=60
 * tests/tmp/fuzz-config tests/fuzz/corpus/config
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8sauth.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char	 fuzz_path[] = "/tmp/fuzz-config-XXXXXX";
static FILE	*fuzz_null;

/* Remove the temporary file at exit. */
static void
fuzz_cleanup(void)
{
	unlink(fuzz_path);
}

/* Make the temporary file once. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int	fd;

	log_open(LOGL_ERR, 0);
	if ((fd = mkstemp(fuzz_path)) == -1)
		fatal("mkstemp");
	close(fd);
	atexit(fuzz_cleanup);
	if ((fuzz_null = fopen("/dev/null", "w")) == NULL)
		fatal("/dev/null");
	return (0);
}

/* One input: one configuration file. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config	*cfg;
	FILE		*f;
	char		*cause = NULL;

	if ((f = fopen(fuzz_path, "w")) == NULL)
		fatal("%s", fuzz_path);
	if (fwrite(data, 1, size, f) != size || fclose(f) != 0)
		fatal("%s", fuzz_path);
	cfg = config_new();
	if (config_load(cfg, fuzz_path, &cause) == 0) {
		if (cause != NULL)
			abort();
		config_dump(cfg, fuzz_null);
	} else {
		if (cause == NULL)
			abort();
		free(cause);
	}
	config_free(cfg);
	return (0);
}
