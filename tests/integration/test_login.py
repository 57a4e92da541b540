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

from harness import (ADMIN, Server, assert_error, assert_timestamp,
                     check, eq, fail, free_ports, make_tmpdir,
                     openssl_pem_cert, timeout_scale, unique, wait_for)
from k8s_fixture import (LOGIN_FMT, FakeK8s, LocalSA, Login,
                         assert_no_review, validate)

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
    # These tests read the restriction back from the token (roles,
    # user domain, validation after a delete): the restricted payload.
    SRV = Server(extra={"k8s_auth": {"local_sa_dir": LOCAL.path},
                        "token": {"payload": "restricted"}},
                 name="login", env=in_cluster_env(K8S))
    SRV.secrets.add(LOCAL_REVIEWER)
    SRV.start()


def teardown_module():
    try:
        SRV.stop()
    finally:
        K8S.stop()
        shutil.rmtree(LOCAL.path, ignore_errors=True)


# -- helpers -----------------------------------------------------------------
def in_cluster_env(k8s):
    """The server runs "in" the fake cluster: its own service-account token
    goes only to KUBERNETES_SERVICE_HOST:PORT (API.md §7)."""
    return {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(k8s.port)}


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
    # The outcome is on the access line, written within 50 ms (batched).
    wait_for(lambda: "login: instance=%s role=%s sa=%s/web pod=web-0" % (
        L.iid, L.role_name, L.ns) in SRV.log_text(), timeout=3,
        what="the login log line")
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


def test_default_payload_is_project_scoped():
    """Without [token] payload the server mints Keystone's version-2
    layout (what a classic Keystone validates): the token names the user
    and project only; Keystone adds the roles from its assignments."""
    with Server(name="ps-default") as srv:
        L = Login(srv, K8S)
        r = L.ok(L.jwt())
        subject = r.headers["x-subject-token"]
        srv.secrets.add(subject)
        v = validate(srv, subject)
        eq(v.status, 200, "validation")
        tok = v.json["token"]
        check("roles" not in tok and "token_restriction_id" not in tok,
              "a version-2 token carries no roles: %r" % tok)
        eq(tok["user"]["id"], L.rst["user_id"], "user")
        eq(tok["project"]["id"], L.rst["project_id"], "project")


def test_validate_after_restriction_deleted_is_404():
    L = Login(SRV, K8S)
    r = L.ok(L.jwt())
    subject = r.headers["x-subject-token"]
    eq(validate(SRV, subject).status, 200, "validation before delete")
    SRV.ok("DELETE", L.role_path, status=204)
    eq(validate(SRV, subject).status, 200, "validation after role delete")
    SRV.ok("DELETE", "/v4/tokens/restrictions/%s" % L.rst["id"], status=204)
    assert_error(validate(SRV, subject), 404, "token_not_found")
    assert_error(validate(SRV, subject, token=subject), 404, "token_not_found")
    eq(validate(SRV, subject, method="HEAD").status, 404, "HEAD")


def test_validate_expired_token_is_404():
    L = Login(SRV, K8S)
    # 4 s (x3 under sanitizers): a login refuses a JWT with less than 1 s
    # left, and a busy machine can spend seconds between minting the JWT
    # and the login.
    life = int(4 * timeout_scale())
    r = L.ok(L.jwt(expires_in=life))
    subject = r.headers["x-subject-token"]
    exp = ts(r.json["token"]["expires_at"])
    check(exp <= time.time() + life + 0.5, "token outlives its JWT: %s" %
          r.json["token"]["expires_at"])
    if exp > time.time():
        eq(validate(SRV, subject).status, 200, "validation before expiry")
    time.sleep(max(0, exp - time.time()) + 0.3)
    assert_error(validate(SRV, subject), 404)
    assert_error(validate(SRV, "gAAAAAnot-a-token"), 404)


