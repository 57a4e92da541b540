"""Namespace label selectors and service-account annotations (issue 16).

A role's bound_namespace_selector binds namespaces by label (ORed with
bound_service_account_namespaces); the login then reads the reviewed
namespace from the cluster as the reviewer.  Login policies that declare
needs = {"namespace", "service_account"} see ctx.namespace and, on
instances with service_account_annotations, ctx.service_account.annotations
(also in the audit record, never in the token).  fake-k8s serves the
objects with kube-apiserver's authorization model (tests/k8s/fk_objects.c)
and counts every GET, so "no lookup" is proved, not assumed.
"""
import base64
import json
import os
import time

from harness import Server, assert_error, check, eq, fail, unique, wait_for
from k8s_fixture import FakeK8s, Login

K8S = None
SRV = None
TTL = 2  # [k8s_auth] object_cache_ttl of SRV, seconds

NEEDS_POLICY = '''
local M = {needs = {"namespace", "service_account"}}
function M.check(ctx)
  local ann = ctx.service_account.annotations
  local audit = {
    team = ctx.namespace and ctx.namespace.labels.team or "none",
    has_annotations = tostring(ann ~= nil),
  }
  if ann ~= nil then
    audit.tier = ann["keystone.openstack.org/tier"] or "none"
    audit.other = tostring(ann["other.example.com/x"])
  end
  return true, {audit = audit}
end
return M
'''


def setup_module():
    global K8S, SRV
    K8S = FakeK8s("selector").start()
    SRV = Server(extra={"k8s_auth": {"object_cache_ttl": str(TTL)}},
                 name="selector")
    SRV.start()


def teardown_module():
    try:
        SRV.stop()
    finally:
        K8S.stop()


# -- helpers -----------------------------------------------------------------
def namespace(name, labels):
    K8S.api("POST", "/_test/namespaces", {"name": name, "labels": labels},
            expect=200)


def reviewer_of(L):
    """(namespace, name) of the reviewer service account of Login L."""
    p = L.reviewer_jwt.split(".")[1]
    sub = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))["sub"]
    _, _, ns, name = sub.split(":")
    return ns, name


def grant(L, resource, allow=True):
    ns, name = reviewer_of(L)
    K8S.api("POST", "/_test/object_grants",
            {"namespace": ns, "name": name, "resource": resource,
             "allow": allow}, expect=200)


def gets():
    return K8S.api("GET", "/_test/object_stats", expect=200)[1]


def selector_login(srv, sel, labels, ns_list=None):
    """A Login whose role binds by sel; its namespace carries labels."""
    L = Login(srv, K8S, role={
        "bound_service_account_namespaces": ns_list or [],
        "bound_namespace_selector": sel})
    grant(L, "namespaces")
    if labels is not None:
        namespace(L.ns, labels)
    return L


def refused(r, status, reason):
    err = assert_error(r, status, reason)
    check(r.headers.get("x-subject-token") is None,
          "a refused login carried a token")
    return err


def expr(key, op, values=None):
    e = {"key": key, "operator": op}
    if values is not None:
        e["values"] = values
    return {"matchExpressions": [e]}


# -- the role field ----------------------------------------------------------
def test_selector_validated_on_write():
    L = Login(SRV, K8S)
    bad = [
        (expr("env", "Gt", ["1"]), "operator must be one of"),
        (expr("env", "Exists", ["x"]), "values must be empty"),
        (expr("env", "DoesNotExist", ["x"]), "values must be empty"),
        (expr("env", "In"), "values must have 1 to 64"),
        (expr("env", "NotIn", []), "values must have 1 to 64"),
        (expr("a" * 64, "Exists"), "key must be a valid label key"),
        (expr("Bad_Prefix.com/a", "Exists"), "valid label key"),
        ({"matchLabels": {"team": "x" * 64}}, "valid label value"),
        ({"matchLabels": {"team": "-x"}}, "valid label value"),
        ({}, "at least one requirement"),
        ({"matchLabels": {}, "extra": 1}, "unknown field"),
        ("team=payments", "must be an object"),
    ]
    for sel, want in bad:
        r = SRV.req("PATCH", L.role_path,
                    {"role": {"bound_namespace_selector": sel}})
        err = assert_error(r, 400, "invalid_value")
        check(want in err["message"] and
              "bound_namespace_selector" in err["message"],
              "%r: message %r lacks %r" % (sel, err["message"], want))
    # Without a selector the namespace list may not be empty.
    r = SRV.req("PATCH", L.role_path,
                {"role": {"bound_service_account_namespaces": []}})
    assert_error(r, 400, "invalid_value", "bound_service_account_namespaces")
    # With one it may; and the selector reads back as written.
    sel = {"matchLabels": {"team": "payments"},
           "matchExpressions": [{"key": "example.com/env",
                                 "operator": "In",
                                 "values": ["prod", "staging"]}]}
    ro = L.patch_role(bound_service_account_namespaces=[],
                      bound_namespace_selector=sel).json["role"]
    eq(ro["bound_namespace_selector"], sel, "selector read back")
    eq(ro["bound_service_account_namespaces"], [], "empty namespace list")
    # Taking the selector away again needs a namespace list.
    r = SRV.req("PATCH", L.role_path,
                {"role": {"bound_namespace_selector": None}})
    assert_error(r, 400, "invalid_value", "bound_service_account_namespaces")
    # A new role needs one of the two.
    r = SRV.req("POST", "/v4/k8s_auth/instances/%s/roles" % L.iid,
                {"role": {"name": unique("r"),
                          "bound_service_account_names": ["web"],
                          "token_restriction_id": L.rst["id"]}})
    assert_error(r, 400, "missing_field", "bound_namespace_selector")


