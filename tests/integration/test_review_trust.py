"""What a TokenReview reports is checked and never trusted for logs or the
audit trail (API.md section 7, input hygiene):

- a review naming a namespace, service account or pod that is not a valid
  Kubernetes name is 502 invalid_review, and the names are logged escaped
  (the test cluster plays a rogue cluster with its review_as fault);
- the audit record of a failed login marks the JWT's identity as claimed
  (claimed_namespace, claimed_service_account) until the review confirmed
  it.
"""
import base64
import hashlib
import json

from harness import Server, assert_error, check, eq, unique, wait_for
from k8s_fixture import FakeK8s, Login

K8S = None
SRV = None
ANY = {"bound_service_account_names": ["*"],
       "bound_service_account_namespaces": ["*"]}


def setup_module():
    global K8S, SRV
    K8S = FakeK8s("rtrust").start()
    SRV = Server(name="rtrust").start()


def teardown_module():
    try:
        SRV.stop()
    finally:
        K8S.stop()


def b64(d):
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(
        b"=").decode()


def claims(jwt):
    p = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def forged_jwt(real, ns, sa, pod=None):
    """real's claims naming ns/sa (and pod) instead; the server does not
    trust the signature, the review decides."""
    c = claims(real)
    k = c["kubernetes.io"]
    k["namespace"] = ns
    k["serviceaccount"] = {"name": sa}
    if pod is not None:
        k["pod"] = {"name": pod, "uid": "0" * 8}
    c["sub"] = "system:serviceaccount:%s:%s" % (ns, sa)
    head, _, sig = real.split(".")
    return "%s.%s.%s" % (head, b64(c), sig)


def review_as(username, pod=None):
    body = {"username": username}
    if pod is not None:
        body["pod_name"] = pod
    K8S.api("POST", "/_test/faults/review_as", body, expect=200)


def audit_of(jwt):
    """The audit record of the login made with jwt."""
    jid = hashlib.sha256(jwt.encode()).hexdigest()[:8]
    found = []

    def look():
        for line in SRV.log_text().splitlines():
            if '"type":"login"' in line and jid in line:
                found[:] = [json.loads(line[line.index("{"):])]
                return True
        return False
    wait_for(look, what="the audit record of jwt sha256:%s" % jid)
    return found[0]


def test_review_with_invalid_kubernetes_names_502_and_escaped_log():
    # The forged claims would fail the local signature check (API.md §8):
    # skip it, so that the rogue cluster's review is what is judged.
    L = Login(SRV, K8S, role=ANY, inst={"jwt_signature": "skip"})
    real = L.jwt()
    mark = unique("FORGED")
    cases = [
        # a newline in the namespace would forge a log line
        ("evil\n" + mark + " ns", "web", None),
        ("team-a", "Web_Admin", None),           # not a subdomain
        ("team-a", "web", "pod\r\n" + mark),     # pod name
        ("x" * 64, "web", None),                 # label longer than 63
    ]
    try:
        for ns, sa, pod in cases:
            jwt = forged_jwt(real, ns, sa, pod)
            SRV.secrets.add(jwt)
            review_as("system:serviceaccount:%s:%s" % (ns, sa), pod)
            r = L.login(jwt)
            assert_error(r, 502, "invalid_review")
            check("Kubernetes name" in r.json["error"]["message"],
                  "message: %r" % r.json)
    finally:
        K8S.api("DELETE", "/_test/faults/review_as", expect=200)
    wait_for(lambda: "not Kubernetes names" in SRV.log_text(),
             what="the refusal logged")
    text = SRV.log_text()
    for line in text.splitlines():
        check(not line.startswith(mark),
              "a rogue cluster forged a log line: %r" % line)
    check(mark in text, "the refused names are not in the log at all")
    # A real review still logs in.
    eq(L.ok(L.jwt()).status, 200, "login after the rogue reviews")


def test_failed_login_audit_marks_claimed_identity():
    L = Login(SRV, K8S)
    # Step 2 refusal: only the JWT names this identity.
    K8S.sa(L.ns, "not-bound")
    other = K8S.token(L.ns, "not-bound")
    SRV.secrets.add(other)
    assert_error(L.login(other), 401, "service_account_not_bound")
    a = audit_of(other)
    eq(a.get("claimed_namespace"), L.ns, "claimed namespace: %r" % a)
    eq(a.get("claimed_service_account"), "not-bound", "claimed SA: %r" % a)
    check("namespace" not in a and "service_account" not in a,
          "a JWT claim was audited as reviewed: %r" % a)
    # A forged signature is refused: still only claimed.
    bad = L.jwt(bad_signature=True)
    assert_error(L.login(bad), 401, "signature_invalid")
    a = audit_of(bad)
    eq(a.get("claimed_service_account"), L.sa_name, "claimed: %r" % a)
    check("service_account" not in a, "audited as reviewed: %r" % a)
    # Reviewed: success carries the confirmed identity, nothing claimed.
    good = L.jwt()
    L.ok(good)
    a = audit_of(good)
    eq((a.get("namespace"), a.get("service_account")), (L.ns, L.sa_name),
       "reviewed identity: %r" % a)
    check(not any(k.startswith("claimed_") for k in a),
          "a reviewed login has claimed fields: %r" % a)
