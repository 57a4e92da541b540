"""The admin API policy end to end with non-admin callers, without Keystone.

A non-admin caller needs no Keystone: a restricted token this server
issued (login, [token] payload = restricted) is recognised locally
(src/keystone_token.c) once [keystone] url is set, and is never admin.
So each server here is set up by the bootstrap admin without Keystone
(restrictions, instances, roles: a restriction write would ask Keystone),
then restarted with [keystone] url pointing at a closed loopback port and
verify_user_enabled = false; logins through fake-k8s then hand out the
non-admin credentials.  A 403 proves the token was decided locally: any
token sent to that Keystone would be a 503.

- the DEFAULT policy (built-in policy/api.lua) denies every admin action
  to such callers, whatever roles their restriction grants ("admin"
  included), and a restricted token validates only itself;
- the recording test policy (tests/integration/policy/api.lua: the
  shipped rules, each decision logged with the cred and target the C
  handlers built; a restricted token stands for a token scoped to its
  restriction's domain) proves that a role's target carries the
  restriction it binds, and that the shipped rules refuse a manager a
  restriction granting a protected role while allowing a plain one.
"""
import json
import os
import re
import shutil

from harness import (ADMIN, Server, assert_error, check, eq, fail,
                     free_ports, unique, wait_for)
from k8s_fixture import FakeK8s, Login, validate

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
INST = "/v4/k8s_auth/instances"
RST = "/v4/tokens/restrictions"
RECORD_RE = re.compile(r"policy (\S+): record ([0-9a-f]{8}) (\d+)/(\d+) "
                       r"([0-9a-f]+)$")

K8S = None


def setup_module():
    global K8S
    K8S = FakeK8s("apipol").start()


def teardown_module():
    K8S.stop()


def role_ref(name):
    return {"id": os.urandom(16).hex(), "name": name}


def keystone_down(srv):
    """[keystone] for a Keystone that is not there (a closed port)."""
    secret = os.path.join(srv.dir, "app-secret")
    with open(secret, "w") as f:
        f.write("not-a-real-secret\n")
    os.chmod(secret, 0o600)
    return {"url": "http://127.0.0.1:%d/v3" % free_ports(1)[0],
            "application_credential_id": "app",
            "application_credential_secret_file": secret,
            "verify_user_enabled": "false"}


# Only restricted tokens (version 11) name their restriction, which is what
# lets the server recognise them without Keystone.
RESTRICTED = {"token": {"payload": "restricted"}}


def with_keystone_down(srv):
    """Restart srv with Keystone configured but unreachable."""
    srv.extra = dict(srv.extra)
    srv.extra["keystone"] = keystone_down(srv)
    srv._write_config()
    srv.restart()


def restricted_token(L):
    """Log in through L; the restricted token (a secret)."""
    r = L.ok(L.jwt())
    tok = r.headers["x-subject-token"]
    L.srv.secrets.add(tok)
    return tok


def denied(r, what, reason="forbidden"):
    try:
        assert_error(r, 403, reason)
    except AssertionError as e:
        fail("%s: %s" % (what, e))


# -- the default policy --------------------------------------------------
def admin_actions(L, other_rst):
    """(what, method, path, body) for every admin action on L's objects,
    all in the caller's own domain."""
    ipath = "%s/%s" % (INST, L.iid)
    rpath = L.role_path
    return [
        ("instance list", "GET", "%s?domain_id=%s" % (INST, L.dom), None),
        ("instance show", "GET", ipath, None),
        ("instance create", "POST", INST, {"instance": {
            "domain_id": L.dom, "host": "https://k8s.example:6443"}}),
        ("instance update", "PATCH", ipath, {"instance": {"name": "x"}}),
        ("instance delete", "DELETE", ipath, None),
        ("role list", "GET", ipath + "/roles", None),
        ("role list all", "GET", "/v4/k8s_auth/roles?domain_id=" + L.dom,
         None),
        ("role show", "GET", rpath, None),
        ("role create", "POST", ipath + "/roles", {"role": {
            "name": unique("r"), "bound_service_account_names": ["x"],
            "bound_service_account_namespaces": ["x"],
            "token_restriction_id": other_rst}}),
        ("role update", "PATCH", rpath, {"role": {
            "token_restriction_id": other_rst}}),
        ("role delete", "DELETE", rpath, None),
        ("restriction list", "GET", "%s?domain_id=%s" % (RST, L.dom), None),
        ("restriction show", "GET", "%s/%s" % (RST, L.rst["id"]), None),
        ("restriction delete", "DELETE", "%s/%s" % (RST, other_rst), None),
    ]


