"""Abuse limits (API.md §8): the failed-login throttle per client address
with trusted proxies, connections counted from accept, header_timeout.

Clients pick their source address in 127.0.0.0/8 (all of it is loopback
on Linux), so one test plays several clients and proxies.  Each test owns
its server (the limits are tight and the buckets process-wide); fake-k8s
is shared and its TokenReview counter tells whether a throttled login
reached the cluster.
"""
import http.client
import json
import re
import socket
import time

from harness import (Server, _parse_response, assert_error, check, eq, fail,
                     run_cli, timeout_scale, wait_for)
from k8s_fixture import FakeK8s, Login

K8S = None


def setup_module():
    global K8S
    K8S = FakeK8s("limits").start()


def teardown_module():
    K8S.stop()


# -- helpers -----------------------------------------------------------------
def req_from(srv, src, method, path, body=None, headers=None):
    """One plain-HTTP request from source address src."""
    c = http.client.HTTPConnection("127.0.0.1", srv.http_port,
                                   timeout=30 * timeout_scale(),
                                   source_address=(src, 0))
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    try:
        c.request(method, path, body=None if body is None else
                  json.dumps(body).encode(), headers=h)
        return _parse_response(c.getresponse())
    finally:
        c.close()


def login_from(srv, L, src, jwt, role=None, xff=None):
    h = {"X-Forwarded-For": xff} if xff is not None else None
    return req_from(srv, src, "POST", L.path,
                    {"k8s_role": role or L.role_name, "jwt": jwt}, h)


def junk_from(srv, L, src, xff=None):
    """A login refused 404 role_not_found: a failure that costs nothing."""
    r = login_from(srv, L, src, "x.y.z", role="no-such-role", xff=xff)
    if r.status != 404:
        fail("junk login from %s (xff %s): expected 404, got %d %r" %
             (src, xff, r.status, r.raw[:200]))


def metrics_resp(srv):
    try:
        return srv.req("GET", "/metrics", token=None, https=False)
    except (http.client.HTTPException, OSError):
        return None


def healthz_served(srv):
    """GET /healthz over a new plain connection: 200, or False when the
    connection is closed (over max_connections) or answers otherwise."""
    try:
        return srv.req("GET", "/healthz", token=None,
                       https=False).status == 200
    except (http.client.HTTPException, OSError):
        return False


def metric(srv, name):
    """A metric's value; retried while the connection is refused (the
    server uncounts a closed connection once it sees the close)."""
    r = wait_for(lambda: metrics_resp(srv), what="GET /metrics served")
    eq(r.status, 200, "GET /metrics")
    m = re.search(r"^%s (\S+)$" % re.escape(name), r.raw.decode(), re.M)
    if m is None:
        fail("metric %s missing" % name)
    return float(m.group(1))


def closed_within(s, seconds):
    """Wait until the server closes s (EOF or reset); the seconds it took,
    or None when it stayed open that long."""
    s.settimeout(seconds)
    t0 = time.monotonic()
    try:
        data = s.recv(4096)
    except socket.timeout:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - t0
    if data:
        fail("the server answered %r on a connection it should close" %
             data[:100])
    return time.monotonic() - t0


# -- the failed-login throttle -----------------------------------------------
def test_throttle_burst_then_429_before_review_then_recovers():
    with Server(extra={"login": {"failed_rate": "1", "failed_burst": "5"}},
                name="throttle") as srv:
        L = Login(srv, K8S)
        jwt = L.jwt()
        # Successes take no token: more of them than the burst all pass.
        for i in range(8):
            r = login_from(srv, L, "127.0.0.2", jwt)
            eq(r.status, 200, "success %d (%r)" % (i, r.raw[:200]))
        # Five failures in a row empty the bucket...
        for _ in range(5):
            junk_from(srv, L, "127.0.0.2")
        # ...and the next login, even a good one, is refused before any
        # work: no TokenReview reaches the cluster.
        before = K8S.reviews()
        r = login_from(srv, L, "127.0.0.2", jwt)
        assert_error(r, 429, "too_many_requests")
        eq(r.headers.get("retry-after"), "1", "Retry-After")
        eq(K8S.reviews() - before, 0, "TokenReviews for a throttled login")
        # Another address is not throttled.
        r = login_from(srv, L, "127.0.0.3", jwt)
        eq(r.status, 200, "a login from another address")
        # The log line and the audit record say why, without the JWT
        # (access lines and audit records are written in batches, within
        # 50 ms).
        audit = re.compile(r'"status":429,"reason":"too_many_requests",'
                           r'"client":"127\.0\.0\.2"')
        line = "login refused: too_many_requests (too many failed logins " \
            "from 127.0.0.2"
        deadline = time.monotonic() + 2
        while True:
            log = srv.log_text()
            if (audit.search(log) and line in log) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.05)
        check(line in log, "no throttle log line")
        check(audit.search(log), "no audit record of the throttled login")
        eq(metric(srv, "k8sauth_logins_throttled_total"), 1,
           "throttled logins")
        # Once a token is back (failed_rate 1/s), the address may try.
        time.sleep(1.2)
        r = login_from(srv, L, "127.0.0.2", jwt)
        eq(r.status, 200, "a login after the refill (%r)" % r.raw[:200])


