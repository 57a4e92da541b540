"""Lua policies driving the real server: login hook and API policy.

Each test writes its own policy files into the server's [policy] dir
(files missing there fall back to the built-in defaults) and checks what a
client sees, what the log says, and that the server stays healthy.
"""
import json
import os
import signal
import time

from harness import (ADMIN, Server, assert_error, check, eq, fail, run_cli,
                     timeout_scale, wait_for)
from k8s_fixture import FakeK8s, Login

K8S = None


def setup_module():
    global K8S
    K8S = FakeK8s("policy").start()


def teardown_module():
    K8S.stop()


def policy_server(files, name, extra=None):
    """A server (started by `with`) whose policy dir holds {name: text}."""
    srv = Server(extra=extra, name=name)
    write_policy(srv, files)
    return srv


def write_policy(srv, files):
    d = os.path.join(srv.dir, "policy")
    os.makedirs(d, exist_ok=True)
    for fname, text in files.items():
        with open(os.path.join(d, fname), "w") as f:
            f.write(text)


def reason_of(resp):
    return (resp.json or {}).get("error", {}).get("reason")


def test_login_policy_denies_with_reason_only_in_log():
    login = 'return { check = function(ctx)\n' \
            '  if ctx.service_account.namespace:find("^blocked") then\n' \
            '    return false, "namespace blocked by operator"\n' \
            '  end\n  return true\nend }\n'
    with policy_server({"login.lua": login}, "pol-deny") as srv:
        ok = Login(srv, K8S)
        ok.ok(ok.jwt())
        bad = Login(srv, K8S)
        K8S.sa("blocked-ns", "web")
        bad.patch_role(bound_service_account_namespaces=["blocked-*"])
        r = bad.login(bad.jwt(ns="blocked-ns"))
        assert_error(r, 401, "policy_denied")
        check("namespace blocked" not in r.raw.decode(),
              "the policy's reason was sent to the client")
        wait_for(lambda: "namespace blocked by operator" in srv.log_text(),
                 what="policy reason in the log")


def test_login_policy_sees_the_claims():
    # ctx.claims is the JWT's claims object as the policy sees it (the
    # ctx refers to the parsed claims rather than copying them): nested
    # objects, strings and numbers all there, twice in a row.
    login = 'return { check = function(ctx)\n' \
            '  local c = ctx.claims\n' \
            '  local k = c["kubernetes.io"]\n' \
            '  local want = "system:serviceaccount:" ..\n' \
            '      ctx.service_account.namespace .. ":web"\n' \
            '  if c.sub ~= want or k == nil or\n' \
            '      k.namespace ~= ctx.service_account.namespace or\n' \
            '      k.serviceaccount.name ~= "web" or\n' \
            '      math.type(c.exp) ~= "integer" then\n' \
            '    return false, "claims: sub=" .. tostring(c.sub)\n' \
            '  end\n' \
            '  return true, {audit = {sub = c.sub}}\nend }\n'
    with policy_server({"login.lua": login}, "pol-claims") as srv:
        L = Login(srv, K8S)
        jwt = L.jwt()
        L.ok(jwt)
        L.ok(jwt)
        wait_for(lambda: '"policy":{"sub":"system:serviceaccount:%s:web"}'
                 % L.ns in srv.log_text(),
                 what="the claims' sub in the audit line")


def test_login_policy_sees_review_extra_on_a_cached_review():
    # A review cache hit keeps status.user.extra as text and parses it
    # only for the policy: ctx.review.extra must be the same object on
    # the hit as on the review, and the pod fields the same as well.
    key = "authentication.kubernetes.io/pod-name"
    login = 'return { check = function(ctx)\n' \
            '  local x = ctx.review.extra["%s"]\n' \
            '  if type(x) ~= "table" or x[1] ~= "api-0" or\n' \
            '     ctx.pod == nil or ctx.pod.name ~= "api-0" then\n' \
            '    return false, "extra or pod missing"\n' \
            '  end\n  return true\nend }\n' % key
    with policy_server({"login.lua": login}, "pol-extra") as srv:
        L = Login(srv, K8S)
        K8S.pod(L.ns, "api-0", "web")
        jwt = L.jwt(pod="api-0")
        before = K8S.reviews()
        for _ in range(3):
            r = L.ok(jwt)
            eq(r.json["token"]["k8s_auth"]["pod_name"], "api-0", "pod_name")
        eq(K8S.reviews() - before, 1, "reviews for three logins (cached)")


