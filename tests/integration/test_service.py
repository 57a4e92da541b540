"""Service routes (API.md §6), authentication (§0) and routing errors."""
import http.client
import os
import re
import socket

from harness import (Server, assert_error, check, eq, fail, run_cli,
                     wait_for)

SRV = None


def setup_module():
    global SRV
    SRV = Server(name="service").start()


def teardown_module():
    SRV.stop()


def check_version_doc(r):
    eq(r.status, 200, "status")
    check(r.headers.get("content-type", "").startswith("application/json"),
          "Content-Type %r" % r.headers.get("content-type"))
    v = (r.json or {}).get("version")
    check(isinstance(v, dict), "no version object: %r" % r.raw[:300])
    eq(v.get("id"), "v4", "version.id")
    eq(v.get("status"), "stable", "version.status")
    links = v.get("links")
    check(isinstance(links, list) and links, "version.links: %r" % (links,))
    check(any(isinstance(l, dict) and l.get("rel") == "self" and
              isinstance(l.get("href"), str) and l["href"]
              for l in links), "no {rel: self, href} link: %r" % (links,))


def test_root_is_version_document():
    check_version_doc(SRV.req("GET", "/", token=None))


def test_v4_is_version_document():
    check_version_doc(SRV.req("GET", "/v4", token=None))


def test_healthz_200():
    eq(SRV.req("GET", "/healthz", token=None).status, 200, "GET /healthz")


def test_readyz_200_when_ready():
    wait_for(lambda: SRV.req("GET", "/readyz", token=None).status == 200,
             timeout=5, what="GET /readyz 200")


# A database that goes away under a running server no longer makes it
# unready: logins go on from the snapshot (test_snapshot.py checks /readyz
# stays 200 with "database": "unavailable").


def test_metrics_prometheus_text_without_auth():
    r = SRV.req("GET", "/metrics", token=None)
    eq(r.status, 200, "GET /metrics (%r)" % r.raw[:200])
    ct = r.headers.get("content-type", "")
    check(ct.startswith("text/plain"), "metrics Content-Type %r" % ct)
    text = r.raw.decode()
    samples = [l for l in text.splitlines() if l and not l.startswith("#")]
    check(samples, "no samples in /metrics")
    for l in samples:
        check(re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? '
                       r'[-+0-9.eE]+|NaN|[-+]Inf$', l),
              "not a Prometheus sample line: %r" % l)
    check(SRV.admin_token not in text, "admin token in metrics")


def test_missing_token_401_with_www_authenticate():
    r = SRV.req("GET", "/v4/k8s_auth/instances", token=None)
    assert_error(r, 401, "missing_token")
    wa = r.headers.get("www-authenticate")
    check(wa is not None, "401 without WWW-Authenticate")
    m = re.match(r'^Keystone uri="(https?://[^"]+)"$', wa)
    check(m, "WWW-Authenticate is not Keystone uri=\"...\": %r" % wa)
    check("127.0.0.1:%d" % SRV.https_port in m.group(1),
          "WWW-Authenticate uri %r is not this server's public URL" %
          m.group(1))


def test_wrong_token_401_and_not_echoed():
    bad = "gAAAAAB-not-a-real-token-" + "z" * 40
    SRV.secrets.add(bad)
    for path in ("/v4/k8s_auth/instances", "/v4/tokens/restrictions",
                 "/v4/k8s_auth/roles"):
        r = SRV.req("GET", path, token=bad)
        assert_error(r, 401, "invalid_token")
        check(r.headers.get("www-authenticate", "").startswith("Keystone uri="),
              "%s: WWW-Authenticate %r" % (path, r.headers.get(
                  "www-authenticate")))
        check(bad.encode() not in r.raw, "401 body echoes the token")


def test_empty_token_401():
    assert_error(SRV.req("GET", "/v4/k8s_auth/instances", token=""), 401,
                 "missing_token")


def test_admin_token_with_extra_char_401():
    assert_error(SRV.req("GET", "/v4/k8s_auth/instances",
                         token=SRV.admin_token + "x"), 401, "invalid_token")
    assert_error(SRV.req("GET", "/v4/k8s_auth/instances",
                         token=SRV.admin_token[:-1]), 401, "invalid_token")


def test_bootstrap_token_works():
    r = SRV.req("GET", "/v4/k8s_auth/instances")
    eq(r.status, 200, "GET instances with the bootstrap token")
    check(isinstance(r.json.get("instances"), list), "no instances list")


def test_mutations_need_token():
    r = SRV.req("POST", "/v4/tokens/restrictions",
                {"restriction": {"domain_id": "d"}}, token=None)
    assert_error(r, 401, "missing_token")
    r = SRV.req("DELETE", "/v4/k8s_auth/instances/" + "0" * 32, token=None)
    assert_error(r, 401, "missing_token")


def test_unknown_route_404_json():
    for path in ("/nothing", "/v4/nothing", "/v4/k8s_auth/instances/x/y/z/w",
                 "/v3/nothing"):
        assert_error(SRV.req("GET", path), 404, "not_found")