# -- reviewer and trust changes at run time ----------------------------------
def test_local_token_rotation_by_symlink_swap():
    L = Login(SRV, K8S, reviewer=False,
              inst={"ca_cert": None, "review_cache_ttl": 0})
    jwt = L.jwt()
    L.ok(jwt)
    K8S.sa("kube-system", "not-a-reviewer")
    other = K8S.token("kube-system", "not-a-reviewer", expires_in=86400)
    SRV.secrets.add(other)
    try:
        LOCAL.write(token=other, ca=K8S.ca_pem)
        r = wait_for(lambda: (lambda x: x if x.status == 502 else None)(
            L.login(jwt)), timeout=5, interval=0.2,
            what="the rotated local token to be used")
        refuse(r, 502, "reviewer_forbidden")
    finally:
        LOCAL.write(token=LOCAL_REVIEWER, ca=K8S.ca_pem)
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


# -- every reason code of API.md §3 ------------------------------------------
def test_instance_not_found_and_disabled():
    L = Login(SRV, K8S)
    jwt = L.jwt()
    r = SRV.req("POST", LOGIN_FMT % os.urandom(16).hex(),
                {"k8s_role": L.role_name, "jwt": jwt}, token=None)
    refuse(r, 404, "instance_not_found")
    L.patch_instance(enabled=False)
    assert_no_review(K8S, lambda: refuse(L.login(jwt), 403,
                                         "instance_disabled"),
                     "a disabled instance")
    L.patch_instance(enabled=True)
    L.ok(jwt)


def test_role_not_found_and_disabled():
    L = Login(SRV, K8S)
    jwt = L.jwt()
    refuse(L.login(jwt, role="no-such-role"), 404, "role_not_found")
    # A role of another instance is not found through this one.
    M = Login(SRV, K8S)
    refuse(L.login(jwt, role=M.role_name), 404, "role_not_found")
    L.patch_role(enabled=False)
    assert_no_review(K8S, lambda: refuse(L.login(jwt), 403,
                                         "role_disabled"),
                     "a disabled role")
    L.patch_role(enabled=True)
    L.ok(jwt)
    # The role can also be named by its id.
    L.ok(jwt, role=L.role["id"])


def malformed_jwts(good):
    h, c, s = good.split(".")
    big_claims = dict(claims(good), pad="x" * 17000)
    return {
        "empty": "",
        "one part": "abc",
        "two parts": "%s.%s" % (h, c),
        "four parts": "%s.%s.%s.%s" % (h, c, s, s),
        "alg none": "%s.%s." % (b64({"alg": "none", "typ": "JWT"}), c),
        "alg none signed": "%s.%s.%s" % (b64({"alg": "none"}), c, s),
        "no alg": "%s.%s.%s" % (b64({"kid": "k"}), c, s),
        "header not json": "%s.%s.%s" % (b64(b"not json"), c, s),
        "claims not json": "%s.%s.%s" % (h, b64(b"{nope"), s),
        "claims an array": "%s.%s.%s" % (h, b64([1, 2]), s),
        "not base64url": "%s.%s.%s" % (h, c + "*!", s),
        "oversize": "%s.%s.%s" % (h, b64(big_claims), s),
    }


def test_malformed_jwt_shapes_cost_no_review():
    L = Login(SRV, K8S)
    good = L.jwt()
    for what, bad in malformed_jwts(good).items():
        SRV.secrets.add(bad) if len(bad) > 20 else None
        r = assert_no_review(K8S, lambda: L.login(bad), what)
        try:
            assert_error(r, 400, "malformed_jwt")
        except AssertionError as e:
            fail("%s: %s" % (what, e))
    L.ok(good)


def test_max_jwt_size_is_configurable():
    with Server(extra={"k8s_auth": {"max_jwt_size": 512}},
                name="jwtsize") as srv:
        # (the limit applies to token_reviewer_jwt too: store none)
        L = Login(srv, K8S, reviewer=False)
        jwt = L.jwt()
        check(len(jwt) > 512, "fake token unexpectedly short: %d" % len(jwt))
        assert_no_review(K8S, lambda: refuse(L.login(jwt), 400,
                                             "malformed_jwt"),
                         "a JWT over max_jwt_size")