def test_throttle_5xx_takes_no_token():
    # The cluster down is not the client's fault: 503s never throttle.
    with Server(extra={"login": {"failed_rate": "1", "failed_burst": "2"}},
                name="throttle5xx") as srv:
        L = Login(srv, K8S, inst={"host": "https://127.0.0.1:1"})
        jwt = L.jwt()
        for i in range(4):
            r = login_from(srv, L, "127.0.0.2", jwt)
            eq(r.status // 100, 5, "login %d against a dead cluster" % i)
        junk_from(srv, L, "127.0.0.2")
        junk_from(srv, L, "127.0.0.2")
        r = login_from(srv, L, "127.0.0.2", jwt)
        assert_error(r, 429, "too_many_requests")


def test_throttle_trusted_proxies():
    with Server(extra={"server": {"trusted_proxies": "127.0.0.3, ::1"},
                       "login": {"failed_rate": "1", "failed_burst": "3"}},
                name="proxies") as srv:
        L = Login(srv, K8S)
        jwt = L.jwt()
        # An untrusted peer's X-Forwarded-For is ignored: it counts as
        # itself whatever address it claims.
        for i in range(3):
            junk_from(srv, L, "127.0.0.2", xff="192.0.2.%d" % i)
        r = login_from(srv, L, "127.0.0.2", jwt, xff="192.0.2.99")
        assert_error(r, 429, "too_many_requests")
        check("too many failed logins from 127.0.0.2" in r.json["error"]
              ["message"], "untrusted peer: %r" % r.json)
        # Behind the trusted proxy, each forwarded client has its own
        # bucket.
        for _ in range(3):
            junk_from(srv, L, "127.0.0.3", xff="192.0.2.10")
        r = login_from(srv, L, "127.0.0.3", jwt, xff="192.0.2.10")
        assert_error(r, 429, "too_many_requests")
        check("from 192.0.2.10;" in r.json["error"]["message"],
              "forwarded client: %r" % r.json)
        r = login_from(srv, L, "127.0.0.3", jwt, xff="192.0.2.11")
        eq(r.status, 200, "another client behind the same proxy")
        # The right-most address that is not a trusted proxy counts; what
        # the client wrote to the left of it does not.
        r = login_from(srv, L, "127.0.0.3", jwt,
                       xff="192.0.2.10, 127.0.0.3")
        assert_error(r, 429, "too_many_requests")
        r = login_from(srv, L, "127.0.0.3", jwt,
                       xff="192.0.2.11, 192.0.2.10")
        assert_error(r, 429, "too_many_requests")
        # The proxy itself was never throttled.
        r = login_from(srv, L, "127.0.0.3", jwt)
        eq(r.status, 200, "the proxy's own login")
        # (access lines are written in batches, within 50 ms)
        wait_for(lambda: "access: 192.0.2.11 POST" in srv.log_text(),
                 what="the access log showing the forwarded client")


# -- connections -------------------------------------------------------------
def test_max_connections_counts_idle_sockets():
    # Three sockets that never send a byte (one on the TLS port, in its
    # handshake) fill max_connections = 3; the fourth is closed at once,
    # and so is a real request; once one idle socket closes, requests are
    # served again.
    with Server(extra={"server": {"max_connections": "3",
                                  "header_timeout": "60",
                                  "idle_timeout": "60"}},
                name="idlecap") as srv:
        idle = []

        def admit(port):
            # the start-up probe's connection is counted until the
            # server sees it close: one refused in that moment (closed
            # at once) is opened again
            s = socket.create_connection(("127.0.0.1", port))
            if closed_within(s, 0.3 * timeout_scale()) is None:
                idle.append(s)
                return True
            s.close()
            return False
        try:
            for port in (srv.http_port, srv.http_port, srv.https_port):
                wait_for(lambda: admit(port), timeout=10,
                         what="an idle connection admitted under the cap")
            s = socket.create_connection(("127.0.0.1", srv.http_port))
            took = closed_within(s, 5 * timeout_scale())
            s.close()
            check(took is not None, "a 4th idle connection was kept open")
            try:
                r = srv.req("GET", "/healthz", token=None, https=False)
                fail("a request beyond max_connections got %d" % r.status)
            except (http.client.HTTPException, OSError):
                pass
            for s in idle:
                eq(closed_within(s, 0.2), None, "an admitted idle socket")
            idle.pop().close()
            wait_for(lambda: healthz_served(srv),
                     what="a request served once a slot is free")
            check(metric(srv, "k8sauth_connections_refused_total") >= 2,
                  "refused connections counted")
            eq(metric(srv, "k8sauth_connections_open"), 3,
               "open connections (2 idle + the metrics request)")
        finally:
            for s in idle:
                s.close()
        wait_for(lambda: metric(srv, "k8sauth_connections_open") == 1,
                 what="every closed connection uncounted")
        check("[server] max_connections (3) reached" in srv.log_text(),
              "no log line for the refused connection")


def test_header_timeout_closes_slow_handshake_and_head():
    with Server(extra={"server": {"header_timeout": "1",
                                  "idle_timeout": "60"}},
                name="headto") as srv:
        # Half a TLS ClientHello: a record header promising 512 bytes.
        tls = socket.create_connection(("127.0.0.1", srv.https_port))
        tls.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        took = closed_within(tls, 5 * timeout_scale())
        tls.close()
        check(took is not None, "a half TLS handshake was kept open")
        # A request head trickled byte by byte (never idle for long).
        head = socket.create_connection(("127.0.0.1", srv.http_port))
        head.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 5 * timeout_scale():
            try:
                head.sendall(b"X")
            except OSError:
                closed = True
                break
            if closed_within(head, 0.25) is not None:
                closed = True
                break
        waited = time.monotonic() - t0
        head.close()
        check(closed, "a trickled request head was kept open")
        check(waited >= 0.5, "closed after %.2f s, before header_timeout" %
              waited)
        # A connection that delivered its request in time stays usable
        # past header_timeout (keep-alive is idle_timeout's business).
        c = srv.connection(https=True)
        eq(srv.req("GET", "/healthz", token=None, conn=c).status, 200,
           "first request")
        time.sleep(1.5)
        eq(srv.req("GET", "/healthz", token=None, conn=c).status, 200,
           "a kept-alive request after header_timeout")
        c.close()
        check(metric(srv, "k8sauth_header_timeouts_total") >= 2,
              "header timeouts counted")
        check("no complete request within [server] header_timeout" in
              srv.log_text(), "no log line for the header timeout")


def trickle_until_closed(s, seconds):
    """Send a byte every 0.25 s (never idle for long) until the server
    closes s: the seconds that took, or None when it stayed open."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            s.sendall(b"X")
        except OSError:
            return time.monotonic() - t0
        if closed_within(s, 0.25) is not None:
            return time.monotonic() - t0
    return None


def test_header_timeout_bounds_later_requests_on_keepalive():
    # After an answer, the next request on the connection must be
    # complete within idle_timeout + header_timeout (here 2 + 1 s), so
    # trickling its head (which keeps idle_timeout from firing) does not
    # hold the connection.
    with Server(extra={"server": {"header_timeout": "1",
                                  "idle_timeout": "2"}},
                name="headka") as srv:
        s = socket.create_connection(("127.0.0.1", srv.http_port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5 * timeout_scale())
        check(s.recv(4096).startswith(b"HTTP/1.1 200"), "first answer")
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        took = trickle_until_closed(s, 8 * timeout_scale())
        s.close()
        check(took is not None, "a trickled second request head was kept open")
        check(took >= 2.5, "closed after %.2f s, before idle_timeout + "
              "header_timeout" % took)


def test_trusted_proxies_must_parse():
    srv = Server(extra={"server": {"trusted_proxies": "10.0.0.1/8"}},
                 name="badproxy")
    try:
        srv._write_config()
        p = run_cli(["config-check", "--config", srv.conf])
        check(p.returncode != 0, "config-check accepted a bad CIDR")
        check("[server] trusted_proxies" in p.stdout + p.stderr,
              "the error names the option: %r" % (p.stdout + p.stderr))
    finally:
        srv.cleanup()
