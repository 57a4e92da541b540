#!/usr/bin/env python3
"""Interoperability with the real Keystone of the distribution.

Starts a throw-away Keystone (Debian 12's `keystone` package, 22.0.x, served
by uWSGI on loopback: tests/interop/keystone-env.sh), then:

  (a) checks the environment itself: a password token of the service user
      validates at Keystone (and a garbled one does not);
  (b) the interop check proper: keystone-k8s-auth, configured with
      `[token] payload = project_scoped` and Keystone's own key repository,
      exchanges a service-account JWT from the project's test Kubernetes API
      server (tests/k8s/fake-k8s) for a token, and Keystone's
      GET /v3/auth/tokens accepts it: right user, project, role `member`,
      methods ["mapped"].  Then `keystone-manage fernet_rotate` runs on the
      Keystone side: the next token must be signed with the new primary key
      (the server re-read the repository) and still validate, and once the
      old key is purged the old token must stop validating.
  (c) docs/examples/keystone-policy-exchange.yaml stops an exchanged token
      from creating application credentials, trusts, EC2 credentials;
  (d) the service user's least privilege: which role set on project
      `service` allows which of the server's Keystone calls, and the server
      itself on the narrowest working set (docs/deploy.md).

Python 3 standard library only.  Prints PASS/FAIL lines and a closing
`interop: N passed, N failed, N skipped`; exits non-zero on failure.  The
only skip: keystone is not installed (keystone-env.sh exits 77; the tests
install nothing, `./configure --install-deps` does), then it prints SKIP
and `interop: 0 passed, 0 failed, 1 skipped` and exits 0; with
K8SAUTH_TEST_NO_SKIP=1 (CI) that skip is a failure (exit 1).

Environment: K8SAUTH_BIN (server binary, default ./keystone-k8s-auth, built
when missing), FAKE_K8S (default tests/k8s/fake-k8s, built when missing),
KEEP_INTEROP_DIR=1 keeps the state directory even on success.
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENV_SH = os.path.join(ROOT, "tests", "interop", "keystone-env.sh")
HTTP_TIMEOUT = 30
SKIP_STATUS = 77


def no_skip():
    """Is a skip a failure (K8SAUTH_TEST_NO_SKIP set, as CI does)?"""
    return os.environ.get("K8SAUTH_TEST_NO_SKIP", "") not in ("", "0")


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print("PASS %s" % name, flush=True)
        else:
            self.failed += 1
            print("FAIL %s%s" % (name, ": " + detail if detail else ""),
                  flush=True)
        return ok

    def fail(self, name, detail):
        return self.check(name, False, detail)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return "HTTP %d %s" % (self.status,
                               self.body[:300].decode("utf-8", "replace"))


def http(method, url, body=None, headers=None, context=None):
    """One request; HTTP errors are answers, not exceptions."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT,
                                    context=context) as resp:
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, err.headers, err.read())


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(cmd, log, **kw):
    """Run a command with its output appended to LOG; returns the status."""
    with open(log, "ab") as out:
        out.write(("+ %s\n" % " ".join(cmd)).encode())
        out.flush()
        return subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT,
                               **kw)


def tail(path, lines=25):
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("    | " + l for l in data[-lines:])
    except OSError:
        return "    | (no %s)" % path


# ---- Fernet envelope (HMAC only: the standard library has no AES) --------

def fernet_bytes(token):
    token = token.strip()
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def fernet_signing_key(repo, name):
    with open(os.path.join(repo, name), "rb") as f:
        raw = base64.urlsafe_b64decode(f.read().strip())
    return raw[:16]


def fernet_signer(repo, token):
    """Name of the key file whose signing half authenticates TOKEN, or None."""
    data = fernet_bytes(token)
    if len(data) < 1 + 8 + 16 + 16 + 32 or data[0] != 0x80:
        return None
    for name in sorted(os.listdir(repo)):
        if not name.isdigit():
            continue
        mac = hmac.new(fernet_signing_key(repo, name), data[:-32],
                       hashlib.sha256).digest()
        if hmac.compare_digest(mac, data[-32:]):
            return name
    return None


def fernet_timestamp(token):
    return int.from_bytes(fernet_bytes(token)[1:9], "big")


def primary_key(repo):
    return str(max(int(n) for n in os.listdir(repo) if n.isdigit()))


# ---- the Keystone side ----------------------------------------------------

