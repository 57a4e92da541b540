#!/usr/bin/env python3
"""Admin callers with Keystone tokens, restrictions checked against Keystone.

    python3 tests/integration/test_keystone.py      # as root, loopback only

Starts a throw-away real Keystone (tests/interop/keystone-env.sh: Debian's
keystone on uWSGI, domains A and B, users manager/reader/member, a service
user with an application credential), a counting TCP proxy in front of it,
the test Kubernetes API server (tests/k8s/fake-k8s) and keystone-k8s-auth
with `[keystone] url` pointing at the proxy.  Then, over HTTP:

  - Keystone tokens as X-Auth-Token: admin may act; a member gets 403; a
    garbled or revoked token 401; validations are cached (the proxy counts
    Keystone's GET /v3/auth/tokens); with Keystone unreachable a cached
    token still works and an uncached one gets 503 + Retry-After;
  - manager of A may create/change/delete instances, roles and restrictions
    in A and gets 403 in B; reader of A may list/show in A only (the Lua
    policy engine's default rules);
  - restrictions naming a user or project of another domain, a disabled
    user or an unknown role get 400 invalid_restriction; role names come
    from Keystone (the admin role id labelled "member" is stored "admin");
  - a login whose restriction user was disabled gets 401 user_disabled;
  - a restricted token this server issued is recognised locally.

Prints PASS/FAIL lines and `N passed, N failed, N skipped`; exits non-zero
on a failure.  Under tests/integration/runner.py the whole suite is the one
test test_keystone_suite (the cases are named case_*), and the runner
counts each case.  When keystone is not installed (keystone-env.sh exits
77): `SKIP`, `0 passed, 0 failed, 1 skipped`, exit 0 -- and the runner
counts a skip, never a pass; with K8SAUTH_TEST_NO_SKIP=1 (CI) it is a
failure.  K8SAUTH_BIN, FAKE_K8S as in tests/interop.
"""

import importlib.util
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

# The MySQL pass of tests/run.sh leaves it out: what it checks (Keystone
# callers, restrictions checked against Keystone) does not depend on the
# engine, and it starts a Keystone (minutes on a loaded machine).
SQLITE_ONLY = ("Keystone interop, engine-neutral; its Keystone start costs "
               "minutes")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_spec = importlib.util.spec_from_file_location(
    "interop_keystone", os.path.join(ROOT, "tests", "interop",
                                     "test_keystone.py"))
interop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(interop)
http = interop.http
_fspec = importlib.util.spec_from_file_location(
    "interop_keystone_fixtures", os.path.join(ROOT, "tests", "interop",
                                              "keystone_fixtures.py"))
fixtures = importlib.util.module_from_spec(_fspec)
_fspec.loader.exec_module(fixtures)



class Proxy:
    """A TCP proxy to Keystone that counts request lines and can play
    'Keystone is down' (every connection, old and new, is cut)."""

    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.requests = []
        self.conns = []
        self.down = False
        threading.Thread(target=self._accept, daemon=True).start()

    def count(self, prefix):
        with self.lock:
            return sum(1 for r in self.requests if r.startswith(prefix))

    def set_down(self, down):
        with self.lock:
            self.down = down
            conns, self.conns = self.conns, []
        if down:
            for s in conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _accept(self):
        while True:
            c, _ = self.lsock.accept()
            with self.lock:
                down = self.down
            if down:
                c.close()
                continue
            try:
                u = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u),
                             daemon=True).start()

    def _note(self, data, carry):
        # Only complete lines count: a request line cut by a TCP segment
        # boundary is kept (as carry) until its CRLF arrives, so it is
        # counted exactly once.
        lines = (carry + data).split(b"\r\n")
        for line in lines[:-1]:
            for m in (b"GET ", b"POST ", b"HEAD ", b"PATCH ", b"PUT ",
                      b"DELETE "):
                if line.startswith(m) and b" HTTP/1." in line:
                    with self.lock:
                        self.requests.append(line.split(b" HTTP/")[0]
                                             .decode("latin-1"))
        return lines[-1][-8192:]

    def _pump(self, c, u):
        carry = b""
        try:
            while True:
                r, _, _ = select.select([c, u], [], [], 60)
                if not r:
                    break
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if s is c:
                        carry = self._note(data, carry)
                        u.sendall(data)
                    else:
                        c.sendall(data)
        except (OSError, ValueError):
            pass
        for s in (c, u):
            try:
                s.close()
            except OSError:
                pass


class Server:
    """keystone-k8s-auth on plain HTTP with [keystone] -> the proxy.
    payload None: the default [token] payload (project_scoped)."""

    def __init__(self, procs, binary, d, env, proxy, payload=None,
                 keystone_extra=""):
        self.url = "http://127.0.0.1:%d" % interop.free_port()
        self.conf = os.path.join(d, "keystone-k8s-auth.conf")
        self.log = os.path.join(d, "server.log")
        token_file = os.path.join(d, "admin-token")
        secret_file = os.path.join(d, "app-cred-secret")
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, "w") as f:
            f.write(env["application_credential"]["secret"] + "\n")
        with open(self.conf, "w") as f:
            f.write("""# Written by tests/integration/test_keystone.py
[server]
listen = {url}
workers = 2
[database]
connection = sqlite:///{d}/k8sauth.db
[fernet_tokens]
key_repository = {d}/fernet-keys
[credential]
key_repository = {d}/credential-keys
[bootstrap]
admin_token_file = {token_file}
[policy]
dir = {d}/policy
[k8s_auth]
allowed_hosts = 127.0.0.1/32, *.k8s-allowed.test
[keystone]
# Keystone's answers take seconds on a loaded test machine.
timeout = 30
url = http://127.0.0.1:{port}/v3/
application_credential_id = {app_id}
application_credential_secret_file = {secret_file}
[log]
level = debug
""".format(url=self.url, d=d, token_file=token_file, port=proxy.port,
           app_id=env["application_credential"]["id"],
           secret_file=secret_file))
            f.write(keystone_extra)
            if payload is not None:
                f.write("[token]\npayload = %s\n" % payload)
        conf = ["--config", self.conf]
        for sub in ("config-check", "credential-setup", "fernet-setup",
                    "bootstrap", "db-sync"):
            if interop.run([binary, sub] + conf, self.log) != 0:
                raise RuntimeError("keystone-k8s-auth %s failed:\n%s"
                                   % (sub, interop.tail(self.log)))
        with open(token_file) as f:
            self.admin = f.read().strip()
        self.proc = procs.start([binary, "serve"] + conf, self.log)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("keystone-k8s-auth exited:\n"
                                   + interop.tail(self.log))
            try:
                return http("GET", self.url + "/readyz").status == 200
            except OSError:
                return False
        interop.wait_for(ready, 15, "keystone-k8s-auth /readyz")

    def call(self, method, path, body=None, token=None):
        return http(method, self.url + path, body,
                    headers={"X-Auth-Token": token or self.admin})


class Ctx:
    """What the tests share."""


C = Ctx()


def keystone_token(user, project_id=None, domain_id=None):
    auth = {"identity": {"methods": ["password"], "password": {
        "user": {"id": user["id"], "password": user["password"]}}}}
    if project_id:
        auth["scope"] = {"project": {"id": project_id}}
    elif domain_id:
        auth["scope"] = {"domain": {"id": domain_id}}
    r = http("POST", C.env["url"] + "/v3/auth/tokens", {"auth": auth})
    assert r.status == 201, "Keystone password token: %r" % r
    return r.headers["X-Subject-Token"]


