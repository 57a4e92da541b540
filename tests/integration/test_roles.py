"""Kubernetes auth roles (API.md §2)."""
from harness import (Server, assert_error, assert_id, assert_timestamp, check,
                     eq, fail, list_all, unique)

SRV = None
INST = "/v4/k8s_auth/instances"
FLAT = "/v4/k8s_auth/roles"
FIELDS = {"id", "auth_instance_id", "domain_id", "name", "enabled",
          "bound_service_account_names", "bound_service_account_namespaces",
          "bound_audience", "bound_pod_names", "token_ttl",
          "token_restriction_id", "created_at", "updated_at",
          "bound_namespace_selector"}


def setup_module():
    global SRV
    SRV = Server(name="roles").start()


def teardown_module():
    SRV.stop()


def new_instance(dom=None):
    return SRV.create("instance", {"domain_id": dom or unique("dom"),
                                   "host": "https://k8s.example.com"})


def new_restriction(dom, **over):
    obj = {"domain_id": dom, "user_id": "u-" + dom, "project_id": "p-" + dom,
           "roles": [{"id": "r-member", "name": "member"}]}
    obj.update(over)
    return SRV.create("restriction", obj)


class Ctx:
    """An instance with a usable restriction in its domain."""

    def __init__(self):
        self.inst = new_instance()
        self.dom = self.inst["domain_id"]
        self.rst = new_restriction(self.dom)
        self.roles = "%s/%s/roles" % (INST, self.inst["id"])

    def body(self, **over):
        b = {"name": unique("role"), "bound_service_account_names": ["web"],
             "bound_service_account_namespaces": ["default"],
             "token_restriction_id": self.rst["id"]}
        for k, v in over.items():
            if v is DROP:
                b.pop(k, None)
            else:
                b[k] = v
        return b

    def create(self, **over):
        return SRV.create("role", self.body(**over), path=self.roles)

    def bad(self, names, status=400, reason="invalid_value", **over):
        r = SRV.req("POST", self.roles, {"role": self.body(**over)})
        try:
            return assert_error(r, status, reason, names=names)
        except AssertionError as e:
            fail("%r: %s" % (over, e))


DROP = object()


def test_create_201_fields_and_location():
    c = Ctx()
    r = SRV.req("POST", c.roles, {"role": c.body(name="web-servers-role")})
    eq(r.status, 201, "status (%r)" % r.raw[:300])
    role = r.json["role"]
    check(FIELDS <= set(role) and set(role) - FIELDS <= {"links"},
          "role fields: %r" % sorted(role))
    assert_id(role["id"])
    eq(role["auth_instance_id"], c.inst["id"], "auth_instance_id")
    eq(role["domain_id"], c.dom, "domain_id copied from the instance")
    eq(role["name"], "web-servers-role", "name")
    eq(role["enabled"], True, "enabled default")
    eq(role["bound_service_account_names"], ["web"], "names")
    eq(role["bound_service_account_namespaces"], ["default"], "namespaces")
    eq(role["bound_audience"], None, "bound_audience default")
    eq(role["bound_pod_names"], None, "bound_pod_names default")
    eq(role["token_ttl"], None, "token_ttl default")
    eq(role["bound_namespace_selector"], None,
       "bound_namespace_selector default")
    eq(role["token_restriction_id"], c.rst["id"], "token_restriction_id")
    assert_timestamp(role["created_at"])
    assert_timestamp(role["updated_at"])
    loc = r.headers.get("location", "")
    check(loc.endswith(c.roles + "/" + role["id"]), "Location %r" % loc)


def test_create_all_optional_fields():
    c = Ctx()
    role = c.create(bound_audience="https://kubernetes.default.svc",
                    bound_pod_names=["web-*", "api-?"], token_ttl=600,
                    enabled=False,
                    bound_service_account_names=["web", "api-*", "[ab]x"],
                    bound_service_account_namespaces=["*"])
    eq(role["bound_audience"], "https://kubernetes.default.svc", "audience")
    eq(role["bound_pod_names"], ["web-*", "api-?"], "pod names")
    eq(role["token_ttl"], 600, "token_ttl")
    eq(role["enabled"], False, "enabled")
    eq(role["bound_service_account_names"], ["web", "api-*", "[ab]x"], "names")
    eq(role["bound_service_account_namespaces"], ["*"], "namespaces")


def test_create_under_unknown_instance_404():
    c = Ctx()
    r = SRV.req("POST", "%s/%s/roles" % (INST, "a" * 32), {"role": c.body()})
    assert_error(r, 404, "instance_not_found")