class Keystone:
    def __init__(self, env):
        self.env = env
        self.url = env["url"]
        self._admin = None

    def password_token(self, user_id, password, project_id):
        return http("POST", self.url + "/v3/auth/tokens", {"auth": {
            "identity": {"methods": ["password"], "password": {
                "user": {"id": user_id, "password": password}}},
            "scope": {"project": {"id": project_id}}}})

    def admin_token(self):
        if self._admin is None:
            a = self.env["admin"]
            r = self.password_token(a["user_id"], a["password"],
                                    a["project_id"])
            if r.status != 201:
                raise RuntimeError("admin token: %r" % r)
            self._admin = r.headers["X-Subject-Token"]
        return self._admin

    def validate(self, subject, auth=None):
        return http("GET", self.url + "/v3/auth/tokens", headers={
            "X-Auth-Token": auth or self.admin_token(),
            "X-Subject-Token": subject})

    def rotate(self, log):
        # The cached admin token may be signed with a key about to go.
        self._admin = None
        return run(["keystone-manage", "--config-file", self.env["config"],
                    "fernet_rotate", "--keystone-user", "root",
                    "--keystone-group", "root"], log)


def start_keystone(workdir):
    """keystone-env.sh start; returns (status, env or None)."""
    envdir = os.path.join(workdir, "keystone")
    os.makedirs(envdir, exist_ok=True)
    log = os.path.join(workdir, "keystone-env.log")
    t0 = time.monotonic()
    status = run(["sh", ENV_SH, "start", envdir], log)
    print("# keystone-env.sh start: %.1f s (log %s)"
          % (time.monotonic() - t0, log), flush=True)
    if status != 0:
        return status, None
    with open(os.path.join(envdir, "env.json")) as f:
        return 0, json.load(f)


def stop_keystone(workdir):
    envdir = os.path.join(workdir, "keystone")
    run(["sh", ENV_SH, "stop", envdir],
        os.path.join(workdir, "keystone-env.log"))


def check_environment(res, ks):
    """(a): Keystone issues and validates its own tokens for k8s-svc."""
    env = ks.env
    user, project = env["user"], env["project"]
    r = ks.password_token(user["id"], user["password"], project["id"])
    if not res.check("keystone: password token for k8s-svc on k8s-proj",
                     r.status == 201 and "X-Subject-Token" in r.headers,
                     repr(r)):
        return False
    subject = r.headers["X-Subject-Token"]
    v = ks.validate(subject)
    doc = (v.json() or {}).get("token", {}) if v.status == 200 else {}
    roles = sorted(x["name"] for x in doc.get("roles", []))
    res.check("keystone: GET /v3/auth/tokens validates it (admin auth)",
              v.status == 200
              and doc.get("user", {}).get("id") == user["id"]
              and doc.get("project", {}).get("id") == project["id"]
              and doc.get("methods") == ["password"]
              and "member" in roles,
              "%r roles=%s" % (v, roles))
    res.check("keystone: the token is signed with the primary key",
              fernet_signer(env["key_repository"], subject)
              == primary_key(env["key_repository"]),
              "signer %s" % fernet_signer(env["key_repository"], subject))
    cred = env["application_credential"]
    r = http("POST", ks.url + "/v3/auth/tokens", {"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": cred["id"],
                                   "secret": cred["secret"]}}}})
    ok = r.status == 201
    if ok:
        v = ks.validate(subject, auth=r.headers["X-Subject-Token"])
        ok = v.status == 200
    res.check("keystone: the service user's application credential "
              "validates tokens", ok, repr(r if r.status != 201 else v))
    bad = subject[:-6] + ("AAAAAA" if not subject.endswith("AAAAAA")
                          else "BBBBBB")
    v = ks.validate(bad)
    res.check("keystone: a garbled token is refused (404)",
              v.status == 404, repr(v))
    return True


# ---- our side -------------------------------------------------------------

def build(res, workdir):
    """Build the server and the test Kubernetes API server when missing."""
    log = os.path.join(workdir, "build.log")
    binary = os.environ.get("K8SAUTH_BIN",
                            os.path.join(ROOT, "keystone-k8s-auth"))
    fake = os.environ.get("FAKE_K8S",
                          os.path.join(ROOT, "tests", "k8s", "fake-k8s"))
    if not os.access(binary, os.X_OK):
        if not os.path.exists(os.path.join(ROOT, "Makefile")):
            if run(["./configure"], log, cwd=ROOT) != 0:
                res.fail("build: ./configure", "\n" + tail(log))
                return None, None
        if run(["make", "-j2"], log, cwd=ROOT) != 0 or \
                not os.access(binary, os.X_OK):
            res.fail("build: make", "\n" + tail(log))
            return None, None
    if not os.access(fake, os.X_OK):
        srcs = os.path.join(ROOT, "tests", "k8s")
        if os.path.isdir(srcs) and any(n.endswith(".c")
                                       for n in os.listdir(srcs)):
            run(["make", "tests/k8s/fake-k8s"], log, cwd=ROOT)
        if not os.access(fake, os.X_OK):
            res.fail("build: tests/k8s/fake-k8s",
                     "the test Kubernetes API server is missing (not merged "
                     "yet?) and FAKE_K8S is not set\n" + tail(log))
            return binary, None
    return binary, fake