# -- logins ------------------------------------------------------------------
def test_match_labels_allows_and_denies():
    sel = {"matchLabels": {"team": "payments"}}
    ok = selector_login(SRV, sel, {"team": "payments", "x": "y"})
    r = ok.ok(ok.jwt())
    check("payments" not in r.raw.decode(), "labels leaked into the token")
    no = selector_login(SRV, sel, {"team": "billing"})
    refused(no.login(no.jwt()), 401, "namespace_not_bound")
    # A listed namespace needs no labels (the two are ORed), and no read.
    listed = selector_login(SRV, sel, None, ns_list=["*"])
    before = gets()["namespaces"]
    listed.ok(listed.jwt())
    eq(gets()["namespaces"] - before, 0, "namespace GETs for a listed ns")


def test_each_expression_operator():
    L = selector_login(SRV, {"matchLabels": {"env": "prod"}},
                       {"env": "prod", "tier": "web"})
    jwt = L.jwt()
    cases = [
        (expr("env", "In", ["prod", "staging"]), True),
        (expr("env", "In", ["dev"]), False),
        (expr("env", "NotIn", ["dev"]), True),
        (expr("env", "NotIn", ["prod"]), False),
        (expr("missing", "NotIn", ["x"]), True),
        (expr("tier", "Exists"), True),
        (expr("owner", "Exists"), False),
        (expr("owner", "DoesNotExist"), True),
        (expr("env", "DoesNotExist"), False),
    ]
    for sel, allow in cases:
        L.patch_role(bound_namespace_selector=sel)
        r = L.login(jwt)
        if allow:
            eq(r.status, 200, "%r: %r" % (sel, r.raw[:300]))
        else:
            refused(r, 401, "namespace_not_bound")


def test_label_change_takes_effect_after_ttl():
    L = selector_login(SRV, {"matchLabels": {"team": "a"}}, {"team": "a"})
    jwt = L.jwt()
    before = gets()["namespaces"]
    L.ok(jwt)
    namespace(L.ns, {"team": "b"})
    start = time.monotonic()
    r = L.login(jwt)  # within the TTL: the cached labels still bind
    if time.monotonic() - start < TTL - 0.5:
        eq(r.status, 200, "login within the cache TTL: %r" % r.raw[:300])
        eq(gets()["namespaces"] - before, 1, "namespace GETs within TTL")
    time.sleep(TTL + 0.3)
    refused(L.login(jwt), 401, "namespace_not_bound")
    eq(gets()["namespaces"] - before, 2, "namespace GETs after the TTL")


def test_reviewer_without_get_namespaces_is_502():
    L = selector_login(SRV, {"matchLabels": {"team": "a"}}, {"team": "a"})
    grant(L, "namespaces", allow=False)
    err = refused(L.login(L.jwt()), 502, "reviewer_forbidden")
    check("get namespaces" in err["message"],
          "message does not name the permission: %r" % err["message"])


def test_deleted_namespace_is_401():
    L = selector_login(SRV, {"matchLabels": {"team": "a"}}, {"team": "a"})
    K8S.api("DELETE", "/_test/namespaces/%s" % L.ns, expect=200)
    refused(L.login(L.jwt()), 401, "namespace_not_bound")


def test_cluster_503_on_namespace_read_is_503():
    L = selector_login(SRV, {"matchLabels": {"team": "a"}}, {"team": "a"})
    K8S.api("POST", "/_test/object_faults",
            {"resource": "namespaces", "status": 503, "count": 1},
            expect=200)
    try:
        r = L.login(L.jwt())
        refused(r, 503, "cluster_unavailable")
        check(r.headers.get("retry-after"), "503 without Retry-After")
    finally:
        K8S.api("DELETE", "/_test/object_faults", expect=200)
    L.ok(L.jwt())  # the fault is gone and nothing bad was cached


def test_cluster_timeout_on_namespace_read_is_504():
    with Server(extra={"k8s_auth": {"review_timeout": "2"}},
                name="sel-timeout") as srv:
        L = selector_login(srv, {"matchLabels": {"team": "a"}},
                           {"team": "a"})
        jwt = L.jwt()
        K8S.api("POST", "/_test/object_faults",
                {"resource": "namespaces", "latency_ms": 5000, "count": 1},
                expect=200)
        try:
            refused(L.login(jwt), 504, "cluster_timeout")
        finally:
            K8S.api("DELETE", "/_test/object_faults", expect=200)


