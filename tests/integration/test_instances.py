"""Kubernetes auth instances: /v4/k8s_auth/instances (API.md §1)."""
from harness import (Server, assert_error, assert_id, assert_timestamp, check,
                     eq, fail, fake_jwt, list_all, openssl_pem_cert, unique)

SRV = None
PEM = None
PEM2 = None
BASE = "/v4/k8s_auth/instances"
FIELDS = {"id", "domain_id", "name", "host", "ca_cert", "token_reviewer_jwt_set",
          "disable_local_ca_jwt", "enabled", "created_at", "updated_at",
          "service_account_annotations", "jwt_signature", "jwks", "issuer",
          "review_cache_ttl"}


def setup_module():
    global SRV, PEM, PEM2
    SRV = Server(name="instances").start()
    PEM = openssl_pem_cert("k8s-ca-1")
    PEM2 = openssl_pem_cert("k8s-ca-2")


def teardown_module():
    SRV.stop()


def new_instance(**over):
    obj = {"domain_id": unique("dom"), "host": "https://k8s.example.com:6443"}
    obj.update(over)
    return SRV.create("instance", obj)


def bad_create(obj, names, status=400, path=BASE, reason="invalid_value"):
    r = SRV.req("POST", path, {"instance": obj})
    return assert_error(r, status, reason, names=names)


def good():
    return {"domain_id": unique("dom"), "host": "https://k8s.example.com:6443"}


def with_(**kw):
    o = good()
    o.update(kw)
    return o


def without(field):
    o = good()
    del o[field]
    return o


# -- create ------------------------------------------------------------------
def test_create_201_location_and_fields():
    jwt = fake_jwt()
    SRV.secrets.add(jwt)
    dom = unique("dom")
    r = SRV.req("POST", BASE, {"instance": {
        "domain_id": dom, "name": "cluster-a", "host": "https://10.0.0.1:6443",
        "ca_cert": PEM, "token_reviewer_jwt": jwt}})
    eq(r.status, 201, "status")
    check(jwt.encode() not in r.raw, "token_reviewer_jwt echoed in response")
    inst = r.json["instance"]
    check(FIELDS <= set(inst) and set(inst) - FIELDS <= {"links"},
          "instance fields: %r" % sorted(inst))
    assert_id(inst["id"])
    eq(inst["domain_id"], dom, "domain_id")
    eq(inst["name"], "cluster-a", "name")
    eq(inst["host"], "https://10.0.0.1:6443", "host")
    eq(inst["ca_cert"].strip(), PEM.strip(), "ca_cert")
    eq(inst["token_reviewer_jwt_set"], True, "token_reviewer_jwt_set")
    eq(inst["disable_local_ca_jwt"], False, "disable_local_ca_jwt default")
    eq(inst["service_account_annotations"], False,
       "service_account_annotations default")
    eq(inst["enabled"], True, "enabled default")
    assert_timestamp(inst["created_at"], "created_at")
    assert_timestamp(inst["updated_at"], "updated_at")
    loc = r.headers.get("location")
    check(loc and loc.endswith(BASE + "/" + inst["id"]),
          "Location %r does not end with %s/%s" % (loc, BASE, inst["id"]))
    # and the stored object is what show returns, still without the jwt
    s = SRV.ok("GET", BASE + "/" + inst["id"])
    check(jwt.encode() not in s.raw, "token_reviewer_jwt returned by show")
    eq(s.json["instance"], inst, "show equals create response")


def test_create_minimal_defaults():
    inst = new_instance()
    eq(inst.get("name"), None, "name")
    eq(inst.get("ca_cert"), None, "ca_cert")
    eq(inst["token_reviewer_jwt_set"], False, "token_reviewer_jwt_set")
    eq(inst["enabled"], True, "enabled")
    eq(inst["disable_local_ca_jwt"], False, "disable_local_ca_jwt")
    check("token_reviewer_jwt" not in inst, "token_reviewer_jwt key present")


