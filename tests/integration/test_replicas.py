"""Several replicas on one MariaDB (issue 13, docs/operations.md "Running
several replicas").

Two keystone-k8s-auth replicas A and B share one private MariaDB database
(tests/db/mariadb.py, its own server: the outage tests stop and start it),
the Fernet and credential key repositories and the admin token, as the
operations guide tells an operator to set them up.  Checked here:

  - a role created through A logs a pod in through B within 1 s, and a role
    deleted through A is refused by B within 1 s (the snapshot's
    `[database] refresh_interval`, default 1 s); the delays are printed;
  - conflicting creates through A and B at the same moment: one 201 and one
    409, never two rows;
  - MariaDB stopped: logins and token validations still 200 on both
    replicas (the snapshot), admin writes 503 database_unavailable with
    Retry-After, /readyz 200 with "database": "unavailable"; MariaDB back:
    writes succeed again without restarting a replica (time printed);
  - SIGKILL of a replica in the middle of a write burst: every write it
    answered 201 is there afterwards;
  - db-copy from a populated SQLite database to MariaDB, then a login
    through a server on the copy.

The module brings its own MariaDB whatever the pass, so it runs in the
default (SQLite) pass only (OWN_DATABASE).
"""
import copy
import http.client
import os
import sys
import threading
import time

from harness import (ROOT, Server, assert_error, check, eq, fail, run_cli,
                     timeout_scale, unique, wait_for)
from k8s_fixture import FakeK8s, Login, validate

sys.path.insert(0, os.path.join(ROOT, "tests", "db"))
import mariadb  # noqa: E402

OWN_DATABASE = "starts, stops and kills its own MariaDB server"

INST = "/v4/k8s_auth/instances"
RST = "/v4/tokens/restrictions"
# What the issue promises: another replica sees a write within 1 s, the
# default [database] refresh_interval.  A write landing just after B's
# check waits the whole interval, plus B's revision query and reload: the
# second test below is that worst case (its wait_for leaves it just after
# a check), measured 0.97-0.98 s here.  RELOAD is the allowance for the
# query and reload on a loaded machine, not for a slower refresh.
PROPAGATION = 1.0
RELOAD = 0.25

K8S = None
DB = None           # the module's private MariaDB
A = B = None        # the two replicas


def replica_extra(url):
    return {"database": {"connection": url},
            # Polling a refused login must not trip the failed-login
            # throttle (the refusals are the point).
            "login": {"failed_rate": 0}}


def make_replicas(url, name):
    """A (set up as usual) and B sharing A's database, key repositories and
    admin token: B runs no setup step of its own."""
    a = Server(extra=replica_extra(url), name=name + "-a")
    a.start()
    b = Server(extra=replica_extra(url), name=name + "-b")
    shared = {"credential": {"key_repository":
                             a.config_sections()["credential"][
                                 "key_repository"]},
              "fernet_tokens": {"key_repository":
                                a.config_sections()["fernet_tokens"][
                                    "key_repository"]},
              "bootstrap": {"admin_token_file": a.token_file}}
    b.extra = dict(b.extra, **shared)
    b._write_config()
    b.admin_token = a.admin_token
    b.secrets |= a.secrets
    b.start()
    return a, b


def on(login, srv):
    """The same Login (instance, role, JWTs) seen through another replica."""
    other = copy.copy(login)
    other.srv = srv
    if login.reviewer_jwt:
        srv.secrets.add(login.reviewer_jwt)
    return other


def jwt_for(login):
    """A JWT of login's service account, a secret on both replicas."""
    t = login.jwt()
    A.secrets.add(t)
    B.secrets.add(t)
    return t


def time_until(pred, limit, what):
    """Seconds until pred() holds (polled every 20 ms); fails after limit
    (scaled under sanitizers)."""
    t0 = time.monotonic()
    limit *= timeout_scale()
    while True:
        ok = pred()
        took = time.monotonic() - t0
        if ok and took <= limit:
            return took
        if took > limit:
            fail("%s: not within %.2f s (%.2f s)" % (what, limit, took))
        time.sleep(0.02)


def setup_module():
    global K8S, DB, A, B
    K8S = FakeK8s("replicas").start()
    DB = mariadb.MariaDB("replicas").start()
    A, B = make_replicas(DB.create_database("replicas"), "replicas")
    for s in (A, B):
        s.secrets.add(DB.password)


def teardown_module():
    for s in (A, B):
        if s is not None:
            s.stop()
    if K8S is not None:
        K8S.stop()
    if DB is not None:
        DB.cleanup()


def ensure_database_up():
    if not DB.running():
        DB.start()