def test_legacy_token_refused_by_default():
    L = Login(SRV, K8S)
    jwt = L.jwt(legacy=True)
    check("exp" not in claims(jwt), "fake legacy token has exp")
    assert_no_review(K8S, lambda: refuse(L.login(jwt), 401,
                                         "legacy_token_refused"),
                     "a legacy token")


def test_legacy_token_accepted_when_allowed():
    with Server(extra={"k8s_auth": {"allow_legacy_tokens": True}},
                name="legacy") as srv:
        L = Login(srv, K8S, inst={"review_cache_ttl": 0})
        jwt = L.jwt(legacy=True)
        r = L.ok(jwt)
        tok = r.json["token"]
        eq(tok["k8s_auth"]["namespace"], L.ns, "namespace")
        eq(tok["k8s_auth"]["service_account"], "web", "service_account")
        life = ts(tok["expires_at"]) - ts(tok["issued_at"])
        check(3590 <= life <= 3600, "legacy token lifetime %r" % life)
        # Legacy tokens die with their service account.
        K8S.delete_sa(L.ns, "web")
        refuse(L.login(jwt), 401, "token_invalid")


def test_token_expired_and_not_yet_valid():
    L = Login(SRV, K8S)
    exp = L.jwt(expires_in=-300)
    assert_no_review(K8S, lambda: refuse(L.login(exp), 401,
                                         "token_expired"), "expired JWT")
    nbf = L.jwt(not_before_offset=300)
    assert_no_review(K8S, lambda: refuse(L.login(nbf), 401,
                                         "token_not_yet_valid"),
                     "JWT not valid yet")
    # nbf within clock_skew (60 s): accepted (the fake's leeway is 60 s too).
    L.ok(L.jwt(not_before_offset=20))
    # exp within the skew: a token capped to the JWT's expiry would be
    # born dead, so it is refused locally, before any TokenReview.
    assert_no_review(K8S, lambda: refuse(L.login(L.jwt(expires_in=-20)),
                                         401, "token_expired"),
                     "JWT expired within the skew")
    # ... unless tokens are not capped to the JWT: the skew then applies.
    with Server(extra={"token": {"cap_to_jwt_expiry": "false"}},
                name="nocap") as srv:
        L2 = Login(srv, K8S)
        L2.ok(L2.jwt(expires_in=-20))


def test_audience_mismatch():
    L = Login(SRV, K8S, role={"bound_audience": "keystone"})
    for aud in (["other"], [API_AUD]):
        jwt = L.jwt(audiences=aud)
        assert_no_review(K8S, lambda: refuse(L.login(jwt), 401,
                                             "audience_mismatch"),
                         "JWT aud %r" % aud)
    L.ok(L.jwt(audiences=["other", "keystone"]))


def test_namespace_and_service_account_not_bound():
    L = Login(SRV, K8S)
    other_ns = unique("ns")
    K8S.sa(other_ns, "web")
    jwt = K8S.token(other_ns, "web")
    SRV.secrets.add(jwt)
    assert_no_review(K8S, lambda: refuse(L.login(jwt), 401,
                                         "namespace_not_bound"),
                     "a namespace outside the bounds")
    K8S.sa(L.ns, "db")
    jwt = L.jwt(sa="db")
    assert_no_review(K8S, lambda: refuse(L.login(jwt), 401,
                                         "service_account_not_bound"),
                     "a name outside the bounds")
    # Globs: ["w*"] admits web, not db.
    L.patch_role(bound_service_account_names=["w*"])
    L.ok(L.jwt())
    refuse(L.login(jwt), 401, "service_account_not_bound")


def test_pod_not_bound_by_claim_and_by_review():
    L = Login(SRV, K8S, role={"bound_pod_names": ["api-*"]})
    K8S.pod(L.ns, "web-0", "web")
    K8S.pod(L.ns, "api-0", "web")
    jwt = L.jwt(pod="web-0")
    eq(claims(jwt)["kubernetes.io"]["pod"]["name"], "web-0", "pod claim")
    assert_no_review(K8S, lambda: refuse(L.login(jwt), 401, "pod_not_bound"),
                     "a pod claim outside the bounds")
    # Not bound to any pod: only the review can tell, and it reports none.
    nopod = L.jwt()
    before = K8S.reviews()
    refuse(L.login(nopod), 401, "pod_not_bound")
    eq(K8S.reviews() - before, 1, "review for a token without a pod claim")
    r = L.ok(L.jwt(pod="api-0"))
    eq(r.json["token"]["k8s_auth"]["pod_name"], "api-0", "pod_name")