def test_login_policy_shortens_never_lengthens():
    # [token] expiration 600 s and JWTs living 2 h: a policy asking for
    # more than 600 s would visibly get it (up to the JWT's 7200 s, or its
    # own 99999 s), so the cap is what the test sees, not a coincidence.
    login = 'return { check = function(ctx)\n' \
            '  if ctx.role.name:find("^short") then\n' \
            '    return true, {expires_in = 120, audit = {why = "short"}}\n' \
            '  end\n' \
            '  if ctx.role.name:find("^mid") then\n' \
            '    return true, {expires_in = 1000}\n' \
            '  end\n' \
            '  return true, {expires_in = 99999}\nend }\n'
    with policy_server({"login.lua": login}, "pol-life",
                       extra={"token": {"expiration": "600"}}) as srv:
        short = Login(srv, K8S, role={"name": "short-role"})
        short.role_name = "short-role"
        r = short.ok(short.jwt(expires_in=7200))
        left = iso_seconds(r.json["token"]["expires_at"]) - time.time()
        check(100 < left <= 121, "expires in %.0f s, want ~120" % left)
        wait_for(lambda: '"policy":{"why":"short"}' in srv.log_text(),
                 what="the policy's audit fields in the audit line")
        for name, asked in (("mid-role", 1000), (None, 99999)):
            L = Login(srv, K8S, role={"name": name} if name else None)
            if name:
                L.role_name = name
            r = L.ok(L.jwt(expires_in=7200))
            left = iso_seconds(r.json["token"]["expires_at"]) - time.time()
            check(580 < left <= 601, "a policy asking %d s got %.0f s, "
                  "want [token] expiration 600" % (asked, left))


def iso_seconds(ts):
    import calendar
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))


def test_login_policy_maps_to_another_restriction():
    with Server(name="pol-map") as srv:
        L = Login(srv, K8S)
        other = srv.create("restriction", {
            "domain_id": L.dom, "user_id": "a" * 32, "project_id": "b" * 32,
            "roles": [{"id": "c" * 32, "name": "reader"}]})
        foreign = srv.create("restriction", {
            "domain_id": "another-domain", "user_id": "d" * 32,
            "project_id": "e" * 32, "roles": [{"id": "f" * 32}]})
        login = 'return { check = function(ctx)\n' \
                '  if ctx.service_account.name == "web" then\n' \
                '    return true, {restriction_id = "%s"}\n' \
                '  end\n' \
                '  return true, {restriction_id = "%s"}\nend }\n' % (
                    other["id"], foreign["id"])
        write_policy(srv, {"login.lua": login})
        srv.signal(signal.SIGHUP)
        wait_for(lambda: L.login(L.jwt()).json["token"]["project"]["id"]
                 == "b" * 32, what="the mapping policy after SIGHUP")
        r = L.ok(L.jwt())
        eq(r.json["token"]["project"]["id"], "b" * 32, "mapped project")
        eq(r.json["token"]["user"]["id"], "a" * 32, "mapped user")
        eq([x["name"] for x in r.json["token"]["roles"]], ["reader"],
           "mapped roles")
        # A mapping into another domain is refused: never a token.
        K8S.sa(L.ns, "api")
        L.patch_role(bound_service_account_names=["web", "api"])
        r = L.login(L.jwt(sa="api"))
        assert_error(r, 500, "restriction_invalid")
        check("x-subject-token" not in r.headers, "a token on an error")


def test_login_policy_errors_fail_closed():
    cases = {
        "runtime": 'return { check = function(ctx) error("boom") end }\n',
        "loop": 'return { check = function(ctx) while true do end end }\n',
        "escape": 'return { check = function(ctx)\n'
                  '  return os.execute("touch /tmp/pwned") end }\n',
        "wrongtype": 'return { check = function(ctx) return 42 end }\n',
        "badoverride": 'return { check = function(ctx)\n'
                       '  return true, {expires_in = 60, bogus = 1} end }\n',
    }
    for name, text in cases.items():
        with policy_server({"login.lua": text}, "pol-" + name) as srv:
            L = Login(srv, K8S)
            r = L.login(L.jwt())
            assert_error(r, 500, "policy_error")
            check("x-subject-token" not in r.headers,
                  "%s: a token on a policy error" % name)
            eq(srv.req("GET", "/healthz", token=None).status, 200,
               "%s: healthz after" % name)
            check("login.lua" in srv.log_text(),
                  "%s: the log does not name the policy file" % name)
    check(not os.path.exists("/tmp/pwned"), "os.execute ran")