def ks_admin(method, path, body=None, expect=(200, 201, 204)):
    r = http(method, C.env["url"] + path, body,
             headers={"X-Auth-Token": C.ks.admin_token()})
    assert r.status in expect, "Keystone %s %s: %r" % (method, path, r)
    return r.json()


def error_reason(r):
    try:
        return (r.json() or {}).get("error", {}).get("reason")
    except ValueError:
        return None


def expect(r, status, reason=None):
    """r has this status and reason; a 403 is always forbidden (the only
    reason the policy gate gives), so no check accepts just any 403."""
    if reason is None and status == 403:
        reason = "forbidden"
    assert r.status == status, "want %d%s, got %r" % (
        status, " " + reason if reason else "", r)
    if reason is not None:
        assert error_reason(r) == reason, "want reason %s, got %r" % (
            reason, r)


def restriction_body(domain, user_id=None, project_id=None, roles=()):
    body = {"domain_id": domain}
    if user_id:
        body["user_id"] = user_id
    if project_id:
        body["project_id"] = project_id
    body["roles"] = [{"id": rid, "name": name} for rid, name in roles]
    return {"restriction": body}


def instance_body(domain, name):
    return {"instance": {"domain_id": domain, "name": name,
                         "host": C.k8s.url, "ca_cert": C.k8s.ca_pem}}


# ---- tests, run in this order ---------------------------------------------

def case_bootstrap_token_still_works():
    expect(C.srv.call("GET", "/v4/k8s_auth/instances"), 200)


def case_keystone_admin_token_is_admin():
    before = C.proxy.count("GET /v3/auth/tokens")
    r = C.srv.call("GET", "/v4/k8s_auth/instances", token=C.admin_tok)
    expect(r, 200)
    assert C.proxy.count("GET /v3/auth/tokens") == before + 1, \
        C.proxy.requests[-5:]
    assert C.proxy.count("POST /v3/auth/tokens") >= 1, \
        "no service authentication seen"


def case_member_token_forbidden():
    r = C.srv.call("POST", "/v4/k8s_auth/instances",
                   instance_body(C.env["domain_a"]["id"], "by-member"),
                   token=C.member_tok)
    expect(r, 403, "forbidden")
    expect(C.srv.call("GET", "/v4/k8s_auth/instances?domain_id=%s"
                      % C.env["domain_a"]["id"], token=C.member_tok), 403)


def case_garbled_and_revoked_tokens_401():
    t = C.member_tok
    bad = t[:-6] + ("AAAAAA" if not t.endswith("AAAAAA") else "BBBBBB")
    r = C.srv.call("GET", "/v4/k8s_auth/instances", token=bad)
    expect(r, 401, "invalid_token")
    assert r.headers.get("WWW-Authenticate", "").startswith("Keystone uri="), \
        r.headers
    revoked = keystone_token(C.env["member"], project_id=C.env["project"]["id"])
    http("DELETE", C.env["url"] + "/v3/auth/tokens", headers={
        "X-Auth-Token": C.ks.admin_token(), "X-Subject-Token": revoked})
    expect(C.srv.call("GET", "/v4/k8s_auth/instances", token=revoked), 401,
           "invalid_token")
    expect(C.srv.call("GET", "/v4/k8s_auth/instances", token="x" * 9000),
           401, "invalid_token")


def case_invalid_token_negative_cache():
    bad = "gAAAAABnotavalidtoken" + "A" * 100
    n = C.proxy.count("GET /v3/auth/tokens")
    expect(C.srv.call("GET", "/v4/k8s_auth/instances", token=bad), 401)
    expect(C.srv.call("GET", "/v4/k8s_auth/instances", token=bad), 401)
    assert C.proxy.count("GET /v3/auth/tokens") == n + 1, \
        "the second refusal of the same token asked Keystone again"


def case_cached_validation_does_not_call_keystone():
    tok = keystone_token(C.env["member"], project_id=C.env["project"]["id"])
    n = C.proxy.count("GET /v3/auth/tokens")
    for _ in range(5):
        expect(C.srv.call("GET", "/v4/k8s_auth/instances", token=tok), 403)
    assert C.proxy.count("GET /v3/auth/tokens") == n + 1, \
        "5 uses cost %d validations" % (C.proxy.count("GET /v3/auth/tokens")
                                        - n)
    C.cached_tok = tok


def case_keystone_down_503_for_uncached_token():
    fresh = keystone_token(C.env["member"], project_id=C.env["project"]["id"])
    C.proxy.set_down(True)
    try:
        r = C.srv.call("GET", "/v4/k8s_auth/instances", token=fresh)
        expect(r, 503, "keystone_unavailable")
        assert r.headers.get("Retry-After"), r.headers
        # The cached token still works: no Keystone needed.
        expect(C.srv.call("GET", "/v4/k8s_auth/instances",
                          token=C.cached_tok), 403)
        expect(C.srv.call("GET", "/v4/k8s_auth/instances",
                          token=C.admin_tok), 200)
        # Restriction checks cannot be made either: 503, nothing written.
        r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
            C.env["domain_a"]["id"], C.env["user"]["id"]))
        expect(r, 503, "keystone_unavailable")
        assert r.headers.get("Retry-After"), r.headers
    finally:
        C.proxy.set_down(False)
    # Back up: the same token now validates (a 503 is never cached).
    expect(C.srv.call("GET", "/v4/k8s_auth/instances", token=fresh), 403)


def _keystone_errors(srv):
    r = http("GET", srv.url + "/metrics")
    assert r.status == 200, r
    got = {}
    for line in r.body.decode().splitlines():
        if line.startswith("k8sauth_keystone_errors_total{reason=\""):
            reason = line.split('"')[1]
            got[reason] = float(line.rsplit(" ", 1)[1])
    return got


def case_keystone_errors_counted_by_reason():
    """The outage above shows in /metrics, labelled by what went wrong
    (the proxy cut the connections: connect/other, never a status)."""
    got = _keystone_errors(C.srv)
    assert "server_error" in got and "forbidden" in got, got
    cut = got.get("connect", 0) + got.get("other", 0) + \
        got.get("timeout", 0)
    assert cut >= 2, "Keystone outage not counted: %r" % got


def case_restriction_other_domain_user_400():
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.env["user_b"]["id"],
        C.env["project"]["id"]))
    expect(r, 400, "invalid_restriction")
    assert "user_id" in r.json()["error"]["message"], r


def case_restriction_other_domain_project_400():
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.env["user"]["id"],
        C.env["project_b"]["id"]))
    expect(r, 400, "invalid_restriction")
    assert "project_id" in r.json()["error"]["message"], r


def case_restriction_disabled_user_400():
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.disabled_user, C.env["project"]["id"]))
    expect(r, 400, "invalid_restriction")
    assert "disabled" in r.json()["error"]["message"], r


def case_restriction_unknown_role_and_user_400():
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.env["user"]["id"],
        C.env["project"]["id"], [("0" * 32, "member")]))
    expect(r, 400, "invalid_restriction")
    assert "role" in r.json()["error"]["message"], r
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], "../../v3/projects"))
    expect(r, 400, "invalid_restriction")