def test_name_rules():
    c = Ctx()
    c.bad("name", reason="missing_field", name=DROP)
    for name in ("", "n" * 256, "bad name", "a/b", "caf\u00e9", "x;y", "a*",
                 "tab\t"):
        c.bad("name", name=name)
    c.bad("name", name=5)
    c.bad("name", name=None)
    for name in ("a_b.c-D9", "n" * 255, "A"):
        eq(c.create(name=name)["name"], name, "name %r" % name)


def test_required_lists_non_empty():
    c = Ctx()
    for f in ("bound_service_account_names",
              "bound_service_account_namespaces"):
        c.bad(f, reason="missing_field", **{f: DROP})
        c.bad(f, **{f: []})
        c.bad(f, **{f: None})
        c.bad(f, **{f: "web"})
        c.bad(f, **{f: [1]})
        c.bad(f, **{f: ["ok", None]})


def test_bound_audience_rules():
    c = Ctx()
    c.bad("bound_audience", bound_audience="")
    c.bad("bound_audience", bound_audience="a" * 256)
    c.bad("bound_audience", bound_audience=5)
    c.bad("bound_audience", bound_audience=["aud"])
    eq(c.create(bound_audience="a" * 255)["bound_audience"], "a" * 255,
       "255-char audience")
    eq(c.create(bound_audience=None)["bound_audience"], None, "null audience")


def test_bound_pod_names_rules():
    c = Ctx()
    c.bad("bound_pod_names", bound_pod_names="web-0")
    c.bad("bound_pod_names", bound_pod_names=[1])
    c.bad("bound_pod_names", bound_pod_names={"a": 1})
    eq(c.create(bound_pod_names=["web-0"])["bound_pod_names"], ["web-0"],
       "pod names")
    eq(c.create(bound_pod_names=None)["bound_pod_names"], None, "null")


def test_token_ttl_range():
    c = Ctx()
    for ttl in (59, 0, -1, 3601, 10 ** 12, "600", 600.5, True):
        c.bad("token_ttl", token_ttl=ttl)
    for ttl in (60, 3600):
        eq(c.create(token_ttl=ttl)["token_ttl"], ttl, "ttl %d" % ttl)
    eq(c.create(token_ttl=None)["token_ttl"], None, "null ttl")


def test_token_ttl_max_follows_token_expiration():
    with Server(extra={"token": {"expiration": "7200"}}, name="ttl") as srv:
        inst = srv.create("instance", {"domain_id": "d",
                                       "host": "https://k.example.com"})
        rst = srv.create("restriction", {
            "domain_id": "d", "user_id": "u", "project_id": "p",
            "roles": [{"id": "r"}]})
        path = "%s/%s/roles" % (INST, inst["id"])
        body = {"bound_service_account_names": ["a"],
                "bound_service_account_namespaces": ["b"],
                "token_restriction_id": rst["id"]}
        r = srv.req("POST", path, {"role": dict(body, name="a", token_ttl=7200)})
        eq(r.status, 201, "ttl 7200 with expiration 7200 (%r)" % r.raw[:200])
        r = srv.req("POST", path, {"role": dict(body, name="b", token_ttl=7201)})
        assert_error(r, 400, "invalid_value", names="token_ttl")


def test_restriction_must_exist_same_domain_and_be_complete():
    c = Ctx()
    c.bad("token_restriction_id", reason="missing_field",
          token_restriction_id=DROP)
    c.bad("token_restriction_id", token_restriction_id=None)
    c.bad("token_restriction_id", reason="invalid_restriction",
          token_restriction_id="0" * 32)
    c.bad("token_restriction_id", token_restriction_id=5)
    other = new_restriction(unique("other"))
    c.bad("token_restriction_id", reason="invalid_restriction",
          token_restriction_id=other["id"])
    no_user = new_restriction(c.dom, user_id=None)
    c.bad("token_restriction_id", reason="invalid_restriction",
          token_restriction_id=no_user["id"])
    no_project = new_restriction(c.dom, project_id=None)
    c.bad("token_restriction_id", reason="invalid_restriction",
          token_restriction_id=no_project["id"])
    no_roles = new_restriction(c.dom, roles=[])
    c.bad("token_restriction_id", reason="invalid_restriction",
          token_restriction_id=no_roles["id"])


