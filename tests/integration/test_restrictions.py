"""Token restrictions: /v4/tokens/restrictions (API.md §4)."""
from harness import (Server, assert_error, assert_id, assert_timestamp, check,
                     eq, fail, list_all, unique)

SRV = None
BASE = "/v4/tokens/restrictions"
FIELDS = {"id", "domain_id", "user_id", "project_id", "roles", "allow_renew",
          "allow_rescope", "created_at", "updated_at"}


def setup_module():
    global SRV
    SRV = Server(name="restrictions").start()


def teardown_module():
    SRV.stop()


def body(**over):
    b = {"domain_id": unique("dom"), "user_id": "u1", "project_id": "p1",
         "roles": [{"id": "r1", "name": "member"}, {"id": "r2"}]}
    for k, v in over.items():
        if v is DROP:
            b.pop(k, None)
        else:
            b[k] = v
    return b


DROP = object()


def new(**over):
    return SRV.create("restriction", body(**over))


def bad(names, reason="invalid_value", **over):
    r = SRV.req("POST", BASE, {"restriction": body(**over)})
    try:
        return assert_error(r, 400, reason, names=names)
    except AssertionError as e:
        fail("%r: %s" % (over, e))


def roles_of(rst):
    """roles as {id: name-or-None}, whichever way a missing name is shown."""
    return {r["id"]: r.get("name") for r in rst["roles"]}


def test_create_201_fields_and_location():
    dom = unique("dom")
    r = SRV.req("POST", BASE, {"restriction": body(domain_id=dom)})
    eq(r.status, 201, "status (%r)" % r.raw[:300])
    rst = r.json["restriction"]
    check(FIELDS <= set(rst) and set(rst) - FIELDS <= {"links"},
          "restriction fields: %r" % sorted(rst))
    assert_id(rst["id"])
    eq(rst["domain_id"], dom, "domain_id")
    eq(rst["user_id"], "u1", "user_id")
    eq(rst["project_id"], "p1", "project_id")
    eq(roles_of(rst), {"r1": "member", "r2": None}, "roles")
    for role in rst["roles"]:
        check(set(role) <= {"id", "name"}, "role keys %r" % role)
    eq(rst["allow_renew"], False, "allow_renew default")
    eq(rst["allow_rescope"], False, "allow_rescope default")
    assert_timestamp(rst["created_at"])
    assert_timestamp(rst["updated_at"])
    loc = r.headers.get("location", "")
    check(loc.endswith(BASE + "/" + rst["id"]), "Location %r" % loc)
    eq(SRV.ok("GET", BASE + "/" + rst["id"]).json["restriction"], rst, "show")


def test_create_minimal_and_flags():
    rst = new(user_id=DROP, project_id=DROP, roles=DROP)
    eq(rst.get("user_id"), None, "user_id")
    eq(rst.get("project_id"), None, "project_id")
    eq(rst["roles"], [], "roles default")
    rst = new(allow_renew=True, allow_rescope=True, user_id=None)
    eq(rst["allow_renew"], True, "allow_renew")
    eq(rst["allow_rescope"], True, "allow_rescope")
    eq(rst.get("user_id"), None, "user_id null")


def test_validation_errors_name_the_field():
    bad("domain_id", "missing_field", domain_id=DROP)
    bad("domain_id", domain_id="")
    bad("domain_id", domain_id="d" * 65)
    bad("domain_id", domain_id=7)
    bad("domain_id", domain_id=None)
    bad("user_id", user_id="")
    bad("user_id", user_id="u" * 65)
    bad("user_id", user_id=1)
    bad("project_id", project_id="p" * 65)
    bad("project_id", project_id=["p"])
    bad("allow_renew", allow_renew="yes")
    bad("allow_rescope", allow_rescope=1)
    bad("roles", roles="member")
    bad("roles", roles={"id": "r1"})
    bad("colour", "unknown_field", colour="red")
    eq(new(domain_id="d" * 64, user_id="u" * 64, project_id="p" * 64)[
        "user_id"], "u" * 64, "64-char ids accepted")


def test_roles_entries_strict():
    bad("colour", "unknown_field", roles=[{"id": "r1", "colour": "x"}])
    bad("id", "missing_field", roles=[{"name": "member"}])
    bad("id", roles=[{"id": 5}])
    bad("id", roles=[{"id": ""}])
    bad("name", roles=[{"id": "r1", "name": 5}])
    bad("roles", roles=["r1"])
    bad("roles", roles=[None])
    eq(roles_of(new(roles=[{"id": "r9"}])), {"r9": None}, "id only")


