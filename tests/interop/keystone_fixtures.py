#!/usr/bin/env python3
"""Create the interoperability fixtures in a fresh Keystone, through its REST
API only, and write every id and secret to DIR/env.json.

Usage: keystone_fixtures.py DIR URL ADMIN_PASSWORD

Called by keystone-env.sh start once keystone-wsgi-public answers.  Python 3
standard library only.  The fixtures:

  domain A (k8s-interop-a):
    project k8s-proj, user k8s-svc with role member on it (the service
    account user the exchanged tokens are issued for);
    user k8s-manager with role manager on domain A;
    user k8s-reader with role reader on domain A;
    user k8s-member with role member on k8s-proj;
  domain B (k8s-interop-b): project k8s-proj-b, user k8s-svc-b (member);
  global roles admin, member, reader, manager, service, Admin (another
    role than admin) and k8s-implies-admin (a role implying admin);
  domain Default: project service, user k8s-auth with roles admin and
    service on it, and an application credential of that user (what the
    server's [keystone] section uses to validate admin tokens).
"""

import json
import os
import secrets
import sys
import urllib.error
import urllib.request

TIMEOUT = 30


class KeystoneError(Exception):
    pass


def call(base, method, path, token=None, body=None, expect=(200, 201, 204)):
    """One JSON request; returns (status, headers, decoded body or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            status, headers, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, headers, raw = err.code, err.headers, err.read()
    doc = json.loads(raw) if raw else None
    if status not in expect:
        raise KeystoneError("%s %s -> %d %s" % (method, path, status,
                                                 raw[:300].decode("utf-8",
                                                                  "replace")))
    return status, headers, doc


def password_token(base, user_id, password, project_id=None, domain_id=None):
    """Password auth by user id; returns the X-Subject-Token."""
    auth = {"identity": {"methods": ["password"],
                         "password": {"user": {"id": user_id,
                                               "password": password}}}}
    if project_id:
        auth["scope"] = {"project": {"id": project_id}}
    elif domain_id:
        auth["scope"] = {"domain": {"id": domain_id}}
    _, headers, _ = call(base, "POST", "/v3/auth/tokens",
                         body={"auth": auth}, expect=(201,))
    return headers["X-Subject-Token"]


def admin_token(base, password):
    """Project-scoped token of the bootstrap admin (name-based scope)."""
    auth = {"identity": {"methods": ["password"],
                         "password": {"user": {
                             "name": "admin", "password": password,
                             "domain": {"id": "default"}}}},
            "scope": {"project": {"name": "admin",
                                  "domain": {"id": "default"}}}}
    _, headers, doc = call(base, "POST", "/v3/auth/tokens",
                           body={"auth": auth}, expect=(201,))
    return headers["X-Subject-Token"], doc["token"]


class Fixtures:
    def __init__(self, base, token):
        self.base = base
        self.token = token

    def post(self, path, key, obj):
        _, _, doc = call(self.base, "POST", path, self.token, {key: obj},
                         expect=(201,))
        return doc[key]

    def put(self, path):
        call(self.base, "PUT", path, self.token, expect=(204,))

    def role_id(self, name):
        _, _, doc = call(self.base, "GET", "/v3/roles?name=" + name,
                         self.token)
        for role in doc["roles"]:
            if role["name"] == name:   # exact case: "Admin" is not "admin"
                return role["id"]
        return self.post("/v3/roles", "role", {"name": name})["id"]

    def domain(self, name):
        return self.post("/v3/domains", "domain",
                         {"name": name, "enabled": True})["id"]

    def project(self, name, domain_id):
        return self.post("/v3/projects", "project",
                         {"name": name, "domain_id": domain_id,
                          "enabled": True})["id"]

    def user(self, name, domain_id, project_id=None):
        password = secrets.token_urlsafe(18)
        obj = {"name": name, "domain_id": domain_id, "password": password,
               "enabled": True}
        if project_id:
            obj["default_project_id"] = project_id
        uid = self.post("/v3/users", "user", obj)["id"]
        return {"id": uid, "name": name, "password": password,
                "domain_id": domain_id}

    def grant_project(self, project_id, user_id, role_id):
        self.put("/v3/projects/%s/users/%s/roles/%s"
                 % (project_id, user_id, role_id))

    def grant_domain(self, domain_id, user_id, role_id):
        self.put("/v3/domains/%s/users/%s/roles/%s"
                 % (domain_id, user_id, role_id))


def app_credential(base, user, project_id):
    """Application credential created by the user itself (Keystone only
    lets a user create its own)."""
    token = password_token(base, user["id"], user["password"],
                           project_id=project_id)
    _, _, doc = call(base, "POST",
                     "/v3/users/%s/application_credentials" % user["id"],
                     token, {"application_credential": {
                         "name": "k8s-auth-interop",
                         "description": "keystone-k8s-auth interop test"}},
                     expect=(201,))
    cred = doc["application_credential"]
    # Prove it authenticates before handing it out.
    _, _, tok = call(base, "POST", "/v3/auth/tokens", body={"auth": {
        "identity": {"methods": ["application_credential"],
                     "application_credential": {
                         "id": cred["id"], "secret": cred["secret"]}}}},
        expect=(201,))
    return {"id": cred["id"], "secret": cred["secret"],
            "name": cred["name"],
            "roles": sorted(r["name"] for r in tok["token"]["roles"])}


def main():
    if len(sys.argv) != 4:
        sys.stderr.write("usage: keystone_fixtures.py DIR URL PASSWORD\n")
        return 2
    envdir, base, admin_password = sys.argv[1], sys.argv[2].rstrip("/"), \
        sys.argv[3]
    token, tokdoc = admin_token(base, admin_password)
    fx = Fixtures(base, token)

    roles = {name: fx.role_id(name)
             for name in ("admin", "member", "reader", "manager", "service",
                          "Admin", "k8s-implies-admin")}
    # Global roles a domain manager must not delegate (API.md §7): "Admin"
    # (another role than "admin", created with that case) and a role that
    # implies admin.
    call(base, "PUT", "/v3/roles/%s/implies/%s" % (
        roles["k8s-implies-admin"], roles["admin"]), token,
        expect=(201, 204))

    dom_a = fx.domain("k8s-interop-a")
    dom_b = fx.domain("k8s-interop-b")
    proj = fx.project("k8s-proj", dom_a)
    svc = fx.user("k8s-svc", dom_a, proj)
    fx.grant_project(proj, svc["id"], roles["member"])
    manager = fx.user("k8s-manager", dom_a)
    fx.grant_domain(dom_a, manager["id"], roles["manager"])
    reader = fx.user("k8s-reader", dom_a)
    fx.grant_domain(dom_a, reader["id"], roles["reader"])
    member = fx.user("k8s-member", dom_a, proj)
    fx.grant_project(proj, member["id"], roles["member"])

    proj_b = fx.project("k8s-proj-b", dom_b)
    svc_b = fx.user("k8s-svc-b", dom_b, proj_b)
    fx.grant_project(proj_b, svc_b["id"], roles["member"])

    service_proj = fx.project("service", "default")
    k8s_auth = fx.user("k8s-auth", "default", service_proj)
    fx.grant_project(service_proj, k8s_auth["id"], roles["admin"])
    fx.grant_project(service_proj, k8s_auth["id"], roles["service"])
    appcred = app_credential(base, k8s_auth, service_proj)

    env = {
        "url": base,
        "port": int(base.rsplit(":", 1)[1]),
        "config": os.path.join(envdir, "keystone.conf"),
        "key_repository": os.path.join(envdir, "fernet-keys"),
        "max_active_keys": 3,
        "methods": ["external", "password", "token", "oauth1", "mapped",
                    "application_credential"],
        "admin": {"user_id": tokdoc["user"]["id"], "name": "admin",
                  "password": admin_password,
                  "project_id": tokdoc["project"]["id"],
                  "domain_id": "default"},
        "roles": roles,
        "domain_a": {"id": dom_a, "name": "k8s-interop-a"},
        "domain_b": {"id": dom_b, "name": "k8s-interop-b"},
        "project": {"id": proj, "name": "k8s-proj", "domain_id": dom_a},
        "user": svc,
        "manager": manager,
        "reader": reader,
        "member": member,
        "project_b": {"id": proj_b, "name": "k8s-proj-b",
                      "domain_id": dom_b},
        "user_b": svc_b,
        "service_project": {"id": service_proj, "name": "service",
                            "domain_id": "default"},
        "service_user": k8s_auth,
        "application_credential": appcred,
    }
    path = os.path.join(envdir, "env.json")
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(env, f, indent=2, sort_keys=True)
        f.write("\n")
    os.rename(tmp, path)
    print("domain A: %s" % dom_a)
    print("domain B: %s" % dom_b)
    print("project k8s-proj: %s  user k8s-svc: %s" % (proj, svc["id"]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeystoneError, OSError, ValueError, KeyError) as err:
        sys.stderr.write("keystone_fixtures: %s\n" % err)
        sys.exit(1)
