#!/usr/bin/env python3
"""make check-galera: two replicas on a three-node Galera cluster.

    python3 tests/db/check_galera.py [-v]

Starts a three-node MariaDB Galera cluster on loopback (tests/db/galera.py:
galera-4, rsync SST, node 1 bootstrapped), the test Kubernetes API server,
and two keystone-k8s-auth replicas sharing keys and admin token: A on
node 1, B on node 2 (db-sync run by both at once, as two replicas
starting together would).  Then:

  - an instance, restriction and role created through A log a pod in
    through B (a write certified on node 1, read on node 2), and the delay
    is printed;
  - a role created through B is seen on node 3 by SQL and logs in through A;
  - conflicting creates through A and B at the same moment (certification
    conflict between nodes): one 201 and one 409, never two rows.

Prints PASS/FAIL lines, the timings (cluster formation, SST, propagation)
and `galera: N passed, N failed, N skipped`; exits non-zero on a failure.
Not part of `make check` (about a minute, most of it the two SSTs); CI
runs it after the suite: see tests/integration/README.md.
"""
import os
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import galera  # noqa: E402
import harness  # noqa: E402
from harness import Server, eq, run_cli, unique, wait_for  # noqa: E402
from k8s_fixture import FakeK8s, Login  # noqa: E402

INST = "/v4/k8s_auth/instances"


def replica(url, name, share=None):
    """A keystone-k8s-auth on url; share: a replica whose keys and admin
    token it uses (it runs no setup step of its own but db-sync)."""
    srv = Server(extra={"database": {"connection": url},
                        "login": {"failed_rate": 0}}, name=name)
    if share is not None:
        sec = share.config_sections()
        srv.extra.update({
            "credential": {"key_repository":
                           sec["credential"]["key_repository"]},
            "fernet_tokens": {"key_repository":
                              sec["fernet_tokens"]["key_repository"]},
            "bootstrap": {"admin_token_file": share.token_file}})
        srv._write_config()
        srv.admin_token = share.admin_token
        srv.secrets |= share.secrets
    return srv


def db_sync_both(a, b):
    """db-sync through both replicas at the same moment (its named lock)."""
    out = {}

    def run(srv):
        out[srv.name_] = run_cli(["db-sync", "--config", srv.conf])

    a.name_, b.name_ = "A", "B"
    ts = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for k, p in sorted(out.items()):
        eq(p.returncode, 0, "db-sync through %s at once (%r)"
           % (k, (p.stdout + p.stderr)[-400:]))


class Stop(Exception):
    """A step the rest depends on failed (its FAIL line is printed)."""


class Check:
    def __init__(self):
        self.passed = self.failed = 0
        self.timings = []

    def run(self, name, fn, *args):
        t0 = time.monotonic()
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            self.failed += 1
            print("FAIL %s: %s" % (name, e))
            if not isinstance(e, AssertionError):
                traceback.print_exc()
            return False
        self.passed += 1
        print("PASS %s (%.1fs)" % (name, time.monotonic() - t0))
        sys.stdout.flush()
        return True