def test_no_lookup_without_selector_or_needs():
    L = Login(SRV, K8S, inst={"service_account_annotations": True})
    grant(L, "namespaces")
    grant(L, "serviceaccounts")
    before = gets()
    for _ in range(3):
        L.ok(L.jwt())
    eq(gets(), before, "object GETs for a role without a selector under "
       "a policy without needs")


def test_annotations_reach_policy_and_audit_not_token():
    srv = Server(name="sel-needs")
    d = os.path.join(srv.dir, "policy")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "login.lua"), "w") as f:
        f.write(NEEDS_POLICY)
    with srv:
        L = Login(srv, K8S, inst={"service_account_annotations": True})
        grant(L, "namespaces")
        grant(L, "serviceaccounts")
        namespace(L.ns, {"team": "payments"})
        K8S.api("POST", "/_test/annotations",
                {"namespace": L.ns, "name": L.sa_name,
                 "annotations": {"keystone.openstack.org/tier": "gold-7",
                                 "other.example.com/x": "secretish-9"}},
                expect=200)
        r = L.ok(L.jwt())
        raw = r.raw.decode()
        check("gold-7" not in raw and "secretish-9" not in raw,
              "annotations in the token answer")
        line = wait_for(lambda: [x for x in srv.log_text().splitlines()
                                 if '"tier":"gold-7"' in x],
                        what="the policy's audit fields")[0]
        check('"team":"payments"' in line, "ctx.namespace.labels: %s" % line)
        check('"other":"nil"' in line,
              "an annotation outside the prefix reached the policy: %s"
              % line)
        check('"service_account_annotations":{"keystone.openstack.org/'
              'tier":"gold-7"}' in line,
              "annotations not in the audit record: %s" % line)
        # Without get serviceaccounts: 502 naming it.
        L2 = Login(srv, K8S, inst={"service_account_annotations": True})
        grant(L2, "namespaces")
        namespace(L2.ns, {})
        err = refused(L2.login(L2.jwt()), 502, "reviewer_forbidden")
        check("get serviceaccounts" in err["message"], err["message"])
        # An instance that does not expose annotations: no SA read.
        L3 = Login(srv, K8S)
        grant(L3, "namespaces")
        namespace(L3.ns, {"team": "t3"})
        before = gets()
        L3.ok(L3.jwt())
        after = gets()
        eq(after["serviceaccounts"] - before["serviceaccounts"], 0,
           "service account GETs on an instance without annotations")
        eq(after["namespaces"] - before["namespaces"], 1,
           "namespace GETs for a policy that needs the namespace")
        wait_for(lambda: '"team":"t3","has_annotations":"false"'
                 in srv.log_text() or '"has_annotations":"false"'
                 in srv.log_text(), what="policy without annotations")


def test_single_flight_within_a_worker():
    """Concurrent logins of one namespace share one GET (one worker)."""
    import threading
    with Server(workers=1, name="sel-flight") as srv:
        L = selector_login(srv, {"matchLabels": {"team": "a"}},
                           {"team": "a"})
        jwts = [L.jwt() for _ in range(4)]
        K8S.api("POST", "/_test/object_faults",
                {"resource": "namespaces", "latency_ms": 600},
                expect=200)
        results = []
        try:
            before = gets()["namespaces"]
            threads = [threading.Thread(
                target=lambda j=j: results.append(L.login(j).status))
                for j in jwts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            K8S.api("DELETE", "/_test/object_faults", expect=200)
        eq(sorted(results), [200] * 4, "concurrent logins")
        eq(gets()["namespaces"] - before, 1,
           "namespace GETs for 4 concurrent logins on one worker")


def test_request_deadline_cancels_waiting_reads():
    """Logins waiting on one read hit [server] request_timeout: each is
    answered 504, the read is cancelled with its last waiter, and the
    next login reads afresh (under sanitizers: no leak, no use after
    free)."""
    import threading
    with Server(extra={"server": {"request_timeout": "2"},
                       "k8s_auth": {"review_timeout": "10"}},
                workers=1, name="sel-deadline") as srv:
        L = selector_login(srv, {"matchLabels": {"team": "a"}},
                           {"team": "a"})
        jwts = [L.jwt() for _ in range(2)]
        K8S.api("POST", "/_test/object_faults",
                {"resource": "namespaces", "latency_ms": 5000},
                expect=200)
        results = []
        try:
            threads = [threading.Thread(
                target=lambda j=j: results.append(L.login(j)))
                for j in jwts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            K8S.api("DELETE", "/_test/object_faults", expect=200)
        for r in results:
            refused(r, 504, "cluster_timeout")
        L.ok(L.jwt())