def case_restriction_role_names_from_keystone():
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.env["user"]["id"],
        C.env["project"]["id"], [(C.env["roles"]["admin"], "member"),
                                 (C.env["roles"]["member"], None)]))
    expect(r, 201)
    roles = r.json()["restriction"]["roles"]
    assert roles == [{"id": C.env["roles"]["admin"], "name": "admin"},
                     {"id": C.env["roles"]["member"], "name": "member"}], roles
    rid = r.json()["restriction"]["id"]
    # An update that names a foreign project is refused, nothing changes.
    r = C.srv.call("PATCH", "/v4/tokens/restrictions/" + rid, {
        "restriction": {"project_id": C.env["project_b"]["id"]}})
    expect(r, 400, "invalid_restriction")
    r = C.srv.call("GET", "/v4/tokens/restrictions/" + rid)
    assert r.json()["restriction"]["project_id"] == C.env["project"]["id"]
    expect(C.srv.call("DELETE", "/v4/tokens/restrictions/" + rid), 204)


def _login_fixture(user_id, name):
    """A restriction for user_id, an instance, a role; returns the
    instance id."""
    rs = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], user_id, C.env["project"]["id"],
        [(C.env["roles"]["member"], "member")]))
    expect(rs, 201)
    inst = C.srv.call("POST", "/v4/k8s_auth/instances", {"instance": {
        "domain_id": C.env["domain_a"]["id"], "name": name,
        "host": C.k8s.url, "ca_cert": C.k8s.ca_pem,
        "token_reviewer_jwt": C.reviewer}})
    expect(inst, 201)
    iid = inst.json()["instance"]["id"]
    expect(C.srv.call("POST", "/v4/k8s_auth/instances/%s/roles" % iid, {
        "role": {"name": "workload",
                 "bound_service_account_names": ["workload"],
                 "bound_service_account_namespaces": ["interop"],
                 "bound_audience": "keystone",
                 "token_restriction_id": rs.json()["restriction"]["id"]}}),
        201)
    return iid


def _login(iid):
    jwt = C.k8s.call("POST", "/_test/tokens", {
        "namespace": "interop", "service_account": "workload",
        "pod": "workload-0", "audiences": ["keystone"],
        "expires_in": 1800})["token"]
    return http("POST", "%s/v4/k8s_auth/instances/%s/auth"
                % (C.srv.url, iid), {"k8s_role": "workload", "jwt": jwt})


def case_login_then_restricted_token_is_local():
    iid = _login_fixture(C.env["user"]["id"], "login-ok")
    r = _login(iid)
    expect(r, 200)
    tok = r.headers["X-Subject-Token"]
    n = C.proxy.count("GET /v3/auth/tokens")
    # A restricted token of ours: known locally (member: 403, not 401).
    expect(C.srv.call("GET", "/v4/k8s_auth/instances", token=tok), 403)
    assert C.proxy.count("GET /v3/auth/tokens") == n, \
        "a restricted token of this server was sent to Keystone"


def case_login_user_disabled_401():
    u = ks_admin("POST", "/v3/users", {"user": {
        "name": "k8s-svc-disable-me", "domain_id": C.env["domain_a"]["id"],
        "enabled": True, "password": "x-unused-password-1"}})["user"]
    ks_admin("PUT", "/v3/projects/%s/users/%s/roles/%s" % (
        C.env["project"]["id"], u["id"], C.env["roles"]["member"]))
    iid = _login_fixture(u["id"], "login-disabled")
    ks_admin("PATCH", "/v3/users/" + u["id"], {"user": {"enabled": False}})
    n = C.proxy.count("GET /v3/users/")
    r = _login(iid)
    expect(r, 401, "user_disabled")
    assert "X-Subject-Token" not in r.headers
    expect(_login(iid), 401, "user_disabled")
    assert C.proxy.count("GET /v3/users/") == n + 1, \
        "the user lookup was not cached"


def case_project_scoped_role_not_assigned_400():
    """The default payload: Keystone computes the token's roles from its
    role assignments, so a restriction must list only roles the user
    holds on the project (user k8s-svc holds member there, not admin)."""
    r = C.ps.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.env["user"]["id"],
        C.env["project"]["id"], [(C.env["roles"]["member"], None),
                                 (C.env["roles"]["admin"], None)]))
    expect(r, 400, "role_not_assigned")
    msg = r.json()["error"]["message"]
    assert "admin" in msg and C.env["user"]["id"] in msg, msg
    assert C.proxy.count("GET /v3/role_assignments?") >= 1, \
        C.proxy.requests[-5:]


def case_project_scoped_assigned_role_201():
    r = C.ps.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.env["user"]["id"],
        C.env["project"]["id"], [(C.env["roles"]["member"], None)]))
    expect(r, 201)
    rid = r.json()["restriction"]["id"]
    # reader is implied by member: an effective assignment counts ...
    both = [{"id": C.env["roles"]["member"]}, {"id": C.env["roles"]["reader"]}]
    expect(C.ps.call("PATCH", "/v4/tokens/restrictions/" + rid, {
        "restriction": {"roles": both}}), 200)
    # ... but reader alone would hide member, which the token carries.
    r = C.ps.call("PATCH", "/v4/tokens/restrictions/" + rid, {
        "restriction": {"roles": [{"id": C.env["roles"]["reader"]}]}})
    expect(r, 400, "role_not_listed")
    # An update to a role the user lacks is refused, nothing changes.
    r = C.ps.call("PATCH", "/v4/tokens/restrictions/" + rid, {
        "restriction": {"roles": [{"id": C.env["roles"]["manager"]}]}})
    expect(r, 400, "role_not_assigned")
    roles = C.ps.call("GET", "/v4/tokens/restrictions/" + rid).json()[
        "restriction"]["roles"]
    assert [x["id"] for x in roles] == [C.env["roles"]["member"],
                                        C.env["roles"]["reader"]], roles
    expect(C.ps.call("DELETE", "/v4/tokens/restrictions/" + rid), 204)