def make_certs(d):
    """A CA and a 127.0.0.1 server certificate for fake-k8s (openssl CLI)."""
    log = os.path.join(d, "openssl.log")
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-days", "2", "-subj", "/CN=interop CA", "-keyout",
         os.path.join(d, "ca.key"), "-out", os.path.join(d, "ca.pem")],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj",
         "/CN=127.0.0.1", "-keyout", os.path.join(d, "k8s.key"), "-out",
         os.path.join(d, "k8s.csr")],
    ]
    with open(os.path.join(d, "k8s.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    steps.append(["openssl", "x509", "-req", "-in",
                  os.path.join(d, "k8s.csr"), "-CA", os.path.join(d, "ca.pem"),
                  "-CAkey", os.path.join(d, "ca.key"), "-CAcreateserial",
                  "-days", "2", "-extfile", os.path.join(d, "k8s.ext"),
                  "-out", os.path.join(d, "k8s.pem")])
    for cmd in steps:
        if run(cmd, log) != 0:
            raise RuntimeError("openssl failed:\n" + tail(log))


def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError("timed out waiting for " + what)


class Procs:
    """Child processes stopped (SIGTERM, then SIGKILL) by stop_all."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, log):
        out = open(log, "ab")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        out.close()
        self.procs.append(p)
        return p

    def stop_all(self):
        """SIGTERM everything; returns {pid: exit status} (None if the
        process had to be killed)."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        status = {}
        for p in self.procs:
            try:
                status[p.pid] = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                status[p.pid] = None
        self.procs = []
        return status


class FakeK8s:
    def __init__(self, procs, fake, d):
        make_certs(d)
        portfile = os.path.join(d, "k8s.port")
        self.log = os.path.join(d, "fake-k8s.log")
        self.proc = procs.start([fake, "--listen", "127.0.0.1:0", "--cert",
                                 os.path.join(d, "k8s.pem"), "--key",
                                 os.path.join(d, "k8s.key"), "--port-file",
                                 portfile, "--quiet"], self.log)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("fake-k8s exited:\n" + tail(self.log))
            return os.path.exists(portfile) and \
                open(portfile).read().strip() != ""
        wait_for(ready, 10, "fake-k8s")
        self.url = "https://127.0.0.1:%s" % open(portfile).read().strip()
        self.ca_file = os.path.join(d, "ca.pem")
        with open(self.ca_file) as f:
            self.ca_pem = f.read()
        self.ctx = ssl.create_default_context(cafile=self.ca_file)

    def call(self, method, path, body=None, expect=(200, 201)):
        r = http(method, self.url + path, body, context=self.ctx)
        if r.status not in expect:
            raise RuntimeError("fake-k8s %s %s: %r" % (method, path, r))
        return r.json()


class Server:
    def __init__(self, procs, binary, d, env, extra=""):
        self.binary = binary
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.conf = os.path.join(d, "keystone-k8s-auth.conf")
        self.log = os.path.join(d, "server.log")
        token_file = os.path.join(d, "admin-token")
        with open(self.conf, "w") as f:
            f.write("""# Written by tests/interop/test_keystone.py
[server]
listen = {url}
workers = 2
[database]
connection = sqlite:///{d}/keystone-k8s-auth.db
[fernet_tokens]
# Keystone's own repository: Keystone rotates it, we only read it.
key_repository = {repo}
max_active_keys = {max_keys}
[credential]
key_repository = {d}/credential-keys
[token]
payload = project_scoped
expiration = 3600
[auth]
methods = {methods}
method = mapped
[bootstrap]
admin_token_file = {token_file}
[policy]
dir = {d}/policy
[log]
level = info
""".format(url=self.url, d=d, repo=env["key_repository"],
                max_keys=env["max_active_keys"],
                methods=",".join(env["methods"]), token_file=token_file))
            f.write(extra)
        conf = ["--config", self.conf]
        for sub in ("config-check", "credential-setup", "bootstrap",
                    "db-sync"):
            if run([binary, sub] + conf, self.log) != 0:
                raise RuntimeError("keystone-k8s-auth %s failed:\n%s"
                                   % (sub, tail(self.log)))
        with open(token_file) as f:
            self.admin = f.read().strip()
        self.proc = procs.start([binary, "serve"] + conf, self.log)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("keystone-k8s-auth exited:\n"
                                   + tail(self.log))
            try:
                return http("GET", self.url + "/readyz").status == 200
            except OSError:
                return False
        wait_for(ready, 15, "keystone-k8s-auth /readyz")

    def admin_call(self, method, path, body=None, expect=(200, 201)):
        r = http(method, self.url + path, body,
                 headers={"X-Auth-Token": self.admin})
        if r.status not in expect:
            raise RuntimeError("%s %s: %r" % (method, path, r))
        return r.json()


