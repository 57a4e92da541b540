"""SIGHUP while logins are in flight: certificate, Fernet keys, policy and
configuration are replaced; the logins in flight complete, new logins and
new connections use the new ones.
"""
import base64
import calendar
import hashlib
import hmac
import os
import signal
import threading
import time

from harness import Server, assert_error, check, eq, run_cli, wait_for
from k8s_fixture import FakeK8s, Login
from test_lifecycle import peer_cert, replace_cert

POLICY = 'return { check = function(ctx)\n' \
         '  return true, {audit = {generation = "%s"}}\nend }\n'


def write_login_policy(srv, generation):
    d = os.path.join(srv.dir, "policy")
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, "login.lua.tmp")
    with open(tmp, "w") as f:
        f.write(POLICY % generation)
    os.replace(tmp, os.path.join(d, "login.lua"))


def primary_signs(repo, token):
    """Is token's HMAC made with the repository's primary key?"""
    primary = max(int(n) for n in os.listdir(repo) if n.isdigit())
    with open(os.path.join(repo, str(primary))) as f:
        key = base64.urlsafe_b64decode(f.read().strip())
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    mac = hmac.new(key[:16], raw[:-32], hashlib.sha256).digest()
    return hmac.compare_digest(mac, raw[-32:])


def expires_in(resp):
    ts = resp.json["token"]["expires_at"]
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - \
        time.time()


def test_sighup_replaces_everything_while_logins_complete():
    with FakeK8s("reload") as k8s:
        srv = Server(name="reload")
        write_login_policy(srv, "one")
        with srv:
            repo = srv.config_sections()["fernet_tokens"]["key_repository"]
            # One JWT, five reviews held: uncached, so none is merged.
            L = Login(srv, k8s, inst={"review_cache_ttl": 0})
            jwt = L.jwt()
            first = L.ok(jwt)
            check(primary_signs(repo, first.headers["x-subject-token"]),
                  "the first token is not signed with the primary key")
            old_der = peer_cert(srv)

            # Five logins are held by the cluster (a latency the test ends
            # with a release) while everything changes and reloads.
            k8s.fault("latency", latency_ms=600000, count=5)
            results = [None] * 5

            def one(i):
                results[i] = L.login(jwt, timeout=60)
            threads = [threading.Thread(target=one, args=(i,))
                       for i in range(5)]
            for t in threads:
                t.start()
            k8s.wait_parked(5, "logins' reviews held")
            replace_cert(srv)
            p = run_cli(["fernet-rotate", "--config", srv.conf])
            eq(p.returncode, 0, "fernet-rotate: %s" % p.stderr)
            write_login_policy(srv, "two")
            srv.extra = {"token": {"expiration": "600"}}
            srv._write_config()
            srv.signal(signal.SIGHUP)
            wait_for(lambda: "reload: done" in srv.log_text(),
                     what="the reload to finish")
            eq(k8s.faults()["parked"], 5, "logins held across the reload")
            check(all(r is None for r in results),
                  "a held login finished before the release: %r" % results)
            eq(k8s.release(), 5, "held reviews released")
            for t in threads:
                t.join(60)
            for i, r in enumerate(results):
                check(r is not None, "login %d did not finish" % i)
                eq(r.status, 200, "login %d in flight across the reload" % i)
                eq(expires_in(r) > 601, True,
                   "login %d in flight got the new [token] expiration" % i)
            after = L.ok(jwt)
            token = after.headers["x-subject-token"]
            check(primary_signs(repo, token),
                  "a new token is not signed with the new primary key")
            check(expires_in(after) <= 601,
                  "the new [token] expiration is not in force: %.0f s"
                  % expires_in(after))
            wait_for(lambda: '"generation":"two"' in srv.log_text(),
                     what="the new login policy's audit field")
            check(peer_cert(srv) != old_der,
                  "new TLS connections still get the old certificate")
            eq(srv.req("GET", "/readyz", token=None).status, 200, "ready")


def _reload(srv):
    """SIGHUP and wait until the server says the reload is done."""
    n = srv.log_text().count("reload: done")
    srv.signal(signal.SIGHUP)
    wait_for(lambda: srv.log_text().count("reload: done") > n, timeout=10,
             what="reload: done after SIGHUP")


def test_sighup_break_glass_admin_token():
    """Removing the admin token file and SIGHUP disables the bootstrap
    token; a new `bootstrap --force` and SIGHUP rotates it (API.md 7)."""
    with Server(name="glass") as srv:
        old = srv.admin_token
        eq(srv.req("GET", "/v4/k8s_auth/instances").status, 200,
           "the bootstrap token before the reload")
        os.unlink(srv.token_file)
        _reload(srv)
        r = srv.req("GET", "/v4/k8s_auth/instances", token=old)
        assert_error(r, 401, "invalid_token")
        check("the bootstrap admin token is disabled" in srv.log_text(),
              "the reload did not say the bootstrap token is disabled")
        p = run_cli(["bootstrap", "--config", srv.conf])
        eq(p.returncode, 0, "bootstrap after removal: %r" % (p.stderr,))
        with open(srv.token_file) as f:
            new = f.read().strip()
        srv.secrets.add(new)
        check(new != old, "bootstrap wrote the old token again")
        assert_error(srv.req("GET", "/v4/k8s_auth/instances", token=new),
                     401, "invalid_token")
        _reload(srv)
        eq(srv.req("GET", "/v4/k8s_auth/instances", token=new).status, 200,
           "the new bootstrap token after SIGHUP")
        assert_error(srv.req("GET", "/v4/k8s_auth/instances", token=old),
                     401, "invalid_token")
        # Rotating in place (bootstrap --force) retires the token too.
        p = run_cli(["bootstrap", "--force", "--config", srv.conf])
        eq(p.returncode, 0, "bootstrap --force: %r" % (p.stderr,))
        with open(srv.token_file) as f:
            newer = f.read().strip()
        srv.secrets.add(newer)
        _reload(srv)
        assert_error(srv.req("GET", "/v4/k8s_auth/instances", token=new),
                     401, "invalid_token")
        srv.admin_token = newer
        eq(srv.req("GET", "/v4/k8s_auth/instances").status, 200,
           "the rotated bootstrap token")