def test_create_explicit_flags_and_nulls():
    inst = new_instance(enabled=False, disable_local_ca_jwt=True, name=None,
                        ca_cert=None, token_reviewer_jwt=None)
    eq(inst["enabled"], False, "enabled")
    eq(inst["disable_local_ca_jwt"], True, "disable_local_ca_jwt")
    eq(inst["token_reviewer_jwt_set"], False, "token_reviewer_jwt_set")


def test_create_alias_post_v4_k8s_auth():
    dom = unique("dom")
    r = SRV.req("POST", "/v4/k8s_auth", {"instance": {
        "domain_id": dom, "host": "https://alias.example.com"}})
    eq(r.status, 201, "POST /v4/k8s_auth status (%r)" % r.raw[:200])
    inst = r.json["instance"]
    assert_id(inst["id"])
    check(r.headers.get("location", "").endswith(BASE + "/" + inst["id"]),
          "alias Location %r" % r.headers.get("location"))
    s = SRV.ok("GET", BASE + "/" + inst["id"])
    eq(s.json["instance"]["domain_id"], dom, "domain_id via alias")


def test_create_ids_unique():
    ids = {new_instance()["id"] for _ in range(5)}
    eq(len(ids), 5, "distinct ids")


# -- validation --------------------------------------------------------------
def test_create_unknown_field_400():
    bad_create(with_(colour="blue"), "colour", reason="unknown_field")


def test_create_server_fields_refused_or_ignored():
    for field, value in (("id", "0" * 32),
                         ("token_reviewer_jwt_set", True),
                         ("created_at", "2000-01-01T00:00:00.000000Z")):
        r = SRV.req("POST", BASE, {"instance": with_(**{field: value})})
        if r.status == 201:
            inst = r.json["instance"]
            check(inst[field] != value, "client set %s on create" % field)
        else:
            assert_error(r, 400, "read_only_field", names=field)


def test_create_missing_required_400():
    bad_create(without("domain_id"), "domain_id", reason="missing_field")
    bad_create(without("host"), "host", reason="missing_field")


def test_create_wrong_types_400():
    for field, value in (("domain_id", 5), ("domain_id", None),
                         ("name", 5), ("name", ["a"]),
                         ("host", 443), ("host", None),
                         ("ca_cert", 1), ("token_reviewer_jwt", 12),
                         ("enabled", "yes"), ("enabled", 1),
                         ("enabled", None),
                         ("disable_local_ca_jwt", "true"),
                         ("disable_local_ca_jwt", 0)):
        try:
            bad_create(with_(**{field: value}), field)
        except AssertionError as e:
            fail("%s=%r: %s" % (field, value, e))


def test_create_lengths():
    bad_create(with_(domain_id=""), "domain_id")
    bad_create(with_(domain_id="d" * 65), "domain_id")
    new_instance(domain_id="d" * 63 + unique("")[-1])  # 64 chars: ok
    bad_create(with_(name=""), "name")
    bad_create(with_(name="n" * 256), "name")
    new_instance(name="n" * 255)


def test_create_host_forms():
    for host in ("http://k8s.example.com:6443",
                 "https://k8s.example.com:6443/api",
                 "https://k8s.example.com/some/path",
                 "https://k8s.example.com/?watch=1",
                 "https://k8s.example.com?x=1",
                 "https://user:pw@k8s.example.com",
                 "https://user@k8s.example.com",
                 "not a url",
                 "k8s.example.com:6443",
                 "ftp://k8s.example.com",
                 "https://",
                 ""):
        try:
            bad_create(with_(host=host), "host")
        except AssertionError as e:
            fail("host %r: %s" % (host, e))
    for host in ("https://k8s.example.com", "https://k8s.example.com:6443/",
                 "https://10.96.0.1:443", "https://[fd00::1]:6443"):
        r = SRV.req("POST", BASE, {"instance": with_(host=host)})
        eq(r.status, 201, "host %r accepted (%r)" % (host, r.raw[:200]))