def login(server, instance_id, role, jwt):
    return http("POST", "%s/v4/k8s_auth/instances/%s/auth"
                % (server.url, instance_id), {"k8s_role": role, "jwt": jwt})


def check_token_at_keystone(res, ks, name, subject, jwt_exp):
    """Keystone's verdict on a token we minted."""
    env = ks.env
    v = ks.validate(subject)
    doc = (v.json() or {}).get("token", {}) if v.status == 200 else {}
    roles = sorted(x.get("name") for x in doc.get("roles", []))
    problems = []
    if v.status != 200:
        problems.append("status %d" % v.status)
    if doc.get("user", {}).get("id") != env["user"]["id"]:
        problems.append("user %r" % doc.get("user"))
    if doc.get("project", {}).get("id") != env["project"]["id"]:
        problems.append("project %r" % doc.get("project"))
    if doc.get("project", {}).get("domain", {}).get("id") != \
            env["domain_a"]["id"]:
        problems.append("project domain %r" % doc.get("project"))
    if "member" not in roles:
        problems.append("roles %s" % roles)
    if doc.get("methods") != ["mapped"]:
        problems.append("methods %r" % doc.get("methods"))
    if len(doc.get("audit_ids", [])) != 1:
        problems.append("audit_ids %r" % doc.get("audit_ids"))
    exp = doc.get("expires_at", "")
    if exp:
        t = time.mktime(time.strptime(exp[:19], "%Y-%m-%dT%H:%M:%S")) \
            - time.timezone
        if not (time.time() < t <= jwt_exp + 1):
            problems.append("expires_at %s not in (now, JWT exp]" % exp)
    else:
        problems.append("no expires_at")
    return res.check(name, not problems,
                     "; ".join(problems) + (" %r" % v if v.status != 200
                                            else ""))


