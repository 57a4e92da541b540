"""Local JWT signature verification before the TokenReview (API.md §8).

Against the test cluster, which serves issuer discovery and its JWKS to
authenticated callers like kube-apiserver and rotates keys on demand:

- a forged signature (another key, tampered claims, HS256 keyed with the
  public key) is 401 signature_invalid and the cluster sees no TokenReview,
  from the very first login of an instance (the login waits for the keys);
- a JWT of another issuer is 401 issuer_mismatch, against the discovered
  issuer or the instance's `issuer`;
- a kid unknown after a key rotation makes exactly one refresh, then the
  login succeeds (RS256 and ES256); tokens of the old key stay valid; an
  unknown kid right after a refresh is signature_invalid with no fetch;
- with discovery failing the login goes on with the TokenReview alone,
  counted in /metrics and shown by /readyz;
- an inline `jwks` works while discovery fails; a bad one is refused;
- `jwt_signature: "skip"` leaves the decision to the TokenReview.
"""
import base64
import hashlib
import hmac
import json
import os
import time

from harness import Server, assert_error, check, eq, unique, wait_for
from k8s_fixture import FakeK8s, Login

K8S = None
SRV = None
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                    "jwks")


def setup_module():
    global K8S, SRV
    K8S = FakeK8s("sig").start()
    SRV = Server(name="sig", extra={
        "k8s_auth": {"jwks_refresh_interval": "1"}}).start()


def teardown_module():
    try:
        SRV.stop()
    finally:
        K8S.stop()


# -- helpers --------------------------------------------------------------
def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def part(jwt, i):
    p = jwt.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def reheader(jwt, **fields):
    """jwt with header fields changed and its signature kept."""
    h = part(jwt, 0)
    h.update(fields)
    _, c, s = jwt.split(".")
    return "%s.%s.%s" % (b64(json.dumps(h).encode()), c, s)


def metric(name, outcome):
    r = SRV.req("GET", "/metrics", token=None)
    eq(r.status, 200, "/metrics")
    want = '%s{outcome="%s"} ' % (name, outcome)
    for line in r.raw.decode().splitlines():
        if line.startswith(want):
            return int(line[len(want):])
    raise AssertionError("no %s in /metrics" % want)


def sig(outcome):
    return metric("k8sauth_jwt_signature_checks_total", outcome)


def fetches(outcome):
    return metric("k8sauth_jwks_fetches_total", outcome)


def reviews():
    return K8S.stats()["tokenreviews"]


def refused_without_review(L, jwt, status, reason):
    before = reviews()
    assert_error(L.login(jwt), status, reason)
    eq(reviews(), before, "TokenReviews after a %s refusal" % reason)


def oidc_fault(status):
    K8S.api("POST", "/_test/faults/oidc", {"status": status}, expect=200)


def oidc_clear():
    K8S.api("DELETE", "/_test/faults/oidc", expect=200)


def readyz_jwks(iid):
    r = SRV.req("GET", "/readyz", token=None)
    for e in r.json.get("jwks", []):
        if e["instance_id"] == iid:
            return e
    return None


# -- tests ----------------------------------------------------------------
def test_defaults_and_validation():
    L = Login(SRV, K8S)
    eq(L.inst["jwt_signature"], "verify", "jwt_signature default")
    eq(L.inst["jwks"], None, "jwks default")
    eq(L.inst["issuer"], None, "issuer default")
    path = "/v4/k8s_auth/instances/%s" % L.iid
    with open(os.path.join(DATA, "rsa1024.json")) as f:
        small = f.read()
    with open(os.path.join(DATA, "p384.json")) as f:
        p384 = f.read()
    for field, value, words in (
            ("jwt_signature", "maybe", "jwt_signature"),
            ("jwt_signature", None, "jwt_signature"),
            ("jwks", "{not json", "not valid JSON"),
            ("jwks", '{"keys":[]}', "no usable key"),
            ("jwks", small, "1024 bits"),
            ("jwks", p384, "P-256"),
            ("issuer", "", "issuer"),
            ("issuer", 7, "issuer")):
        r = SRV.req("PATCH", path, {"instance": {field: value}})
        assert_error(r, 400, "invalid_value")
        check(words in r.json["error"]["message"],
              "%s=%r: message %r lacks %r" % (field, value,
                                              r.json["error"]["message"],
                                              words))
    r = L.patch_instance(jwt_signature="skip", issuer="https://x.example")
    eq((r.json["instance"]["jwt_signature"], r.json["instance"]["issuer"]),
       ("skip", "https://x.example"), "patched fields")


def test_forged_signature_refused_without_review_from_the_first_login():
    L = Login(SRV, K8S)
    before = fetches("ok")
    # The very first login of the instance: it waits for the keys.
    refused_without_review(L, L.jwt(bad_signature=True), 401,
                           "signature_invalid")
    eq(fetches("ok"), before + 1, "key fetches for a cold instance")
    L.ok(L.jwt())
    good = L.jwt()
    # Tampered claims under the genuine signature.
    c = part(good, 1)
    c["jti"] = "0" * 36
    h, _, s = good.split(".")
    tampered = "%s.%s.%s" % (h, b64(json.dumps(c).encode()), s)
    SRV.secrets.add(tampered)
    refused_without_review(L, tampered, 401, "signature_invalid")
    # Alg confusion: HS256 keyed with the published key.
    jwk = json.dumps(K8S.api("GET", "/_test/keys", expect=200)[1]).encode()
    hs = reheader(good, alg="HS256")
    si = hs.rsplit(".", 1)[0]
    hs = si + "." + b64(hmac.new(jwk, si.encode(), hashlib.sha256).digest())
    SRV.secrets.add(hs)
    refused_without_review(L, hs, 401, "signature_invalid")
    # A truncated signature.
    refused_without_review(L, good[:-8], 401, "signature_invalid")
    inv = sig("invalid")
    refused_without_review(L, L.jwt(bad_signature=True), 401,
                           "signature_invalid")
    eq(sig("invalid"), inv + 1, "signature_checks{invalid}")


