/*
 * fk_state.c: the objects the fake cluster knows about.
 *
 * Service accounts, pods, nodes (created implicitly by pods; a node keeps
 * its UID for the life of the process) and the set of service accounts
 * bound to system:auth-delegator ("reviewers").  Each kind lives in a
 * chained hash table keyed by namespace and name, so lookups stay cheap
 * when a benchmark creates thousands of objects.  Also owns the request
 * counters served by GET /_test/stats.  Single-threaded (the event loop);
 * never blocks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"
#include "fake_k8s.h"

#define FK_STATE_BUCKETS 4096

struct fk_state_entry {
	struct fk_state_entry	*next;
	char			*ns;
	char			*name;
	void			*obj;
};

struct fk_state_table {
	struct fk_state_entry	*b[FK_STATE_BUCKETS];
	void			(*free_obj)(void *);
};

struct fk_node {
	char			*name;
	char			 uid[FK_UID_LEN + 1];
};

static void	fk_state_sa_free(void *);
static void	fk_state_pod_free(void *);
static void	fk_state_node_free(void *);

struct fk_stats fk_stats;

static struct fk_state_table fk_state_sas = { { NULL }, fk_state_sa_free };
static struct fk_state_table fk_state_pods = { { NULL }, fk_state_pod_free };
static struct fk_state_table fk_state_nodes = { { NULL }, fk_state_node_free };
static struct fk_state_table fk_state_reviewers = { { NULL }, NULL };

/* A fresh Kubernetes-style UID: a UUIDv4 with dashes. */
void
fk_state_new_uid(char out[FK_UID_LEN + 1])
{
	char	 id[ID_LEN + 1];

	util_new_id(id);
	snprintf(out, FK_UID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", id,
	    id + 8, id + 12, id + 16, id + 20);
}