def check_exchange(res, ks, workdir):
    """(b): our project_scoped tokens are Keystone tokens."""
    binary, fake = build(res, workdir)
    if not binary or not fake:
        return
    env = ks.env
    repo = env["key_repository"]
    d = os.path.join(workdir, "exchange")
    os.makedirs(d, exist_ok=True)
    procs = Procs()
    server = None
    try:
        k8s = FakeK8s(procs, fake, d)
        server = Server(procs, binary, d, env)

        k8s.call("POST", "/_test/serviceaccounts",
                 {"namespace": "interop", "name": "workload"})
        k8s.call("POST", "/_test/pods",
                 {"namespace": "interop", "name": "workload-0",
                  "service_account": "workload", "node": "node-1"})
        k8s.call("POST", "/_test/serviceaccounts",
                 {"namespace": "kube-system", "name": "keystone-reviewer"})
        k8s.call("POST", "/_test/reviewers",
                 {"namespace": "kube-system", "name": "keystone-reviewer"})
        reviewer = k8s.call("POST", "/_test/tokens", {
            "namespace": "kube-system",
            "service_account": "keystone-reviewer",
            "expires_in": 86400})["token"]

        def workload_jwt():
            return k8s.call("POST", "/_test/tokens", {
                "namespace": "interop", "service_account": "workload",
                "pod": "workload-0", "audiences": ["keystone"],
                "expires_in": 1800})["token"]

        restriction = server.admin_call("POST", "/v4/tokens/restrictions", {
            "restriction": {
                "domain_id": env["domain_a"]["id"],
                "user_id": env["user"]["id"],
                "project_id": env["project"]["id"],
                "roles": [{"id": env["roles"]["member"],
                           "name": "member"}]}})["restriction"]
        instance = server.admin_call("POST", "/v4/k8s_auth/instances", {
            "instance": {"domain_id": env["domain_a"]["id"],
                         "name": "interop-cluster", "host": k8s.url,
                         "ca_cert": k8s.ca_pem,
                         "token_reviewer_jwt": reviewer}})["instance"]
        server.admin_call("POST", "/v4/k8s_auth/instances/%s/roles"
                          % instance["id"], {"role": {
                              "name": "workload",
                              "bound_service_account_names": ["workload"],
                              "bound_service_account_namespaces":
                                  ["interop"],
                              "bound_audience": "keystone",
                              "token_restriction_id": restriction["id"]}})

        # 1. The exchange, and Keystone's verdict.
        jwt_exp = time.time() + 1800
        r = login(server, instance["id"], "workload", workload_jwt())
        if not res.check("exchange: login answers 200 with X-Subject-Token",
                         r.status == 200 and r.headers.get(
                             "X-Subject-Token"), repr(r)):
            return
        first = r.headers["X-Subject-Token"]
        body = (r.json() or {}).get("token", {})
        res.check("exchange: login body names user, project, mapped",
                  body.get("user", {}).get("id") == env["user"]["id"]
                  and body.get("project", {}).get("id")
                  == env["project"]["id"]
                  and body.get("methods") == ["mapped"], repr(r))
        signer = fernet_signer(repo, first)
        res.check("exchange: token is signed with Keystone's primary key",
                  signer == primary_key(repo),
                  "signer %s, primary %s" % (signer, primary_key(repo)))
        res.check("exchange: Fernet timestamp is now",
                  abs(fernet_timestamp(first) - time.time()) < 30,
                  "timestamp %d" % fernet_timestamp(first))
        check_token_at_keystone(
            res, ks, "interop: Keystone validates the exchanged "
            "project_scoped token (user, project, member, [mapped])",
            first, jwt_exp)
        check_credential_policy(res, ks, first)
        cred = env["application_credential"]
        a = http("POST", ks.url + "/v3/auth/tokens", {"auth": {"identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": cred["id"],
                                       "secret": cred["secret"]}}}})
        v = ks.validate(first, auth=a.headers.get("X-Subject-Token", "x"))
        res.check("interop: a service (application credential) validates "
                  "it too", v.status == 200, repr(v))
        v = http("HEAD", ks.url + "/v3/auth/tokens", headers={
            "X-Auth-Token": ks.admin_token(), "X-Subject-Token": first})
        res.check("interop: HEAD /v3/auth/tokens answers 200",
                  v.status == 200, repr(v))

        # 2. Keystone rotates; the server must follow.
        old_primary = primary_key(repo)
        rotlog = os.path.join(workdir, "rotate.log")
        if not res.check("rotation: keystone-manage fernet_rotate",
                         ks.rotate(rotlog) == 0, "\n" + tail(rotlog)):
            return
        new_primary = primary_key(repo)
        time.sleep(1.2)     # the server checks the repository once a second
        jwt_exp = time.time() + 1800
        r = login(server, instance["id"], "workload", workload_jwt())
        second = r.headers.get("X-Subject-Token") if r.status == 200 else None
        if not res.check("rotation: login after the rotation answers 200",
                         second, repr(r)):
            return
        signer = fernet_signer(repo, second)
        res.check("rotation: the new token is signed with the new primary "
                  "key (repository re-read)", signer == new_primary,
                  "signer %s, old primary %s, new primary %s"
                  % (signer, old_primary, new_primary))
        check_token_at_keystone(
            res, ks, "rotation: Keystone validates the token minted after "
            "fernet_rotate", second, jwt_exp)
        v = ks.validate(first)
        res.check("rotation: the token from before the rotation still "
                  "validates", v.status == 200, repr(v))

        # 3. Rotate until the first token's key is purged
        # (max_active_keys = 3: the old primary leaves after one more).
        ks.rotate(rotlog)
        gone = not os.path.exists(os.path.join(repo, old_primary))
        v = ks.validate(first)
        res.check("rotation: once its key is purged, the first token is "
                  "refused by Keystone (404)", gone and v.status == 404,
                  "key %s present=%s, %r" % (old_primary, not gone, v))
        time.sleep(1.2)
        jwt_exp = time.time() + 1800
        r = login(server, instance["id"], "workload", workload_jwt())
        third = r.headers.get("X-Subject-Token") if r.status == 200 else None
        ok = third is not None and \
            fernet_signer(repo, third) == primary_key(repo)
        res.check("rotation: after a second rotation the server signs with "
                  "the newest primary", ok, repr(r) if not third else
                  "signer %s primary %s" % (fernet_signer(repo, third),
                                            primary_key(repo)))
        if third:
            check_token_at_keystone(
                res, ks, "rotation: Keystone validates the token minted "
                "after the second rotation", third, jwt_exp)
    except (RuntimeError, OSError, ValueError, KeyError) as err:
        res.fail("exchange: set-up", str(err))
    finally:
        status = procs.stop_all()
    if server is not None:
        # Under ASan/LSan a leak or an error shows as a non-zero exit.
        rc = status.get(server.proc.pid)
        res.check("exchange: keystone-k8s-auth exits 0 on SIGTERM",
                  rc == 0, "status %s\n%s" % (rc, tail(server.log)))



