"""Admin writes decided on a snapshot, written later (API.md §7, DESIGN.md
"Storage").

A handler checks a write and asks the policy on its worker, against the
request's snapshot; the write runs afterwards on the database thread.
Another replica (or another request) may have written in between: an
admin binding a role of an instance to a protected restriction, making a
restriction grant an admin role, repointing a role, setting a host.  A
write decided on what the snapshot said must then be refused (409
conflict, nothing written), not undo the admin's write nor bypass the
rule the admin's write brought into force.

Here the other replica is a write to the SQLite file behind the server's
back that does not bump the revision, with [database] refresh_interval
at its maximum: the server's snapshot stays older than the database, as
it is on any replica for up to refresh_interval after another's write.

Also from the same review of the storage code: a hung MariaDB (SIGSTOP)
bounds writes and the stop, db-copy's password leaves its argv, and a
write answered 503 while queued is never written afterwards.
"""
import os
import re
import select
import signal
import sqlite3
import sys
import threading
import time

from harness import Server, assert_error, check, eq, unique

SQLITE_ONLY = ("stands in for the other replica by writing the SQLite file behind "
               "the server's back; the guard runs on both engines in test_store's "
               "test_write_guard")

SRV = None
INST = "/v4/k8s_auth/instances"
RST = "/v4/tokens/restrictions"


def setup_module():
    global SRV
    SRV = Server(name="races",
                 extra={"database": {"refresh_interval": 60000}}).start()


def teardown_module():
    SRV.stop()


def behind(sql, *args):
    """Write as another replica whose write this server has not seen."""
    db = sqlite3.connect(SRV.db, timeout=10)
    try:
        with db:
            db.execute(sql, args)
    finally:
        db.close()


