#!/usr/bin/env python3
"""selftest.py: black-box tests of tests/k8s/fake-k8s.

Starts the binary on a loopback port with a throw-away CA and server
certificate (made with the openssl CLI), drives the TokenReview endpoint
and the /_test/ control API over real HTTPS, and checks every behaviour the
README promises.  Python 3 standard library only.

Usage: python3 tests/k8s/selftest.py [path/to/fake-k8s]
Prints one line per failed check and a final "N passed, N failed";
exits non-zero when anything failed.  Also fails if the server's stderr
shows a sanitizer report or it does not exit 0 on SIGTERM.
"""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fake-k8s")
TR_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
API_AUD = "https://kubernetes.default.svc.cluster.local"
UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "Unauthorized",
                "reason": "Unauthorized", "code": 401}
EXTRA = "authentication.kubernetes.io/"

passed = 0
failed = 0


def check(cond, what):
    """Record one assertion."""
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what, flush=True)


def make_certs(d):
    """A CA and a localhost server certificate signed by it."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
        "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=fake-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key",
        "-out", "srv.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey",
        "ca.key", "-CAcreateserial", "-out", "srv.crt", "-days", "2",
        "-extfile", "ext")


class Server:
    """One running fake-k8s process."""

    def __init__(self, d, extra=()):
        self.d = d
        self.port_file = os.path.join(d, "port-%d" % id(self))
        self.err_path = os.path.join(d, "stderr-%d" % id(self))
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [BIN, "--listen", "127.0.0.1:0", "--cert",
             os.path.join(d, "srv.crt"), "--key",
             os.path.join(d, "srv.key"), "--port-file", self.port_file]
            + list(extra), stdout=subprocess.PIPE, stderr=self.err)
        line = self.proc.stdout.readline().decode().strip()
        self.port = int(line)
        with open(self.port_file) as f:
            check(int(f.read().strip()) == self.port,
                  "port file holds the printed port")
        self.ctx = ssl.create_default_context(
            cafile=os.path.join(d, "ca.crt"))

    def conn(self, timeout=10):
        return http.client.HTTPSConnection("localhost", self.port,
                                           context=self.ctx,
                                           timeout=timeout)

    def request(self, method, path, body=None, headers=None, raw=None,
                timeout=10):
        """(status, headers, parsed JSON body or text)."""
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None)
        c = self.conn(timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            text = r.read().decode()
            try:
                doc = json.loads(text)
            except ValueError:
                doc = text
            return r.status, r, doc
        finally:
            c.close()

    def post(self, path, body):
        return self.request("POST", path, body)

    def sa(self, ns, name):
        st, _, doc = self.post("/_test/serviceaccounts",
                               {"namespace": ns, "name": name})
        check(st == 201, "create SA %s/%s: %s" % (ns, name, st))
        return doc.get("uid") if isinstance(doc, dict) else None

    def pod(self, ns, name, sa, node="node-1"):
        st, _, doc = self.post("/_test/pods", {
            "namespace": ns, "name": name, "service_account": sa,
            "node": node})
        check(st == 201, "create pod %s/%s: %s %s" % (ns, name, st, doc))
        return doc

    def token(self, ns, sa, **kw):
        body = {"namespace": ns, "service_account": sa}
        body.update(kw)
        st, _, doc = self.post("/_test/tokens", body)
        check(st == 201, "mint token %s: %s %s" % (body, st, doc))
        return doc.get("token", "") if isinstance(doc, dict) else ""

    def review(self, caller, token, audiences=None, extra_body=None,
               headers=None):
        body = {"apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview", "spec": {"token": token}}
        if audiences is not None:
            body["spec"]["audiences"] = audiences
        if extra_body:
            body.update(extra_body)
        h = dict(headers or {})
        if caller is not None:
            h["Authorization"] = "Bearer " + caller
        return self.request("POST", TR_PATH, body, h)

    def stats(self):
        return self.request("GET", "/_test/stats")[2]

    def stop(self):
        """SIGTERM; returns (exit code, stderr text)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = -9
        self.err.close()
        with open(self.err_path) as f:
            return rc, f.read()


def claims(jwt):
    """Decode a JWT's header and claims (unverified)."""
    parts = jwt.split(".")
    dec = [json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
           for p in parts[:2]]
    return dec[0], dec[1]


def status_of(doc):
    return doc.get("status", {}) if isinstance(doc, dict) else {}


def expect_rejected(srv, caller, token, error, audiences=None, what=""):
    st, _, doc = srv.review(caller, token, audiences)
    s = status_of(doc)
    check(st == 201, "%s: review answered 201 (got %s)" % (what, st))
    check("authenticated" not in s,
          "%s: authenticated omitted when false (%s)" % (what, s))
    check(s.get("user") == {}, "%s: user is {} (%s)" % (what, s))
    check(s.get("error") == error,
          "%s: error %r, want %r" % (what, s.get("error"), error))
    check("audiences" not in s, "%s: no audiences when rejected" % what)


def expect_authenticated(srv, caller, token, audiences=None, what=""):
    st, _, doc = srv.review(caller, token, audiences)
    s = status_of(doc)
    check(st == 201 and s.get("authenticated") is True,
          "%s: authenticated (got %s %s)" % (what, st, s))
    return s


