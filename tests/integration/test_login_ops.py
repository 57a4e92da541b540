"""Login under load, client disconnects, Fernet key rotation, secrets.

One fake-k8s and one keystone-k8s-auth shared by the module; the Fernet
rotation test owns its server (it rotates that server's key repository).
"""
import os
import signal
import socket
import threading
import time

from harness import (Server, assert_error, check, eq, fail, run_cli,
                     timeout_scale, wait_for)
from k8s_fixture import FakeK8s, Login, lasting_close_waits, validate
from test_reload import primary_signs

K8S = None
SRV = None


def setup_module():
    global K8S, SRV
    K8S = FakeK8s("ops").start()
    SRV = Server(extra={"k8s_auth": {"review_timeout": 10}}, name="ops")
    SRV.start()


def teardown_module():
    try:
        SRV.stop()
    finally:
        K8S.stop()


def test_concurrent_logins_are_reviewed_at_once():
    # One JWT, uncached: each login is its own review (merging is
    # test_review_cache's).
    L = Login(SRV, K8S, inst={"review_cache_ttl": 0})
    jwt = L.jwt()
    L.ok(jwt)
    n = 40
    results = [None] * n
    go = threading.Event()

    def one(i):
        go.wait()
        try:
            results[i] = L.login(jwt, timeout=30).status
        except Exception as e:  # noqa: BLE001
            results[i] = repr(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    # The cluster holds every review until released: all n must be in
    # flight at once (a server serialising reviews never gets there).
    K8S.fault("latency", latency_ms=600000)
    try:
        before = K8S.stats()["authenticated"]
        go.set()
        K8S.wait_parked(n, "login reviews in flight at once")
        # Admin requests are not queued behind the parked logins.
        slow = []
        for _ in range(3):
            a = time.monotonic()
            SRV.ok("GET", "/v4/k8s_auth/instances/%s" % L.iid)
            took = time.monotonic() - a
            if took >= 0.5 * timeout_scale():
                slow.append(round(took, 2))
        eq(results, [None] * n, "logins answered before their review")
    finally:
        K8S.clear_faults()
        released = K8S.release()
        for t in threads:
            t.join(60)
    eq(released, n, "reviews released")
    eq(results, [200] * n, "40 concurrent logins")
    check(not slow, "admin GETs during the logins took %r s" % slow)
    eq(K8S.stats()["authenticated"] - before, n, "reviews made")


def test_client_disconnect_cancels_the_review():
    L = Login(SRV, K8S)
    jwt = L.jwt()
    body = ('{"k8s_role": "%s", "jwt": "%s"}' % (L.role_name, jwt)).encode()
    req = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
           "application/json\r\nContent-Length: %d\r\n\r\n" % (
               L.path, len(body))).encode() + body
    K8S.fault("hang")
    try:
        raw = socket.create_connection(("127.0.0.1", SRV.https_port),
                                       timeout=10)
        s = SRV.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(req)
        wait_for(lambda: K8S.faults()["parked"] == 1, timeout=5,
                 what="the review to reach fake-k8s")
        eq(lasting_close_waits(K8S.port), 0, "fake sockets closed by the "
           "server while the client is still there")
        s.close()
        wait_for(lambda: "client went away during POST %s" % L.path in
                 SRV.log_text(), timeout=5,
                 what="the server to notice the disconnect")
        # The server closed its TokenReview connection: the fake's end of
        # the hung request is now in CLOSE_WAIT (fake-k8s itself does not
        # read a parked connection, so its "parked" count stays 1 until the
        # fault is cleared).
        wait_for(lambda: lasting_close_waits(K8S.port) == 1, timeout=5,
                 what="the TokenReview transfer to be cancelled "
                 "(fake-side socket in CLOSE_WAIT)")
    finally:
        K8S.clear_faults()
    eq(SRV.req("GET", "/healthz", token=None).status, 200, "healthz")
    L.ok(jwt)