def test_wrong_method_405_json():
    for method, path in (("DELETE", "/v4/k8s_auth/instances"),
                         ("PUT", "/v4/tokens/restrictions"),
                         ("PATCH", "/v4/k8s_auth/roles"),
                         ("POST", "/healthz"),
                         ("DELETE", "/v4")):
        r = SRV.req(method, path, body={} if method != "DELETE" else None)
        try:
            assert_error(r, 405, "method_not_allowed")
        except AssertionError as e:
            fail("%s %s: %s" % (method, path, e))


def test_http_listener_serves_same_routes():
    check_version_doc(SRV.req("GET", "/v4", token=None, https=False))
    eq(SRV.req("GET", "/healthz", token=None, https=False).status, 200,
       "http healthz")
    assert_error(SRV.req("GET", "/v4/k8s_auth/instances", token=None,
                         https=False), 401, "missing_token")
    r = SRV.ok("POST", "/v4/tokens/restrictions",
               {"restriction": {"domain_id": "http-listener"}}, status=201,
               https=False)
    rid = r.json["restriction"]["id"]
    r = SRV.ok("GET", "/v4/tokens/restrictions/" + rid)
    eq(r.json["restriction"]["domain_id"], "http-listener", "domain_id")


def _host_address():
    """A non-loopback address of this host (the source address of a route
    to the outside; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        addr = s.getsockname()[0]
    if addr.startswith("127."):
        fail("this host has no non-loopback IPv4 address to test from")
    return addr


def _get_from(addr, port, headers=None):
    """GET /metrics over plain HTTP to addr:port (so the peer is addr)."""
    c = http.client.HTTPConnection(addr, port, timeout=10)
    try:
        c.request("GET", "/metrics", headers=headers or {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), \
            r.read()
    finally:
        c.close()


def test_metrics_loopback_only_by_default():
    """No [metrics] token_file: /metrics answers loopback clients only,
    even on a listener bound to every address, and the admin token does
    not open it to others."""
    addr = _host_address()
    srv = Server(name="metrics-lo")
    srv.extra = {"server": {"listen": "https://127.0.0.1:%d,http://0.0.0.0:%d"
                            % (srv.https_port, srv.http_port)}}
    srv._write_config()
    with srv:
        eq(srv.req("GET", "/metrics", token=None).status, 200,
           "/metrics from 127.0.0.1")
        status, _, body = _get_from(addr, srv.http_port)
        eq(status, 403, "/metrics from %s: %r" % (addr, body[:200]))
        check(b'"reason":"forbidden"' in body.replace(b" ", b""), body)
        status, _, _ = _get_from(addr, srv.http_port,
                                 {"X-Auth-Token": srv.admin_token})
        eq(status, 403, "/metrics from %s with the admin token" % addr)
        eq(_get_from("127.0.0.1", srv.http_port)[0], 200,
           "/metrics from 127.0.0.1 over http")


def test_metrics_token_file():
    """[metrics] token_file: Authorization: Bearer with that token, from
    anywhere; nothing else (not even loopback, not the admin token)."""
    addr = _host_address()
    srv = Server(name="metrics-tok")
    tok_file = os.path.join(srv.dir, "metrics-token")
    token = "m" + os.urandom(12).hex()
    with open(tok_file, "w") as f:
        f.write(token + "\n")
    os.chmod(tok_file, 0o600)
    srv.extra = {"server": {"listen": "https://127.0.0.1:%d,http://0.0.0.0:%d"
                            % (srv.https_port, srv.http_port)},
                 "metrics": {"token_file": tok_file}}
    srv._write_config()
    srv.secrets.add(token)
    with srv:
        bearer = {"Authorization": "Bearer " + token}
        status, _, body = _get_from(addr, srv.http_port, bearer)
        eq(status, 200, "/metrics with the token from %s" % addr)
        check(b"k8sauth_build_info" in body, "no metrics in %r" % body[:200])
        eq(srv.req("GET", "/metrics", token=None, headers=bearer).status,
           200, "with the token from loopback")
        r = srv.req("GET", "/metrics", token=None)
        assert_error(r, 401, "invalid_token")
        check(r.headers.get("www-authenticate", "").startswith("Bearer"),
              "WWW-Authenticate %r" % r.headers.get("www-authenticate"))
        assert_error(srv.req("GET", "/metrics"), 401, "invalid_token")
        for bad in ("Bearer " + token[:-1], "Bearer " + token + "x",
                    "Basic " + token, token):
            status, _, _ = _get_from(addr, srv.http_port,
                                     {"Authorization": bad})
            eq(status, 401, "Authorization: %s..." % bad[:8])


def test_metrics_require_auth_is_refused_with_a_hint():
    """The old admin-token switch is gone: a configuration that still sets
    it fails config-check with the replacement named (fail closed)."""
    srv = Server(name="metrics-old")
    srv.extra = {"metrics": {"require_auth": "true"}}
    srv._write_config()
    p = run_cli(["config-check", "--config", srv.conf])
    check(p.returncode != 0, "config-check accepted require_auth")
    check("[metrics] require_auth: removed" in p.stderr and
          "token_file" in p.stderr, "message: %r" % p.stderr)
