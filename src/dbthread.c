/*
 * dbthread.c: the control plane, one thread owning the process's only
 * database connection.
 *
 * Workers never touch the database.  An admin write is a job: the worker
 * submits fn(db, arg) with dbthread_submit and parks its request; this
 * thread runs fn in one transaction (store_run, which retries deadlocks
 * and certification conflicts), reloads and publishes the snapshot when
 * the write committed, and only then posts done(result, arg) back to the
 * submitting worker's loop (worker_post): a client that got its 201 reads
 * its write on every worker of this replica.  Jobs queued together run
 * one after the other and share one reload.
 *
 * Between jobs the thread wakes every [database] refresh_interval, reads
 * the revision row and reloads the snapshot when another replica wrote.
 * When the database cannot be reached (STORE_UNAVAILABLE, or a failed
 * open) it drops the connection, marks the database down (logins go on
 * from the last snapshot; writes are refused at once with
 * STORE_UNAVAILABLE, never queued) and reconnects by itself with capped
 * exponential back-off and jitter, reloading when back.  The queue is
 * bounded ([database] max_queue): a full queue refuses as well.
 *
 * Startup: dbthread_start opens the database and loads the first snapshot
 * on the calling thread, before READY=1; failing that a SQLite server does
 * not start (the file is local: an error there is a misconfiguration),
 * while a network database's starts without data and reconnects.
 * Stop: dbthread_stop is called once every worker has drained (their
 * parked writes completed); the job running finishes, queued ones (none
 * in a clean stop) are refused, and their completions are posted.
 *
 * Locking: dbt.lock guards the queue and the stop flag; up, the back-off's
 * next attempt and the reconnect count are atomics read by any thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "k8sauth.h"

#define DBTHREAD_BACKOFF_MIN_MS 500
#define DBTHREAD_BACKOFF_MAX_MS 30000

struct dbthread_job {
	struct worker *w;
	dbthread_fn fn;
	dbthread_done done;
	void *arg;
	int result;
	struct dbthread_job *next;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct dbthread_job *head; /* lock */
	struct dbthread_job **tail;
	size_t queued; /* lock */
	size_t max_queue;
	int stopping; /* lock */
	int started;
	pthread_t thread;
	char *path;
	long refresh_ms;
	/* The thread's own, unlocked. */
	struct db *db;
	uint64_t revision;     /* of the published snapshot */
	long backoff_ms;       /* the last back-off */
	uint64_t next_tick_us; /* monotonic: next refresh or reconnect */
	/* Read by any thread. */
	_Atomic int up;
	_Atomic uint64_t next_attempt_us; /* monotonic, when down */
	_Atomic uint64_t reconnects;
} dbt = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Is the database reachable (as of the last attempt)? */
int
dbthread_up(void)
{
	return (atomic_load(&dbt.up));
}

/* Reconnections since start, for metrics. */
uint64_t
dbthread_reconnects(void)
{
	return (atomic_load(&dbt.reconnects));
}

/* Whole seconds until the next reconnection attempt, at least 1. */
long
dbthread_retry_after(void)
{
	uint64_t now = util_monotonic_us(), at;
	long s;

	at = atomic_load(&dbt.next_attempt_us);
	if (at <= now)
		return (1);
	s = (long)((at - now + 999999) / 1000000);
	return (s < 1 ? 1 : s);
}

/* Load and publish a new snapshot; STORE_* result. */
static int
dbthread_reload(void)
{
	struct snapshot *s;
	size_t ni, nr, nx;
	int rc;

	if ((rc = snapshot_load(dbt.db, &s)) != STORE_OK) {
		log_err("database: snapshot not reloaded (result %d); the old one stays in use",
		    rc);
		return (rc);
	}
	snapshot_counts(s, &ni, &nr, &nx);
	dbt.revision = snapshot_revision(s);
	log_debug("database: snapshot at revision %llu loaded in %.3f s (%zu instances, %zu roles, %zu restrictions)",
	    (unsigned long long)dbt.revision, snapshot_load_seconds(s), ni, nr,
	    nx);
	snapshot_publish(s);
	return (STORE_OK);
}

