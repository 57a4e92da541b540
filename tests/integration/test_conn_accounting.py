"""Connection accounting under abusive clients (API.md §8): every way a
connection can end -- reset mid-head, oversized head or body, a bad
request line, TLS garbage or a handshake cut short, a client that leaves
before its answer, a pipelined burst, a login parked on its TokenReview
whose client leaves -- uncounts it, so
k8sauth_connections_open returns to the one connection that asks for
/metrics.  A leak would lock every client out once max_connections
phantom connections piled up.
"""
import json
import socket
import ssl
import struct
import time

from harness import Server, eq, timeout_scale, wait_for
from k8s_fixture import FakeK8s, Login


def metric(srv, name):
    r = srv.req("GET", "/metrics", token=None, https=False)
    for line in r.raw.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def conn(srv, tls=False):
    return socket.create_connection(
        ("127.0.0.1", srv.https_port if tls else srv.http_port))


def drain(s, t=2.0):
    s.settimeout(t * timeout_scale())
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()


def abuse(srv):
    # reset in the middle of a head
    s = conn(srv)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    time.sleep(0.05)
    rst(s)
    # reset right after a full request, before the answer is read
    s = conn(srv)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    rst(s)
    # half close after a request
    s = conn(srv)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    drain(s)
    # bad request line
    s = conn(srv)
    s.sendall(b"\x00\x01garbage\r\n\r\n")
    drain(s)
    # a head beyond max_header_size
    s = conn(srv)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
    except OSError:
        pass
    drain(s)
    # a body beyond the limit, then reset (lingering close)
    s = conn(srv)
    s.sendall(b"POST /v4/k8s_auth/instances/x/auth HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: 100000000\r\n\r\n" + b"a" * 65536)
    time.sleep(0.05)
    rst(s)
    # a body beyond the limit, read the answer
    s = conn(srv)
    try:
        s.sendall(b"POST /v4/k8s_auth/instances/x/auth HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 100000000\r\n\r\n" + b"a" * 300000)
    except OSError:
        pass
    drain(s)
    # Expect: 100-continue with an oversized body
    s = conn(srv)
    s.sendall(b"POST /v4/k8s_auth/instances/x/auth HTTP/1.1\r\nHost: x\r\n"
              b"Expect: 100-continue\r\nContent-Length: 100000000\r\n\r\n")
    drain(s)
    # bad chunked body
    s = conn(srv)
    s.sendall(b"POST /v4/k8s_auth/instances/x/auth HTTP/1.1\r\nHost: x\r\n"
              b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")
    drain(s)
    # a method evhttp refuses
    s = conn(srv)
    s.sendall(b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n")
    drain(s)
    # pipelined burst, then reset
    s = conn(srv)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
    rst(s)
    # pipelined burst, HTTP/1.0
    s = conn(srv)
    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n" * 5)
    drain(s)
    # TLS: garbage, a reset handshake, a complete handshake then reset
    s = conn(srv, tls=True)
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    drain(s)
    s = conn(srv, tls=True)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    rst(s)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(conn(srv, tls=True))
    t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    rst(t)
    t = ctx.wrap_socket(conn(srv, tls=True))
    t.sendall(b"POST /v4/k8s_auth/instances/x/auth HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 10\r\n\r\n{")
    t.close()


def parked_logins_then_gone(srv):
    # Logins parked on a TokenReview the cluster holds; their clients
    # leave (reset or close) while parked, then the reviews are answered
    # into the void.
    k8s = FakeK8s("connacct").start()
    try:
        # One JWT, six reviews: no review cache, so no single flight.
        L = Login(srv, k8s, inst={"jwt_signature": "skip",
                                  "review_cache_ttl": 0})
        jwt = L.jwt()
        body = json.dumps({"k8s_role": L.role_name, "jwt": jwt}).encode()
        head = ("POST %s HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/json\r\n"
                "Content-Length: %d\r\n\r\n" % (L.path, len(body)))
        k8s.fault("latency", latency_ms=600000)
        socks = []
        for _ in range(6):
            s = conn(srv)
            s.sendall(head.encode() + body)
            socks.append(s)
        k8s.wait_parked(6)
        for i, s in enumerate(socks):
            if i % 2:
                rst(s)
            else:
                s.close()
        time.sleep(0.3)
        k8s.release()
        k8s.clear_faults()
    finally:
        k8s.stop()


def test_every_closed_connection_is_uncounted():
    with Server(extra={"server": {"header_timeout": "2",
                                  "idle_timeout": "2",
                                  "max_connections": "40"}},
                name="connacct") as srv:
        for _ in range(3):
            abuse(srv)
        parked_logins_then_gone(srv)
        eq(srv.log_text().count("client went away"), 6,
           "parked logins whose clients left")
        wait_for(lambda: metric(srv, "k8sauth_connections_open") == 1,
                 timeout=15,
                 what="every closed connection uncounted (open: %s)" %
                 metric(srv, "k8sauth_connections_open"))
        # and the server still serves after more than max_connections
        # abusive connections came and went
        eq(srv.req("GET", "/healthz", token=None, https=False).status, 200,
           "served after the abuse")