def _osc_env(clouds_yaml):
    """The environment of an `openstack` run that reads only clouds_yaml."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = clouds_yaml
    return env


def case_agent_clouds_yaml_openstack_cli():
    """`keystone-k8s-auth agent --once` against a server of the default
    payload (project_scoped) that shares Keystone's key repository (the
    interop server: no other Keystone is started) writes a clouds.yaml
    (auth_type v3token) with which python3-openstackclient's `openstack
    token issue` and `openstack project show` succeed against this real
    Keystone (docs/pods.md)."""
    d = tempfile.mkdtemp(prefix="agent-", dir=C.workdir)
    srv = interop.Server(C.procs, C.binary, d, C.env)
    rs = srv.admin_call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.env["user"]["id"],
        C.env["project"]["id"], [(C.env["roles"]["member"], None)]))
    iid = srv.admin_call("POST", "/v4/k8s_auth/instances", {"instance": {
        "domain_id": C.env["domain_a"]["id"], "name": "agent-cluster",
        "host": C.k8s.url, "ca_cert": C.k8s.ca_pem,
        "token_reviewer_jwt": C.reviewer}})["instance"]["id"]
    srv.admin_call("POST", "/v4/k8s_auth/instances/%s/roles" % iid, {
        "role": {"name": "workload",
                 "bound_service_account_names": ["workload"],
                 "bound_service_account_namespaces": ["interop"],
                 "bound_audience": "keystone",
                 "token_restriction_id": rs["restriction"]["id"]}})
    jwt = C.k8s.call("POST", "/_test/tokens", {
        "namespace": "interop", "service_account": "workload",
        "pod": "workload-0", "audiences": ["keystone"],
        "expires_in": 1800})["token"]
    jwt_file = os.path.join(d, "jwt")
    with open(jwt_file, "w") as f:
        f.write(jwt)
    token_file = os.path.join(d, "token")
    clouds = os.path.join(d, "clouds.yaml")
    p = subprocess.run([C.binary, "agent", "--once", "--url", srv.url,
                        "--instance", iid, "--role", "workload",
                        "--jwt-file", jwt_file, "--token-file", token_file,
                        "--clouds-yaml", clouds, "--cloud-name", "k8s",
                        "--auth-url", C.env["url"] + "/v3"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "agent --once: %d %s" % (p.returncode,
                                                      p.stderr)
    with open(token_file) as f:
        tok = f.read()
    assert jwt not in p.stderr and tok not in p.stderr, \
        "the agent logged a secret"
    env = _osc_env(clouds)
    p = subprocess.run(["openstack", "--os-cloud", "k8s", "token", "issue",
                        "-f", "json"], capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 0, "openstack token issue: %s" % p.stderr[-800:]
    issued = json.loads(p.stdout)
    assert issued["project_id"] == C.env["project"]["id"], issued["project_id"]
    assert issued["user_id"] == C.env["user"]["id"], issued["user_id"]
    p = subprocess.run(["openstack", "--os-cloud", "k8s", "project", "show",
                        C.env["project"]["id"], "-f", "json"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, "openstack project show: %s" % p.stderr[-800:]
    assert json.loads(p.stdout)["id"] == C.env["project"]["id"], p.stdout


def case_project_scoped_unlisted_admin_role_400():
    """A project-scoped token carries every role its user holds on the
    project: a restriction listing member for a user who also holds admin
    there would hand out admin past every delegable-role rule (found by an
    attacker's review: a domain manager naming the cloud admin user)."""
    path = "/v3/projects/%s/users/%s/roles/%s" % (
        C.env["project"]["id"], C.env["user"]["id"], C.env["roles"]["admin"])
    ks_admin("PUT", path)
    try:
        for who, tok in (("admin", None), ("manager", C.manager_tok)):
            r = C.ps.call("POST", "/v4/tokens/restrictions", restriction_body(
                C.env["domain_a"]["id"], C.env["user"]["id"],
                C.env["project"]["id"], [(C.env["roles"]["member"], "member")]),
                token=tok)
            expect(r, 400, "role_not_listed")
            assert "admin" in r.json()["error"]["message"], (who, r.json())
    finally:
        ks_admin("DELETE", path)


def case_restricted_payload_skips_assignment_check():
    """restricted tokens carry the restriction's roles: no assignment
    is needed (keystone-ng validates them), so none is asked for."""
    n = C.proxy.count("GET /v3/role_assignments?")
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.env["user"]["id"],
        C.env["project"]["id"], [(C.env["roles"]["manager"], None)]))
    expect(r, 201)
    assert C.proxy.count("GET /v3/role_assignments?") == n
    expect(C.srv.call("DELETE", "/v4/tokens/restrictions/"
                      + r.json()["restriction"]["id"]), 204)


def case_revoked_token_refused_within_default_cache_ttl():
    """[keystone] cache_ttl defaults to 30 s: a Keystone token revoked
    after it was validated (and cached) here is refused within that."""
    tok = keystone_token(C.env["member"], project_id=C.env["project"]["id"])
    expect(C.ps.call("GET", "/v4/k8s_auth/instances", token=tok), 403)
    http("DELETE", C.env["url"] + "/v3/auth/tokens", headers={
        "X-Auth-Token": C.ks.admin_token(), "X-Subject-Token": tok})
    took = _refused_within(C.ps, tok, 30 + 5)
    assert took > 5, "refused after %.1f s: not the cache TTL at work " \
        "(revocation_interval is 0 here)" % took


def _refused_within(srv, tok, seconds):
    """Poll with tok until 401; fail when it still works after seconds."""
    t0 = time.monotonic()
    while True:
        r = srv.call("GET", "/v4/k8s_auth/instances", token=tok)
        if r.status == 401:
            expect(r, 401, "invalid_token")
            return time.monotonic() - t0
        if r.status != 503:     # 503: the loaded test Keystone timed out
            expect(r, 403)
        assert time.monotonic() - t0 < seconds, \
            "a revoked token still works %.0f s later" % (
                time.monotonic() - t0)
        time.sleep(0.5)


def _validated(srv, tok):
    """First use of tok (Keystone validates it, the answer is cached); the
    test Keystone on a loaded machine may time out: retried then."""
    for _ in range(3):
        r = srv.call("GET", "/v4/k8s_auth/instances", token=tok)
        if r.status != 503:
            break
        time.sleep(2)
    expect(r, 403)


def case_revocation_events_drop_a_revoked_token():
    """cache_ttl 3600, revocation_interval 5: a token revoked in Keystone
    is refused within seconds, through OS-REVOKE events."""
    tok = keystone_token(C.env["member"], project_id=C.env["project"]["id"])
    _validated(C.rv, tok)
    n = C.proxy.count("GET /v3/auth/tokens")
    expect(C.rv.call("GET", "/v4/k8s_auth/instances", token=tok), 403)
    assert C.proxy.count("GET /v3/auth/tokens") == n, "not cached"
    http("DELETE", C.env["url"] + "/v3/auth/tokens", headers={
        "X-Auth-Token": C.ks.admin_token(), "X-Subject-Token": tok})
    took = _refused_within(C.rv, tok, 25)
    assert C.proxy.count("GET /v3/OS-REVOKE/events") >= 1, \
        C.proxy.requests[-5:]
    print("# revoked token refused after %.1f s" % took)


def case_revocation_events_drop_a_disabled_users_tokens():
    """A user disabled in Keystone: a user_id event drops its tokens."""
    u = ks_admin("POST", "/v3/users", {"user": {
        "name": "k8s-revoke-me", "domain_id": C.env["domain_a"]["id"],
        "enabled": True, "password": "x-unused-password-2"}})["user"]
    ks_admin("PUT", "/v3/projects/%s/users/%s/roles/%s" % (
        C.env["project"]["id"], u["id"], C.env["roles"]["member"]))
    tok = keystone_token(dict(u, password="x-unused-password-2"),
                         project_id=C.env["project"]["id"])
    other = keystone_token(C.env["member"],
                           project_id=C.env["project"]["id"])
    for t in (tok, other):
        _validated(C.rv, t)
    ks_admin("PATCH", "/v3/users/" + u["id"], {"user": {"enabled": False}})
    _refused_within(C.rv, tok, 25)
    n = C.proxy.count("GET /v3/auth/tokens")
    expect(C.rv.call("GET", "/v4/k8s_auth/instances", token=other), 403)
    assert C.proxy.count("GET /v3/auth/tokens") == n, \
        "another user's cached token was dropped too"


# ---- the policy engine's default rules (DESIGN.md) -------------------------

def case_manager_manages_domain_a():
    a = C.env["domain_a"]["id"]
    tok = C.manager_tok
    r = C.srv.call("POST", "/v4/k8s_auth/instances",
                   instance_body(a, "by-manager"), token=tok)
    expect(r, 201)
    iid = r.json()["instance"]["id"]
    expect(C.srv.call("PATCH", "/v4/k8s_auth/instances/" + iid,
                      {"instance": {"name": "by-manager-2"}}, token=tok), 200)
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        a, C.env["user"]["id"], C.env["project"]["id"],
        [(C.env["roles"]["member"], "member")]), token=tok)
    expect(r, 201)
    rid = r.json()["restriction"]["id"]
    r = C.srv.call("POST", "/v4/k8s_auth/instances/%s/roles" % iid, {
        "role": {"name": "mgr-role", "bound_service_account_names": ["a"],
                 "bound_service_account_namespaces": ["b"],
                 "token_restriction_id": rid}}, token=tok)
    expect(r, 201)
    role_id = r.json()["role"]["id"]
    expect(C.srv.call("PATCH", "/v4/k8s_auth/instances/%s/roles/%s"
                      % (iid, role_id), {"role": {"token_ttl": 600}},
                      token=tok), 200)
    expect(C.srv.call("PATCH", "/v4/tokens/restrictions/" + rid,
                      {"restriction": {"allow_renew": True}}, token=tok), 200)
    expect(C.srv.call("DELETE", "/v4/k8s_auth/instances/%s/roles/%s"
                      % (iid, role_id), token=tok), 204)
    expect(C.srv.call("DELETE", "/v4/tokens/restrictions/" + rid,
                      token=tok), 204)
    expect(C.srv.call("DELETE", "/v4/k8s_auth/instances/" + iid,
                      token=tok), 204)


def case_manager_cannot_smuggle_admin_role():
    # The admin role's id labelled "member": Keystone's name decides.
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.env["user"]["id"],
        C.env["project"]["id"], [(C.env["roles"]["admin"], "member")]),
        token=C.manager_tok)
    expect(r, 403, "role_not_delegable")


def case_manager_cannot_use_admin_granting_restriction():
    # An admin made a restriction in A that grants admin: a manager of A
    # may neither bind a k8s role to it nor change who it is for.
    a = C.env["domain_a"]["id"]
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        a, C.env["user"]["id"], C.env["project"]["id"],
        [(C.env["roles"]["admin"], "admin")]))
    expect(r, 201)
    rid = r.json()["restriction"]["id"]
    r = C.srv.call("POST", "/v4/k8s_auth/instances/%s/roles" % C.inst_a,
                   {"role": {"name": "grab-admin",
                             "bound_service_account_names": ["*"],
                             "bound_service_account_namespaces": ["*"],
                             "token_restriction_id": rid}},
                   token=C.manager_tok)
    expect(r, 403, "role_not_delegable")
    r = C.srv.call("PATCH", "/v4/tokens/restrictions/%s" % rid,
                   {"restriction": {"project_id": C.env["project"]["id"]}},
                   token=C.manager_tok)
    expect(r, 403, "role_not_delegable")
    expect(C.srv.call("DELETE", "/v4/tokens/restrictions/%s" % rid), 204)


def case_manager_forbidden_in_domain_b():
    b = C.env["domain_b"]["id"]
    tok = C.manager_tok
    expect(C.srv.call("POST", "/v4/k8s_auth/instances",
                      instance_body(b, "mgr-in-b"), token=tok), 403)
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        b, C.env["user_b"]["id"], C.env["project_b"]["id"]), token=tok)
    expect(r, 403)
    expect(C.srv.call("GET", "/v4/k8s_auth/instances?domain_id=" + b,
                      token=tok), 403)
    expect(C.srv.call("GET", "/v4/k8s_auth/instances/" + C.inst_b,
                      token=tok), 403)


def case_manager_cannot_probe_other_domain_restriction():
    # A role naming domain B's restriction answers like an unknown id, so
    # a manager of A learns nothing about B's restriction ids.
    b = C.env["domain_b"]["id"]
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        b, C.env["user_b"]["id"], C.env["project_b"]["id"],
        [(C.env["roles"]["member"], "member")]))
    expect(r, 201)
    rid_b = r.json()["restriction"]["id"]
    path = "/v4/k8s_auth/instances/%s/roles" % C.inst_a

    def answer(rid):
        r = C.srv.call("POST", path, {"role": {
            "name": "probe", "bound_service_account_names": ["a"],
            "bound_service_account_namespaces": ["b"],
            "token_restriction_id": rid}}, token=C.manager_tok)
        expect(r, 400, "invalid_restriction")
        return r.json()["error"]["message"].replace(rid, "ID")

    unknown = answer("f" * 32)
    foreign = answer(rid_b)
    assert foreign == unknown, (foreign, unknown)


def case_manager_foreign_user_refused():
    # A manager of A naming domain B's user in an A restriction: the
    # policy lets a manager of A write in A, so Keystone's answer is the
    # refusal (400); nothing is written.
    before = C.srv.call("GET", "/v4/tokens/restrictions").json()
    r = C.srv.call("POST", "/v4/tokens/restrictions", restriction_body(
        C.env["domain_a"]["id"], C.env["user_b"]["id"],
        C.env["project"]["id"]), token=C.manager_tok)
    expect(r, 400, "invalid_restriction")
    after = C.srv.call("GET", "/v4/tokens/restrictions").json()
    assert len(after["restrictions"]) == len(before["restrictions"])


def case_reader_lists_and_shows_in_a_only():
    a = C.env["domain_a"]["id"]
    tok = C.reader_tok
    r = C.srv.call("GET", "/v4/k8s_auth/instances?domain_id=" + a,
                   token=tok)
    expect(r, 200)
    ids = [i["id"] for i in r.json()["instances"]]
    assert C.inst_a in ids, ids
    expect(C.srv.call("GET", "/v4/k8s_auth/instances/" + C.inst_a,
                      token=tok), 200)
    expect(C.srv.call("GET", "/v4/tokens/restrictions?domain_id=" + a,
                      token=tok), 200)


def case_reader_cannot_write_or_see_b():
    a, b = C.env["domain_a"]["id"], C.env["domain_b"]["id"]
    tok = C.reader_tok
    expect(C.srv.call("POST", "/v4/k8s_auth/instances",
                      instance_body(a, "by-reader"), token=tok), 403)
    expect(C.srv.call("PATCH", "/v4/k8s_auth/instances/" + C.inst_a,
                      {"instance": {"name": "x"}}, token=tok), 403)
    expect(C.srv.call("DELETE", "/v4/k8s_auth/instances/" + C.inst_a,
                      token=tok), 403)
    expect(C.srv.call("GET", "/v4/k8s_auth/instances?domain_id=" + b,
                      token=tok), 403)
    expect(C.srv.call("GET", "/v4/k8s_auth/instances/" + C.inst_b,
                      token=tok), 403)


# ---- trust boundaries (API.md §7) ------------------------------------------

def _restriction(roles, token=None):
    """POST a restriction of domain A for k8s-svc with roles [(id, name)]
    (name None: by id alone)."""
    body = restriction_body(C.env["domain_a"]["id"], C.env["user"]["id"],
                            C.env["project"]["id"])
    body["restriction"]["roles"] = [
        {"id": rid} if name is None else {"id": rid, "name": name}
        for rid, name in roles]
    return C.srv.call("POST", "/v4/tokens/restrictions", body, token=token)


def _message(r):
    return (r.json() or {}).get("error", {}).get("message", "")


def case_restriction_roles_by_id_alone_named_by_keystone():
    roles = C.env["roles"]
    r = _restriction([(roles["member"], None), (roles["reader"], None)],
                     token=C.manager_tok)
    expect(r, 201)
    got = r.json()["restriction"]["roles"]
    assert got == [{"id": roles["member"], "name": "member"},
                   {"id": roles["reader"], "name": "reader"}], got
    expect(C.srv.call("DELETE", "/v4/tokens/restrictions/"
                      + r.json()["restriction"]["id"], token=C.manager_tok),
           204)
    # admin by id alone, and admin's id under a delegable name: Keystone's
    # name decides, and the refusal names it.
    for name in (None, "member", "MEMBER"):
        r = _restriction([(roles["admin"], name)], token=C.manager_tok)
        expect(r, 403, "role_not_delegable")
        assert "admin" in _message(r), r


def case_non_delegable_roles_manager_403_admin_201():
    roles = C.env["roles"]
    for name in ("service", "Admin", "k8s-implies-admin", "admin"):
        for sent in (name, None):
            r = _restriction([(roles["member"], "member"),
                              (roles[name], sent)], token=C.manager_tok)
            expect(r, 403, "role_not_delegable")
            assert name in _message(r), (name, r)
        r = _restriction([(roles[name], None)])
        expect(r, 201)
        rs = r.json()["restriction"]
        assert rs["roles"] == [{"id": roles[name], "name": name}], rs
        # A manager may not add it by PATCH to a restriction of theirs...
        r = _restriction([(roles["member"], None)], token=C.manager_tok)
        expect(r, 201)
        mine = r.json()["restriction"]["id"]
        r = C.srv.call("PATCH", "/v4/tokens/restrictions/" + mine,
                       {"restriction": {"roles": [{"id": roles[name]}]}},
                       token=C.manager_tok)
        expect(r, 403, "role_not_delegable")
        # ...nor change the admin's.
        r = C.srv.call("PATCH", "/v4/tokens/restrictions/" + rs["id"],
                       {"restriction": {"allow_renew": True}},
                       token=C.manager_tok)
        expect(r, 403, "role_not_delegable")
        for rid in (mine, rs["id"]):
            expect(C.srv.call("DELETE", "/v4/tokens/restrictions/" + rid),
                   204)
    # What implies only delegable roles stays delegable (manager implies
    # member implies reader in Keystone's bootstrap, where it exists).
    r = _restriction([(roles["manager"], None)], token=C.manager_tok)
    expect(r, 201)
    expect(C.srv.call("DELETE", "/v4/tokens/restrictions/"
                      + r.json()["restriction"]["id"]), 204)


def _admin_bound_instance(name):
    """What an admin sets up for a CI service account: a restriction
    granting admin, an instance of domain A with a reviewer token and a
    role binding the workload to it.  Returns the instance id."""
    r = _restriction([(C.env["roles"]["admin"], None)])
    expect(r, 201)
    inst = C.srv.call("POST", "/v4/k8s_auth/instances", {"instance": {
        "domain_id": C.env["domain_a"]["id"], "name": name,
        "host": C.k8s.url, "ca_cert": C.k8s.ca_pem,
        "token_reviewer_jwt": C.reviewer}})
    expect(inst, 201)
    iid = inst.json()["instance"]["id"]
    expect(C.srv.call("POST", "/v4/k8s_auth/instances/%s/roles" % iid, {
        "role": {"name": "workload",
                 "bound_service_account_names": ["workload"],
                 "bound_service_account_namespaces": ["interop"],
                 "bound_audience": "keystone",
                 "token_restriction_id": r.json()["restriction"]["id"]}}),
        201)
    return iid


def case_repoint_attack_instance_protected():
    """Issue 10, hole 1: the manager of A must not repoint an instance
    whose role grants admin (to a cluster that vouches for anyone)."""
    iid = _admin_bound_instance("ci-cluster")
    expect(_login(iid), 200)
    path = "/v4/k8s_auth/instances/" + iid
    before = C.srv.call("GET", path).json()["instance"]
    attacker = "https://127.0.0.1:%d" % interop.free_port()
    for patch in ({"host": attacker}, {"ca_cert": C.other_ca},
                  {"host": attacker, "ca_cert": C.other_ca,
                   "token_reviewer_jwt": C.reviewer},
                  {"ca_cert": None}, {"token_reviewer_jwt": None},
                  {"token_reviewer_jwt": "a.b.c"},
                  {"disable_local_ca_jwt": True}):
        r = C.srv.call("PATCH", path, {"instance": patch},
                       token=C.manager_tok)
        expect(r, 403, "instance_protected")
        r = C.srv.call("PUT", path, {"instance": patch}, token=C.manager_tok)
        expect(r, 403, "instance_protected")
    after = C.srv.call("GET", path).json()["instance"]
    assert after == before, (before, after)
    # Other fields stay the manager's to change.
    expect(C.srv.call("PATCH", path, {"instance": {"name": "ci-renamed"}},
                      token=C.manager_tok), 200)
    # Binding another role to the admin's restriction stays admin-only.
    role = C.srv.call("GET", path + "/roles/workload").json()["role"]
    r = C.srv.call("POST", path + "/roles", {"role": {
        "name": "grab", "bound_service_account_names": ["*"],
        "bound_service_account_namespaces": ["*"],
        "token_restriction_id": role["token_restriction_id"]}},
        token=C.manager_tok)
    expect(r, 403, "role_not_delegable")
    r = C.srv.call("PATCH", path + "/roles/workload", {"role": {
        "bound_service_account_names": ["*"]}}, token=C.manager_tok)
    expect(r, 403, "role_not_delegable")
    # An admin may repoint it; the reviewer token does not follow.
    r = C.srv.call("PATCH", path, {"instance": {"host": attacker}})
    expect(r, 200)
    assert r.json()["instance"]["token_reviewer_jwt_set"] is False, r


def case_unbind_then_repoint_refused():
    """The side door around instance_protected: the manager of A moves
    the admin's role to a plain restriction (or deletes it), the instance
    is no longer protected, the manager repoints it, and the admin's
    automation binds the role again.  Unbinding is the admin's."""
    iid = _admin_bound_instance("ci-cluster-2")
    path = "/v4/k8s_auth/instances/%s/roles/workload" % iid
    plain = _restriction([(C.env["roles"]["member"], None)],
                         token=C.manager_tok)
    expect(plain, 201)
    r = C.srv.call("PATCH", path, {"role": {
        "token_restriction_id": plain.json()["restriction"]["id"]}},
        token=C.manager_tok)
    expect(r, 403, "role_not_delegable")
    expect(C.srv.call("DELETE", path, token=C.manager_tok), 403,
           "role_not_delegable")
    attacker = "https://127.0.0.1:%d" % interop.free_port()
    expect(C.srv.call("PATCH", "/v4/k8s_auth/instances/" + iid,
                      {"instance": {"host": attacker}},
                      token=C.manager_tok), 403, "instance_protected")
    expect(C.srv.call("DELETE", path), 204)


def case_unprotected_instance_repoint_clears_reviewer():
    """On an instance binding only delegable roles the manager may move
    the host; the reviewer token is cleared, never sent to the new host."""
    r = _restriction([(C.env["roles"]["member"], None)], token=C.manager_tok)
    expect(r, 201)
    inst = C.srv.call("POST", "/v4/k8s_auth/instances", {"instance": {
        "domain_id": C.env["domain_a"]["id"], "name": "mgr-cluster",
        "host": C.k8s.url, "ca_cert": C.k8s.ca_pem,
        "token_reviewer_jwt": C.reviewer}}, token=C.manager_tok)
    expect(inst, 201)
    iid = inst.json()["instance"]["id"]
    expect(C.srv.call("POST", "/v4/k8s_auth/instances/%s/roles" % iid, {
        "role": {"name": "app", "bound_service_account_names": ["app"],
                 "bound_service_account_namespaces": ["app"],
                 "token_restriction_id": r.json()["restriction"]["id"]}},
        token=C.manager_tok), 201)
    for patch in ({"host": "https://127.0.0.1:%d" % interop.free_port()},
                  {"ca_cert": C.other_ca}):
        expect(C.srv.call("PATCH", "/v4/k8s_auth/instances/" + iid,
                          {"instance": {"token_reviewer_jwt": C.reviewer}},
                          token=C.manager_tok), 200)
        r = C.srv.call("PATCH", "/v4/k8s_auth/instances/" + iid,
                       {"instance": patch}, token=C.manager_tok)
        expect(r, 200)
        assert r.json()["instance"]["token_reviewer_jwt_set"] is False, r


def case_allowed_hosts_for_non_admins():
    a = C.env["domain_a"]["id"]

    def create(host, token):
        return C.srv.call("POST", "/v4/k8s_auth/instances", {"instance": {
            "domain_id": a, "host": host}}, token=token)

    r = create("https://10.9.9.9:6443", C.manager_tok)
    expect(r, 403, "host_not_allowed")
    assert "10.9.9.9" in _message(r), r
    r = create("https://api.k8s-allowed.test:6443", C.manager_tok)
    expect(r, 201)
    iid = r.json()["instance"]["id"]
    r = C.srv.call("PATCH", "/v4/k8s_auth/instances/" + iid, {"instance": {
        "host": "https://10.9.9.9:6443"}}, token=C.manager_tok)
    expect(r, 403, "host_not_allowed")
    # An admin may point anywhere (but link-local); the manager may still
    # edit the rest of that instance.
    r = create("https://10.9.9.9:6443", C.admin_tok)
    expect(r, 201)
    iid = r.json()["instance"]["id"]
    expect(C.srv.call("PATCH", "/v4/k8s_auth/instances/" + iid, {
        "instance": {"name": "admins-host"}}, token=C.manager_tok), 200)
    for host in ("https://169.254.169.254", "https://[fe80::1]:6443"):
        expect(create(host, C.admin_tok), 400, "invalid_value")
        expect(create(host, C.manager_tok), 400, "invalid_value")
    # A name the globs do not cover is judged by the address connected
    # to: localhost reaches 127.0.0.1, which the CIDR allows.
    rs = _restriction([(C.env["roles"]["member"], None)],
                      token=C.manager_tok)
    expect(rs, 201)
    r = C.srv.call("POST", "/v4/k8s_auth/instances", {"instance": {
        "domain_id": a, "name": "by-name",
        "host": C.k8s.url.replace("127.0.0.1", "localhost"),
        "ca_cert": C.k8s.ca_pem, "token_reviewer_jwt": C.reviewer}},
        token=C.manager_tok)
    expect(r, 201)
    iid = r.json()["instance"]["id"]
    expect(C.srv.call("POST", "/v4/k8s_auth/instances/%s/roles" % iid, {
        "role": {"name": "workload",
                 "bound_service_account_names": ["workload"],
                 "bound_service_account_namespaces": ["interop"],
                 "bound_audience": "keystone",
                 "token_restriction_id": rs.json()["restriction"]["id"]}},
        token=C.manager_tok), 201)
    expect(_login(iid), 200)
# ---- the service's own credential refused (API.md section 7) --------------

def _weak_server(name, secret=None):
    """A second keystone-k8s-auth whose application credential belongs to
    a user with only `member` on the service project (or, with secret, the
    real credential's id with a wrong secret)."""
    env = dict(C.env)
    if secret is None:
        fx = fixtures.Fixtures(C.env["url"], C.ks.admin_token())
        proj = C.env["service_project"]["id"]
        user = fx.user("k8s-weak-" + name, "default", proj)
        fx.grant_project(proj, user["id"], C.env["roles"]["member"])
        env["application_credential"] = fixtures.app_credential(
            C.env["url"], user, proj)
    else:
        env["application_credential"] = dict(
            C.env["application_credential"], secret=secret)
    d = os.path.join(C.workdir, "server-" + name)
    os.makedirs(d, exist_ok=True)
    return Server(C.procs, C.binary, d, env, C.proxy)


def _expect_forbidden(r, names):
    expect(r, 502, "keystone_forbidden")
    msg = r.json()["error"]["message"]
    assert names in msg, "message %r does not say %r" % (msg, names)
    assert "Retry-After" not in r.headers, r.headers


def _readyz_credential(srv):
    r = http("GET", srv.url + "/readyz")
    expect(r, 200)
    return r.json().get("keystone", {})


def case_service_user_lacking_role_502():
    srv = _weak_server("member")
    body = restriction_body(C.env["domain_a"]["id"], C.env["user"]["id"],
                            C.env["project"]["id"],
                            [(C.env["roles"]["member"], None)])
    _expect_forbidden(srv.call("POST", "/v4/tokens/restrictions", body),
                      "lacks the role assignment")
    ks = _readyz_credential(srv)
    assert ks.get("credential") == "refused", ks
    assert "lacks the role assignment" in ks.get("message", ""), ks
    # The same user cannot validate admin tokens either: 502, not 503.
    _expect_forbidden(srv.call("GET", "/v4/k8s_auth/instances",
                               token=C.ks.admin_token()),
                      "X-Auth-Token")
    # The fixture's service user (admin on the service project) can.
    expect(C.srv.call("POST", "/v4/tokens/restrictions", body), 201)
    assert _readyz_credential(C.srv).get("credential") == "ok"


def case_service_credential_refused_502():
    srv = _weak_server("badsecret", secret="not-the-secret")
    before = _readyz_credential(srv)
    assert before.get("credential") in ("unknown", "refused"), before
    body = restriction_body(C.env["domain_a"]["id"], C.env["user"]["id"],
                            C.env["project"]["id"])
    _expect_forbidden(srv.call("POST", "/v4/tokens/restrictions", body),
                      "application_credential_id")
    ks = _readyz_credential(srv)
    assert ks.get("credential") == "refused", ks
    assert "application credential" in ks.get("message", ""), ks


# ---- set-up and the runner --------------------------------------------------

def _other_ca(workdir):
    """A self-signed CA certificate (PEM) that signs nothing we serve."""
    import subprocess
    key = os.path.join(workdir, "other-ca.key")
    crt = os.path.join(workdir, "other-ca.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "2",
                    "-subj", "/CN=k8sauth-other-ca"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(crt) as f:
        return f.read()


def setup(workdir, res):
    status, env = interop.start_keystone(workdir)
    if status == interop.SKIP_STATUS:
        return "skip"
    if status != 0:
        raise RuntimeError("keystone-env.sh start: status %d\n%s" % (
            status, interop.tail(os.path.join(workdir, "keystone-env.log"),
                                 40)))
    C.env = env
    C.ks = interop.Keystone(env)
    binary, fake = interop.build(res, workdir)
    if not binary or not fake:
        raise RuntimeError("build failed")
    C.binary, C.workdir = binary, workdir
    d = os.path.join(workdir, "server")
    os.makedirs(d, exist_ok=True)
    C.procs = interop.Procs()
    C.proxy = Proxy(env["port"])
    C.k8s = interop.FakeK8s(C.procs, fake, d)
    # The cases below mean the restricted payload (roles from the
    # restriction, tokens recognised locally); C.ps runs the default.
    # Only C.rv polls revocation events: the test Keystone has two
    # single-threaded workers, and the cases below count its requests.
    C.srv = Server(C.procs, binary, d, env, C.proxy, payload="restricted",
                   keystone_extra="[keystone]\nrevocation_interval = 0\n")
    d_ps = os.path.join(workdir, "server-ps")
    os.makedirs(d_ps, exist_ok=True)
    # The default payload; revocation events off so that the cache_ttl
    # case sees the TTL alone.
    C.ps = Server(C.procs, binary, d_ps, env, C.proxy,
                  keystone_extra="[keystone]\nrevocation_interval = 0\n")
    # An hour of cache: only the revocation events can refuse in time.
    d_rv = os.path.join(workdir, "server-rv")
    os.makedirs(d_rv, exist_ok=True)
    C.rv = Server(C.procs, binary, d_rv, env, C.proxy,
                  keystone_extra="[keystone]\ncache_ttl = 3600\n"
                  "revocation_interval = 5\n")
    k8s = C.k8s
    k8s.call("POST", "/_test/serviceaccounts",
             {"namespace": "interop", "name": "workload"})
    k8s.call("POST", "/_test/pods", {"namespace": "interop",
                                     "name": "workload-0",
                                     "service_account": "workload",
                                     "node": "node-1"})
    k8s.call("POST", "/_test/serviceaccounts",
             {"namespace": "kube-system", "name": "keystone-reviewer"})
    k8s.call("POST", "/_test/reviewers",
             {"namespace": "kube-system", "name": "keystone-reviewer"})
    C.other_ca = _other_ca(workdir)
    C.reviewer = k8s.call("POST", "/_test/tokens", {
        "namespace": "kube-system", "service_account": "keystone-reviewer",
        "expires_in": 86400})["token"]
    C.admin_tok = C.ks.admin_token()
    C.manager_tok = keystone_token(env["manager"],
                                   domain_id=env["domain_a"]["id"])
    C.reader_tok = keystone_token(env["reader"],
                                  domain_id=env["domain_a"]["id"])
    C.member_tok = keystone_token(env["member"],
                                  project_id=env["project"]["id"])
    C.disabled_user = ks_admin("POST", "/v3/users", {"user": {
        "name": "k8s-disabled", "domain_id": env["domain_a"]["id"],
        "enabled": False}})["user"]["id"]
    for dom, attr in (("domain_a", "inst_a"), ("domain_b", "inst_b")):
        r = C.srv.call("POST", "/v4/k8s_auth/instances",
                       instance_body(env[dom]["id"], "fixture-" + dom))
        expect(r, 201)
        setattr(C, attr, r.json()["instance"]["id"])
    return "ok"


def tests():
    return [f for n, f in sorted(globals().items(),
                                 key=lambda kv: getattr(
                                     getattr(kv[1], "__code__", None),
                                     "co_firstlineno", 0))
            if n.startswith("case_") and callable(f)]


def run_suite():
    """Every case against a fresh Keystone; (Results, None), or (None,
    reason) when keystone is not installed here."""
    res = interop.Results()
    workdir = tempfile.mkdtemp(prefix="k8sauth-keystone-")
    print("# state in %s" % workdir, flush=True)
    skip = None
    try:
        if setup(workdir, res) == "skip":
            print(interop.tail(os.path.join(workdir, "keystone-env.log"), 5))
            skip = ("keystone is not installed (./configure --install-deps "
                    "installs it)")
        for fn in tests() if skip is None else []:
            try:
                fn()
                res.check(fn.__name__, True)
            except Exception as err:  # noqa: BLE001 - report and go on
                res.fail(fn.__name__, "%s: %s" % (type(err).__name__, err))
    except (RuntimeError, OSError, ValueError, KeyError,
            AssertionError) as err:
        res.fail("set-up", str(err))
    finally:
        status = C.procs.stop_all() if hasattr(C, "procs") else {}
        for name in ("ps", "rv"):
            if hasattr(C, name):
                s = getattr(C, name)
                rc = status.get(s.proc.pid)
                res.check("server %s exits 0 on SIGTERM" % name, rc == 0,
                          "status %s\n%s" % (rc, interop.tail(s.log)))
        if hasattr(C, "srv"):
            rc = status.get(C.srv.proc.pid)
            res.check("keystone-k8s-auth exits 0 on SIGTERM", rc == 0,
                      "status %s\n%s" % (rc, interop.tail(C.srv.log)))
            log = open(C.srv.log, errors="replace").read()
            secret = C.env["application_credential"]["secret"]
            res.check("the server log holds no secret or token",
                      secret not in log and C.admin_tok not in log
                      and C.member_tok not in log
                      and "AddressSanitizer" not in log
                      and "runtime error:" not in log, "see " + C.srv.log)
        interop.stop_keystone(workdir)
    if skip is not None:
        shutil.rmtree(workdir, ignore_errors=True)
        return None, skip
    if res.failed == 0 and not os.environ.get("KEEP_INTEROP_DIR"):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print("# state kept in %s" % workdir)
    return res, None


def main():
    res, skip = run_suite()
    if skip is not None:
        if interop.no_skip():
            print("FAIL keystone: skipped, %s, and K8SAUTH_TEST_NO_SKIP is "
                  "set" % skip)
            print("0 passed, 1 failed, 0 skipped")
            return 1
        print("SKIP keystone: %s" % skip)
        print("0 passed, 0 failed, 1 skipped")
        return 0
    print("%d passed, %d failed, 0 skipped" % (res.passed, res.failed))
    return 1 if res.failed or res.passed == 0 else 0


def test_keystone_suite():
    """For tests/integration/runner.py: the whole suite above, whose own
    PASS/FAIL lines appear in the output; every case is counted, and a
    missing Keystone is a skip (a failure in CI), never a pass."""
    import harness  # tests/integration, on the path under the runner
    res, skip = run_suite()
    if skip is not None:
        raise harness.Skip(skip)
    return harness.Counts(res.passed, res.failed)


if __name__ == "__main__":
    sys.exit(main())