def test_http_host_allowed_with_allow_insecure_http():
    with Server(extra={"k8s_auth": {"allow_insecure_http": "true"}},
                name="insecure") as srv:
        r = srv.req("POST", BASE, {"instance": {
            "domain_id": "d", "host": "http://127.0.0.1:8080"}})
        eq(r.status, 201, "http:// host with allow_insecure_http (%r)" %
           r.raw[:200])
        eq(r.json["instance"]["host"], "http://127.0.0.1:8080", "host")
        # the other host rules still apply
        r = srv.req("POST", BASE, {"instance": {
            "domain_id": "d", "host": "http://127.0.0.1:8080/path"}})
        assert_error(r, 400, "invalid_value", names="host")


def test_ca_cert_garbage_400_real_pem_ok():
    for garbage in ("not a certificate",
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                    PEM.replace("M", "x")):
        bad_create(with_(ca_cert=garbage), "ca_cert")
    inst = new_instance(ca_cert=PEM)
    eq(inst["ca_cert"].strip(), PEM.strip(), "ca_cert stored")
    bundle = PEM + PEM2
    inst = new_instance(ca_cert=bundle)
    check(PEM.strip() in inst["ca_cert"] and PEM2.strip() in inst["ca_cert"],
          "both certificates of a bundle kept")


def test_duplicate_name_same_domain_409():
    dom = unique("dom")
    new_instance(domain_id=dom, name="prod")
    r = SRV.req("POST", BASE, {"instance": with_(domain_id=dom, name="prod")})
    assert_error(r, 409, "conflict")
    other = new_instance(domain_id=unique("dom"), name="prod")
    eq(other["name"], "prod", "same name in another domain")
    # unnamed instances never conflict
    new_instance(domain_id=dom)
    new_instance(domain_id=dom)


def test_secret_not_echoed_in_validation_error():
    jwt = fake_jwt("leak-check")
    SRV.secrets.add(jwt)
    r = SRV.req("POST", BASE, {"instance": with_(host="http://x",
                                                 token_reviewer_jwt=jwt)})
    assert_error(r, 400, "invalid_value")
    check(jwt.encode() not in r.raw, "400 body echoes token_reviewer_jwt")
    r = SRV.req("POST", BASE, {"instance": with_(token_reviewer_jwt=jwt,
                                                 bogus=1)})
    assert_error(r, 400, "unknown_field")
    check(jwt.encode() not in r.raw, "400 body echoes token_reviewer_jwt")


# -- list --------------------------------------------------------------------
def test_list_filters():
    dom = unique("dom")
    a = new_instance(domain_id=dom, name="a")
    b = new_instance(domain_id=dom, name="b", enabled=False)
    new_instance(name="a")  # other domain
    r = SRV.ok("GET", BASE + "?domain_id=" + dom)
    eq(sorted(i["id"] for i in r.json["instances"]), sorted([a["id"], b["id"]]),
       "domain_id filter")
    r = SRV.ok("GET", BASE + "?domain_id=%s&name=a" % dom)
    eq([i["id"] for i in r.json["instances"]], [a["id"]], "name filter")
    r = SRV.ok("GET", BASE + "?domain_id=%s&enabled=false" % dom)
    eq([i["id"] for i in r.json["instances"]], [b["id"]], "enabled=false")
    r = SRV.ok("GET", BASE + "?domain_id=%s&enabled=true" % dom)
    eq([i["id"] for i in r.json["instances"]], [a["id"]], "enabled=true")
    r = SRV.ok("GET", BASE + "?domain_id=" + unique("none"))
    eq(r.json["instances"], [], "no match")
    for i in SRV.ok("GET", BASE).json["instances"]:
        check("token_reviewer_jwt" not in i, "list returns token_reviewer_jwt")


def test_list_pagination_every_item_once():
    dom = unique("dom")
    made = {new_instance(domain_id=dom)["id"] for _ in range(7)}
    items, pages = list_all(SRV, BASE + "?domain_id=" + dom, "instances",
                            limit=3)
    ids = [i["id"] for i in items]
    eq(len(ids), len(set(ids)), "no duplicates across pages (%r)" % ids)
    eq(set(ids), made, "all items")
    check(pages >= 3, "7 items with limit=3 took only %d pages" % pages)


def test_list_links_shape():
    r = SRV.ok("GET", BASE + "?limit=1")
    links = r.json["links"]
    check(isinstance(links.get("self"), str) and links["self"],
          "links.self: %r" % links)