# ---- Keystone policy overrides from docs/examples -------------------------

EXAMPLES = os.path.join(ROOT, "docs", "examples")


def install_policy(env, name):
    """Copy docs/examples/NAME into the test Keystone's policy.d; Keystone
    (oslo.policy) re-reads a policy directory whose mtime changed."""
    dst = os.path.join(os.path.dirname(env["config"]), "policy.d", name)
    shutil.copyfile(os.path.join(EXAMPLES, name), dst)
    time.sleep(0.05)


def ks_call(ks, method, path, token, body=None):
    return http(method, ks.url + path, body, headers={"X-Auth-Token": token})


def ks_admin(ks, method, path, body=None, expect=(200, 201, 204)):
    r = ks_call(ks, method, path, ks.admin_token(), body)
    if r.status not in expect:
        raise RuntimeError("Keystone %s %s: %r" % (method, path, r))
    return r.json()


def rescope(ks, token, project_id):
    """POST /v3/auth/tokens with method token: the re-scoped token keeps
    the original token's methods."""
    r = http("POST", ks.url + "/v3/auth/tokens", {"auth": {
        "identity": {"methods": ["token"], "token": {"id": token}},
        "scope": {"project": {"id": project_id}}}})
    return r.headers.get("X-Subject-Token") if r.status == 201 else None


def credential_attempts(ks, token, trustee_id):
    """Try every long-lived credential a token's user may create; returns
    {kind: HTTP status}.  Whatever was created is deleted again."""
    env = ks.env
    uid, pid = env["user"]["id"], env["project"]["id"]
    out = {}
    r = ks_call(ks, "POST", "/v3/users/%s/application_credentials" % uid,
                token, {"application_credential": {
                    "name": "from-exchange-%d" % int(time.time() * 1000)}})
    out["application_credential"] = r.status
    if r.status == 201:
        ks_admin(ks, "DELETE", "/v3/users/%s/application_credentials/%s"
                 % (uid, r.json()["application_credential"]["id"]))
    r = ks_call(ks, "POST", "/v3/OS-TRUST/trusts", token, {"trust": {
        "trustor_user_id": uid, "trustee_user_id": trustee_id,
        "project_id": pid, "impersonation": False,
        "roles": [{"name": "member"}]}})
    out["trust"] = r.status
    if r.status == 201:
        ks_admin(ks, "DELETE", "/v3/OS-TRUST/trusts/%s"
                 % r.json()["trust"]["id"])
    r = ks_call(ks, "POST", "/v3/users/%s/credentials/OS-EC2" % uid, token,
                {"tenant_id": pid})
    out["ec2"] = r.status
    if r.status == 201:
        ks_admin(ks, "DELETE", "/v3/users/%s/credentials/OS-EC2/%s"
                 % (uid, r.json()["credential"]["access"]))
    return out


def check_credential_policy(res, ks, token):
    """docs/tokens.md: with Keystone's default policy a token from the
    exchange creates an application credential that outlives it; the
    override in docs/examples/keystone-policy-exchange.yaml refuses that
    (and trusts, EC2 credentials) for "mapped" tokens, also re-scoped
    ones, and leaves password tokens alone."""
    env = ks.env
    trustee = env["member"]["id"]
    before = credential_attempts(ks, token, trustee)
    res.check("policy: with Keystone's default policy an exchanged token "
              "creates an application credential (the caveat is real)",
              before["application_credential"] == 201, repr(before))
    print("# default policy, exchanged token: %r" % before, flush=True)
    install_policy(env, "keystone-policy-exchange.yaml")
    after = credential_attempts(ks, token, trustee)
    res.check("policy: with the documented override an exchanged token "
              "cannot create an application credential, trust or EC2 "
              "credential (403)",
              after == {"application_credential": 403, "trust": 403,
                        "ec2": 403}, repr(after))
    again = rescope(ks, token, env["project"]["id"])
    v = ks.validate(again) if again else None
    methods = (v.json() or {}).get("token", {}).get("methods") \
        if v is not None and v.status == 200 else None
    rescoped = credential_attempts(ks, again, trustee) if again else None
    res.check("policy: a token re-scoped from an exchanged one keeps "
              "\"mapped\" and is refused too",
              again is not None and "mapped" in (methods or [])
              and rescoped == {"application_credential": 403,
                               "trust": 403, "ec2": 403},
              "methods %r, %r" % (methods, rescoped))
    user = env["user"]
    r = ks.password_token(user["id"], user["password"], env["project"]["id"])
    own = credential_attempts(ks, r.headers.get("X-Subject-Token", "x"),
                              trustee)
    res.check("policy: the same user's password token still creates them",
              own == {"application_credential": 201, "trust": 201,
                      "ec2": 201}, repr(own))