def refuse_tampered(L, jwt, mode, status, reason):
    """Login with jwt while fake-k8s answers the review tampered by mode:
    exactly one (faulted) review, the refusal, and no token anywhere."""
    before = K8S.stats()
    K8S.fault(mode)
    try:
        r = L.login(jwt)
    finally:
        K8S.clear_faults()
    after = K8S.stats()
    eq(after["faulted"] - before["faulted"], 1, "%s reviews" % mode)
    eq(after["authenticated"] - before["authenticated"], 1,
       "reviews that authenticated the JWT (%s)" % mode)
    check("x-subject-token" not in r.headers,
          "%s: a refusal carries an X-Subject-Token" % mode)
    check(b'"token"' not in r.raw, "%s: a token in the refusal: %r" %
          (mode, r.raw[:300]))
    refuse(r, status, reason)


def test_review_of_another_identity_is_invalid_review():
    # Bounds that admit any name and namespace: the cross-check of the
    # review against the JWT is the only thing that can refuse.
    L = Login(SRV, K8S, role={"bound_service_account_names": ["*"],
                              "bound_service_account_namespaces": ["*"]},
              inst={"review_cache_ttl": 0})
    jwt = L.jwt()
    for mode in ("other_name", "other_namespace", "other_uid"):
        refuse_tampered(L, jwt, mode, 502, "invalid_review")
    wait_for(lambda: "login refused: invalid_review (the TokenReview "
             "names another service account than the JWT)" in
             SRV.log_text(), timeout=3,
             what="the identity mismatch in the log")
    L.ok(jwt)


def test_review_without_the_audience_is_audience_mismatch():
    L = Login(SRV, K8S, role={"bound_audience": "keystone"}, inst={"review_cache_ttl": 0})
    jwt = L.jwt(audiences=["keystone"])
    refuse_tampered(L, jwt, "no_audiences", 401, "audience_mismatch")
    wait_for(lambda: "the cluster did not confirm the role's audience" in
             SRV.log_text(), timeout=3,
             what="the unconfirmed audience in the log")
    L.ok(jwt)


def test_review_without_the_pod_is_pod_not_bound():
    L = Login(SRV, K8S, role={"bound_pod_names": ["api-*"]}, inst={"review_cache_ttl": 0})
    K8S.pod(L.ns, "api-0", "web")
    jwt = L.jwt(pod="api-0")
    # The JWT's pod claim passes the local check; only the review says
    # whether the pod is real, and this one reports none.
    refuse_tampered(L, jwt, "no_pod", 401, "pod_not_bound")
    r = L.ok(jwt)
    eq(r.json["token"]["k8s_auth"]["pod_name"], "api-0", "pod_name")


def test_token_invalid_after_pod_or_sa_deleted_and_bad_signature():
    # Every login reviewed: the cache's own expiry is test_review_cache's.
    L = Login(SRV, K8S, role={"bound_service_account_names": ["*"]}, inst={"review_cache_ttl": 0})
    K8S.pod(L.ns, "web-0", "web")
    jwt = L.jwt(pod="web-0")
    L.ok(jwt)
    K8S.delete_pod(L.ns, "web-0")
    refuse(L.login(jwt), 401, "token_invalid")
    bad = L.jwt(bad_signature=True)   # refused before any review (§8)
    refuse(L.login(bad), 401, "signature_invalid")
    K8S.sa(L.ns, "gone")
    gone = L.jwt(sa="gone")
    L.ok(gone)
    K8S.delete_sa(L.ns, "gone")
    refuse(L.login(gone), 401, "token_invalid")
    K8S.sa(L.ns, "gone")   # re-created: a new UID, the old token stays bad
    refuse(L.login(gone), 401, "token_invalid")
    check("TokenReview: not authenticated" in SRV.log_text(),
          "the review's error is not logged")


