"""Login (API.md §3) and token validation (§5) against fake-k8s.

One fake-k8s and one keystone-k8s-auth (whose local_sa_dir is a
kubelet-style directory holding a reviewer token and the fake's CA) are
shared by the module; tests that need other configuration own a server.
"""
import base64
import datetime
import json
import os
import shutil
import time

from harness import (ADMIN, Server, assert_error, assert_id, assert_timestamp,
                     check, eq, fail, free_ports, make_tmpdir,
                     openssl_pem_cert, timeout_scale, unique, wait_for)
from k8s_fixture import FakeK8s, LocalSA, Login, assert_no_review, validate

K8S = None
SRV = None
LOCAL = None
LOCAL_REVIEWER = None
API_AUD = "https://kubernetes.default.svc.cluster.local"


def setup_module():
    global K8S, SRV, LOCAL, LOCAL_REVIEWER
    K8S = FakeK8s("login").start()
    LOCAL = LocalSA(make_tmpdir("sa-login-"))
    LOCAL_REVIEWER = K8S.reviewer_token(name="local-reviewer")
    LOCAL.write(token=LOCAL_REVIEWER, ca=K8S.ca_pem)
    SRV = Server(extra={"k8s_auth": {"local_sa_dir": LOCAL.path}},
                 name="login")
    SRV.secrets.add(LOCAL_REVIEWER)
    SRV.start()


def teardown_module():
    try:
        SRV.stop()
    finally:
        K8S.stop()
        shutil.rmtree(LOCAL.path, ignore_errors=True)


# -- helpers -----------------------------------------------------------------
def ts(s):
    """Keystone timestamp -> POSIX seconds."""
    assert_timestamp(s)
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def claims(jwt):
    p = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def b64(d):
    raw = d if isinstance(d, bytes) else json.dumps(d).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def refuse(resp, status, reason):
    try:
        return assert_error(resp, status, reason)
    except AssertionError as e:
        fail("%s: %s" % (reason, e))


def check_token_doc(tok, L, sa_uid=None, pod=None, node=None):
    """The login/validation token document of API.md §3 for Login L."""
    eq(tok["methods"], ["mapped"], "methods")
    eq(tok["user"], {"id": L.user_id, "domain": {"id": L.dom}}, "user")
    eq(tok["project"], {"id": L.project_id, "domain": {"id": L.dom}},
       "project")
    eq(tok["roles"], [{"id": L.role_ids[0], "name": "member"},
                      {"id": L.role_ids[1], "name": "reader"}], "roles")
    issued, expires = ts(tok["issued_at"]), ts(tok["expires_at"])
    check(abs(issued - time.time()) < 10, "issued_at not now: %r" % tok)
    check(expires > issued, "expires_at not after issued_at")
    a = tok["audit_ids"]
    check(isinstance(a, list) and len(a) == 1 and isinstance(a[0], str) and
          len(a[0]) == 22, "audit_ids: %r" % (a,))


def check_k8s_auth(k, L, pod=None, node=None):
    want = {"instance_id": L.iid, "role": L.role_name, "namespace": L.ns,
            "service_account": L.sa_name,
            "service_account_uid": L.sa_uid}
    if pod:
        want["pod_name"] = pod
    if node:
        want["node_name"] = node
    eq(k, want, "k8s_auth")


def check_validates(L, subject, login_tok):
    """Admin GET, self GET and HEAD all accept the token."""
    for who, tok in (("admin", ADMIN), ("self", subject)):
        r = validate(SRV, subject, token=tok)
        eq(r.status, 200, "%s validation (%r)" % (who, r.raw[:300]))
        eq(r.headers.get("x-subject-token"), subject, "X-Subject-Token")
        v = r.json["token"]
        check_token_doc(v, L)
        for f in ("methods", "user", "project", "roles", "issued_at",
                  "expires_at", "audit_ids"):
            eq(v[f], login_tok[f], "validated %s (%s)" % (f, who))
    r = validate(SRV, subject, method="HEAD")
    eq(r.status, 200, "HEAD validation")
    eq(r.raw, b"", "HEAD body")


# -- success in each reviewer mode -------------------------------------------
def test_login_stored_reviewer_success_and_validation():
    L = Login(SRV, K8S, role={"bound_audience": "keystone"})
    K8S.pod(L.ns, "web-0", "web", node="node-7")
    jwt = L.jwt(pod="web-0", audiences=["keystone"])
    before = K8S.reviews()
    r = L.ok(jwt)
    eq(K8S.reviews() - before, 1, "TokenReviews per login")
    eq(set(r.json), {"token"}, "body keys")
    tok = r.json["token"]
    check_token_doc(tok, L)
    check_k8s_auth(tok["k8s_auth"], L, pod="web-0", node="node-7")
    subject = r.headers["x-subject-token"]
    check(subject.startswith("gAAAAA"), "not a Fernet token: %s" %
          subject[:10])
    check_validates(L, subject, tok)
    log = SRV.log_text()
    check("login: instance=%s role=%s sa=%s/web pod=web-0" % (
        L.iid, L.role_name, L.ns) in log, "no login log line")
    SRV.secrets.add(subject)