# ---- the service user's least privilege -----------------------------------

# What keystone-k8s-auth asks Keystone, and with what.
SERVICE_CALLS = (
    ("validate", "GET", "/v3/auth/tokens?nocatalog"),
    ("revoke_events", "GET", "/v3/OS-REVOKE/events"),
    ("get_user", "GET", "/v3/users/{user}"),
    ("get_project", "GET", "/v3/projects/{project}"),
    ("get_role", "GET", "/v3/roles/{role}"),
    ("role_assignments", "GET", "/v3/role_assignments?user.id={user}"
     "&scope.project.id={project}&effective"),
    ("role_inferences", "GET", "/v3/role_inferences"),
)
VALIDATION = ("validate", "revoke_events")
RESTRICTION_CHECKS = ("get_user", "get_project", "get_role",
                      "role_assignments", "role_inferences")


def service_user(ks, roles):
    """A user in domain default with ROLES on project service and an
    application credential of its own; returns the credential."""
    env = ks.env
    fx = fixtures_module().Fixtures(ks.url, ks.admin_token())
    name = "k8s-auth-%s-%d" % ("-".join(roles), int(time.time() * 1000))
    user = fx.user(name, "default", env["service_project"]["id"])
    for role in roles:
        fx.grant_project(env["service_project"]["id"], user["id"],
                         fx.role_id(role))
    return fixtures_module().app_credential(ks.url, user,
                                            env["service_project"]["id"])


def fixtures_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "keystone_fixtures", os.path.join(ROOT, "tests", "interop",
                                          "keystone_fixtures.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def service_calls(ks, cred, subject):
    """{call: HTTP status} for every call of SERVICE_CALLS made with an
    application credential's token."""
    env = ks.env
    r = http("POST", ks.url + "/v3/auth/tokens", {"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": cred["id"],
                                   "secret": cred["secret"]}}}})
    token = r.headers.get("X-Subject-Token", "x")
    out = {}
    for name, method, path in SERVICE_CALLS:
        path = path.format(user=env["user"]["id"],
                           project=env["project"]["id"],
                           role=env["roles"]["member"])
        out[name] = http(method, ks.url + path, headers={
            "X-Auth-Token": token, "X-Subject-Token": subject}).status
    return out


def allowed(calls, names):
    return all(calls[n] == 200 for n in names)


def refused(calls, names):
    return all(calls[n] == 403 for n in names)


def check_service_user_roles(res, ks):
    """docs/deploy.md's service user, proven: which calls each role set on
    project `service` allows in Keystone 22's default policy, and that
    `service` + `k8s-auth-reader` with the documented override allows all
    of them without `admin`.  Returns the narrow credential."""
    env = ks.env
    u = env["user"]
    subject = ks.password_token(u["id"], u["password"],
                                env["project"]["id"]).headers.get(
                                    "X-Subject-Token", "x")
    matrix = {}
    for roles in (("reader",), ("service",), ("admin",)):
        matrix[roles] = service_calls(ks, service_user(ks, roles), subject)
        print("# service user with %s: %r" % ("+".join(roles),
                                              matrix[roles]), flush=True)
    res.check("service user: reader alone can do nothing the server needs",
              refused(matrix[("reader",)], VALIDATION + RESTRICTION_CHECKS),
              repr(matrix[("reader",)]))
    res.check("service user: service validates tokens and reads revocation "
              "events, but cannot read users/projects/roles/assignments",
              allowed(matrix[("service",)], VALIDATION)
              and refused(matrix[("service",)], RESTRICTION_CHECKS),
              repr(matrix[("service",)]))
    # GET /v3/projects/{id} of another domain's project passes for admin
    # only through the deprecated rule "admin_required or project_id"
    # (Keystone 22 ORs it in while [oslo_policy] enforce_new_defaults is
    # off; removing a policy file that had overridden the rule also loses
    # it until Keystone restarts): docs/deploy.md recommends the override.
    res.check("service user: admin (on project service) can do everything "
              "(with Keystone 22's deprecated rules still on)",
              allowed(matrix[("admin",)], VALIDATION + RESTRICTION_CHECKS),
              repr(matrix[("admin",)]))
    fx = fixtures_module().Fixtures(ks.url, ks.admin_token())
    fx.role_id("k8s-auth-reader")
    narrow = service_user(ks, ("service", "k8s-auth-reader"))
    install_policy(env, "keystone-policy-service-user.yaml")
    calls = service_calls(ks, narrow, subject)
    res.check("service user: service + k8s-auth-reader with the documented "
              "policy override can do everything without admin",
              allowed(calls, VALIDATION + RESTRICTION_CHECKS), repr(calls))
    return narrow, service_user(ks, ("service",))