def test_reviewer_unauthorized_and_forbidden():
    bad = K8S.token("kube-system", "local-reviewer", bad_signature=True)
    L = Login(SRV, K8S, reviewer=bad)
    refuse(L.login(L.jwt()), 502, "reviewer_unauthorized")
    name = unique("noreview")
    K8S.sa("kube-system", name)
    plain = K8S.token("kube-system", name)
    M = Login(SRV, K8S, reviewer=plain)
    refuse(M.login(M.jwt()), 502, "reviewer_forbidden")
    # An expired stored reviewer token is also unauthorized.
    K8S.delete_sa("kube-system", name)
    refuse(M.login(M.jwt()), 502, "reviewer_unauthorized")


def test_cluster_unavailable_status_faults():
    L = Login(SRV, K8S)
    jwt = L.jwt()
    cases = [(500, None), (503, 7), (429, 3), (503, None), (502, None)]
    try:
        for status, ra in cases:
            kw = {"status": status, "count": 1}
            if ra is not None:
                kw["retry_after"] = ra
            K8S.fault("status", **kw)
            r = L.login(jwt)
            try:
                assert_error(r, 503, "cluster_unavailable")
            except AssertionError as e:
                fail("cluster answered %d: %s" % (status, e))
            h = r.headers.get("retry-after")
            check(h is not None and h.isdigit() and int(h) >= 1,
                  "Retry-After after a %d: %r" % (status, h))
            if ra is not None:
                eq(int(h), ra, "Retry-After passed on from a %d" % status)
    finally:
        K8S.clear_faults()
    # Five cluster errors in a row opened the instance's circuit breaker
    # (test_review_cache covers it): it fails fast until an admin update
    # of the instance resets it.
    assert_error(L.login(jwt), 503, "cluster_unavailable")
    L.patch_instance(enabled=True)
    L.ok(jwt)


def test_cluster_unavailable_reset_and_closed_port():
    L = Login(SRV, K8S)
    jwt = L.jwt()
    # Every review is reset (libcurl may retry once on a fresh connection
    # when a reused one dies, so a one-shot fault is not enough).
    K8S.fault("reset")
    try:
        r = L.login(jwt)
    finally:
        K8S.clear_faults()
    refuse(r, 503, "cluster_unavailable")
    check(r.headers.get("retry-after"), "no Retry-After after a reset")
    L.ok(jwt)
    port = free_ports(1)[0]
    L.patch_instance(host="https://127.0.0.1:%d" % port)
    t0 = time.monotonic()
    r = L.login(jwt)
    refuse(r, 503, "cluster_unavailable")
    check(r.headers.get("retry-after"), "no Retry-After for a closed port")
    check(time.monotonic() - t0 < 2 * timeout_scale(),
          "a refused connection took %.1fs" % (time.monotonic() - t0))


def test_cluster_tls_error_wrong_ca():
    L = Login(SRV, K8S, inst={"ca_cert": openssl_pem_cert("other-ca")})
    refuse(L.login(L.jwt()), 502, "cluster_tls_error")
    # Trust a CA bundle that contains the right CA too: works.
    L.patch_instance(ca_cert=openssl_pem_cert("other-ca") + K8S.ca_pem)
    L.ok(L.jwt())


def test_cluster_timeout_on_hang():
    with Server(extra={"k8s_auth": {"review_timeout": 1,
                                    "connect_timeout": 1,
                                    "local_sa_dir": LOCAL.path}},
                name="timeout", env=in_cluster_env(K8S)) as srv:
        L = Login(srv, K8S)
        jwt = L.jwt()
        K8S.fault("hang")
        try:
            t0 = time.monotonic()
            r = L.login(jwt)
            took = time.monotonic() - t0
        finally:
            K8S.clear_faults()
        refuse(r, 504, "cluster_timeout")
        check(0.8 <= took < 3 * timeout_scale(),
              "review_timeout=1 answered after %.2fs" % took)
        L.ok(jwt)
        eq(srv.req("GET", "/healthz", token=None).status, 200, "healthz")