def stored(sql, *args):
    db = sqlite3.connect(SRV.db, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def later(ts):
    """Another version stamp of the same form (microseconds + 1)."""
    head, us = ts[:-8], ts[-8:-1]  # ".uuuuuu" before the "Z"
    check(us.startswith(".") and ts.endswith("Z"), "timestamp %r" % ts)
    return "%s.%06dZ" % (head, (int(us[1:]) + 1) % 1000000)


class Ctx:
    """An instance with a restriction of its domain and one role."""

    def __init__(self):
        self.inst = SRV.create("instance", {
            "domain_id": unique("dom"), "host": "https://k8s.example.com"})
        self.dom = self.inst["domain_id"]
        self.rst = self.restriction()
        self.roles = "%s/%s/roles" % (INST, self.inst["id"])
        self.role = SRV.create("role", self.body(), path=self.roles)

    def restriction(self, role="member"):
        return SRV.create("restriction", {
            "domain_id": self.dom, "user_id": "u-" + self.dom,
            "project_id": "p-" + self.dom,
            "roles": [{"id": "r-" + role, "name": role}]})

    def body(self, rst=None):
        return {"name": unique("role"),
                "bound_service_account_names": ["web"],
                "bound_service_account_namespaces": ["default"],
                "token_restriction_id": (rst or self.rst)["id"]}

    def nroles(self):
        return stored("SELECT count(*) FROM roles WHERE auth_instance_id = ?",
                      self.inst["id"])[0][0]


def changed(r, what):
    e = assert_error(r, 409, "conflict")
    check("changed by another request" in e["message"],
          "%s: message %r" % (what, e["message"]))


def test_role_bind_refused_when_the_restriction_changed_since():
    # Another replica's admin made the restriction grant "admin" (not
    # delegable): a binding judged on the old restriction must not land.
    c = Ctx()
    fresh = c.restriction()
    behind("INSERT INTO restriction_roles (restriction_id, position, "
           "role_id, role_name) VALUES (?, 1, 'r-admin', 'admin')",
           fresh["id"])
    behind("UPDATE restrictions SET updated_at = ? WHERE id = ?",
           later(fresh["updated_at"]), fresh["id"])
    changed(SRV.req("POST", c.roles, {"role": c.body(fresh)}),
            "a role bound to a restriction changed since")
    eq(c.nroles(), 1, "roles of the instance (nothing written)")


def test_role_bind_rechecks_the_restriction_domain_in_the_write():
    # Even when the version stamp did not move (a hand-made change), the
    # write re-reads the restriction: another domain's cannot be bound.
    c = Ctx()
    fresh = c.restriction()
    behind("UPDATE restrictions SET domain_id = ? WHERE id = ?",
           unique("other"), fresh["id"])
    e = assert_error(SRV.req("POST", c.roles, {"role": c.body(fresh)}),
                     400, "invalid_restriction")
    check("belongs to another domain" in e["message"],
          "message %r" % e["message"])
    eq(c.nroles(), 1, "roles of the instance (nothing written)")


def test_role_update_does_not_undo_another_write():
    # An admin repointed the role elsewhere; an update judged on the old
    # role would write every field back, restriction included.
    c = Ctx()
    other = c.restriction("reader")
    behind("UPDATE roles SET token_restriction_id = ?, updated_at = ? "
           "WHERE id = ?", other["id"], later(c.role["updated_at"]),
           c.role["id"])
    path = "%s/%s" % (c.roles, c.role["id"])
    changed(SRV.req("PATCH", path, {"role": {"token_ttl": 60}}),
            "a role update on an old snapshot")
    eq(stored("SELECT token_restriction_id, token_ttl FROM roles "
              "WHERE id = ?", c.role["id"]), [(other["id"], None)],
       "the other write stays")


def test_role_delete_refused_when_the_role_changed_since():
    c = Ctx()
    behind("UPDATE roles SET updated_at = ? WHERE id = ?",
           later(c.role["updated_at"]), c.role["id"])
    changed(SRV.req("DELETE", "%s/%s" % (c.roles, c.role["id"])),
            "a role delete on an old snapshot")
    eq(c.nroles(), 1, "the role is still there")


def test_instance_update_refused_when_its_roles_changed_since():
    # Whether an instance is protected (its host an admin's) depends on
    # the restrictions its roles bind: a role repointed by another replica
    # changes it without touching the instance's row.
    c = Ctx()
    other = c.restriction("admin")
    behind("UPDATE roles SET token_restriction_id = ?, updated_at = ? "
           "WHERE id = ?", other["id"], later(c.role["updated_at"]),
           c.role["id"])
    changed(SRV.req("PATCH", "%s/%s" % (INST, c.inst["id"]), {"instance": {
        "host": "https://elsewhere.example.com"}}),
        "an instance update on an old snapshot")
    eq(stored("SELECT host FROM instances WHERE id = ?", c.inst["id"]),
       [("https://k8s.example.com",)], "the host stays")


def test_instance_update_does_not_undo_another_host_write():
    c = Ctx()
    behind("UPDATE instances SET host = ?, updated_at = ? WHERE id = ?",
           "https://fixed.example.com", later(c.inst["updated_at"]),
           c.inst["id"])
    changed(SRV.req("PATCH", "%s/%s" % (INST, c.inst["id"]), {"instance": {
        "name": unique("n")}}), "an instance update on an old snapshot")
    eq(stored("SELECT host FROM instances WHERE id = ?", c.inst["id"]),
       [("https://fixed.example.com",)], "the other write's host stays")


def test_restriction_update_rechecks_its_use_in_the_write():
    # The snapshot says no role uses the restriction; another replica
    # bound one since: it must keep its user, project and roles.
    c = Ctx()
    fresh = c.restriction()
    behind("UPDATE roles SET token_restriction_id = ? WHERE id = ?",
           fresh["id"], c.role["id"])
    assert_error(SRV.req("PATCH", "%s/%s" % (RST, fresh["id"]),
                         {"restriction": {"roles": []}}),
                 409, "restriction_in_use")
    eq(stored("SELECT count(*) FROM restriction_roles "
              "WHERE restriction_id = ?", fresh["id"]), [(1,)],
       "the restriction keeps its role")


def test_restriction_update_refused_when_it_changed_since():
    c = Ctx()
    behind("UPDATE restrictions SET allow_rescope = 1, updated_at = ? "
           "WHERE id = ?", later(c.rst["updated_at"]), c.rst["id"])
    changed(SRV.req("PATCH", "%s/%s" % (RST, c.rst["id"]),
                    {"restriction": {"allow_renew": True}}),
            "a restriction update on an old snapshot")
    eq(stored("SELECT allow_rescope FROM restrictions WHERE id = ?",
              c.rst["id"]), [(1,)], "the other write stays")


def _mariadb():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "db"))
    import mariadb
    return mariadb


def test_hung_database_bounds_writes_and_stop():
    """A MariaDB that stops answering (SIGSTOP: a hung host, not a closed
    port): a write is answered 503 within [database] timeout, never
    hangs, later writes are refused at once, logins' snapshot stays, and
    SIGTERM still stops the server within its drain time."""
    mdb, _name, url = _mariadb().fresh_database("hung")
    with Server(name="hung", extra={"database": {"connection": url,
                                                 "timeout": 2}}) as srv:
        rid = srv.create("restriction", {"domain_id": "d"})["id"]
        pid = mdb.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            r = srv.req("POST", RST, {"restriction": {"domain_id": "d"}})
            took = time.monotonic() - t0
            assert_error(r, 503, "database_unavailable")
            check(took < 15, "a write on a hung database took %.1f s" % took)
            t0 = time.monotonic()
            r = srv.req("POST", RST, {"restriction": {"domain_id": "d"}})
            assert_error(r, 503, "database_unavailable")
            check(time.monotonic() - t0 < 2, "the next write waited")
            eq(srv.req("GET", RST + "/" + rid).status, 200,
               "a read from the snapshot")
        finally:
            os.kill(pid, signal.SIGCONT)
    # SIGTERM while a write waits on the hung database.
    with Server(name="hung-stop", extra={"database": {"connection": url,
                                                 "timeout": 2}}) as srv:
        srv.create("restriction", {"domain_id": "d"})
        os.kill(pid, signal.SIGSTOP)
        try:
            got = []
            th = threading.Thread(target=lambda: got.append(srv.req(
                "POST", RST, {"restriction": {"domain_id": "d"}})),
                daemon=True)
            th.start()
            time.sleep(0.5)
            t0 = time.monotonic()
            srv.signal(signal.SIGTERM)
            rc = srv.wait_exit(20)
            took = time.monotonic() - t0
            eq(rc, 0, "exit code after SIGTERM")
            check(took < 10, "SIGTERM with a hung write took %.1f s" % took)
            th.join(5)
            check(got and got[0].status == 503,
                  "the hung write's answer: %r" %
                  (((got[0].status, got[0].raw[:200]) if got else None),))
        finally:
            os.kill(pid, signal.SIGCONT)