def test_basic(srv):
    st, r, doc = srv.request("GET", "/healthz")
    check(st == 200 and doc == "ok", "healthz: %s %r" % (st, doc))
    st, _, doc = srv.request("GET", "/api/v1/namespaces")
    check(st == 404 and doc.get("reason") == "NotFound" and
          doc.get("kind") == "Status" and doc.get("code") == 404,
          "unknown path: 404 Status (%s %s)" % (st, doc))
    st, _, doc = srv.request("GET", "/_test/nothing")
    check(st == 404, "unknown control path: 404")
    st, _, _ = srv.post("/_test/serviceaccounts",
                        {"namespace": "Bad_NS", "name": "x"})
    check(st == 400, "invalid namespace name refused")
    st, _, _ = srv.request("POST", "/_test/serviceaccounts", raw=b"{")
    check(st == 400, "control API: bad JSON is 400")


def test_setup(srv):
    uid = srv.sa("kube-system", "reviewer")
    check(isinstance(uid, str) and len(uid) == 36 and uid.count("-") == 4,
          "SA uid is a Kubernetes UID: %r" % uid)
    st, _, doc = srv.post("/_test/serviceaccounts",
                          {"namespace": "kube-system", "name": "reviewer"})
    check(st == 409 and doc.get("reason") == "AlreadyExists",
          "duplicate SA: 409 AlreadyExists")
    st, _, _ = srv.post("/_test/reviewers",
                        {"namespace": "kube-system", "name": "reviewer"})
    check(st == 200, "grant reviewer")
    st, _, doc = srv.request("GET", "/_test/serviceaccounts/kube-system/"
                             "reviewer")
    check(st == 200 and doc.get("uid") == uid and doc.get("reviewer") is
          True, "GET SA shows uid and reviewer flag")
    return srv.token("kube-system", "reviewer")


def test_valid(srv, rt):
    sa_uid = srv.sa("team-a", "worker")
    pod = srv.pod("team-a", "web-1", "worker", node="node-a")
    tok = srv.token("team-a", "worker", pod="web-1", audiences=["keystone"])
    hdr, cl = claims(tok)
    check(hdr.get("alg") == "RS256" and "kid" in hdr and "typ" not in hdr,
          "JWT header {alg: RS256, kid}: %s" % hdr)
    check(list(cl.keys()) == sorted(cl.keys()), "claims are sorted")
    check(cl.get("aud") == ["keystone"] and cl.get("iss") == API_AUD and
          cl.get("sub") == "system:serviceaccount:team-a:worker" and
          cl["exp"] - cl["iat"] == 3600 and cl["nbf"] == cl["iat"],
          "projected claims: %s" % cl)
    k = cl.get("kubernetes.io", {})
    check(k.get("pod") == {"name": "web-1", "uid": pod.get("uid")} and
          k.get("node") == {"name": "node-a", "uid": pod.get("node_uid")}
          and k.get("serviceaccount") == {"name": "worker", "uid": sa_uid}
          and k.get("namespace") == "team-a" and "warnafter" not in k,
          "kubernetes.io claim: %s" % k)

    st, r, doc = srv.review(rt, tok, ["keystone"],
                            {"metadata": {"name": "x"}})
    check(st == 201, "valid review is 201 (%s)" % st)
    check(r.getheader("Content-Type") == "application/json" and
          r.getheader("Audit-Id") and
          r.getheader("Cache-Control") == "no-cache, private",
          "kube-apiserver headers")
    check(list(doc.keys()) == ["kind", "apiVersion", "metadata", "spec",
                               "status"], "TokenReview field order")
    check(doc["kind"] == "TokenReview" and
          doc["apiVersion"] == "authentication.k8s.io/v1" and
          doc["metadata"] == {"name": "x", "creationTimestamp": None},
          "TokenReview echo: %s" % {x: doc[x] for x in doc if x != "spec"})
    check(doc["spec"] == {"token": tok, "audiences": ["keystone"]},
          "spec echoed")
    s = doc["status"]
    check(list(s.keys()) == ["authenticated", "user", "audiences"],
          "status keys: %s" % list(s.keys()))
    u = s.get("user", {})
    check(u.get("username") == "system:serviceaccount:team-a:worker" and
          u.get("uid") == sa_uid, "username and uid: %s" % u)
    check(u.get("groups") == ["system:serviceaccounts",
                              "system:serviceaccounts:team-a",
                              "system:authenticated"], "groups")
    want = {EXTRA + "credential-id": ["JTI=" + cl["jti"]],
            EXTRA + "node-name": ["node-a"],
            EXTRA + "node-uid": [pod.get("node_uid")],
            EXTRA + "pod-name": ["web-1"],
            EXTRA + "pod-uid": [pod.get("uid")]}
    check(u.get("extra") == want and list(u["extra"]) == sorted(want),
          "extra: %s" % u.get("extra"))
    check(s.get("audiences") == ["keystone"], "status.audiences")

    # The same node name keeps its UID across pods.
    pod2 = srv.pod("team-a", "web-2", "worker", node="node-a")
    check(pod2.get("node_uid") == pod.get("node_uid"), "node UID stable")
    return tok, sa_uid