/* FNV-1a over namespace, a separator and name. */
static unsigned int
fk_state_hash(const char *ns, const char *name)
{
	uint32_t	 h = 2166136261u;
	const char	*p;

	for (p = ns; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = (h ^ '/') * 16777619u;
	for (p = name; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return (h % FK_STATE_BUCKETS);
}

/* The slot holding ns/name in a table, or the empty slot at the end. */
static struct fk_state_entry **
fk_state_slot(struct fk_state_table *t, const char *ns, const char *name)
{
	struct fk_state_entry	**e;

	e = &t->b[fk_state_hash(ns, name)];
	while (*e != NULL) {
		if (strcmp((*e)->ns, ns) == 0 && strcmp((*e)->name, name) == 0)
			break;
		e = &(*e)->next;
	}
	return (e);
}

/* Look ns/name up; NULL when absent. */
static void *
fk_state_find(struct fk_state_table *t, const char *ns, const char *name)
{
	struct fk_state_entry	*e = *fk_state_slot(t, ns, name);

	return (e != NULL ? e->obj : NULL);
}

/* Insert obj under ns/name (the caller checked it is absent). */
static void
fk_state_insert(struct fk_state_table *t, const char *ns, const char *name,
    void *obj)
{
	struct fk_state_entry	**slot, *e;

	slot = fk_state_slot(t, ns, name);
	e = xcalloc(1, sizeof *e);
	e->ns = xstrdup(ns);
	e->name = xstrdup(name);
	e->obj = obj;
	*slot = e;
}

/* Remove ns/name; 0, or -1 when absent. */
static int
fk_state_remove(struct fk_state_table *t, const char *ns, const char *name)
{
	struct fk_state_entry	**slot, *e;

	slot = fk_state_slot(t, ns, name);
	if ((e = *slot) == NULL)
		return (-1);
	*slot = e->next;
	if (t->free_obj != NULL)
		t->free_obj(e->obj);
	free(e->ns);
	free(e->name);
	free(e);
	return (0);
}

/* Empty a table. */
static void
fk_state_table_clear(struct fk_state_table *t)
{
	struct fk_state_entry	*e, *next;
	size_t			 i;

	for (i = 0; i < FK_STATE_BUCKETS; i++) {
		for (e = t->b[i]; e != NULL; e = next) {
			next = e->next;
			if (t->free_obj != NULL)
				t->free_obj(e->obj);
			free(e->ns);
			free(e->name);
			free(e);
		}
		t->b[i] = NULL;
	}
}

/* Free a service account. */
static void
fk_state_sa_free(void *p)
{
	struct fk_sa	*sa = p;

	free(sa->ns);
	free(sa->name);
	free(sa);
}

/* Free a pod. */
static void
fk_state_pod_free(void *p)
{
	struct fk_pod	*pod = p;

	free(pod->ns);
	free(pod->name);
	free(pod->sa);
	free(pod->node);
	free(pod);
}

/* Free a node. */
static void
fk_state_node_free(void *p)
{
	struct fk_node	*node = p;

	free(node->name);
	free(node);
}

/* The service account ns/name, or NULL. */
const struct fk_sa *
fk_state_sa_get(const char *ns, const char *name)
{
	return (fk_state_find(&fk_state_sas, ns, name));
}

/* Create service account ns/name with a new UID; NULL if it exists. */
const struct fk_sa *
fk_state_sa_add(const char *ns, const char *name)
{
	struct fk_sa	*sa;

	if (fk_state_find(&fk_state_sas, ns, name) != NULL)
		return (NULL);
	sa = xcalloc(1, sizeof *sa);
	sa->ns = xstrdup(ns);
	sa->name = xstrdup(name);
	fk_state_new_uid(sa->uid);
	fk_state_insert(&fk_state_sas, ns, name, sa);
	return (sa);
}

/* Delete service account ns/name; 0, or -1 when absent. */
int
fk_state_sa_del(const char *ns, const char *name)
{
	return (fk_state_remove(&fk_state_sas, ns, name));
}

/* The node called name, created with a fresh UID on first use. */
static const struct fk_node *
fk_state_node(const char *name)
{
	struct fk_node	*node;

	if ((node = fk_state_find(&fk_state_nodes, "", name)) != NULL)
		return (node);
	node = xcalloc(1, sizeof *node);
	node->name = xstrdup(name);
	fk_state_new_uid(node->uid);
	fk_state_insert(&fk_state_nodes, "", name, node);
	return (node);
}

/* The pod ns/name, or NULL. */
const struct fk_pod *
fk_state_pod_get(const char *ns, const char *name)
{
	return (fk_state_find(&fk_state_pods, ns, name));
}

/* Create pod ns/name running as sa on node; NULL if it exists. */
const struct fk_pod *
fk_state_pod_add(const char *ns, const char *name, const char *sa,
    const char *node)
{
	struct fk_pod		*pod;
	const struct fk_node	*n;

	if (fk_state_find(&fk_state_pods, ns, name) != NULL)
		return (NULL);
	n = fk_state_node(node);
	pod = xcalloc(1, sizeof *pod);
	pod->ns = xstrdup(ns);
	pod->name = xstrdup(name);
	pod->sa = xstrdup(sa);
	pod->node = xstrdup(node);
	fk_state_new_uid(pod->uid);
	memcpy(pod->node_uid, n->uid, sizeof pod->node_uid);
	fk_state_insert(&fk_state_pods, ns, name, pod);
	return (pod);
}

/* Delete pod ns/name; 0, or -1 when absent. */
int
fk_state_pod_del(const char *ns, const char *name)
{
	return (fk_state_remove(&fk_state_pods, ns, name));
}

/* May service account ns/name create tokenreviews? */
int
fk_state_reviewer_get(const char *ns, const char *name)
{
	return (fk_state_find(&fk_state_reviewers, ns, name) != NULL);
}

/*
 * Grant (on) or revoke (!on) create tokenreviews for ns/name, like a
 * ClusterRoleBinding to system:auth-delegator.  The binding names the
 * account, so it outlives the account and applies to a re-created one.
 * Returns 0, or -1 when revoking a grant that does not exist.
 */
int
fk_state_reviewer_set(const char *ns, const char *name, int on)
{
	static char	 granted[] = "granted";

	if (!on)
		return (fk_state_remove(&fk_state_reviewers, ns, name));
	if (fk_state_find(&fk_state_reviewers, ns, name) == NULL)
		fk_state_insert(&fk_state_reviewers, ns, name, granted);
	return (0);
}

/* Free every object (at exit, so leak checkers stay quiet). */
void
fk_state_free(void)
{
	fk_state_table_clear(&fk_state_sas);
	fk_state_table_clear(&fk_state_pods);
	fk_state_table_clear(&fk_state_nodes);
	fk_state_table_clear(&fk_state_reviewers);
}