def test_db_copy_wipes_the_password_from_its_command_line():
    """db-copy takes its URLs on the command line, which any local user
    reads (ps, /proc/PID/cmdline) for as long as the copy runs: the
    password must be gone from there once the arguments are read.  The
    source MariaDB is stopped so that db-copy waits in its connect."""
    import subprocess
    from harness import BINARY, TMP
    mdb, _name, url = _mariadb().fresh_database("argv")
    password = re.match(r"^mysql\+pymysql://[^:]+:([^@]+)@", url).group(1)
    src = os.path.join(TMP, "argv-%s.db" % os.urandom(4).hex())
    pid = mdb.pid()
    os.kill(pid, signal.SIGSTOP)
    p = None
    try:
        p = subprocess.Popen([BINARY, "db-copy", "--from=" + url,
                              "--to", "sqlite://" + src],
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        cmdline = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and p.poll() is None:
            with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                cmdline = f.read()
            if b"--from=" in cmdline and b"db-copy" in cmdline:
                time.sleep(0.3)  # past the argument parsing
                with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                    cmdline = f.read()
                break
            time.sleep(0.05)
        check(b"--from=" in cmdline, "db-copy's command line %r" % cmdline)
        check(password.encode() not in cmdline,
              "the password is in db-copy's command line")
        check(b":" + b"x" * len(password) + b"@" in cmdline,
              "the password wiped in place: %r" % cmdline)
    finally:
        os.kill(pid, signal.SIGCONT)
        if p is not None:
            p.communicate(timeout=30)
        if os.path.exists(src):
            os.unlink(src)



def test_write_answered_503_while_queued_never_lands():
    """A write queued behind a slow database (here: another session
    holds the revision row's lock, which every write takes) is answered
    503 request_timeout, "retry".  It must then not be written when the
    database frees up, or the client's retry creates it twice."""
    import subprocess
    mdb, name, url = _mariadb().fresh_database("queued")
    m = re.match(r"^mysql\+pymysql://([^:]+):([^@]+)@([^:/]+):(\d+)/", url)
    with Server(name="queued", extra={
            "server": {"request_timeout": 1},
            "database": {"connection": url, "timeout": 20}}) as srv:
        srv.create("restriction", {"domain_id": "d"})
        holder = subprocess.Popen(
            ["mariadb", "--unbuffered", "--batch", "--skip-column-names",
             "-h", m.group(3), "-P", m.group(4), "-u",
             m.group(1), "-p" + m.group(2), name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            holder.stdin.write("BEGIN; UPDATE revision SET value = value "
                               "WHERE id = 1; SELECT 'locked';\n")
            holder.stdin.flush()
            ready = select.select([holder.stdout], [], [], 10)[0]
            check(ready and holder.stdout.readline().strip() == "locked",
                  "the lock holder did not start")
            doms = [unique("first"), unique("queued")]
            got = []
            threads = [threading.Thread(target=lambda d=d: got.append(
                srv.req("POST", RST, {"restriction": {"domain_id": d}})))
                for d in doms]
            threads[0].start()
            time.sleep(0.3)  # the first write runs (waits for the lock)
            threads[1].start()
            for t in threads:
                t.join(10)
            eq(sorted(r.status for r in got), [503, 503],
               "both writes answered 503 request_timeout")
        finally:
            holder.stdin.write("ROLLBACK;\n")
            holder.stdin.close()
            holder.wait(10)
        # The first write was running: it lands once the lock goes.
        wait_for_list = time.monotonic() + 10
        seen = []
        while time.monotonic() < wait_for_list:
            seen = [x["domain_id"] for x in srv.ok(
                "GET", RST + "?limit=100").json["restrictions"]]
            if doms[0] in seen:
                break
            time.sleep(0.2)
        check(doms[0] in seen, "the running write did not land: %r" % seen)
        time.sleep(1)
        seen = [x["domain_id"] for x in srv.ok(
            "GET", RST + "?limit=100").json["restrictions"]]
        check(doms[1] not in seen,
              "the write answered 503 while queued landed afterwards")