def test_audiences(srv, rt, tok):
    expect_rejected(
        srv, rt, tok, '[invalid bearer token, token audiences ["keystone"] '
        'is invalid for the target audiences ["%s"]]' % API_AUD,
        what="custom-aud token, default review audiences")
    expect_rejected(
        srv, rt, tok, '[invalid bearer token, token audiences ["keystone"] '
        'is invalid for the target audiences ["a" "b"]]', ["a", "b"],
        what="no intersection")
    multi = srv.token("team-a", "worker", audiences=["a", "b", "c"])
    s = expect_authenticated(srv, rt, multi, ["c", "x", "b"],
                             what="intersection")
    check(s.get("audiences") == ["b", "c"],
          "intersection in token order: %s" % s.get("audiences"))
    dflt = srv.token("team-a", "worker")
    s = expect_authenticated(srv, rt, dflt, what="default audiences")
    check(s.get("audiences") == [API_AUD], "API audience chosen")
    check(list(s["user"].get("extra", {}).keys()) ==
          [EXTRA + "credential-id"], "unbound token: credential-id only")
    s = expect_authenticated(srv, rt, dflt, [], what="empty audiences list")


def test_time(srv, rt):
    old = srv.token("team-a", "worker", expires_in=-120)
    expect_rejected(srv, rt, old, "[invalid bearer token, service account "
                    "token has expired]", what="expired")
    expect_authenticated(srv, rt, srv.token("team-a", "worker",
                                            expires_in=-20),
                         what="expired within the 60 s leeway")
    # The audience check runs before the time check.
    both = srv.token("team-a", "worker", expires_in=-120, audiences=["z"])
    st, _, doc = srv.review(rt, both)
    check("token audiences" in status_of(doc).get("error", ""),
          "audience error wins over expiry")
    early = srv.token("team-a", "worker", not_before_offset=300)
    expect_rejected(srv, rt, early, "[invalid bearer token, service account "
                    "token is not valid yet]", what="nbf in the future")
    ext = srv.token("team-a", "worker", pod="web-1", expires_in=3607)
    _, cl = claims(ext)
    check(cl["exp"] - cl["iat"] == 365 * 24 * 3600 and
          cl["kubernetes.io"].get("warnafter") == cl["iat"] + 3607,
          "kubelet default token is extended to a year with warnafter")


def test_signature(srv, rt):
    crypto = ("[invalid bearer token, go-jose/go-jose: error in "
              "cryptographic primitive]")
    bad = srv.token("team-a", "worker", bad_signature=True)
    expect_rejected(srv, rt, bad, crypto, what="foreign key")
    good = srv.token("team-a", "worker")
    h, p, s = good.split(".")
    mid = len(s) // 2
    flipped = s[:mid] + ("A" if s[mid] != "A" else "B") + s[mid + 1:]
    expect_rejected(srv, rt, "%s.%s.%s" % (h, p, flipped), crypto,
                    what="tampered signature")
    # Claims changed under the original signature.
    _, cl = claims(good)
    cl["kubernetes.io"]["serviceaccount"]["name"] = "reviewer"
    forged = base64.urlsafe_b64encode(json.dumps(cl).encode()).decode()
    expect_rejected(srv, rt, "%s.%s.%s" % (h, forged.rstrip("="), s),
                    crypto, what="tampered claims")
    expect_rejected(srv, rt, "not-a-jwt", "invalid bearer token",
                    what="garbage token")
    other = srv.token("team-a", "worker", issuer="https://elsewhere")
    expect_rejected(srv, rt, other, "invalid bearer token",
                    what="unknown issuer")
    none_hdr = base64.urlsafe_b64encode(b'{"alg":"none"}').decode()
    expect_rejected(srv, rt, "%s.%s." % (none_hdr.rstrip("="), p),
                    "invalid bearer token", what="alg none")


def test_objects(srv, rt):
    tok = srv.token("team-a", "worker", pod="web-2")
    expect_authenticated(srv, rt, tok, what="pod-bound before delete")
    st, _, _ = srv.request("DELETE", "/_test/pods/team-a/web-2")
    check(st == 200, "delete pod")
    st, _, _ = srv.request("DELETE", "/_test/pods/team-a/web-2")
    check(st == 404, "delete missing pod: 404")
    expect_rejected(srv, rt, tok, "[invalid bearer token, service account "
                    "token has been invalidated]", what="deleted pod")
    newpod = srv.pod("team-a", "web-2", "worker")
    _, cl = claims(tok)
    expect_rejected(
        srv, rt, tok, "[invalid bearer token, pod UID (%s) does not match "
        "service account pod ref claim (%s)]" %
        (newpod.get("uid"), cl["kubernetes.io"]["pod"]["uid"]),
        what="re-created pod")

    srv.sa("team-b", "app")
    srv.pod("team-b", "app-0", "app")
    bound = srv.token("team-b", "app", pod="app-0")
    plain = srv.token("team-b", "app")
    legacy = srv.token("team-b", "app", legacy=True)
    _, lc = claims(legacy)
    check(lc.get("iss") == "kubernetes/serviceaccount" and "exp" not in lc
          and "aud" not in lc and
          lc.get("kubernetes.io/serviceaccount/service-account.name") ==
          "app" and lc.get("kubernetes.io/serviceaccount/secret.name", "")
          .startswith("app-token-"), "legacy claims: %s" % lc)
    s = expect_authenticated(srv, rt, legacy, what="legacy token")
    check(s.get("audiences") == [API_AUD] and "extra" not in s["user"],
          "legacy: API audiences, no extra (%s)" % s)
    expect_rejected(
        srv, rt, legacy, '[invalid bearer token, token audiences ["%s"] is '
        'invalid for the target audiences ["keystone"]]' % API_AUD,
        ["keystone"], what="legacy token for another audience")
    old_uid = claims(plain)[1]["kubernetes.io"]["serviceaccount"]["uid"]
    st, _, _ = srv.request("DELETE", "/_test/serviceaccounts/team-b/app")
    check(st == 200, "delete SA")
    expect_rejected(srv, rt, plain, '[invalid bearer token, serviceaccounts '
                    '"app" not found]', what="deleted SA")
    expect_rejected(srv, rt, bound, '[invalid bearer token, serviceaccounts '
                    '"app" not found]', what="deleted SA, pod-bound token")
    expect_rejected(srv, rt, legacy, "[invalid bearer token, Token has been "
                    "invalidated]", what="legacy token, deleted SA")
    new_uid = srv.sa("team-b", "app")
    expect_rejected(srv, rt, plain, "[invalid bearer token, service account "
                    "UID (%s) does not match claim (%s)]" %
                    (new_uid, old_uid), what="re-created SA")
    expect_rejected(srv, rt, legacy, "[invalid bearer token, Token has been "
                    "invalidated]", what="legacy token, re-created SA")