def test_unknown_field_and_server_fields_400():
    c = Ctx()
    c.bad("colour", reason="unknown_field", colour="red")
    # server-maintained fields: refused, or ignored in favour of the URL's
    other = new_instance()
    for field, value in (("id", "0" * 32), ("auth_instance_id", other["id"]),
                         ("domain_id", other["domain_id"])):
        r = SRV.req("POST", c.roles, {"role": c.body(**{field: value})})
        if r.status == 201:
            role = r.json["role"]
            check(role["id"] != "0" * 32, "client chose the role id")
            eq(role["auth_instance_id"], c.inst["id"], "auth_instance_id")
            eq(role["domain_id"], c.dom, "domain_id")
        else:
            assert_error(r, 400, "read_only_field", names=field)
    r = SRV.req("POST", c.roles, {"instance": c.body()})
    assert_error(r, 400, "invalid_wrapper")
    r = SRV.req("POST", c.roles, {"role": c.body(), "extra": 1})
    assert_error(r, 400, "invalid_wrapper")


def test_role_path_by_name_and_by_id():
    c = Ctx()
    role = c.create(name="by-name")
    a = SRV.ok("GET", c.roles + "/" + role["id"]).json["role"]
    b = SRV.ok("GET", c.roles + "/by-name").json["role"]
    eq(a, role, "by id")
    eq(b, role, "by name")
    assert_error(SRV.req("GET", c.roles + "/no-such-role"), 404,
                 "role_not_found")


def test_role_of_another_instance_404():
    c1, c2 = Ctx(), Ctx()
    role = c1.create(name="mine")
    for p in (c2.roles + "/" + role["id"], c2.roles + "/mine"):
        assert_error(SRV.req("GET", p), 404, "role_not_found")
        assert_error(SRV.req("PATCH", p, {"role": {"enabled": False}}), 404,
                     "role_not_found")
        assert_error(SRV.req("DELETE", p), 404, "role_not_found")
    eq(SRV.ok("GET", c1.roles + "/mine").json["role"]["enabled"], True,
       "untouched by the other instance's routes")
    assert_error(SRV.req("GET", "%s/%s/roles/%s" % (INST, "b" * 32,
                                                     role["id"])), 404,
                 "instance_not_found")


def test_duplicate_name_409_other_instance_ok():
    c = Ctx()
    c.create(name="dup")
    r = SRV.req("POST", c.roles, {"role": c.body(name="dup")})
    assert_error(r, 409, "conflict")
    inst2 = new_instance(c.dom)
    path2 = "%s/%s/roles" % (INST, inst2["id"])
    role = SRV.create("role", c.body(name="dup"), path=path2)
    eq(role["auth_instance_id"], inst2["id"], "same name, other instance")


def test_list_under_instance_with_filters():
    c = Ctx()
    a = c.create(name="alpha")
    b = c.create(name="beta", enabled=False)
    Ctx().create(name="alpha")
    r = SRV.ok("GET", c.roles)
    eq(sorted(x["id"] for x in r.json["roles"]), sorted([a["id"], b["id"]]),
       "list")
    check("links" in r.json, "no links")
    eq([x["id"] for x in SRV.ok("GET", c.roles + "?name=alpha").json["roles"]],
       [a["id"]], "name filter")
    eq([x["id"] for x in SRV.ok("GET", c.roles + "?enabled=false").json[
        "roles"]], [b["id"]], "enabled filter")
    assert_error(SRV.req("GET", "%s/%s/roles" % (INST, "c" * 32)), 404,
                 "instance_not_found")


def test_list_pagination():
    c = Ctx()
    made = {c.create()["id"] for _ in range(5)}
    items, pages = list_all(SRV, c.roles, "roles", limit=2)
    ids = [x["id"] for x in items]
    eq(len(ids), len(set(ids)), "duplicates across pages")
    eq(set(ids), made, "all roles")
    check(pages >= 3, "pages %d" % pages)


def test_flat_roles_list_filters():
    c1 = Ctx()
    inst2 = new_instance(c1.dom)
    r1 = c1.create(name="flat")
    r2 = SRV.create("role", c1.body(name="flat"),
                    path="%s/%s/roles" % (INST, inst2["id"]))
    r3 = c1.create(name="other")
    c3 = Ctx()
    r4 = c3.create(name="flat")

    def ids(q):
        return sorted(x["id"] for x in SRV.ok("GET", FLAT + q).json["roles"])
    eq(ids("?domain_id=" + c1.dom), sorted([r1["id"], r2["id"], r3["id"]]),
       "domain_id filter")
    eq(ids("?auth_instance_id=" + c1.inst["id"]), sorted([r1["id"], r3["id"]]),
       "auth_instance_id filter")
    eq(ids("?domain_id=%s&name=flat" % c1.dom), sorted([r1["id"], r2["id"]]),
       "domain_id + name")
    check(r4["id"] in ids("?name=flat"), "name filter across domains")
    items, _ = list_all(SRV, FLAT + "?domain_id=" + c1.dom, "roles", limit=1)
    eq(sorted(x["id"] for x in items), sorted([r1["id"], r2["id"], r3["id"]]),
       "flat pagination")