def retry_503(call, attempts=4):
    """503 means "retry": a loaded 2-core machine may make Keystone miss
    the server's 5 s timeout once."""
    for _ in range(attempts - 1):
        r = call()
        if r.status != 503:
            return r
        time.sleep(1)
    return call()


def check_server_with_service_user(res, ks, binary, workdir, narrow,
                                   service_only):
    """The server itself, [keystone] configured with the narrowest
    credential: a Keystone token is accepted on the admin API and a
    restriction write passes Keystone's checks.  With `service` alone the
    token is accepted but the write is refused."""
    env = ks.env
    for label, cred, write_ok in (("service+k8s-auth-reader", narrow, True),
                                  ("service", service_only, False)):
        d = os.path.join(workdir, "svc-" + label.replace("+", "-"))
        os.makedirs(d, exist_ok=True)
        secret = os.path.join(d, "app-cred-secret")
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cred["secret"] + "\n")
        procs = Procs()
        try:
            srv = Server(procs, binary, d, env, extra="""[keystone]
url = {url}/v3
application_credential_id = {id}
application_credential_secret_file = {secret}
""".format(url=ks.url, id=cred["id"], secret=secret))
            r = retry_503(lambda: http(
                "GET", srv.url + "/v4/k8s_auth/instances",
                headers={"X-Auth-Token": ks.admin_token()}))
            res.check("service user %s: the server accepts a Keystone "
                      "admin token (validation works)" % label,
                      r.status == 200, repr(r))
            r = retry_503(lambda: http(
                "POST", srv.url + "/v4/tokens/restrictions", {
                    "restriction": {
                        "domain_id": env["domain_a"]["id"],
                        "user_id": env["user"]["id"],
                        "project_id": env["project"]["id"],
                        "roles": [{"id": env["roles"]["member"]}]}},
                headers={"X-Auth-Token": srv.admin}))
            if write_ok:
                res.check("service user %s: a restriction write passes "
                          "Keystone's checks (201)" % label,
                          r.status == 201, repr(r))
            else:
                res.check("service user %s: a restriction write is "
                          "refused, never stored (not 2xx)" % label,
                          r.status >= 400, repr(r))
        except (RuntimeError, OSError) as err:
            res.fail("service user %s: server set-up" % label, str(err))
        finally:
            procs.stop_all()


def main():
    res = Results()
    workdir = tempfile.mkdtemp(prefix="k8sauth-interop-")
    print("# state in %s" % workdir, flush=True)
    status, env = start_keystone(workdir)
    if status == SKIP_STATUS:
        print(tail(os.path.join(workdir, "keystone-env.log"), 5))
        shutil.rmtree(workdir, ignore_errors=True)
        why = ("keystone is not installed (./configure --install-deps "
               "installs it)")
        if no_skip():
            print("FAIL keystone interop: skipped, %s, and "
                  "K8SAUTH_TEST_NO_SKIP is set" % why)
            print("interop: 0 passed, 1 failed, 0 skipped")
            return 1
        print("SKIP keystone interop: " + why)
        print("interop: 0 passed, 0 failed, 1 skipped")
        return 0
    try:
        if status != 0:
            res.fail("keystone-env.sh start", "status %d\n%s" % (
                status, tail(os.path.join(workdir, "keystone-env.log"), 40)))
        else:
            ks = Keystone(env)
            if check_environment(res, ks):
                check_exchange(res, ks, workdir)
                narrow, service_only = check_service_user_roles(res, ks)
                binary, _ = build(res, workdir)
                if binary:
                    check_server_with_service_user(res, ks, binary, workdir,
                                                   narrow, service_only)
    finally:
        stop_keystone(workdir)
    if res.failed == 0 and not os.environ.get("KEEP_INTEROP_DIR"):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print("# state kept in %s" % workdir)
    print("interop: %d passed, %d failed, 0 skipped"
          % (res.passed, res.failed))
    return 1 if res.failed or res.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