def test_list_invalid_limit_400():
    for q in ("limit=abc", "limit=-1", "limit=0", "limit=1x"):
        try:
            assert_error(SRV.req("GET", BASE + "?" + q), 400,
                         "invalid_query", names="limit")
        except AssertionError as e:
            fail("%s: %s" % (q, e))


# -- show / update -----------------------------------------------------------
def test_show_unknown_404():
    assert_error(SRV.req("GET", BASE + "/" + "f" * 32), 404,
                 "instance_not_found")
    assert_error(SRV.req("GET", BASE + "/not-an-id"), 404,
                 "instance_not_found")


def full_instance():
    jwt = fake_jwt()
    SRV.secrets.add(jwt)
    return new_instance(name=unique("n"), ca_cert=PEM, token_reviewer_jwt=jwt)


def test_patch_absent_unchanged():
    inst = full_instance()
    r = SRV.ok("PATCH", BASE + "/" + inst["id"], {"instance": {"enabled": False}})
    up = r.json["instance"]
    eq(up["enabled"], False, "enabled")
    for f in ("id", "domain_id", "name", "host", "ca_cert",
              "token_reviewer_jwt_set", "disable_local_ca_jwt", "created_at"):
        eq(up[f], inst[f], f + " unchanged")
    check(up["updated_at"] >= inst["updated_at"], "updated_at went backwards")
    eq(SRV.ok("GET", BASE + "/" + inst["id"]).json["instance"], up,
       "show after patch")


def test_patch_null_clears_optional():
    inst = full_instance()
    r = SRV.ok("PATCH", BASE + "/" + inst["id"], {"instance": {
        "name": None, "ca_cert": None, "token_reviewer_jwt": None}})
    up = r.json["instance"]
    eq(up.get("name"), None, "name cleared")
    eq(up.get("ca_cert"), None, "ca_cert cleared")
    eq(up["token_reviewer_jwt_set"], False, "token_reviewer_jwt cleared")
    eq(up["host"], inst["host"], "host unchanged")
    s = SRV.ok("GET", BASE + "/" + inst["id"]).json["instance"]
    eq(s, up, "show after clearing")


def test_patch_sets_values():
    inst = new_instance()
    jwt = fake_jwt()
    SRV.secrets.add(jwt)
    r = SRV.req("PATCH", BASE + "/" + inst["id"], {"instance": {
        "token_reviewer_jwt": jwt, "host": "https://new.example.com",
        "name": "renamed", "ca_cert": PEM2, "disable_local_ca_jwt": True}})
    eq(r.status, 200, "status (%r)" % r.raw[:200])
    check(jwt.encode() not in r.raw, "PATCH response echoes the jwt")
    up = r.json["instance"]
    eq(up["token_reviewer_jwt_set"], True, "token_reviewer_jwt_set")
    eq(up["host"], "https://new.example.com", "host")
    eq(up["name"], "renamed", "name")
    eq(up["disable_local_ca_jwt"], True, "disable_local_ca_jwt")
    eq(up["ca_cert"].strip(), PEM2.strip(), "ca_cert")


def test_put_alias_same_semantics():
    inst = full_instance()
    r = SRV.ok("PUT", BASE + "/" + inst["id"], {"instance": {"name": "put-name"}})
    up = r.json["instance"]
    eq(up["name"], "put-name", "name via PUT")
    for f in ("host", "ca_cert", "token_reviewer_jwt_set", "enabled",
              "domain_id"):
        eq(up[f], inst[f], f + " unchanged by partial PUT")
    r = SRV.ok("PUT", BASE + "/" + inst["id"], {"instance": {"ca_cert": None}})
    eq(r.json["instance"].get("ca_cert"), None, "PUT null clears")


def test_patch_immutable_400():
    inst = new_instance()
    p = BASE + "/" + inst["id"]
    assert_error(SRV.req("PATCH", p, {"instance": {"id": "0" * 32}}), 400,
                 "immutable_field",
                 names="id")
    assert_error(SRV.req("PATCH", p, {"instance": {"domain_id": "other"}}),
                 400, "immutable_field", names="domain_id")
    assert_error(SRV.req("PUT", p, {"instance": {"domain_id": "other"}}),
                 400, "immutable_field", names="domain_id")
    eq(SRV.ok("GET", p).json["instance"]["domain_id"], inst["domain_id"],
       "domain_id unchanged")


