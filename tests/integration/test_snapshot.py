"""The in-memory snapshot and the database thread (DESIGN.md "Storage").

Reads come from a snapshot the database thread publishes after each
write, before the write is answered: a write is readable at once on every
worker.  A database that cannot be reached (here: another process holds
SQLite's write lock, as a stuck backup or a second writer would) makes
admin writes 503 database_unavailable with Retry-After, keeps /readyz 200
with "database": "unavailable", and heals by itself once the lock goes.
"""
import re
import sqlite3
import time

from harness import (Server, assert_error, check, eq, sqlite_only, unique,
                     wait_for)

SRV = None


def setup_module():
    global SRV
    SRV = Server(name="snapshot", workers=2).start()


def teardown_module():
    SRV.stop()


def new_instance(srv):
    return srv.create("instance", {"domain_id": unique("dom"),
                                   "host": "https://k8s.example.com:6443"})


def metric(srv, name):
    text = srv.ok("GET", "/metrics", token=None).raw
    if isinstance(text, bytes):
        text = text.decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    check(m is not None, "no %s in /metrics" % name)
    return float(m.group(1))


def test_write_readable_at_once_on_every_worker():
    # Each request is a new connection: either worker may take it.  The
    # snapshot is published before the 201 leaves, so no GET, on any
    # worker, may miss a write already acknowledged.
    for i in range(30):
        inst = new_instance(SRV)
        path = "/v4/k8s_auth/instances/" + inst["id"]
        for _ in range(2):
            eq(SRV.req("GET", path).status, 200, "GET after create %d" % i)
        r = SRV.req("GET", "/v4/k8s_auth/instances?domain_id=" +
                    inst["domain_id"])
        eq([x["id"] for x in r.json["instances"]], [inst["id"]],
           "list after create %d" % i)
        SRV.ok("PATCH", path, {"instance": {"name": "n%d" % i}})
        eq(SRV.ok("GET", path).json["instance"].get("name"), "n%d" % i,
           "GET after update %d" % i)
        SRV.ok("DELETE", path, status=204)
        eq(SRV.req("GET", path).status, 404, "GET after delete %d" % i)


def test_readyz_reports_the_snapshot_and_the_database():
    before = SRV.ok("GET", "/readyz", token=None).json
    eq(before.get("database"), "ok", "database")
    snap = before.get("snapshot") or {}
    check(isinstance(snap.get("revision"), (int, float)) and
          snap["revision"] >= 1, "snapshot.revision: %r" % (snap,))
    check(0 <= snap.get("age_seconds", -1) < 30,
          "snapshot.age_seconds: %r" % (snap,))
    new_instance(SRV)
    after = SRV.ok("GET", "/readyz", token=None).json
    check(after["snapshot"]["revision"] > snap["revision"],
          "revision did not move with a write: %r -> %r" % (
              snap, after["snapshot"]))
    eq(metric(SRV, "k8sauth_database_up"), 1, "k8sauth_database_up")
    check(metric(SRV, "k8sauth_snapshot_revision") >=
          after["snapshot"]["revision"], "k8sauth_snapshot_revision")
    check(metric(SRV, "k8sauth_snapshot_load_seconds") < 5,
          "k8sauth_snapshot_load_seconds")


def test_external_write_is_picked_up_by_the_refresh():
    # Another writer of the same database (in production: another
    # replica) bumps the revision: the refresh reloads within about
    # [database] refresh_interval.
    inst = new_instance(SRV)
    SRV.db_execute("UPDATE instances SET name = 'from-elsewhere' "
                   "WHERE id = ?", inst["id"])
    SRV.db_execute("UPDATE revision SET value = value + 1 WHERE id = 1")
    path = "/v4/k8s_auth/instances/" + inst["id"]
    t0 = time.monotonic()
    wait_for(lambda: SRV.ok("GET", path).json["instance"].get("name") ==
             "from-elsewhere", timeout=5, what="the external write")
    check(time.monotonic() - t0 < 3, "refresh took %.1f s" %
          (time.monotonic() - t0))


@sqlite_only("holds SQLite's write lock; the MariaDB outage is test_replicas'")
def test_database_outage_503_then_heals():
    with Server(name="outage", extra={
            "database": {"refresh_interval": 100}}) as srv:
        kept = new_instance(srv)
        reconnects = metric(srv, "k8sauth_database_reconnects_total")
        lock = sqlite3.connect(srv.db, timeout=10, isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")  # SQLite's write lock
            r = srv.req("POST", "/v4/k8s_auth/instances", {"instance": {
                "domain_id": unique("dom"),
                "host": "https://k8s.example.com:6443"}})
            assert_error(r, 503, "database_unavailable")
            ra = r.headers.get("retry-after")
            check(ra is not None and ra.isdigit() and int(ra) >= 1,
                  "Retry-After %r" % ra)
            # down now: refused at once, reads go on from the snapshot
            t0 = time.monotonic()
            r = srv.req("DELETE", "/v4/k8s_auth/instances/" + kept["id"])
            assert_error(r, 503, "database_unavailable")
            check(time.monotonic() - t0 < 0.15 * 10,
                  "a write while down waited %.2f s" %
                  (time.monotonic() - t0))
            eq(srv.ok("GET", "/v4/k8s_auth/instances/" +
                      kept["id"]).json["instance"]["id"], kept["id"],
               "read during the outage")
            ready = srv.req("GET", "/readyz", token=None)
            eq(ready.status, 200, "/readyz during the outage")
            eq(ready.json.get("database"), "unavailable", "database")
            eq(metric(srv, "k8sauth_database_up"), 0, "k8sauth_database_up")
            lock.execute("COMMIT")
        finally:
            lock.close()
        wait_for(lambda: srv.ok("GET", "/readyz", token=None).json.get(
            "database") == "ok", timeout=40, what="the database back")
        check(metric(srv, "k8sauth_database_reconnects_total") >
              reconnects, "k8sauth_database_reconnects_total")
        new_instance(srv)
        srv.ok("DELETE", "/v4/k8s_auth/instances/" + kept["id"],
               status=204)
        check("database: unavailable" in srv.log_text(),
              "the outage is not in the log")