def test_login_body_errors():
    L = Login(SRV, K8S)
    jwt = L.jwt()
    r = SRV.req("POST", L.path, raw=json.dumps({"k8s_role": L.role_name,
                                                 "jwt": jwt}).encode(),
                token=None, content_type="text/plain")
    assert_error(r, 415, "unsupported_media_type")
    r = SRV.req("POST", L.path, raw=b'{"k8s_role": "x", "jwt": ', token=None)
    assert_error(r, 400, "malformed_json")
    r = SRV.req("POST", L.path, raw=b'[1, 2]', token=None)
    assert_error(r, 400, "malformed_json")
    assert_error(L.login(jwt, extra="x"), 400, "unknown_field", names="extra")
    assert_error(L.login(jwt, role_name="different"), 400,
                 "invalid_value", names="role_name")
    assert_error(SRV.req("POST", L.path, {"k8s_role": L.role_name},
                         token=None), 400, "missing_field", names="jwt")
    assert_error(SRV.req("POST", L.path, {"jwt": jwt}, token=None), 400,
                 "missing_field",
                 names="k8s_role")
    assert_error(SRV.req("POST", L.path, {"k8s_role": L.role_name,
                                          "jwt": 5}, token=None), 400,
                 "invalid_value",
                 names="jwt")
    assert_error(SRV.req("POST", L.path, {"k8s_role": 5, "jwt": jwt},
                         token=None), 400, "invalid_value", names="k8s_role")
    # keystone-ng's spelling, alone or agreeing with k8s_role.
    r = SRV.req("POST", L.path, {"role_name": L.role_name, "jwt": jwt},
                token=None)
    eq(r.status, 200, "role_name alias (%r)" % r.raw[:200])
    L.ok(jwt, role_name=L.role_name)
    # None of these body errors leaked the JWT into an answer.
    check(jwt not in SRV.log_text(), "JWT in the log")


# -- expiry ------------------------------------------------------------------
def lifetime(r):
    tok = r.json["token"]
    return ts(tok["expires_at"]), ts(tok["issued_at"])


def test_expiry_capped_by_role_token_ttl():
    L = Login(SRV, K8S, role={"token_ttl": 120})
    t0 = time.time()
    exp, issued = lifetime(L.ok(L.jwt()))
    check(abs(exp - issued - 120) <= 1, "token_ttl 120: lifetime %.1f" %
          (exp - issued))
    check(abs(exp - (t0 + 120)) <= 2, "expires_at %.1f vs now+120 %.1f" %
          (exp, t0 + 120))


def test_expiry_capped_by_jwt_exp():
    L = Login(SRV, K8S)
    jwt = L.jwt(expires_in=600)
    exp, issued = lifetime(L.ok(jwt))
    jexp = claims(jwt)["exp"]
    check(abs(exp - jexp) <= 1, "expires_at %.1f, JWT exp %d" % (exp, jexp))
    # token_ttl above the JWT's remaining life: the JWT still wins.
    L.patch_role(token_ttl=1800)
    exp, issued = lifetime(L.ok(jwt))
    check(abs(exp - jexp) <= 1, "with token_ttl 1800: expires_at %.1f, JWT "
          "exp %d" % (exp, jexp))


def test_expiry_not_capped_when_cap_to_jwt_expiry_false():
    with Server(extra={"token": {"cap_to_jwt_expiry": False,
                                 "expiration": 3600}},
                name="nocap") as srv:
        L = Login(srv, K8S)
        exp, issued = lifetime(L.ok(L.jwt(expires_in=600)))
        check(abs(exp - issued - 3600) <= 1, "cap_to_jwt_expiry=false: "
              "lifetime %.1f, expected 3600" % (exp - issued))
        L.patch_role(token_ttl=300)
        exp, issued = lifetime(L.ok(L.jwt(expires_in=600)))
        check(abs(exp - issued - 300) <= 1, "token_ttl 300 still caps: "
              "lifetime %.1f" % (exp - issued))