def test_patch_validation_400():
    inst = new_instance()
    p = BASE + "/" + inst["id"]
    for body, field in (({"host": "http://x.example.com"}, "host"),
                        ({"host": None}, "host"),
                        ({"host": "https://x/path"}, "host"),
                        ({"enabled": "no"}, "enabled"),
                        ({"enabled": None}, "enabled"),
                        ({"ca_cert": "garbage"}, "ca_cert"),
                        ({"name": ""}, "name"),
                        ({"bogus": 1}, "bogus")):
        try:
            assert_error(SRV.req("PATCH", p, {"instance": body}), 400,
                         "unknown_field" if field == "bogus" else
                         "invalid_value", names=field)
        except AssertionError as e:
            fail("%r: %s" % (body, e))
    eq(SRV.ok("GET", p).json["instance"], inst, "unchanged after bad PATCHes")
    assert_error(SRV.req("PATCH", p, {"role": {"name": "x"}}), 400,
                 "invalid_wrapper")


def test_patch_duplicate_name_409():
    dom = unique("dom")
    new_instance(domain_id=dom, name="one")
    two = new_instance(domain_id=dom, name="two")
    assert_error(SRV.req("PATCH", BASE + "/" + two["id"],
                         {"instance": {"name": "one"}}), 409, "conflict")


def test_patch_unknown_404():
    assert_error(SRV.req("PATCH", BASE + "/" + "e" * 32,
                         {"instance": {"enabled": False}}), 404,
                 "instance_not_found")


# -- delete ------------------------------------------------------------------
def test_delete_204_then_404():
    inst = new_instance()
    p = BASE + "/" + inst["id"]
    r = SRV.req("DELETE", p)
    eq(r.status, 204, "DELETE status")
    eq(r.raw, b"", "204 body")
    assert_error(SRV.req("GET", p), 404, "instance_not_found")
    assert_error(SRV.req("DELETE", p), 404, "instance_not_found")
    assert_error(SRV.req("PATCH", p, {"instance": {"enabled": True}}), 404,
                 "instance_not_found")


def test_delete_cascades_roles():
    inst = new_instance()
    rst = SRV.create("restriction", {
        "domain_id": inst["domain_id"], "user_id": "u", "project_id": "p",
        "roles": [{"id": "r1", "name": "member"}]})
    roles = BASE + "/" + inst["id"] + "/roles"
    role = SRV.create("role", {
        "name": "web", "bound_service_account_names": ["web"],
        "bound_service_account_namespaces": ["default"],
        "token_restriction_id": rst["id"]}, path=roles)
    eq(SRV.req("DELETE", BASE + "/" + inst["id"]).status, 204, "delete")
    assert_error(SRV.req("GET", roles + "/" + role["id"]), 404,
                 "instance_not_found")
    r = SRV.ok("GET", "/v4/k8s_auth/roles?auth_instance_id=" + inst["id"])
    eq(r.json["roles"], [], "flat list after cascade")
    r = SRV.ok("GET", "/v4/k8s_auth/roles?domain_id=" + inst["domain_id"])
    eq(r.json["roles"], [], "roles of the domain after cascade")
    # the restriction is no longer referenced: deletable
    eq(SRV.req("DELETE", "/v4/tokens/restrictions/" + rst["id"]).status, 204,
       "restriction delete after cascade")


def test_concurrent_duplicate_names_exactly_one_wins():
    import threading
    dom = unique("race")
    statuses = []
    lock = threading.Lock()
    go = threading.Event()

    def worker(i):
        go.wait(5)
        r = SRV.req("POST", BASE, {"instance": {
            "domain_id": dom, "name": "same",
            "host": "https://k%d.example.com" % i}}, https=(i % 2 == 0))
        with lock:
            statuses.append(r.status)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(30)
    eq(sorted(statuses), [201] + [409] * 7, "statuses of 8 racing creates")
    r = SRV.ok("GET", BASE + "?domain_id=%s&name=same" % dom)
    eq(len(r.json["instances"]), 1, "instances named 'same'")