def test_role_created_on_a_logs_in_on_b_within_1s():
    ensure_database_up()
    L = Login(A, K8S)
    LB = on(L, B)
    jwt = jwt_for(L)
    # The role below is new: B has never seen it.
    name = unique("late")
    body = {"name": name, "bound_service_account_names": [L.sa_name],
            "bound_service_account_namespaces": [L.ns],
            "token_restriction_id": L.rst["id"]}
    A.create("role", body, path="%s/%s/roles" % (INST, L.iid))
    delay = time_until(lambda: LB.login(jwt, role=name).status == 200,
                       PROPAGATION + RELOAD, "a role created through A "
                       "logs in through B")
    print("  propagation A->B of a created role: %.0f ms" % (delay * 1000))


def test_role_deleted_on_a_refused_on_b_within_1s():
    ensure_database_up()
    L = Login(A, K8S)
    LB = on(L, B)
    jwt = jwt_for(L)
    wait_for(lambda: LB.login(jwt).status == 200, timeout=2 * PROPAGATION,
             what="the role on B")
    A.ok("DELETE", L.role_path, status=204)
    last = []

    def refused():
        r = LB.login(jwt)
        last[:] = [r]
        return r.status != 200

    delay = time_until(refused, PROPAGATION + RELOAD,
                       "a role deleted through A refused by B")
    assert_error(last[0], 404, "role_not_found")
    print("  propagation A->B of a deleted role: %.0f ms" % (delay * 1000))