/* Schedule the next reconnection attempt: capped exponential + jitter. */
static void
dbthread_backoff(void)
{
	unsigned int jitter;
	uint64_t delay_us;

	if (dbt.backoff_ms == 0)
		dbt.backoff_ms = DBTHREAD_BACKOFF_MIN_MS;
	else if ((dbt.backoff_ms *= 2) > DBTHREAD_BACKOFF_MAX_MS)
		dbt.backoff_ms = DBTHREAD_BACKOFF_MAX_MS;
	util_random_bytes(&jitter, sizeof jitter);
	delay_us = (uint64_t)dbt.backoff_ms * 1000;
	delay_us += jitter % (delay_us / 2 + 1);
	dbt.next_tick_us = util_monotonic_us() + delay_us;
	atomic_store(&dbt.next_attempt_us, dbt.next_tick_us);
}

/* The database cannot be reached: drop the connection, go down. */
static void
dbthread_down(const char *why)
{
	if (atomic_load(&dbt.up))
		log_warn("database: unavailable (%s); logins go on from the snapshot at revision %llu, writes are refused until it is back",
		    why, (unsigned long long)dbt.revision);
	atomic_store(&dbt.up, 0);
	db_close(dbt.db);
	dbt.db = NULL;
	dbthread_backoff();
}

/*
 * Open the database and bring its schema up to date (idempotent, and
 * safe on several replicas at once: db.c).  NULL with *cause; *reached
 * says whether the database answered (a schema that cannot be migrated
 * is a fault to report, not an outage to wait out).
 */
static struct db *
dbthread_open(char **cause, int *reached)
{
	struct db *db;

	*reached = 0;
	if ((db = db_open(dbt.path, cause)) == NULL)
		return (NULL);
	*reached = 1;
	if (db_migrate(db, cause) != 0) {
		db_close(db);
		return (NULL);
	}
	return (db);
}

/* Down: try to open the database again and catch up. */
static void
dbthread_reconnect(void)
{
	char *cause = NULL;
	int reached;

	if ((dbt.db = dbthread_open(&cause, &reached)) == NULL) {
		if (reached)
			log_err("database: reachable but unusable: %s", cause);
		else
			log_debug("database: reconnect failed: %s", cause);
		free(cause);
		dbthread_backoff();
		return;
	}
	if (dbthread_reload() != STORE_OK) {
		dbthread_down("reload after reconnect failed");
		return;
	}
	dbt.backoff_ms = 0;
	atomic_fetch_add(&dbt.reconnects, 1);
	atomic_store(&dbt.up, 1);
	log_info("database: available again; snapshot at revision %llu",
	    (unsigned long long)dbt.revision);
}

/* The refresh: reload when another replica changed the revision. */
static void
dbthread_refresh(void)
{
	uint64_t rev;
	int rc;

	if ((rc = store_revision(dbt.db, &rev)) == STORE_UNAVAILABLE) {
		dbthread_down("revision check");
		return;
	}
	if (rc != STORE_OK) {
		log_err("database: cannot read the revision (result %d)", rc);
		return;
	}
	if (rev == dbt.revision) {
		struct snapshot *s = snapshot_get();

		snapshot_confirm(s);
		snapshot_unref(s);
	} else if (dbthread_reload() == STORE_UNAVAILABLE)
		dbthread_down("snapshot reload");
}

/* Timer work: refresh when up, reconnect when down. */
static void
dbthread_tick(void)
{
	if (dbt.db == NULL)
		dbthread_reconnect();
	else
		dbthread_refresh();
	if (dbt.db != NULL)
		dbt.next_tick_us =
		    util_monotonic_us() + (uint64_t)dbt.refresh_ms * 1000;
}