def test_request_deadline_while_review_hangs():
    # The review outlives [server] request_timeout: the login is answered
    # 504 cluster_timeout by the request deadline, not left hanging.
    with Server(extra={"server": {"request_timeout": 1},
                       "k8s_auth": {"review_timeout": 30}},
                name="deadline") as srv:
        L = Login(srv, K8S)
        jwt = L.jwt()
        K8S.fault("hang")
        try:
            t0 = time.monotonic()
            r = L.login(jwt)
            took = time.monotonic() - t0
            wait_for(lambda: lasting_close_waits(K8S.port) == 1,
                     timeout=5, what="the hung review's connection to be "
                     "closed by the server")
        finally:
            K8S.clear_faults()
        assert_error(r, 504, "cluster_timeout")
        check(took < 4 * timeout_scale(), "answered after %.1fs" % took)
        L.ok(jwt)


def fernet_loads(srv):
    return srv.log_text().count("fernet keys: ")


def test_fernet_rotation_while_serving():
    with Server(extra={"fernet_tokens": {"max_active_keys": 5}},
                name="fernet") as srv:
        repo = srv.config_sections()["fernet_tokens"]["key_repository"]
        L = Login(srv, K8S)
        jwt = L.jwt()
        t1 = L.ok(jwt).headers["x-subject-token"]
        srv.secrets.add(t1)
        eq(validate(srv, t1).status, 200, "t1 before rotation")

        def rotate():
            p = run_cli(["fernet-rotate", "--config", srv.conf])
            eq(p.returncode, 0, "fernet-rotate exit (%s)" % p.stderr)

        # 1: rotation noticed on its own (checked at most once a second):
        # logins until one is signed with the new primary key.
        loads = fernet_loads(srv)
        rotate()
        eq(sorted(os.listdir(repo), key=int), ["0", "1", "2"], "keys")

        def login_with_new_key():
            t = L.ok(jwt).headers["x-subject-token"]
            srv.secrets.add(t)
            return t if primary_signs(repo, t) else None
        t2 = wait_for(login_with_new_key, timeout=5, interval=0.2,
                      what="a token signed with the rotated primary key")
        check(fernet_loads(srv) > loads, "rotated keys not reloaded")
        eq(validate(srv, t1).status, 200, "t1 after rotation")
        eq(validate(srv, t2).status, 200, "t2 after rotation")

        # 2: SIGHUP reloads at once.
        rotate()
        loads = fernet_loads(srv)
        srv.signal(signal.SIGHUP)
        wait_for(lambda: fernet_loads(srv) > loads, timeout=5,
                 what="SIGHUP to reload the fernet keys")
        t3 = L.ok(jwt).headers["x-subject-token"]
        srv.secrets.add(t3)
        for name, t in (("t1", t1), ("t2", t2), ("t3", t3)):
            eq(validate(srv, t).status, 200, "%s after SIGHUP" % name)

        # 3: rotate until key 1 (which encrypted t1) is purged.
        rotate()
        rotate()
        check("1" not in os.listdir(repo), "key 1 not purged: %r" %
              sorted(os.listdir(repo)))
        loads = fernet_loads(srv)
        srv.signal(signal.SIGHUP)
        wait_for(lambda: fernet_loads(srv) > loads, timeout=5,
                 what="SIGHUP to reload the fernet keys")
        assert_error(validate(srv, t1), 404, "token_not_found")
        eq(validate(srv, t3).status, 200, "t3 (key 3) still valid")

        # 4: a token from a repository this server does not know.
        other = Login(SRV, K8S)
        foreign = other.ok(other.jwt()).headers["x-subject-token"]
        SRV.secrets.add(foreign)
        srv.secrets.add(foreign)
        eq(validate(SRV, foreign).status, 200, "foreign token at home")
        assert_error(validate(srv, foreign), 404, "token_not_found")


def test_no_secrets_in_logs():
    # Every JWT the module used was added to SRV.secrets by Login.jwt();
    # make some more refusals that carry a secret, then check the log now
    # (the harness checks it again at stop).
    L = Login(SRV, K8S)
    jwt = L.jwt()
    L.login(jwt + "x")
    L.login(jwt, role="nope")
    L.login(jwt, extra=jwt)
    SRV.req("GET", "/v3/auth/tokens", token=jwt,
            headers={"X-Subject-Token": jwt})
    text = SRV.log_text()
    check(len(SRV.secrets) > 5, "too few secrets recorded")
    for s in SRV.secrets:
        if s and s in text:
            fail("server log contains a secret (%s...)" % s[:8])
    check(L.reviewer_jwt not in text, "reviewer token logged")
    check(SRV.admin_token not in text, "admin token logged")
    check(jwt[:40] not in text, "a JWT prefix logged")