def test_conflicting_creates_one_201_one_409_never_two_rows():
    ensure_database_up()
    dom = unique("race")
    for i in range(8):
        name = "c%d" % i
        body = {"instance": {"domain_id": dom, "name": name,
                             "host": "https://k%d.example.com" % i}}
        barrier = threading.Barrier(2)
        got = {}

        def post(srv):
            barrier.wait()
            got[srv.dir] = srv.req("POST", INST, body)

        ts = [threading.Thread(target=post, args=(s,)) for s in (A, B)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        statuses = sorted(r.status for r in got.values())
        eq(statuses, [201, 409], "round %d: statuses of the two creates" % i)
        for r in got.values():
            if r.status == 409:
                assert_error(r, 409)
    rows = DB.sql("SELECT COUNT(*), COUNT(DISTINCT name) FROM instances "
                  "WHERE domain_id = '%s'" % dom, "replicas")
    eq(rows, [["8", "8"]], "rows (count, distinct names) in the database")
    for srv in (A, B):
        wait_for(lambda: len(srv.ok("GET", INST + "?domain_id=" + dom)
                             .json["instances"]) == 8,
                 timeout=2 * PROPAGATION, what="8 instances listed")


def test_database_outage_logins_keep_working_writes_503():
    ensure_database_up()
    L = Login(A, K8S)
    LB = on(L, B)
    jwt = jwt_for(L)
    wait_for(lambda: LB.login(jwt).status == 200, timeout=2 * PROPAGATION,
             what="the login on B")
    tokens = {}
    for srv, login in ((A, L), (B, LB)):
        tokens[srv.dir] = login.ok(jwt).headers["x-subject-token"]
    DB.stop()
    try:
        t_down = time.monotonic()
        for srv, login in ((A, L), (B, LB)):
            # Logins (a fresh JWT: a new review) and validations.
            fresh = jwt_for(L)
            r = login.ok(fresh)
            eq(validate(srv, r.headers["x-subject-token"]).status, 200,
               "validation of a new token during the outage")
            for tok in tokens.values():
                eq(validate(srv, tok).status, 200,
                   "validation of an earlier token during the outage")
            # Admin writes: 503 database_unavailable + Retry-After, the
            # first one already (never a 500 while it finds out).
            w = srv.req("POST", RST, {"restriction": {"domain_id": L.dom}})
            assert_error(w, 503, "database_unavailable")
            ra = w.headers.get("retry-after", "")
            check(ra.isdigit() and int(ra) >= 1,
                  "503 database_unavailable without a Retry-After in "
                  "seconds: %r" % ra)
            # The load balancer keeps the replica: 200, detail in the body.
            rz = wait_for(lambda: _degraded(srv), timeout=10,
                          what="/readyz saying the database is unavailable")
            eq(rz.status, 200, "/readyz during the outage")
            # Admin reads may come from the snapshot.
            eq(srv.req("GET", "%s/%s" % (INST, L.iid)).status, 200,
               "GET of an instance during the outage")
        print("  outage: logins, validations 200 on both replicas; writes "
              "503 within %.1f s of the stop" % (time.monotonic() - t_down))
    finally:
        DB.start()
    t_up = time.monotonic()
    for srv in (A, B):
        wait_for(lambda: srv.req("POST", RST, {"restriction": {
            "domain_id": L.dom}}).status == 201, timeout=60,
            interval=0.1, what="a write succeeding after MariaDB is back")
    recovered = time.monotonic() - t_up
    for srv in (A, B):
        r = srv.req("GET", "/readyz", token=None)
        eq(r.status, 200, "/readyz after the outage")
        check("unavailable" not in r.raw.decode(),
              "/readyz still degraded: %r" % r.raw[:300])
    print("  recovery: both replicas write again %.1f s after MariaDB "
          "restarted (no replica restart)" % recovered)


def _degraded(srv):
    r = srv.req("GET", "/readyz", token=None)
    body = r.json if isinstance(r.json, dict) else {}
    return r if body.get("database") == "unavailable" else None


def test_sigkill_during_a_write_burst_keeps_every_acknowledged_write():
    ensure_database_up()
    dom = unique("burst")
    acked, lock, stop = [], threading.Lock(), threading.Event()

    def writer():
        while not stop.is_set():
            try:
                r = A.req("POST", RST, {"restriction": {"domain_id": dom}},
                          timeout=5)
            except (OSError, http.client.HTTPException):
                return          # A is gone: the answer was cut off
            if r.status == 201:
                with lock:
                    acked.append(r.json["restriction"]["id"])

    ts = [threading.Thread(target=writer) for _ in range(6)]
    for t in ts:
        t.start()
    wait_for(lambda: len(acked) >= 30, timeout=30, what="30 writes acked")
    A.kill()
    stop.set()
    for t in ts:
        t.join()
    with lock:
        ids = list(acked)
    def lost_writes():
        stored = {r[0] for r in DB.sql(
            "SELECT id FROM restrictions WHERE domain_id = '%s'" % dom,
            "replicas")}
        return [i for i in ids if i not in stored]

    try:
        lost = lost_writes()
        check(not lost, "%d of %d acknowledged writes lost after SIGKILL "
              "(first: %s)" % (len(lost), len(ids), lost[:3]))
        # B (running all along) serves every one of them.
        for i in ids:
            wait_for(lambda: B.req("GET", RST + "/" + i).status == 200,
                     timeout=2 * PROPAGATION, what="restriction %s on B" % i)
        print("  SIGKILL of A after %d acknowledged writes: none lost"
              % len(ids))
        # The checker itself: a row deleted behind the servers' back is
        # reported as a lost write.
        DB.sql("DELETE FROM restrictions WHERE id = '%s'" % ids[0],
               "replicas")
        eq(lost_writes(), [ids[0]], "a deleted acknowledged write reported")
        ids = ids[1:]
    finally:
        A.start()
    eq(A.req("GET", "%s/%s" % (RST, ids[-1])).status, 200,
       "the last acknowledged write on A after its restart")


def test_db_copy_sqlite_to_mariadb_then_login():
    ensure_database_up()
    src = Server(name="copy-src")
    # The source is SQLite whatever the pass.
    src.extra = {"database": {"connection": "sqlite:///" + src.db}}
    src._write_config()
    src.start()
    L = Login(src, K8S)
    jwt = L.jwt()
    L.ok(jwt)
    extra_rst = [src.create("restriction", {"domain_id": L.dom})["id"]
                 for _ in range(3)]
    src.stop()
    target = DB.create_database("copied")
    p = run_cli(["db-copy", "--from", "sqlite:///" + src.db, "--to", target])
    eq(p.returncode, 0, "db-copy exit code (%r)" % (p.stdout + p.stderr))
    text = p.stdout + p.stderr
    check(DB.password not in text, "db-copy printed the database password")
    for what, n in (("instance", 1), ("role", 1), ("restriction", 4)):
        check(_reports(text, what, n), "db-copy does not report %d %s(s): %r"
              % (n, what, text))
    # A second copy into the now non-empty target is refused...
    p2 = run_cli(["db-copy", "--from", "sqlite:///" + src.db, "--to",
                  target])
    check(p2.returncode != 0, "db-copy into a non-empty target exit 0")
    check("--force" in p2.stdout + p2.stderr,
          "the refusal does not name --force: %r" % (p2.stdout + p2.stderr))
    # ...unless forced.
    p3 = run_cli(["db-copy", "--from", "sqlite:///" + src.db, "--to",
                  target, "--force"])
    eq(p3.returncode, 0, "db-copy --force (%r)" % (p3.stdout + p3.stderr))
    # The same server (keys, admin token) on the copy: the reviewer token
    # decrypts, the role logs the pod in.
    src.extra = replica_extra(target)
    src.secrets.add(DB.password)
    src._write_config()
    src.start()
    try:
        L.ok(L.jwt())
        for rid in extra_rst:
            eq(src.req("GET", RST + "/" + rid).status, 200,
               "restriction %s on the copy" % rid)
    finally:
        src.stop()
        src.cleanup()


def _reports(text, what, n):
    """Does db-copy's output say it copied n objects of kind what?"""
    import re
    return re.search(r"\b%d %ss?\b|\b%ss?\W+%d\b" % (n, what, what, n),
                     text) is not None