def test_login_local_token_file_and_local_ca():
    # No stored reviewer and no ca_cert: the local token file reviews and
    # the local ca.crt is the only trust anchor.
    L = Login(SRV, K8S, reviewer=False, inst={"ca_cert": None})
    eq(L.inst["token_reviewer_jwt_set"], False, "token_reviewer_jwt_set")
    r = L.ok(L.jwt())
    check_k8s_auth(r.json["token"]["k8s_auth"], L)
    check_validates(L, r.headers["x-subject-token"], r.json["token"])


def test_login_client_jwt_as_reviewer():
    L = Login(SRV, K8S, reviewer=False, inst={"disable_local_ca_jwt": True})
    jwt = L.jwt()
    # The local token file is a valid reviewer: a 403 shows it was not used.
    refuse(L.login(jwt), 502, "reviewer_forbidden")
    K8S.grant_reviewer(L.ns, L.sa_name)
    r = L.ok(jwt)
    check_k8s_auth(r.json["token"]["k8s_auth"], L)
    check_validates(L, r.headers["x-subject-token"], r.json["token"])


def test_validate_after_restriction_deleted_is_404():
    L = Login(SRV, K8S)
    r = L.ok(L.jwt())
    subject = r.headers["x-subject-token"]
    eq(validate(SRV, subject).status, 200, "validation before delete")
    SRV.ok("DELETE", L.role_path, status=204)
    eq(validate(SRV, subject).status, 200, "validation after role delete")
    SRV.ok("DELETE", "/v4/tokens/restrictions/%s" % L.rst["id"], status=204)
    assert_error(validate(SRV, subject), 404)
    assert_error(validate(SRV, subject, token=subject), 404)
    eq(validate(SRV, subject, method="HEAD").status, 404, "HEAD")


def test_validate_expired_token_is_404():
    L = Login(SRV, K8S)
    r = L.ok(L.jwt(expires_in=2))
    subject = r.headers["x-subject-token"]
    exp = ts(r.json["token"]["expires_at"])
    check(exp <= time.time() + 2.5, "token outlives its JWT: %s" %
          r.json["token"]["expires_at"])
    if exp > time.time():
        eq(validate(SRV, subject).status, 200, "validation before expiry")
    time.sleep(max(0, exp - time.time()) + 0.3)
    assert_error(validate(SRV, subject), 404)
    assert_error(validate(SRV, "gAAAAAnot-a-token"), 404)


# -- reviewer and trust changes at run time ----------------------------------
def test_local_token_rotation_by_symlink_swap():
    L = Login(SRV, K8S, reviewer=False, inst={"ca_cert": None})
    jwt = L.jwt()
    L.ok(jwt)
    K8S.sa("kube-system", "not-a-reviewer")
    other = K8S.token("kube-system", "not-a-reviewer", expires_in=86400)
    SRV.secrets.add(other)
    try:
        LOCAL.write(token=other, ca=K8S.ca_pem)
        time.sleep(1.1)
        r = wait_for(lambda: (lambda x: x if x.status == 502 else None)(
            L.login(jwt)), timeout=5, interval=0.2,
            what="the rotated local token to be used")
        refuse(r, 502, "reviewer_forbidden")
    finally:
        LOCAL.write(token=LOCAL_REVIEWER, ca=K8S.ca_pem)
    time.sleep(1.1)
    wait_for(lambda: L.login(jwt).status == 200, timeout=5, interval=0.2,
             what="login with the restored local token")


def test_patch_ca_cert_and_reviewer_take_effect_without_restart():
    L = Login(SRV, K8S)
    jwt = L.jwt()
    L.ok(jwt)
    L.patch_instance(ca_cert=openssl_pem_cert("wrong-ca"))
    refuse(L.login(jwt), 502, "cluster_tls_error")
    L.patch_instance(ca_cert=K8S.ca_pem)
    L.ok(jwt)
    # A valid token of a service account that is not a reviewer.
    name = unique("plain")
    K8S.sa("kube-system", name)
    plain = K8S.token("kube-system", name)
    SRV.secrets.add(plain)
    L.patch_instance(token_reviewer_jwt=plain)
    refuse(L.login(jwt), 502, "reviewer_forbidden")
    bad = K8S.token("kube-system", name, bad_signature=True)
    SRV.secrets.add(bad)
    L.patch_instance(token_reviewer_jwt=bad)
    refuse(L.login(jwt), 502, "reviewer_unauthorized")
    L.patch_instance(token_reviewer_jwt=L.reviewer_jwt)
    L.ok(jwt)