def test_wrong_issuer():
    L = Login(SRV, K8S)
    L.ok(L.jwt())
    refused_without_review(L, L.jwt(issuer="https://elsewhere.example"),
                           401, "issuer_mismatch")
    L.patch_instance(issuer="https://other.example")
    refused_without_review(L, L.jwt(), 401, "issuer_mismatch")
    L.patch_instance(issuer=part(L.jwt(), 1)["iss"])
    L.ok(L.jwt())
    L.patch_instance(issuer=None)
    L.ok(L.jwt())
    check(readyz_jwks(L.iid) is not None, "keys cached for the instance")
    SRV.ok("DELETE", "/v4/k8s_auth/instances/%s" % L.iid, status=204)
    eq(readyz_jwks(L.iid), None, "keys of a deleted instance")


def test_unknown_kid_after_rotation_one_refresh():
    L = Login(SRV, K8S)
    old = L.jwt()
    L.ok(L.jwt())
    for alg in ("RS256", "ES256"):
        _, doc = K8S.api("POST", "/_test/keys", {"alg": alg}, expect=201)
        time.sleep(1.2)     # past jwks_refresh_interval
        st = K8S.stats()
        new = L.jwt(alg=alg)
        eq(part(new, 0), {"alg": alg, "kid": doc["kid"]}, "new header")
        L.ok(new)
        after = K8S.stats()
        eq((after["discovery"] - st["discovery"], after["jwks"] - st["jwks"]),
           (1, 1), "fetches for one unknown kid")
        L.ok(L.jwt(alg=alg))
        L.ok(old)           # the old key stays published and valid
        eq(K8S.stats()["jwks"], after["jwks"], "fetches for known kids")
    # A kid nobody publishes, right after a refresh: refused, no fetch.
    st = K8S.stats()["jwks"]
    bogus = reheader(L.jwt(), kid="no-such-key")
    SRV.secrets.add(bogus)
    refused_without_review(L, bogus, 401, "signature_invalid")
    eq(K8S.stats()["jwks"], st, "fetches for an unknown kid while fresh")


def test_jwks_unavailable_goes_on_with_the_review_alone():
    for status in (404, 401):
        L = Login(SRV, K8S)
        oidc_fault(status)
        try:
            nk = sig("no_keys")
            label = "not_found" if status == 404 else "unauthorized"
            fe = fetches(label)
            L.ok(L.jwt())
            eq(sig("no_keys"), nk + 1, "signature_checks{no_keys}")
            eq(fetches(label), fe + 1, "jwks_fetches{%s}" % label)
            e = readyz_jwks(L.iid)
            check(e is not None and e["state"] == "review_only" and
                  str(status) in e.get("error", ""), "readyz jwks: %r" % e)
            # The cluster, not the signature check, refuses a forgery.
            before = reviews()
            assert_error(L.login(L.jwt(bad_signature=True)), 401,
                         "token_invalid")
            eq(reviews(), before + 1, "review-only TokenReviews")
        finally:
            oidc_clear()
        time.sleep(1.2)
        L.ok(L.jwt())       # keys again after refresh_interval
        eq(readyz_jwks(L.iid)["state"], "ok", "readyz after recovery")
        refused_without_review(L, L.jwt(bad_signature=True), 401,
                               "signature_invalid")
    check("logins go on with the TokenReview alone" in SRV.log_text(),
          "the failed fetch is not logged")


def test_inline_jwks_with_discovery_failing():
    _, keys = K8S.api("GET", "/_test/keys", expect=200)
    oidc_fault(403)
    try:
        L = Login(SRV, K8S, inst={"jwks": json.dumps(keys)})
        eq(json.loads(L.inst["jwks"]), keys, "jwks echoed")
        disc = K8S.stats()["discovery"]
        L.ok(L.jwt())
        L.ok(L.jwt(alg="ES256"))
        refused_without_review(L, L.jwt(bad_signature=True), 401,
                               "signature_invalid")
        eq(K8S.stats()["discovery"], disc, "discovery with an inline jwks")
        eq(readyz_jwks(L.iid)["source"], "jwks", "readyz source")
        # Only the other key: the RS256 tokens no longer verify.
        only_ec = {"keys": [k for k in keys["keys"] if k["kty"] == "EC"]}
        L.patch_instance(jwks=json.dumps(only_ec))
        refused_without_review(L, L.jwt(), 401, "signature_invalid")
        L.ok(L.jwt(alg="ES256"))
    finally:
        oidc_clear()


def test_skip_leaves_it_to_the_review():
    L = Login(SRV, K8S, inst={"jwt_signature": "skip"})
    sk = sig("skipped")
    before = reviews()
    assert_error(L.login(L.jwt(bad_signature=True)), 401, "token_invalid")
    eq(reviews(), before + 1, "a skipped check goes to the review")
    L.ok(L.jwt())
    eq(sig("skipped"), sk + 2, "signature_checks{skipped}")
    # An instance issuer is still checked.
    L.patch_instance(issuer="https://other.example")
    refused_without_review(L, L.jwt(), 401, "issuer_mismatch")
    L.patch_instance(jwt_signature="verify", issuer=None)
    refused_without_review(L, L.jwt(bad_signature=True), 401,
                           "signature_invalid")