def test_default_policy_denies_non_admin_callers():
    with Server(extra=RESTRICTED, name="apipol-dflt") as srv:
        cases = {"member+reader": Login(srv, K8S),
                 "manager": Login(srv, K8S, restriction={
                     "roles": [role_ref("manager")]}),
                 "admin role": Login(srv, K8S, restriction={
                     "roles": [role_ref("admin"), role_ref("manager")]})}
        spare = {}
        for what, L in cases.items():
            spare[what] = srv.create("restriction", {
                "domain_id": L.dom, "user_id": L.user_id,
                "project_id": L.project_id,
                "roles": [role_ref("reader")]})["id"]
        with_keystone_down(srv)
        for what, L in cases.items():
            tok = restricted_token(L)
            for action, method, path, body in admin_actions(L,
                                                            spare[what]):
                r = srv.req(method, path, body, token=tok)
                denied(r, "%s caller, %s" % (what, action))
            # Nothing moved.
            eq(srv.ok("GET", "%s/%s" % (INST, L.iid)).json["instance"]
               ["name"], L.inst["name"], "instance name")
            eq(srv.ok("GET", L.role_path).json["role"]
               ["token_restriction_id"], L.rst["id"], "role restriction")
            srv.ok("GET", "%s/%s" % (RST, spare[what]))
        wait_for(lambda: "k8s_auth:instance:delete denied: a domain-scoped "
                 "token is required" in srv.log_text(),
                 what="the policy's reason in the log")


def test_restricted_token_validates_itself_only():
    with Server(extra=RESTRICTED, name="apipol-val") as srv:
        L = Login(srv, K8S)
        M = Login(srv, K8S)
        with_keystone_down(srv)
        mine, theirs = restricted_token(L), restricted_token(M)
        r = validate(srv, mine, token=mine)
        eq(r.status, 200, "self validation (%r)" % r.raw[:200])
        eq(r.json["token"]["user"]["id"], L.user_id, "validated user")
        denied(validate(srv, theirs, token=mine),
               "a restricted token validating another's")
        eq(validate(srv, theirs, token=mine, method="HEAD").status, 403,
           "HEAD: a restricted token validating another's")
        eq(validate(srv, theirs).status, 200, "admin validation")


# -- the recording policy ---------------------------------------------------
def recording_server(name):
    """A server running tests/integration/policy/api.lua over the shipped
    rules (require "api" finds policy/api.lua through lua_dir)."""
    srv = Server(extra=dict(RESTRICTED, policy={
        "lua_dir": os.path.join(REPO, "policy")}), name=name)
    shutil.copy(os.path.join(HERE, "policy", "api.lua"),
                os.path.join(srv.dir, "policy", "api.lua"))
    return srv


def records(srv, action):
    """Every record of action in srv's log, oldest first."""
    parts = {}
    order = []
    for line in srv.log_text().splitlines():
        m = RECORD_RE.search(line)
        if not m or m.group(1) != action:
            continue
        rid, i, n, h = m.group(2), int(m.group(3)), int(m.group(4)), \
            m.group(5)
        if rid not in parts:
            parts[rid] = [None] * n
            order.append(rid)
        parts[rid][i - 1] = h
    out = []
    for rid in order:
        if None in parts[rid]:
            fail("record %s of %s is incomplete" % (rid, action))
        out.append(json.loads(bytes.fromhex("".join(parts[rid])).decode()))
    return out


def record_of(srv, action, pred, what):
    """The last record of action for which pred(record) holds."""
    found = []

    def look():
        found[:] = [x for x in records(srv, action) if pred(x)]
        return found
    wait_for(look, what="a policy record of %s for %s" % (action, what))
    return found[-1]


def strip_facts(rst):
    """A target restriction without what the server adds to each role
    (API.md §7: delegable, implies), which test_keystone checks."""
    for role in rst["roles"]:
        role.pop("delegable")
        role.pop("implies")
    return rst