# -- validation follows the restriction as it is now -------------------------
def test_validation_reflects_restriction_changes():
    L = Login(SRV, K8S)
    subject = L.ok(L.jwt()).headers["x-subject-token"]
    rpath = "/v4/tokens/restrictions/%s" % L.rst["id"]
    new_role = {"id": os.urandom(16).hex(), "name": "admin"}
    SRV.ok("PATCH", rpath, {"restriction": {"roles": [new_role]}})
    eq(validate(SRV, subject).json["token"]["roles"], [new_role],
       "roles after the restriction changed")
    # Another user on the restriction: the old token no longer matches.
    SRV.ok("PATCH", rpath, {"restriction": {"user_id": os.urandom(16).hex()}})
    assert_error(validate(SRV, subject), 404, "token_not_found")


def test_a_login_token_cannot_validate_another_token():
    L = Login(SRV, K8S)
    a = L.ok(L.jwt()).headers["x-subject-token"]
    b = L.ok(L.jwt()).headers["x-subject-token"]
    check(a != b, "two logins gave the same token")
    # Without [keystone] url a restricted token is no admin credential at
    # all (test_api_policy covers a recognised one: 403).
    r = validate(SRV, b, token=a)
    refuse(r, 401, "invalid_token")
    check(b"X-Subject-Token" not in r.raw and "x-subject-token" not in
          r.headers, "B echoed to A")
    eq(validate(SRV, b, token=b).status, 200, "self-validation of B")


def test_untrusted_instance_id_and_role_cannot_forge_log_lines():
    # The instance id (a decoded path segment) and the role name (from the
    # body) are the client's: a newline in either must not start a new,
    # forged line in the server log.
    L = Login(SRV, K8S)
    jwt = L.jwt()
    mark = unique("FORGED")
    r = SRV.req("POST", LOGIN_FMT % ("x%0a" + mark + "-inst"),
                {"k8s_role": L.role_name, "jwt": jwt}, token=None)
    refuse(r, 404, "instance_not_found")
    refuse(L.login(jwt, role="r\n" + mark + "-role"), 404, "role_not_found")
    wait_for(lambda: mark + "-role" in SRV.log_text(), what="refusal logged")
    for line in SRV.log_text().splitlines():
        check(not line.startswith(mark),
              "a client forged a log line: %r" % line)


# -- trust boundaries (API.md §7) ---------------------------------------------
LOCAL_CALLER = "caller=system:serviceaccount:kube-system:local-reviewer"


def test_local_token_only_to_the_in_cluster_api_server():
    """The server's own pod token (bound to system:auth-delegator in its
    cluster) goes only to the API server of the cluster it runs in; an
    instance pointing anywhere else reviews with the client's JWT."""
    other = free_ports(1)[0]
    elsewhere = {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                 "KUBERNETES_SERVICE_PORT": str(other)}
    for env in (elsewhere, {}):
        with Server(extra={"k8s_auth": {"local_sa_dir": LOCAL.path}},
                    name="no-local-token", env=env) as srv:
            L = Login(srv, K8S, reviewer=False)
            before = K8S.log_text().count(LOCAL_CALLER)
            # The JWT reviews itself; the workload is no reviewer: 403.
            refuse(L.login(L.jwt()), 502, "reviewer_forbidden")
            log = K8S.log_text()
            eq(log.count(LOCAL_CALLER), before,
               "the local token reached a host outside the cluster (%r)" %
               env)
            check("caller=system:serviceaccount:%s:web" % L.ns in log,
                  "the review was not made with the client's JWT")
    # The in-cluster API server (the module's server) does get it.
    L = Login(SRV, K8S, reviewer=False)
    before = K8S.log_text().count(LOCAL_CALLER)
    L.ok(L.jwt())
    check(K8S.log_text().count(LOCAL_CALLER) > before,
          "the in-cluster API server did not see the local token")


def test_proxy_environment_ignored():
    """curl's proxy variables do not redirect TokenReviews (a proxy is
    only used when [k8s_auth] proxy says so)."""
    dead = "http://127.0.0.1:%d" % free_ports(1)[0]
    env = dict(in_cluster_env(K8S))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "ALL_PROXY",
                "all_proxy"):
        env[var] = dead
    env["NO_PROXY"] = env["no_proxy"] = ""
    with Server(extra={"k8s_auth": {"local_sa_dir": LOCAL.path}},
                name="proxy-env", env=env) as srv:
        L = Login(srv, K8S)
        L.ok(L.jwt())