def test_minting_errors(srv):
    st, _, doc = srv.post("/_test/tokens", {"namespace": "team-a",
                                            "service_account": "ghost"})
    check(st == 404, "token for a missing SA: 404")
    srv.sa("team-a", "other")
    st, _, _ = srv.post("/_test/tokens", {"namespace": "team-a",
                                          "service_account": "other",
                                          "pod": "web-1"})
    check(st == 400, "token bound to another SA's pod: 400")
    st, _, _ = srv.post("/_test/tokens", {"namespace": "team-a",
                                          "service_account": "worker",
                                          "pod": "nope"})
    check(st == 404, "token for a missing pod: 404")
    st, _, _ = srv.post("/_test/tokens", {"namespace": "team-a",
                                          "service_account": "worker",
                                          "audiences": "x"})
    check(st == 400, "audiences must be a list")
    st, _, _ = srv.post("/_test/pods", {"namespace": "team-a", "name": "p",
                                        "service_account": "ghost"})
    check(st == 404, "pod for a missing SA: 404")


def forbidden_message(user):
    return ('tokenreviews.authentication.k8s.io is forbidden: User "%s" '
            'cannot create resource "tokenreviews" in API group '
            '"authentication.k8s.io" at the cluster scope' % user)


def test_caller(srv, rt, tok):
    st, _, doc = srv.review(None, tok)
    check(st == 401 and doc == UNAUTHORIZED, "no bearer: 401 (%s)" % doc)
    st, _, doc = srv.review(None, tok, headers={"Authorization":
                                                "Basic eDp5"})
    check(st == 401, "non-Bearer scheme counts as no credentials")
    st, _, doc = srv.review("junk", tok)
    check(st == 401 and doc == UNAUTHORIZED, "junk bearer: 401")
    expired = srv.token("kube-system", "reviewer", expires_in=-3600)
    st, _, doc = srv.review(expired, tok)
    check(st == 401, "expired caller token: 401")
    aud = srv.token("kube-system", "reviewer", audiences=["keystone"])
    st, _, _ = srv.review(aud, tok)
    check(st == 401, "caller token not for the API audience: 401")
    wt = srv.token("team-a", "worker")
    st, _, doc = srv.review(wt, tok)
    want = {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure",
            "message": forbidden_message(
                "system:serviceaccount:team-a:worker"),
            "reason": "Forbidden",
            "details": {"group": "authentication.k8s.io",
                        "kind": "tokenreviews"}, "code": 403}
    check(st == 403 and doc == want, "non-reviewer: 403 (%s)" % doc)
    check(list(doc.keys()) == list(want.keys()), "Status field order")
    # Checks run authentication, authorization, then the body.
    st, _, _ = srv.request("POST", TR_PATH, raw=b"{", headers={
        "Authorization": "Bearer junk"})
    check(st == 401, "bad body from an unauthenticated caller: 401")
    st, _, _ = srv.request("POST", TR_PATH, raw=b"{", headers={
        "Authorization": "Bearer " + wt})
    check(st == 403, "bad body from an unauthorized caller: 403")
    # Reviewer by grant; revoke; legacy reviewer token.
    srv.post("/_test/reviewers", {"namespace": "team-a", "name": "worker"})
    expect_authenticated(srv, wt, tok, ["keystone"], what="granted caller")
    st, _, _ = srv.request("DELETE", "/_test/reviewers/team-a/worker")
    check(st == 200, "revoke reviewer")
    st, _, _ = srv.review(wt, tok)
    check(st == 403, "revoked caller: 403")
    st, _, _ = srv.request("DELETE", "/_test/reviewers/team-a/worker")
    check(st == 404, "revoking twice: 404")
    leg = srv.token("kube-system", "reviewer", legacy=True)
    expect_authenticated(srv, leg, tok, ["keystone"],
                         what="legacy reviewer token")
    srv.sa("ops", "gone")
    srv.post("/_test/reviewers", {"namespace": "ops", "name": "gone"})
    gt = srv.token("ops", "gone")
    expect_authenticated(srv, gt, tok, ["keystone"], what="ops reviewer")
    srv.request("DELETE", "/_test/serviceaccounts/ops/gone")
    st, _, _ = srv.review(gt, tok)
    check(st == 401, "caller whose SA was deleted: 401")