/* On the submitting worker: hand the result over. */
static void
dbthread_complete_cb(void *arg)
{
	struct dbthread_job *job = arg;

	job->done(job->result, job->arg);
	free(job);
}

/* Post a finished job back to its worker. */
static void
dbthread_post(struct dbthread_job *job)
{
	if (worker_post(job->w, dbthread_complete_cb, job) != 0) {
		/* the worker is gone: its request was abandoned with it */
		log_warn(
		    "database: a write's completion had no worker to go to");
		free(job);
	}
}

/*
 * Run a batch of jobs (what was queued), each in its own transaction;
 * then reload and publish the snapshot once if any committed, and only
 * then answer them all.  One reload per batch, not per write: under a
 * burst of writes the reload cost is shared.
 */
static void
dbthread_run(struct dbthread_job *batch)
{
	struct dbthread_job *job, *next;
	int wrote = 0;

	for (job = batch; job != NULL; job = job->next) {
		if (dbt.db == NULL)
			job->result = STORE_UNAVAILABLE;
		else if ((job->result = store_run(dbt.db, job->fn, job->arg)) ==
		    STORE_UNAVAILABLE)
			dbthread_down("write");
		if (job->result == STORE_OK)
			wrote = 1;
	}
	if (wrote && dbt.db != NULL && dbthread_reload() == STORE_UNAVAILABLE)
		dbthread_down("snapshot reload after a write");
	for (job = batch; job != NULL; job = next) {
		next = job->next;
		dbthread_post(job);
	}
}

/* Wait for jobs, the next tick or the stop; every queued job or NULL. */
static struct dbthread_job *
dbthread_wait(int *stop)
{
	struct dbthread_job *job;
	struct timespec ts;
	uint64_t at;

	pthread_mutex_lock(&dbt.lock);
	while (dbt.head == NULL && !dbt.stopping &&
	    util_monotonic_us() < dbt.next_tick_us) {
		at = dbt.next_tick_us;
		ts.tv_sec = (time_t)(at / 1000000);
		ts.tv_nsec = (long)(at % 1000000) * 1000;
		pthread_cond_timedwait(&dbt.cond, &dbt.lock, &ts);
	}
	*stop = dbt.stopping;
	if ((job = dbt.head) != NULL && !*stop) {
		dbt.head = NULL;
		dbt.tail = &dbt.head;
		dbt.queued = 0;
	} else
		job = NULL;
	pthread_mutex_unlock(&dbt.lock);
	return (job);
}

/* Stopping: refuse what is still queued (posted back, never dropped). */
static void
dbthread_drain(void)
{
	struct dbthread_job *job, *next;

	pthread_mutex_lock(&dbt.lock);
	job = dbt.head;
	dbt.head = NULL;
	dbt.tail = &dbt.head;
	dbt.queued = 0;
	pthread_mutex_unlock(&dbt.lock);
	for (; job != NULL; job = next) {
		next = job->next;
		job->result = STORE_UNAVAILABLE;
		dbthread_post(job);
	}
}

/* The thread's body. */
static void *
dbthread_main(void *arg)
{
	struct dbthread_job *job;
	int stop = 0;

	while (!stop) {
		if ((job = dbthread_wait(&stop)) != NULL)
			dbthread_run(job);
		else if (!stop && util_monotonic_us() >= dbt.next_tick_us)
			dbthread_tick();
	}
	dbthread_drain();
	db_close(dbt.db);
	dbt.db = NULL;
	return (NULL);
}

/*
 * Submit fn(db, arg) from worker w; done(result, arg) runs later on w's
 * loop.  0, or STORE_UNAVAILABLE at once (database down, queue full,
 * stopping): then done will not run and arg stays the caller's.
 */