def test_update_patch_and_put():
    c = Ctx()
    role = c.create(name="upd", bound_audience="aud", bound_pod_names=["p-*"],
                    token_ttl=300)
    p = c.roles + "/upd"
    up = SRV.ok("PATCH", p, {"role": {"enabled": False, "token_ttl": 120}}
                ).json["role"]
    eq(up["enabled"], False, "enabled")
    eq(up["token_ttl"], 120, "token_ttl")
    for f in ("id", "name", "bound_audience", "bound_pod_names",
              "bound_service_account_names", "token_restriction_id",
              "created_at", "auth_instance_id", "domain_id"):
        eq(up[f], role[f], f + " unchanged")
    up = SRV.ok("PUT", p, {"role": {"bound_audience": None,
                                    "bound_pod_names": None,
                                    "token_ttl": None}}).json["role"]
    eq(up["bound_audience"], None, "audience cleared")
    eq(up["bound_pod_names"], None, "pod names cleared")
    eq(up["token_ttl"], None, "ttl cleared")
    eq(up["enabled"], False, "enabled kept")
    # rename through the id path; the old name is gone
    up = SRV.ok("PATCH", c.roles + "/" + role["id"],
                {"role": {"name": "renamed"}}).json["role"]
    eq(up["name"], "renamed", "renamed")
    assert_error(SRV.req("GET", p), 404, "role_not_found")
    eq(SRV.ok("GET", c.roles + "/renamed").json["role"]["id"], role["id"],
       "by new name")
    rst2 = new_restriction(c.dom)
    up = SRV.ok("PATCH", c.roles + "/renamed", {"role": {
        "token_restriction_id": rst2["id"],
        "bound_service_account_names": ["x", "y"]}}).json["role"]
    eq(up["token_restriction_id"], rst2["id"], "restriction changed")
    eq(up["bound_service_account_names"], ["x", "y"], "names changed")


UPDATE_REASONS = {"auth_instance_id": "immutable_field",
                  "domain_id": "immutable_field", "id": "immutable_field",
                  "bogus": "unknown_field"}


def update_reason(body, field):
    """The reason a bad role update gets."""
    if field == "token_restriction_id" and body[field] is not None:
        return "invalid_restriction"
    return UPDATE_REASONS.get(field, "invalid_value")


def test_update_validation_400():
    c = Ctx()
    role = c.create()
    p = c.roles + "/" + role["id"]
    no_user = new_restriction(c.dom, user_id=None)
    for body, field in (({"auth_instance_id": "a" * 32}, "auth_instance_id"),
                        ({"domain_id": "x"}, "domain_id"),
                        ({"id": "a" * 32}, "id"),
                        ({"name": "bad name"}, "name"),
                        ({"name": None}, "name"),
                        ({"bound_service_account_names": []},
                         "bound_service_account_names"),
                        ({"bound_service_account_namespaces": None},
                         "bound_service_account_namespaces"),
                        ({"token_ttl": 30}, "token_ttl"),
                        ({"token_restriction_id": "0" * 32},
                         "token_restriction_id"),
                        ({"token_restriction_id": no_user["id"]},
                         "token_restriction_id"),
                        ({"token_restriction_id": None},
                         "token_restriction_id"),
                        ({"enabled": "false"}, "enabled"),
                        ({"bogus": True}, "bogus")):
        try:
            assert_error(SRV.req("PATCH", p, {"role": body}), 400,
                         update_reason(body, field), names=field)
        except AssertionError as e:
            fail("%r: %s" % (body, e))
    eq(SRV.ok("GET", p).json["role"], role, "unchanged after bad updates")


def test_update_duplicate_name_409():
    c = Ctx()
    c.create(name="first")
    second = c.create(name="second")
    assert_error(SRV.req("PATCH", c.roles + "/" + second["id"],
                         {"role": {"name": "first"}}), 409, "conflict")


def test_delete_by_name_and_id():
    c = Ctx()
    a = c.create(name="del-a")
    b = c.create(name="del-b")
    r = SRV.req("DELETE", c.roles + "/del-a")
    eq(r.status, 204, "delete by name")
    eq(r.raw, b"", "204 body")
    assert_error(SRV.req("GET", c.roles + "/" + a["id"]), 404,
                 "role_not_found")
    eq(SRV.req("DELETE", c.roles + "/" + b["id"]).status, 204, "delete by id")
    assert_error(SRV.req("DELETE", c.roles + "/" + b["id"]), 404,
                 "role_not_found")
    eq(SRV.ok("GET", c.roles).json["roles"], [], "empty after deletes")