def test_api_policy_denies_admin_action():
    api = 'local d = dofile_not_available\n' \
          'return setmetatable({\n' \
          '  ["k8s_auth:instance:delete"] = function(cred, target)\n' \
          '    return false, "instances are never deleted here"\n' \
          '  end,\n' \
          '}, {__index = function(t, action)\n' \
          '  return function(cred, target) return cred.is_admin end\n' \
          'end})\n'
    with policy_server({"api.lua": api}, "pol-api") as srv:
        inst = srv.create("instance", {"domain_id": "d1",
                                       "host": "https://k8s.example:6443"})
        r = srv.req("DELETE", "/v4/k8s_auth/instances/%s" % inst["id"])
        assert_error(r, 403, "forbidden")
        eq(srv.req("GET", "/v4/k8s_auth/instances/%s" % inst["id"]).status,
           200, "the instance is still there")
        wait_for(lambda: "never deleted here" in srv.log_text(),
                 what="the policy's reason in the log")


def test_policy_reasons_are_escaped_in_the_log():
    # A policy's reason (or error) may carry what a client sent: the log
    # line must not let it forge lines.
    forged = "2030-01-01T00:00:00.000Z error: FORGED"
    api = 'return setmetatable({\n' \
          '  ["k8s_auth:instance:create"] = function(cred, target)\n' \
          '    local n = target.instance.name or ""\n' \
          '    if not n:find("FORGED") then return cred.is_admin end\n' \
          '    return false, "refused " .. n\n' \
          '  end,\n' \
          '  ["k8s_auth:instance:list"] = function(cred, target)\n' \
          '    error("boom " .. (target.name or "?"))\n' \
          '  end,\n' \
          '}, {__index = function(t, action)\n' \
          '  return function(cred, target) return cred.is_admin end\n' \
          'end})\n'
    login = 'return { check = function(ctx)\n' \
            '  return false, "no " .. ctx.role.name .. "\\n" .. "%s"\n' \
            'end }\n' % forged
    with policy_server({"api.lua": api, "login.lua": login},
                       "pol-esc") as srv:
        r = srv.req("POST", "/v4/k8s_auth/instances", {"instance": {
            "domain_id": "d1", "name": "x\n" + forged,
            "host": "https://k8s.example:6443"}})
        assert_error(r, 403, "forbidden")
        r = srv.req("GET", "/v4/k8s_auth/instances?name=y%0A" +
                    forged.replace(" ", "%20").replace(":", "%3A"))
        eq(r.status, 403, "a failing rule denies")
        L = Login(srv, K8S)
        assert_error(L.login(L.jwt()), 401, "policy_denied")
        wait_for(lambda: srv.log_text().count("FORGED") >= 3,
                 what="the three reasons in the log")
        for line in srv.log_text().splitlines():
            check(not line.startswith(forged),
                  "a policy reason forged a log line: %r" % line)