int
dbthread_submit(struct worker *w, dbthread_fn fn, dbthread_done done, void *arg)
{
	struct dbthread_job *job;

	if (!atomic_load(&dbt.up))
		return (STORE_UNAVAILABLE);
	job = xcalloc(1, sizeof *job);
	job->w = w;
	job->fn = fn;
	job->done = done;
	job->arg = arg;
	pthread_mutex_lock(&dbt.lock);
	if (!dbt.started || dbt.stopping || dbt.queued >= dbt.max_queue) {
		if (dbt.started && !dbt.stopping)
			log_warn("database: write queue full (%zu jobs)",
			    dbt.queued);
		pthread_mutex_unlock(&dbt.lock);
		free(job);
		return (STORE_UNAVAILABLE);
	}
	*dbt.tail = job;
	dbt.tail = &job->next;
	dbt.queued++;
	pthread_cond_signal(&dbt.cond);
	pthread_mutex_unlock(&dbt.lock);
	return (0);
}

/* A condition variable on the monotonic clock (util_monotonic_us). */
static void
dbthread_cond_init(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&dbt.cond, &attr);
	pthread_condattr_destroy(&attr);
}

/*
 * Open the database and publish the first snapshot.  SQLite (a local
 * file): any failure stops the start.  A network database may be down
 * while the server starts: the thread starts without a snapshot and
 * reconnects (/readyz 503 not_ready, logins and writes 503
 * database_unavailable until the first load).
 */
static int
dbthread_first_load(const struct config *cfg, char **cause)
{
	int local = strncmp(cfg->db_connection, "sqlite:", 7) == 0, rc;
	int reached;

	if ((dbt.db = dbthread_open(cause, &reached)) == NULL && reached)
		return (-1);
	if (dbt.db != NULL && (rc = dbthread_reload()) != STORE_OK) {
		xasprintf(cause,
		    "database: cannot load the first snapshot (result %d)", rc);
		db_close(dbt.db);
		dbt.db = NULL;
	}
	if (dbt.db != NULL) {
		atomic_store(&dbt.up, 1);
		dbt.next_tick_us =
		    util_monotonic_us() + (uint64_t)dbt.refresh_ms * 1000;
		return (0);
	}
	if (local)
		return (-1);
	log_warn("database: %s; starting without data, reconnecting", *cause);
	free(*cause);
	*cause = NULL;
	dbthread_backoff();
	return (0);
}

/*
 * Open the database, load and publish the first snapshot, start the
 * thread.  0, or -1 with *cause (the server does not start).
 */
int
dbthread_start(const struct config *cfg, char **cause)
{
	int err;

	if ((dbt.path = config_db_path(cfg, cause)) == NULL)
		return (-1);
	dbt.refresh_ms = cfg->db_refresh_interval;
	dbt.max_queue = (size_t)cfg->db_max_queue;
	dbt.tail = &dbt.head;
	if (dbthread_first_load(cfg, cause) != 0)
		return (-1);
	dbthread_cond_init();
	dbt.started = 1;
	if ((err = pthread_create(&dbt.thread, NULL, dbthread_main, NULL)) !=
	    0) {
		dbt.started = 0;
		xasprintf(cause, "database thread: pthread_create: %s",
		    strerror(err));
		return (-1);
	}
	return (0);
}

/* Stop the thread (after the workers drained) and withdraw the snapshot. */
void
dbthread_stop(void)
{
	if (dbt.started) {
		pthread_mutex_lock(&dbt.lock);
		dbt.stopping = 1;
		pthread_cond_signal(&dbt.cond);
		pthread_mutex_unlock(&dbt.lock);
		pthread_join(dbt.thread, NULL);
		dbt.started = 0;
		pthread_cond_destroy(&dbt.cond);
	}
	db_close(dbt.db);
	dbt.db = NULL;
	atomic_store(&dbt.up, 0);
	freezero_str(dbt.path); /* the connection string, password and all */
	dbt.path = NULL;
	snapshot_clear();
}