def test_wrapper_400():
    assert_error(SRV.req("POST", BASE, {"restrictions": body()}), 400,
                 "invalid_wrapper")
    assert_error(SRV.req("POST", BASE, {"restriction": body(), "x": 1}), 400,
                 "invalid_wrapper")
    assert_error(SRV.req("POST", BASE, {"restriction": "x"}), 400,
                 "invalid_value")
    assert_error(SRV.req("POST", BASE, [body()]), 400, "malformed_json")
    assert_error(SRV.req("POST", BASE, {}), 400, "invalid_wrapper")


def test_list_filters_and_pagination():
    dom = unique("dom")
    a = new(domain_id=dom, user_id="ua", project_id="pa")
    b = new(domain_id=dom, user_id="ub", project_id="pa")
    c = new(domain_id=dom, user_id="ua", project_id="pc")
    new(user_id="ua")

    def ids(q):
        r = SRV.ok("GET", BASE + q)
        check("links" in r.json, "no links")
        return sorted(x["id"] for x in r.json["restrictions"])
    eq(ids("?domain_id=" + dom), sorted([a["id"], b["id"], c["id"]]), "domain")
    eq(ids("?domain_id=%s&user_id=ua" % dom), sorted([a["id"], c["id"]]),
       "user_id filter")
    eq(ids("?domain_id=%s&project_id=pa" % dom), sorted([a["id"], b["id"]]),
       "project_id filter")
    eq(ids("?domain_id=%s&user_id=ua&project_id=pc" % dom), [c["id"]],
       "two filters")
    items, pages = list_all(SRV, BASE + "?domain_id=" + dom, "restrictions",
                            limit=1)
    got = [x["id"] for x in items]
    eq(sorted(got), sorted([a["id"], b["id"], c["id"]]), "pagination")
    eq(len(got), len(set(got)), "no duplicates")


def test_show_unknown_404():
    assert_error(SRV.req("GET", BASE + "/" + "d" * 32), 404,
                 "restriction_not_found")


def test_patch_and_put():
    rst = new(allow_renew=True)
    p = BASE + "/" + rst["id"]
    up = SRV.ok("PATCH", p, {"restriction": {"user_id": None}}).json[
        "restriction"]
    eq(up.get("user_id"), None, "user_id cleared")
    eq(up["project_id"], rst["project_id"], "project_id unchanged")
    eq(roles_of(up), roles_of(rst), "roles unchanged")
    eq(up["allow_renew"], True, "allow_renew unchanged")
    up = SRV.ok("PUT", p, {"restriction": {"roles": [{"id": "r7", "name": "x"}],
                                           "allow_rescope": True}}).json[
        "restriction"]
    eq(roles_of(up), {"r7": "x"}, "roles replaced")
    eq(up["allow_rescope"], True, "allow_rescope")
    eq(up.get("user_id"), None, "user_id still null")
    eq(SRV.ok("GET", p).json["restriction"], up, "show after update")
    for b, field, reason in (
            ({"id": "0" * 32}, "id", "immutable_field"),
            ({"domain_id": "other"}, "domain_id", "immutable_field"),
            ({"roles": [{"id": "r", "bad": 1}]}, "bad", "unknown_field"),
            ({"allow_renew": None}, "allow_renew", "invalid_value"),
            ({"project_id": "p" * 65}, "project_id", "invalid_value")):
        try:
            assert_error(SRV.req("PATCH", p, {"restriction": b}), 400,
                         reason, names=field)
        except AssertionError as e:
            fail("%r: %s" % (b, e))
    eq(SRV.ok("GET", p).json["restriction"], up, "unchanged after bad PATCH")
    assert_error(SRV.req("PATCH", BASE + "/" + "d" * 32,
                         {"restriction": {"user_id": "x"}}), 404,
                 "restriction_not_found")


def test_delete_204_then_404():
    rst = new()
    p = BASE + "/" + rst["id"]
    r = SRV.req("DELETE", p)
    eq(r.status, 204, "delete")
    eq(r.raw, b"", "204 body")
    assert_error(SRV.req("GET", p), 404, "restriction_not_found")
    assert_error(SRV.req("DELETE", p), 404, "restriction_not_found")


def test_delete_in_use_409_restriction_in_use():
    rst = new()
    inst = SRV.create("instance", {"domain_id": rst["domain_id"],
                                   "host": "https://k.example.com"})
    roles = "/v4/k8s_auth/instances/%s/roles" % inst["id"]
    role = SRV.create("role", {
        "name": "uses-it", "bound_service_account_names": ["a"],
        "bound_service_account_namespaces": ["b"],
        "token_restriction_id": rst["id"]}, path=roles)
    p = BASE + "/" + rst["id"]
    assert_error(SRV.req("DELETE", p), 409, reason="restriction_in_use")
    eq(SRV.ok("GET", p).json["restriction"]["id"], rst["id"], "still there")
    eq(SRV.req("DELETE", roles + "/" + role["id"]).status, 204, "role deleted")
    eq(SRV.req("DELETE", p).status, 204, "now deletable")