# -- trust boundaries (API.md §7) ---------------------------------------------
LINK_LOCAL_HOSTS = ("https://169.254.169.254", "https://169.254.1.1:6443",
                    "https://[fe80::1]:6443", "https://[FE80::1]",
                    "https://[::ffff:169.254.169.254]",
                    "https://2852039166", "https://0xa9.0xfe.0xa9.0xfe")


def test_link_local_host_refused_for_everyone():
    """Link-local addresses (cloud metadata) are never contacted: no
    instance may name one, whoever writes it (here the bootstrap admin)."""
    for host in LINK_LOCAL_HOSTS:
        r = bad_create(with_(host=host), "host")
        check("link-local" in r["message"],
              "host %r: message %r" % (host, r["message"]))
    inst = new_instance()
    for host in LINK_LOCAL_HOSTS:
        r = SRV.req("PATCH", BASE + "/" + inst["id"],
                    {"instance": {"host": host}})
        assert_error(r, 400, names="host")
    eq(SRV.ok("GET", BASE + "/" + inst["id"]).json["instance"]["host"],
       inst["host"], "host unchanged after refused PATCHes")
    # Near misses are ordinary hosts.
    for host in ("https://169.253.255.255", "https://169.255.0.1",
                 "https://[fec0::1]", "https://169-254-169-254.example"):
        r = SRV.req("POST", BASE, {"instance": with_(host=host)})
        eq(r.status, 201, "host %r accepted (%r)" % (host, r.raw[:200]))


def test_reviewer_token_follows_the_trust_anchor():
    """A new host or ca_cert without a token_reviewer_jwt in the same
    request clears the stored reviewer token: it must never be sent to a
    server it was not given for."""
    inst = full_instance()
    path = BASE + "/" + inst["id"]
    eq(inst["token_reviewer_jwt_set"], True, "fixture has a reviewer")
    up = SRV.ok("PATCH", path, {"instance": {"host": "https://other.example"}})
    eq(up.json["instance"]["token_reviewer_jwt_set"], False,
       "host change clears the reviewer token")
    eq(SRV.ok("GET", path).json["instance"]["token_reviewer_jwt_set"], False,
       "cleared for good")
    jwt = fake_jwt()
    SRV.secrets.add(jwt)
    up = SRV.ok("PATCH", path, {"instance": {"host": "https://third.example",
                                             "token_reviewer_jwt": jwt}})
    eq(up.json["instance"]["token_reviewer_jwt_set"], True,
       "host and a new reviewer token together")
    for same in ({"host": "https://third.example"}, {"name": "kept"},
                 {"enabled": False}, {"disable_local_ca_jwt": True}):
        up = SRV.ok("PATCH", path, {"instance": same})
        eq(up.json["instance"]["token_reviewer_jwt_set"], True,
           "%r keeps the reviewer token" % same)
    up = SRV.ok("PATCH", path, {"instance": {"ca_cert": PEM2}})
    eq(up.json["instance"]["token_reviewer_jwt_set"], False,
       "ca_cert change clears the reviewer token")
    SRV.ok("PATCH", path, {"instance": {"token_reviewer_jwt": jwt}})
    up = SRV.ok("PUT", path, {"instance": {"ca_cert": None}})
    eq(up.json["instance"]["token_reviewer_jwt_set"], False,
       "removing ca_cert clears the reviewer token")


def test_allowed_hosts_config_checked():
    """[k8s_auth] allowed_hosts must parse: config-check names the entry."""
    from harness import run_cli
    srv = Server(extra={"k8s_auth": {"allowed_hosts":
                                     "*.ok.example, 10.0.0.0/33"}},
                 name="allowed-bad")
    p = run_cli(["config-check", "--config", srv.conf])
    check(p.returncode != 0, "config-check accepted 10.0.0.0/33")
    check("allowed_hosts" in p.stdout + p.stderr and
          "10.0.0.0/33" in p.stdout + p.stderr,
          "config-check output: %r" % (p.stdout + p.stderr))