def test_role_target_carries_its_restriction():
    with recording_server("apipol-rec") as srv:
        L = Login(srv, K8S)
        rec = record_of(srv, "k8s_auth:role:create",
                        lambda x: x["target"]["role"]["name"] ==
                        L.role_name, "the admin's role create")
        eq(rec["allowed"], True, "allowed")
        eq(rec["cred"]["kind"], "bootstrap", "cred kind")
        t = rec["target"]
        eq(strip_facts(t["restriction"]), L.rst,
           "the role's target restriction")
        eq(t["role"]["token_restriction_id"], L.rst["id"],
           "the target role's restriction id")
        eq(t["instance"]["id"], L.iid, "the target instance")
        eq(t["instance"]["domain_id"], L.dom, "the target instance domain")
        # Pointing the role at another restriction: the update's target
        # carries the new one.
        other = srv.create("restriction", {
            "domain_id": L.dom, "user_id": L.user_id,
            "project_id": L.project_id, "roles": [role_ref("viewer")]})
        L.patch_role(token_restriction_id=other["id"])
        rec = record_of(srv, "k8s_auth:role:update",
                        lambda x: x["target"]["role"]["name"] ==
                        L.role_name, "the admin's role update")
        eq(strip_facts(rec["target"]["restriction"]), other,
           "the updated role's target restriction")


def test_manager_is_refused_a_protected_role_by_the_shipped_rules():
    with recording_server("apipol-prot") as srv:
        M = Login(srv, K8S, restriction={"roles": [role_ref("manager")]})
        protected = srv.create("restriction", {
            "domain_id": M.dom, "user_id": M.user_id,
            "project_id": M.project_id,
            "roles": [role_ref("member"), role_ref("admin")]})
        plain = srv.create("restriction", {
            "domain_id": M.dom, "user_id": M.user_id,
            "project_id": M.project_id, "roles": [role_ref("member")]})
        other = Login(srv, K8S)
        with_keystone_down(srv)
        tok = restricted_token(M)
        roles = "%s/%s/roles" % (INST, M.iid)

        def role_body(rst):
            return {"role": {"name": unique("r"),
                             "bound_service_account_names": ["web"],
                             "bound_service_account_namespaces": [M.ns],
                             "token_restriction_id": rst}}
        body = role_body(protected["id"])
        denied(srv.req("POST", roles, body, token=tok),
               "a manager binding a role to a protected restriction",
               "role_not_delegable")
        rec = record_of(srv, "k8s_auth:role:create",
                        lambda x: x["target"]["role"]["name"] ==
                        body["role"]["name"], "the refused create")
        eq(rec["allowed"], False, "decision")
        eq(rec["reason"], "role_not_delegable: the role's token restriction: "
           "only an admin may grant the role admin", "the shipped rule's reason")
        eq(rec["cred"]["kind"], "restricted", "a restricted caller")
        eq(rec["cred"]["is_admin"], False, "never admin")
        eq(rec["seen"]["domain_id"], M.dom, "seen as scoped to its domain")
        roles_seen = [(x["name"], x["delegable"])
                      for x in rec["target"]["restriction"]["roles"]]
        eq(roles_seen, [("member", True), ("admin", False)],
           "what the server judged of each role")
        eq(strip_facts(rec["target"]["restriction"]), protected,
           "the target carries the protected restriction")
        # The policy would let the manager bind a plain restriction, but
        # whether "member" implies more is Keystone's to say: no write.
        assert_error(srv.req("POST", roles, role_body(plain["id"]),
                             token=tok), 503, "keystone_unavailable")
        # The bootstrap admin (break-glass) still may ...
        ok = srv.req("POST", roles, role_body(plain["id"]))
        eq(ok.status, 201, "the bootstrap admin binding a plain restriction "
           "(%r)" % ok.raw[:300])
        # ... but not re-point an existing role at the protected one.
        path = "%s/%s" % (roles, ok.json["role"]["id"])
        denied(srv.req("PATCH", path, {"role": {
            "token_restriction_id": protected["id"]}}, token=tok),
            "a manager re-pointing a role at a protected restriction",
            "role_not_delegable")
        eq(srv.ok("GET", path).json["role"]["token_restriction_id"],
           plain["id"], "the role kept its restriction")
        # Another domain's objects stay out of reach.
        denied(srv.req("GET", "%s/%s" % (INST, other.iid), token=tok),
               "a manager reading another domain's instance")
        rec = record_of(srv, "k8s_auth:instance:show",
                        lambda x: x["target"]["instance"]["id"] ==
                        other.iid, "the cross-domain show")
        eq(rec["reason"], "the instance is in another domain", "reason")
