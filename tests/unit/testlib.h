/*
 * testlib.h: small file helpers shared by the unit tests (temporary
 * directories and the files in them).  Test code only; failures fail the
 * running cmocka test.
 */
#ifndef TESTLIB_H
#define TESTLIB_H

#include <sys/stat.h>

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8sauth.h"

/* Remove a directory and everything below it. */
static inline void
testlib_rm_tree(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	char		*path;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		xasprintf(&path, "%s/%s", dir, de->d_name);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			testlib_rm_tree(path);
		else
			unlink(path);
		free(path);
	}
	closedir(d);
	rmdir(dir);
}

/* Write text to dir/name with a mode (atomically). */
static inline void
testlib_write(const char *dir, const char *name, const char *text,
    mode_t mode)
{
	char	*path, *cause = NULL;

	xasprintf(&path, "%s/%s", dir, name);
	if (util_write_file_atomic(path, text, strlen(text), mode,
	    &cause) != 0)
		fail_msg("%s", cause);
	free(path);
}

/* The contents of dir/name, which must exist (allocated). */
static inline char *
testlib_read(const char *dir, const char *name)
{
	char	*path, *text = NULL, *cause = NULL;

	xasprintf(&path, "%s/%s", dir, name);
	if (util_read_file(path, 1024 * 1024, &text, NULL, &cause) != 0)
		fail_msg("%s", cause);
	free(path);
	return (text);
}


/*
 * The MySQL URL of the unit layer's private MariaDB (tests/run.sh unit
 * starts it and gives each binary a fresh database).  Unset: the test
 * fails with what to do, never skips.
 */
static inline const char *
testlib_mysql_url(void)
{
	const char *u = getenv("K8SAUTH_TEST_MYSQL_URL");

	if (u == NULL || *u == '\0')
		fail_msg("K8SAUTH_TEST_MYSQL_URL is unset: run the MySQL tests through sh tests/run.sh unit, which starts a private mariadbd (needs mariadb-server: ./configure --install-deps)");
	return (u);
}
#endif /* TESTLIB_H */
