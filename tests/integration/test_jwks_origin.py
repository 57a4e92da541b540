"""The discovery document's jwks_uri gets the instance's credential only
when it really is on the instance's host (API.md §7, §8).

A jwks_uri with user info, https://HOST:PORT@elsewhere:PORT2/..., reads
as the instance's host and port to a naive split but makes libcurl
connect to `elsewhere`: the reviewer bearer (or the server's own pod
token, which must never leave the cluster it runs in) and the cluster's
CA would then go to another host, outside allowed_hosts.  Two small TLS
servers play the cluster (discovery) and the other host (which records
every Authorization header it is sent).
"""
import http.server
import json
import os
import ssl
import tempfile
import threading

from harness import Server, check, eq, free_ports, wait_for
from k8s_fixture import FakeK8s, Login, make_ca_and_cert

K8S = None
SRV = None


def setup_module():
    global K8S, SRV
    K8S = FakeK8s("jwksorigin").start()
    SRV = Server(name="jwksorigin").start()


def teardown_module():
    try:
        SRV.stop()
    finally:
        K8S.stop()


def tls_server(d, port, handler):
    s = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "srv.pem"), os.path.join(d, "srv.key"))
    s.socket = ctx.wrap_socket(s.socket, server_side=True)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


def test_jwks_uri_with_user_info_gets_no_credential():
    d = tempfile.mkdtemp(prefix="jwksorigin")
    make_ca_and_cert(d)
    with open(os.path.join(d, "ca.pem")) as f:
        ca = f.read()
    p_cluster, p_other = free_ports(2)
    seen = []

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *a):
            pass

    class Cluster(Other):
        def do_GET(self):
            if self.path != "/.well-known/openid-configuration":
                return Other.do_GET(self)
            body = json.dumps({
                "issuer": "https://kubernetes.default.svc",
                "jwks_uri": "https://127.0.0.1:%d@127.0.0.1:%d/keys" %
                (p_cluster, p_other)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    servers = [tls_server(d, p_cluster, Cluster),
               tls_server(d, p_other, Other)]
    try:
        L = Login(SRV, K8S, reviewer="reviewer-secret-%s" % os.urandom(8).hex(),
                  inst={"host": "https://127.0.0.1:%d" % p_cluster,
                        "ca_cert": ca})
        r = L.login(L.jwt())
        check(r.status >= 400, "a login against a fake cluster succeeded")
        wait_for(lambda: "jwks_uri" in SRV.log_text() or seen,
                 what="the discovery document judged")
        for path, auth in seen:
            check(auth is None or L.reviewer_jwt not in auth,
                  "the reviewer bearer went to another host (%s)" % path)
        eq(seen, [], "requests to the host behind the user info")
        check("jwks_uri carries user info" in SRV.log_text(),
              "no log line names the jwks_uri's user info")
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