def main():
    chk = Check()
    cluster = k8s = a = b = None
    ok = False
    try:
        t0 = time.monotonic()
        cluster = galera.Galera("check")
        if not chk.run("galera.cluster_of_three", cluster.start):
            raise Stop()
        for k, v in cluster.timings.items():
            print("  %s: %.1f s" % (k, v))
        url_a = cluster.create_database("k8sauth")   # replicated DDL
        url_b = cluster.url("k8sauth", node=2)
        k8s = FakeK8s("galera").start()
        a = replica(url_a, "galera-a")
        a.secrets.add(cluster.nodes[0].password)
        holder = {}

        def start_replicas():
            # A's setup makes the keys and the admin token; B uses them;
            # both run db-sync at the same moment.
            for step in (["credential-setup"], ["fernet-setup"],
                         ["bootstrap"]):
                p = run_cli(step + ["--config", a.conf])
                eq(p.returncode, 0, "%s (%r)" % (step[0], p.stdout + p.stderr))
            with open(a.token_file) as f:
                a.admin_token = f.read().strip()
            a.secrets.add(a.admin_token)
            holder["b"] = replica(url_b, "galera-b", share=a)
            db_sync_both(a, holder["b"])
            a.start()
            holder["b"].start()

        started = chk.run("galera.two_replicas_db_sync_at_once",
                          start_replicas)
        b = holder.get("b")
        if not started:
            raise Stop()
        chk.run("galera.write_on_node1_login_on_node2", write_a_login_b,
                a, b, k8s)
        chk.run("galera.write_on_node2_seen_on_node3_login_on_node1",
                write_b_login_a, a, b, k8s, cluster)
        chk.run("galera.conflicting_creates_one_201_one_409", conflict,
                a, b, cluster)
        print("  total: %.1f s" % (time.monotonic() - t0))
        ok = True
    except Stop:
        pass
    except Exception as e:  # noqa: BLE001
        chk.failed += 1
        print("FAIL galera: %s" % e)
        traceback.print_exc()
    finally:
        for s in (a, b):
            if s is not None:
                try:
                    s.stop()
                except AssertionError as e:
                    chk.failed += 1
                    print("FAIL galera.stop %s: %s" % (s.dir, e))
                s.failed = s.failed or not ok or chk.failed > 0
                s.cleanup()
        if k8s is not None:
            k8s.kill()
    return finish(chk, cluster)


def finish(chk, cluster):
    if cluster is not None:
        cluster.failed = cluster.failed or chk.failed > 0
        try:
            cluster.stop()
        except AssertionError as e:
            chk.failed += 1
            print("FAIL galera.stop: %s" % e)
        cluster.cleanup()
        if cluster.failed:
            print("  (kept: %s)" % cluster.dir)
    print("galera: %d passed, %d failed, 0 skipped" % (chk.passed,
                                                      chk.failed))
    return 0 if chk.failed == 0 and chk.passed > 0 else 1


def write_a_login_b(a, b, k8s):
    L = Login(a, k8s)
    LB = Login.__new__(Login)
    LB.__dict__.update(L.__dict__)
    LB.srv = b
    jwt = L.jwt()
    b.secrets.add(jwt)
    b.secrets.add(L.reviewer_jwt)
    t_written = time.monotonic()
    wait_for(lambda: LB.login(jwt).status == 200, timeout=5,
             interval=0.02, what="login through B of a role created via A")
    print("  A (node 1) -> B (node 2): login %.0f ms after the role's 201"
          % ((time.monotonic() - t_written) * 1000))


def write_b_login_a(a, b, k8s, cluster):
    L = Login(b, k8s)
    name = L.role_name
    wait_for(lambda: cluster.nodes[2].sql(
        "SELECT COUNT(*) FROM roles WHERE name = '%s'" % name, "k8sauth")
        == [["1"]], timeout=5, what="the role on node 3")
    LA = Login.__new__(Login)
    LA.__dict__.update(L.__dict__)
    LA.srv = a
    jwt = L.jwt()
    a.secrets.add(jwt)
    a.secrets.add(L.reviewer_jwt)
    wait_for(lambda: LA.login(jwt).status == 200, timeout=5,
             interval=0.02, what="login through A of a role created via B")


def conflict(a, b, cluster):
    dom = unique("gal")
    for i in range(6):
        body = {"instance": {"domain_id": dom, "name": "c%d" % i,
                             "host": "https://k%d.example.com" % i}}
        barrier = threading.Barrier(2)
        got = []

        def post(srv):
            barrier.wait()
            got.append(srv.req("POST", INST, body).status)

        ts = [threading.Thread(target=post, args=(s,)) for s in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        eq(sorted(got), [201, 409], "round %d: statuses" % i)
    for node in cluster.nodes:
        eq(node.sql("SELECT COUNT(*) FROM instances WHERE domain_id = '%s'"
                    % dom, "k8sauth"), [["6"]], "rows on %s" % node.dir)


if __name__ == "__main__":
    harness.timeout_scale()
    sys.exit(main())