def test_bad_bodies(srv, rt):
    auth = {"Authorization": "Bearer " + rt}

    def bad(raw, what, code=400, headers=None, contains=None):
        h = dict(auth)
        h.update(headers or {})
        st, _, doc = srv.request("POST", TR_PATH, raw=raw, headers=h)
        ok = st == code and isinstance(doc, dict) and \
            doc.get("kind") == "Status" and doc.get("code") == code
        if contains:
            ok = ok and contains in doc.get("message", "")
        check(ok, "%s: %s %s" % (what, st, doc))

    bad(b"{not json", "bad JSON", contains="json parse error")
    bad(b"[]", "JSON array body")
    bad(b"", "empty body")
    bad(b'{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",'
        b'"spec":{}}', "missing token",
        contains="token is required for TokenReview in authentication")
    bad(b'{"spec":{"token":""}}', "empty token", contains="token is required")
    bad(b'{"spec":{"token":5}}', "numeric token", contains=(
        "cannot unmarshal number into Go struct field "
        "TokenReviewSpec.spec.token of type string"))
    bad(b'{"spec":{"token":"x","audiences":"a"}}', "audiences not a list")
    bad(b'{"spec":{"token":"x","audiences":[1]}}', "audience not a string")
    bad(b'{"kind":"Pod","spec":{"token":"x"}}', "wrong kind")
    bad(b'{"apiVersion":"v1","spec":{"token":"x"}}', "wrong apiVersion")
    bad(b'{"spec":{"token":"x"}}', "form content type", 415,
        {"Content-Type": "application/x-www-form-urlencoded"})
    st, _, doc = srv.request("POST", TR_PATH, raw=b'{"spec":{"token":"x"}}',
                             headers={"Authorization": "Bearer " + rt,
                                      "Content-Type":
                                      "application/json; charset=utf-8"})
    check(st == 201, "JSON with charset parameter accepted")
    c = srv.conn()
    c.putrequest("POST", TR_PATH)
    c.putheader("Authorization", "Bearer " + rt)
    body = b'{"spec":{"token":"x"}}'
    c.putheader("Content-Length", str(len(body)))
    c.endheaders(body)
    r = c.getresponse()
    r.read()
    c.close()
    check(r.status == 201, "missing Content-Type treated as JSON")
    st, _, doc = srv.request("GET", TR_PATH, headers=auth)
    check(st == 405 and doc.get("reason") == "MethodNotAllowed",
          "GET tokenreviews: 405")


