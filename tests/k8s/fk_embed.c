/*
 * fk_embed.c: an empty embedded-file table for fake-k8s.
 *
 * src/util.c defines embed_find(), which refers to the table that
 * tools/embed.sh generates into src/embed.c.  fake-k8s links util.o but
 * not embed.o (it embeds no Lua), so it supplies an empty table here.
 * Owns nothing; no code runs.
 */
#include "k8sauth.h"

const struct embed_file embed_files[] = {
	{ NULL, NULL, 0 }
};
const size_t embed_nfiles = 0;