def _sql(srv, statement, *args):
    """Write behind the server's back, as another replica would: the
    revision moves with the write, and the server's snapshot (what logins
    read) catches up within [database] refresh_interval."""
    srv.db_execute(statement, *args)
    srv.db_execute("UPDATE revision SET value = value + 1 WHERE id = 1")
    rev = int(srv.db_execute(
        "SELECT value FROM revision WHERE id = 1")[0][0])
    wait_for(lambda: (srv.req("GET", "/readyz", token=None).json or {}).get(
        "snapshot", {}).get("revision", 0) >= rev, timeout=5,
        what="the snapshot at revision %d" % rev)


def test_connect_time_destination_checks():
    """What is connected to is checked when the socket opens: an instance
    whose host a non-admin set (host_admin = 0, as every instance written
    before this rule) only reaches [k8s_auth] allowed_hosts, and nobody
    reaches a link-local address, whatever the stored host says."""
    with Server(extra={"k8s_auth": {"local_sa_dir": LOCAL.path,
                                    "allowed_hosts": "10.0.0.0/8, "
                                    "*.allowed.example",
                                    "connect_timeout": 2}},
                name="connect-checks", env=in_cluster_env(K8S)) as srv:
        L = Login(srv, K8S, inst={"review_cache_ttl": 0})
        jwt = L.jwt()
        L.ok(jwt)  # the bootstrap admin set the host: exempt
        _sql(srv, "UPDATE instances SET host_admin = 0 WHERE id = ?", L.iid)
        n = K8S.reviews()
        r = refuse(L.login(jwt), 502, "destination_forbidden")
        check("allowed_hosts" in r["message"], "message: %r" % r["message"])
        eq(K8S.reviews(), n, "TokenReviews after the refusal")
        _sql(srv, "UPDATE instances SET host_admin = 1 WHERE id = ?", L.iid)
        L.ok(jwt)
        for host in ("https://169.254.1.1:6443", "https://[fe80::1]:6443",
                     "https://2852039166:443"):
            _sql(srv, "UPDATE instances SET host = ? WHERE id = ?", host,
                 L.iid)
            t0 = time.monotonic()
            r = refuse(L.login(jwt), 502, "destination_forbidden")
            check("link-local" in r["message"],
                  "%s: message %r" % (host, r["message"]))
            check(time.monotonic() - t0 < 1.5 * timeout_scale(),
                  "%s: the refusal waited for a connect timeout" % host)


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that records the targets
    it was asked for (the tunnel is a plain byte pump)."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.targets = []
        self.threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.threading.Thread(target=self._serve, args=(c,),
                                  daemon=True).start()

    def _serve(self, c):
        import select
        import socket
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            data = c.recv(4096)
            if not data:
                c.close()
                return
            head += data
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(line) < 2 or line[0] != "CONNECT":
            c.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            c.close()
            return
        self.targets.append(line[1])
        host, port = line[1].rsplit(":", 1)
        try:
            u = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            c.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            c.close()
            return
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            while True:
                r, _, _ = select.select([c, u], [], [], 30)
                if not r:
                    break
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (u if s is c else c).sendall(data)
        except OSError:
            pass
        for s in (c, u):
            s.close()

    def close(self):
        self.sock.close()


def test_configured_proxy_is_used():
    """[k8s_auth] proxy sends TokenReviews through that proxy (and only
    then is one used)."""
    proxy = ConnectProxy()
    try:
        with Server(extra={"k8s_auth": {
                "local_sa_dir": LOCAL.path,
                "proxy": "http://127.0.0.1:%d" % proxy.port}},
                name="proxy-conf", env=in_cluster_env(K8S)) as srv:
            L = Login(srv, K8S)
            L.ok(L.jwt())
        check("127.0.0.1:%d" % K8S.port in proxy.targets,
              "the proxy saw %r" % proxy.targets)
    finally:
        proxy.close()