def raw_review(srv, rt, timeout):
    """A review on its own connection; (status or exception name)."""
    c = srv.conn(timeout)
    body = json.dumps({"spec": {"token": "x"}})
    try:
        c.request("POST", TR_PATH, body=body, headers={
            "Authorization": "Bearer " + rt,
            "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    except (ConnectionResetError, BrokenPipeError) as e:
        return type(e).__name__
    except (socket.timeout, TimeoutError):
        return "timeout"
    except (http.client.RemoteDisconnected, ssl.SSLError, OSError) as e:
        return type(e).__name__
    finally:
        c.close()


def tcp_outcome(srv, rt, timeout=5):
    """Send a review over TLS driven through memory BIOs, so the raw TCP
    outcome is visible (Python's SSL socket reports an RST as a clean
    EOF).  Returns "reset", "eof", "data" or "timeout"."""
    sock = socket.create_connection(("localhost", srv.port), timeout)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = srv.ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(out.read())
                inc.write(sock.recv(65536))
        sock.sendall(out.read())
        req = ("POST %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: "
               "Bearer %s\r\nContent-Type: application/json\r\n"
               "Content-Length: 2\r\n\r\n{}" % (TR_PATH, rt))
        tls.write(req.encode())
        sock.sendall(out.read())
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return "eof"
            inc.write(chunk)
            try:
                if tls.read(65536):
                    return "data"
            except ssl.SSLWantReadError:
                pass
    except ConnectionResetError:
        return "reset"
    except (socket.timeout, TimeoutError):
        return "timeout"
    finally:
        sock.close()


def test_faults(srv, rt, tok):
    srv.post("/_test/stats/reset", {})
    st, _, doc = srv.post("/_test/faults", {"mode": "latency",
                                            "latency_ms": 400, "count": 2})
    check(st == 200 and doc.get("mode") == "latency", "set latency fault")
    # Two concurrent delayed reviews: the loop must not block on the first.
    results = []

    def one():
        t0 = time.monotonic()
        st, _, doc = srv.review(rt, tok, ["keystone"])
        results.append((st, status_of(doc).get("authenticated"),
                        time.monotonic() - t0))
    ths = [threading.Thread(target=one) for _ in range(2)]
    t0 = time.monotonic()
    for t in ths:
        t.start()
    time.sleep(0.1)
    st, _, _ = srv.request("GET", "/healthz")
    hz = time.monotonic() - t0
    for t in ths:
        t.join()
    total = time.monotonic() - t0
    check(st == 200 and hz < 0.35, "loop serves others during latency "
          "(%.3f s)" % hz)
    check(len(results) == 2 and all(r[0] == 201 and r[1] is True and
                                    r[2] >= 0.38 for r in results),
          "latency: real answers after the delay %s" % results)
    check(total < 0.75, "delays overlap (%.3f s)" % total)
    t0 = time.monotonic()
    st, _, _ = srv.review(rt, tok, ["keystone"])
    check(st == 201 and time.monotonic() - t0 < 0.3,
          "count=2: third request not delayed")

    srv.post("/_test/faults", {"mode": "status", "status": 503,
                               "retry_after": 3, "count": 1})
    st, r, doc = srv.review(rt, tok)
    check(st == 503 and r.getheader("Retry-After") == "3" and
          doc.get("reason") == "ServiceUnavailable" and
          doc.get("kind") == "Status", "status 503 fault: %s" % doc)
    st, _, _ = srv.review(rt, tok, ["keystone"])
    check(st == 201, "status fault expired after count")
    srv.post("/_test/faults", {"mode": "status", "status": 429})
    st, r, doc = srv.review(rt, tok)
    check(st == 429 and doc.get("reason") == "TooManyRequests" and
          r.getheader("Retry-After") is None, "status 429 fault")
    st, _, _ = srv.request("GET", "/healthz")
    check(st == 200, "faults do not touch other routes")
    st, _, _ = srv.post("/_test/tokens", {"namespace": "team-a",
                                          "service_account": "worker"})
    check(st == 201, "faults do not touch the control API")
    st, _, doc = srv.request("DELETE", "/_test/faults")
    check(st == 200 and doc.get("mode") == "none", "clear faults")
    st, _, _ = srv.review(rt, tok, ["keystone"])
    check(st == 201, "cleared")

    srv.post("/_test/faults", {"mode": "reset", "count": 1})
    res = tcp_outcome(srv, rt)
    check(res == "reset", "reset fault: RST, no answer (%s)" % res)
    check(raw_review(srv, rt, 5) == 201, "reset count=1 then normal")

    # A long latency held, then released at once.
    srv.post("/_test/faults", {"mode": "latency", "latency_ms": 600000,
                               "count": 2})
    held = [None, None]

    def hold(i):
        held[i] = raw_review(srv, rt, 30)
    ths = [threading.Thread(target=hold, args=(i,)) for i in range(2)]
    for t in ths:
        t.start()
    deadline = time.monotonic() + 10
    while srv.request("GET", "/_test/faults")[2].get("parked") != 2 and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    check(held == [None, None], "held requests not answered yet")
    t0 = time.monotonic()
    st, _, doc = srv.post("/_test/faults/release", {})
    check(st == 200 and doc == {"released": 2}, "release: %s %s" % (st, doc))
    for t in ths:
        t.join(10)
    check(held == [201, 201] and time.monotonic() - t0 < 5,
          "released requests answered: %s" % held)
    check(srv.request("GET", "/_test/faults")[2].get("parked") == 0,
          "nothing parked after release")
    st, _, doc = srv.post("/_test/faults/release", {})
    check(st == 200 and doc == {"released": 0}, "release of nothing: %s" %
          doc)

    srv.post("/_test/faults", {"mode": "hang"})
    t0 = time.monotonic()
    res = raw_review(srv, rt, 1.0)
    check(res == "timeout" and time.monotonic() - t0 >= 0.9,
          "hang fault: no answer (%s)" % res)
    st, _, doc = srv.request("GET", "/_test/faults")
    check(doc.get("parked") == 1, "hung request parked: %s" % doc)
    st, _, doc = srv.request("DELETE", "/_test/faults")
    check(doc.get("parked") == 0, "clearing drops hung connections")

    st, _, _ = srv.post("/_test/faults", {"mode": "explode"})
    check(st == 400, "unknown fault mode: 400")
    st, _, _ = srv.post("/_test/faults", {"mode": "status", "status": 99})
    check(st == 400, "status out of range: 400")
    s = srv.stats()
    check(s.get("faulted") == 8, "faulted counter: %s" % s)
    check(s.get("tokenreviews") == 12, "tokenreviews counter: %s" % s)
    srv.post("/_test/stats/reset", {})
    check(srv.stats().get("tokenreviews") == 0, "stats reset")


def test_tamper(srv, rt, tok):
    """Tamper faults: the real review, then an altered authenticated
    status (another identity, no audiences, no pod); rejections stay."""
    srv.post("/_test/stats/reset", {})
    base = expect_authenticated(srv, rt, tok, ["keystone"], what="untampered")
    user = base.get("user", {})
    check(base.get("audiences") == ["keystone"] and
          user.get("username") == "system:serviceaccount:team-a:worker" and
          EXTRA + "pod-name" in user.get("extra", {}),
          "untampered review of the pod-bound token: %s" % base)

    def tampered(mode):
        st, _, doc = srv.post("/_test/faults", {"mode": mode, "count": 1})
        check(st == 200 and doc.get("mode") == mode and
              doc.get("count") == 1, "set %s fault: %s %s" % (mode, st, doc))
        s = expect_authenticated(srv, rt, tok, ["keystone"], what=mode)
        return s, s.get("user", {})

    def same_but(mode, u, s, keys):
        for k in ("username", "uid", "groups", "extra"):
            if k not in keys:
                check(u.get(k) == user.get(k), "%s leaves user.%s: %s" %
                      (mode, k, u.get(k)))
        if "audiences" not in keys:
            check(s.get("audiences") == ["keystone"],
                  "%s leaves audiences: %s" % (mode, s))

    s, u = tampered("other_name")
    check(u.get("username") == "system:serviceaccount:team-a:worker-impostor",
          "other_name: another service account name: %s" % u)
    same_but("other_name", u, s, ("username",))
    s, u = tampered("other_namespace")
    check(u.get("username") ==
          "system:serviceaccount:team-a-impostor:worker" and
          "system:serviceaccounts:team-a-impostor" in u.get("groups", []),
          "other_namespace: another namespace: %s" % u)
    same_but("other_namespace", u, s, ("username", "groups"))
    s, u = tampered("other_uid")
    check(isinstance(u.get("uid"), str) and len(u["uid"]) == 36 and
          u["uid"] != user.get("uid"), "other_uid: another UID: %s" % u)
    same_but("other_uid", u, s, ("uid",))
    s, u = tampered("no_audiences")
    check("audiences" not in s, "no_audiences: status.audiences left "
          "out: %s" % s)
    same_but("no_audiences", u, s, ("audiences",))
    s, u = tampered("no_pod")
    check(u.get("extra") == {EXTRA + "credential-id":
                             user["extra"][EXTRA + "credential-id"]},
          "no_pod: no pod or node in extra: %s" % u)
    same_but("no_pod", u, s, ("extra",))

    after = expect_authenticated(srv, rt, tok, ["keystone"],
                                 what="after count=1 tamper faults")
    check(after == base, "tamper faults expire after count: %s" % after)
    srv.post("/_test/faults", {"mode": "other_name"})
    expect_rejected(srv, rt, srv.token("team-a", "worker", expires_in=-120),
                    "[invalid bearer token, service account token has "
                    "expired]", what="a rejection under a tamper fault")
    st, _, doc = srv.request("GET", "/_test/faults")
    check(doc.get("mode") == "other_name" and doc.get("count") == -1,
          "tamper fault without count stays: %s" % doc)
    srv.request("DELETE", "/_test/faults")
    check(expect_authenticated(srv, rt, tok, ["keystone"],
                               what="cleared tamper") == base,
          "cleared tamper fault")
    s = srv.stats()
    check(s.get("faulted") == 6 and s.get("tokenreviews") == 9 and
          s.get("authenticated") == 8 and s.get("unauthenticated") == 1,
          "tamper faults counted: %s" % s)


def test_stats(srv, rt, tok):
    srv.post("/_test/stats/reset", {})
    srv.review(rt, tok, ["keystone"])
    srv.review(rt, tok)
    srv.review("junk", tok)
    s = srv.stats()
    check(s.get("tokenreviews") == 3 and s.get("authenticated") == 1 and
          s.get("unauthenticated") == 1 and s.get("unauthorized") == 1 and
          s.get("reviewed") == 2, "stats: %s" % s)


def test_keepalive(srv, rt, tok):
    """Many reviews over a few keep-alive connections, concurrently."""
    srv.post("/_test/stats/reset", {})
    body = json.dumps({"spec": {"token": tok, "audiences": ["keystone"]}})
    errors = []

    def worker():
        c = srv.conn()
        for _ in range(50):
            c.request("POST", TR_PATH, body=body, headers={
                "Authorization": "Bearer " + rt,
                "Content-Type": "application/json"})
            r = c.getresponse()
            doc = json.loads(r.read())
            if r.status != 201 or not doc["status"].get("authenticated"):
                errors.append(r.status)
        c.close()
    ths = [threading.Thread(target=worker) for _ in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    s = srv.stats()
    check(not errors and s.get("authenticated") == 200,
          "200 keep-alive reviews: errors %s stats %s" % (errors[:3], s))
    check(s.get("connections") == 5,
          "keep-alive reused 4 connections (+1 stats): %s" % s)


def test_anonymous(d):
    srv = Server(d, ["--anonymous-auth", "--api-audience", "api-a",
                     "--api-audience", "api-b", "--leeway", "0"])
    try:
        st, _, doc = srv.review(None, "x")
        check(st == 403 and doc.get("message") ==
              forbidden_message("system:anonymous"),
              "--anonymous-auth: 403 for system:anonymous (%s)" % doc)
        srv.sa("ns", "r")
        srv.post("/_test/reviewers", {"namespace": "ns", "name": "r"})
        rt = srv.token("ns", "r")
        check(claims(rt)[1]["aud"] == ["api-a", "api-b"],
              "--api-audience sets the default token audiences")
        s = expect_authenticated(srv, rt, srv.token("ns", "r",
                                                    audiences=["api-b"]),
                                 what="API audience list")
        check(s.get("audiences") == ["api-b"], "api-b chosen")
        expect_rejected(srv, rt, srv.token("ns", "r", expires_in=-2),
                        "[invalid bearer token, service account token has "
                        "expired]", what="--leeway 0")
    finally:
        rc, err = srv.stop()
        check(rc == 0, "second instance exits 0 (%s)" % rc)


def test_random_faults(srv, rt, tok):
    """Random faults: rate 1 always faults, 0 never; bad rates: 400."""
    st, _, _ = srv.post("/_test/faults/random", {"status_rate": 1.5})
    check(st == 400, "random fault rate above 1: 400")
    st, _, doc = srv.post("/_test/faults/random", {"status_rate": 1,
                                                   "status": 500})
    check(st == 200 and doc.get("status_rate") == 1, "set random faults")
    st, _, doc = srv.review(rt, tok, ["keystone"])
    check(st == 500 and doc.get("reason") == "InternalError",
          "random status fault at rate 1: %s %s" % (st, doc))
    srv.post("/_test/faults/random", {"reset_rate": 1})
    res = tcp_outcome(srv, rt)
    check(res == "reset", "random reset fault at rate 1 (%s)" % res)
    srv.post("/_test/faults/random", {"latency_rate": 1, "latency_ms": 300})
    t0 = time.monotonic()
    st, _, _ = srv.review(rt, tok, ["keystone"])
    check(st == 201 and time.monotonic() - t0 >= 0.28,
          "random latency fault at rate 1")
    st, _, _ = srv.request("DELETE", "/_test/faults/random")
    check(st == 200, "clear random faults")
    st, _, _ = srv.review(rt, tok, ["keystone"])
    check(st == 201, "no random fault after clearing")


def test_oidc(srv, rt):
    """Issuer discovery and the JWKS, rotation, ES256, the oidc fault."""
    disc, jwks = "/.well-known/openid-configuration", "/openid/v1/jwks"
    auth = {"Authorization": "Bearer " + rt}
    for path in (disc, jwks):
        st, _, _ = srv.request("GET", path)
        check(st == 401, "%s without a bearer: 401 (got %s)" % (path, st))
        st, _, _ = srv.request("GET", path,
                               headers={"Authorization": "Bearer junk"})
        check(st == 401, "%s with a bad bearer: 401 (got %s)" % (path, st))
    st, _, doc = srv.request("GET", disc, headers=auth)
    check(st == 200 and doc.get("issuer") == API_AUD and
          doc.get("jwks_uri") == "https://localhost:%d%s" % (srv.port, jwks),
          "discovery document: %s %r" % (st, doc))
    st, _, doc = srv.request("GET", jwks, headers=auth)
    old = srv.token("team-a", "worker")
    kid0 = json.loads(base64.urlsafe_b64decode(
        old.split(".")[0] + "==="))["kid"]
    keys = doc.get("keys", []) if isinstance(doc, dict) else []
    check(st == 200 and [k.get("kid") for k in keys] == [kid0] and
          keys[0].get("kty") == "RSA" and keys[0].get("e") == "AQAB",
          "JWKS of one RSA key named like the tokens: %r" % doc)
    st, _, doc = srv.post("/_test/keys", {"alg": "ES256"})
    check(st == 201 and doc.get("kid"), "rotate in an EC key: %s" % st)
    es = srv.token("team-a", "worker", alg="ES256")
    h = json.loads(base64.urlsafe_b64decode(es.split(".")[0] + "==="))
    check(h == {"alg": "ES256", "kid": doc["kid"]}, "ES256 header %r" % h)
    check(len(base64.urlsafe_b64decode(es.split(".")[2] + "===")) == 64,
          "ES256 signature is JOSE r||s")
    expect_authenticated(srv, rt, es, what="ES256 token")
    st, _, doc = srv.post("/_test/keys", {"alg": "RS256"})
    new = srv.token("team-a", "worker")
    hdr = json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "==="))
    check(st == 201 and hdr["kid"] == doc["kid"] and hdr["kid"] != kid0,
          "the rotated RS256 key signs")
    expect_authenticated(srv, rt, new, what="token of the new key")
    expect_authenticated(srv, rt, old, what="token of the old key")
    st, _, doc = srv.request("GET", "/_test/keys")
    kinds = sorted(k["kty"] for k in doc["keys"])
    check(kinds == ["EC", "RSA", "RSA"], "three keys published: %r" % kinds)
    check(srv.post("/_test/keys", {"alg": "HS256"})[0] == 400,
          "rotate to HS256: 400")
    check(srv.post("/_test/tokens", {"namespace": "team-a",
                                     "service_account": "worker",
                                     "alg": "none"})[0] == 400,
          "mint alg none: 400")
    srv.post("/_test/faults/oidc", {"status": 503})
    st, _, _ = srv.request("GET", disc, headers=auth)
    check(st == 503, "oidc fault: 503 (got %s)" % st)
    srv.request("DELETE", "/_test/faults/oidc")
    st, _, _ = srv.request("GET", jwks, headers=auth)
    check(st == 200, "oidc fault cleared")
    stats = srv.stats()
    check(stats.get("discovery", 0) >= 4 and stats.get("jwks", 0) >= 4,
          "discovery and jwks counted: %r" % stats)


def main():
    if not os.access(BIN, os.X_OK):
        print("selftest: %s is not built (make tests/k8s/fake-k8s)" % BIN)
        print("0 passed, 1 failed")
        return 1
    d = tempfile.mkdtemp(prefix="fake-k8s-")
    try:
        make_certs(d)
        srv = Server(d)
        try:
            test_basic(srv)
            rt = test_setup(srv)
            tok, _ = test_valid(srv, rt)
            test_audiences(srv, rt, tok)
            test_time(srv, rt)
            test_signature(srv, rt)
            test_objects(srv, rt)
            test_minting_errors(srv)
            test_caller(srv, rt, tok)
            test_bad_bodies(srv, rt)
            test_stats(srv, rt, tok)
            test_faults(srv, rt, tok)
            test_random_faults(srv, rt, tok)
            test_tamper(srv, rt, tok)
            test_keepalive(srv, rt, tok)
            test_oidc(srv, rt)
            # Leave one request hanging and one delayed: exit must still
            # be clean.
            srv.post("/_test/faults", {"mode": "hang", "count": 1})
            raw_review(srv, rt, 0.3)
            srv.post("/_test/faults", {"mode": "latency",
                                       "latency_ms": 60000})
            threading.Thread(target=raw_review, args=(srv, rt, 30),
                             daemon=True).start()
            deadline = time.monotonic() + 10
            while srv.request("GET", "/_test/faults")[2].get("parked") \
                    != 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            check(srv.request("GET", "/_test/faults")[2].get("parked") == 2,
                  "a hung and a delayed request held at exit")
        finally:
            rc, err = srv.stop()
        check(rc == 0, "SIGTERM exits 0 (got %s)" % rc)
        check("Sanitizer" not in err and "runtime error" not in err,
              "no sanitizer reports:\n" + err[-3000:])
        check("eyJ" not in err, "no token in the log")
        test_anonymous(d)
    except Exception as e:  # report, do not hide
        import traceback
        traceback.print_exc()
        check(False, "exception: %r" % e)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