def test_role_target_says_whether_its_binding_is_protected():
    # target.role.protected: the stored role binds a restriction granting
    # a role that is not delegable.  A policy needs it to keep anyone but
    # admin from unbinding such a role (update) or deleting it, which
    # would unprotect the instance.  This policy denies exactly then.
    api = 'local function guard(cred, target)\n' \
          '  if target.role.protected ~= false then\n' \
          '    return false, "protected=" .. tostring(target.role.protected)\n' \
          '  end\n' \
          '  return cred.is_admin\n' \
          'end\n' \
          'return setmetatable({\n' \
          '  ["k8s_auth:role:update"] = guard,\n' \
          '  ["k8s_auth:role:delete"] = guard,\n' \
          '}, {__index = function(t, action)\n' \
          '  return function(cred, target) return cred.is_admin end\n' \
          'end})\n'
    with policy_server({"api.lua": api}, "pol-bind") as srv:
        inst = srv.create("instance", {"domain_id": "d1",
                                       "host": "https://k8s.example:6443"})
        def restriction(name):
            return srv.create("restriction", {
                "domain_id": "d1", "user_id": "u", "project_id": "p",
                "roles": [{"id": "id-" + name, "name": name}]})["id"]
        adm, plain = restriction("admin"), restriction("member")
        path = "/v4/k8s_auth/instances/%s/roles" % inst["id"]

        def role(name, rid):
            return srv.create("role", {
                "name": name, "bound_service_account_names": ["a"],
                "bound_service_account_namespaces": ["b"],
                "token_restriction_id": rid}, path=path)["id"]
        r_adm, r_plain = role("ci-admin", adm), role("web", plain)
        r = srv.req("PATCH", "%s/%s" % (path, r_adm),
                    {"role": {"token_restriction_id": plain}})
        assert_error(r, 403, "forbidden")
        assert_error(srv.req("DELETE", "%s/%s" % (path, r_adm)), 403,
                     "forbidden")
        wait_for(lambda: "protected=true" in srv.log_text(),
                 what="the policy's reason in the log")
        eq(srv.req("PATCH", "%s/%s" % (path, r_plain),
                   {"role": {"token_ttl": 600}}).status, 200,
           "a role bound to a plain restriction")
        eq(srv.req("DELETE", "%s/%s" % (path, r_plain)).status, 204,
           "deleting a role bound to a plain restriction")


def test_reload_broken_keeps_old_then_fixed_applies():
    deny = 'return { check = function(ctx) return false, "v1" end }\n'
    with policy_server({"login.lua": deny}, "pol-reload") as srv:
        L = Login(srv, K8S)
        assert_error(L.login(L.jwt()), 401, "policy_denied")
        write_policy(srv, {"login.lua": "return { check = function(ctx)\n"
                                        "  return true\n"})  # no 'end }'
        srv.signal(signal.SIGHUP)
        wait_for(lambda: "policy not reloaded" in srv.log_text(),
                 what="the reload error in the log")
        check("login.lua:" in srv.log_text(), "the error names file:line")
        assert_error(L.login(L.jwt()), 401, "policy_denied")
        write_policy(srv, {"login.lua": "return { check = function(ctx)\n"
                                        "  return true end }\n"})
        srv.signal(signal.SIGHUP)
        wait_for(lambda: L.login(L.jwt()).status == 200,
                 what="the fixed policy in force after SIGHUP")


def test_broken_policy_at_startup_stops_serve():
    srv = Server(name="pol-start")
    write_policy(srv, {"api.lua": "return {\n  oops = function(\n"})
    srv.setup()
    p = run_cli(["serve", "--config", srv.conf], timeout=30 * timeout_scale())
    check(p.returncode != 0, "serve started with a broken api.lua")
    check("api.lua:" in p.stderr, "stderr does not name api.lua:LINE: %r"
          % p.stderr[-300:])
    srv.cleanup()


def test_policy_check_exit_codes():
    srv = Server(name="pol-cli")
    d = srv.dir
    admin = os.path.join(d, "admin.json")
    member = os.path.join(d, "member.json")
    target = os.path.join(d, "target.json")
    with open(admin, "w") as f:
        json.dump({"kind": "bootstrap", "is_admin": True, "roles": []}, f)
    with open(member, "w") as f:
        json.dump({"kind": "keystone", "is_admin": False, "user_id": "u",
                   "project_id": "p", "roles": ["member"]}, f)
    with open(target, "w") as f:
        json.dump({"instance": {"domain_id": "d1"}}, f)
    base = ["policy-check", "--config", srv.conf, "--action",
            "k8s_auth:instance:create", "--target", target, "--credentials"]
    p = run_cli(base + [admin])
    eq((p.returncode, p.stdout.strip()), (0, "allow"), "admin")
    p = run_cli(base + [member])
    eq(p.returncode, 1, "member exit code")
    check(p.stdout.startswith("deny"), "member output %r" % p.stdout)
    p = run_cli(base + [os.path.join(d, "missing.json")])
    eq(p.returncode, 2, "unreadable input exit code")
    write_policy(srv, {"api.lua": "return {"})
    p = run_cli(base + [admin])
    eq(p.returncode, 2, "broken policy exit code")
    srv.cleanup()
