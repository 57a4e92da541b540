"""/metrics after real traffic, checked by Prometheus's own promtool.

Logins that succeed and fail, admin requests and a TokenReview latency
sample, then the scrape is linted with `promtool check metrics` (from
Debian's prometheus package, extracted by tests/tools/promtool.sh) and
its values are checked against what the test did.
"""
import calendar
import os
import re
import signal
import subprocess
import time

from harness import ROOT, Server, check, eq, fail, make_cert, wait_for
from k8s_fixture import FakeK8s, Login

PROMTOOL_SH = os.path.join(ROOT, "tests", "tools", "promtool.sh")


def promtool():
    p = subprocess.run(["sh", PROMTOOL_SH], capture_output=True, text=True,
                       timeout=300)
    if p.returncode != 0:
        fail("no promtool: %s" % p.stderr.strip())
    return p.stdout.strip()


def sample(text, name, **labels):
    """The value of one sample, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def cert_not_after(path):
    p = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", path],
                       capture_output=True, text=True, timeout=30)
    eq(p.returncode, 0, "openssl x509: %s" % p.stderr)
    end = p.stdout.strip().split("=", 1)[1]
    return calendar.timegm(time.strptime(end, "%b %d %H:%M:%S %Y GMT"))


def scrape(srv):
    r = srv.req("GET", "/metrics", token=None)
    eq(r.status, 200, "/metrics")
    return r.raw.decode()


def test_metrics_after_traffic_pass_promtool():
    tool = promtool()
    with FakeK8s("metrics") as k8s, Server(name="metrics") as srv:
        L = Login(srv, k8s)
        for _ in range(3):
            L.ok(L.jwt())
        L.login("not-a-jwt")
        L.login(L.jwt(expires_in=-600))
        r = srv.req("GET", "/metrics", token=None)
        eq(r.status, 200, "status")
        check(r.headers.get("content-type", "").startswith("text/plain"),
              "content type %r" % r.headers.get("content-type"))
        text = r.raw.decode()
        p = subprocess.run([tool, "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=60)
        eq(p.returncode, 0, "promtool check metrics: %s" %
           (p.stdout + p.stderr).strip())
        eq(sample(text, "k8sauth_logins_total", result="success"), 3.0,
           "successful logins")
        eq(sample(text, "k8sauth_logins_total", reason="malformed_jwt"), 1.0,
           "malformed_jwt logins")
        eq(sample(text, "k8sauth_logins_total", reason="token_expired"), 1.0,
           "token_expired logins")
        # Every login reason of src/reason.h is a label, Keystone's too.
        for reason in ("keystone_unavailable", "keystone_forbidden",
                       "user_disabled", "invalid_review", "bad_request",
                       "other"):
            eq(sample(text, "k8sauth_logins_total", reason=reason), 0.0,
               "the %s label" % reason)
        eq(sample(text, "k8sauth_tokenreview_duration_seconds_count",
                  instance=L.iid), 3.0, "reviews observed")
        eq(sample(text, "k8sauth_tokenreviews_in_flight"), 0.0, "in flight")
        eq(sample(text, "k8sauth_http_requests_total",
                  route="/v4/k8s_auth/instances", method="POST", code="201"),
           1.0, "instance creates")
        check(sample(text, "k8sauth_fernet_key_repository_age_seconds")
              is None, "the on-disk key age metric is still served")
        eq(sample(text, "k8sauth_fernet_keys_loaded"), 2.0, "keys loaded")
        check(0 <= sample(text, "k8sauth_fernet_primary_key_age_seconds")
              < 600, "primary key age %r" % sample(
                  text, "k8sauth_fernet_primary_key_age_seconds"))
        eq(sample(text, "k8sauth_fernet_key_reload_errors_total"), 0.0,
           "reload errors")
        eq(sample(text, "k8sauth_fernet_key_reload_failing_seconds"), 0.0,
           "reload failing")
        left = sample(text, "k8sauth_tls_certificate_expiry_seconds")
        want = cert_not_after(srv.cert) - time.time()
        check(left is not None and abs(left - want) < 60,
              "TLS expiry %r, the certificate says %.0f" % (left, want))
        for reason in ("connect", "timeout", "server_error", "forbidden",
                       "credential_refused"):
            eq(sample(text, "k8sauth_keystone_errors_total", reason=reason),
               0.0, "keystone errors %s" % reason)


def test_failed_key_reload_is_counted_logged_once_and_in_readyz():
    """A key repository that stops loading keeps the old keys in use, but
    is visible: the error counter, the failing-for gauge, /readyz detail
    (stale after [fernet_tokens] reload_failure_grace), one log line per
    minute at most; the primary key age is the loaded key's, not the
    file's on disk; the recovery is seen and logged."""
    tool = promtool()
    with FakeK8s("keys") as k8s, Server(
            extra={"fernet_tokens": {"reload_failure_grace": 2}},
            name="keys") as srv:
        repo = os.path.join(srv.dir, "fernet-keys")
        old = time.time() - 3 * 86400
        # The rotation that made the primary: three days ago.
        os.utime(os.path.join(repo, "0"), (old, old))
        srv.signal(signal.SIGHUP)
        wait_for(lambda: sample(scrape(srv),
                                "k8sauth_fernet_primary_key_age_seconds")
                 > 2 * 86400, timeout=10, what="the loaded key age")
        L = Login(srv, k8s)
        L.ok(L.jwt())
        # A rotation gone wrong: key 0 rewritten now and a broken key 9.
        with open(os.path.join(repo, "9"), "w") as f:
            f.write("not a fernet key\n")
        os.utime(os.path.join(repo, "0"), None)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            text = scrape(srv)
            time.sleep(0.5)
        p = subprocess.run([tool, "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=60)
        eq(p.returncode, 0, "promtool: %s" % (p.stdout + p.stderr).strip())
        errors = sample(text, "k8sauth_fernet_key_reload_errors_total")
        check(errors >= 2, "reload errors %r" % errors)
        check(sample(text, "k8sauth_fernet_key_reload_failing_seconds") >= 2,
              "failing seconds %r" % sample(
                  text, "k8sauth_fernet_key_reload_failing_seconds"))
        check(sample(text, "k8sauth_fernet_primary_key_age_seconds")
              > 2 * 86400, "the age followed the file on disk, not the "
              "loaded key: %r" % sample(
                  text, "k8sauth_fernet_primary_key_age_seconds"))
        eq(sample(text, "k8sauth_fernet_keys_loaded"), 2.0, "keys in use")
        L.ok(L.jwt())   # the old keys still mint
        r = srv.req("GET", "/readyz", token=None)
        eq(r.status, 200, "/readyz stays 200 (the old keys work)")
        keys = r.json["fernet_keys"]
        eq(keys["status"], "stale", "fernet_keys.status: %r" % r.json)
        check(keys["reload_errors"] >= 2 and
              keys["reload_failing_seconds"] >= 2, "detail %r" % keys)
        check(any("failed to reload" in w for w in r.json.get("warnings", [])),
              "no warning in %r" % r.json)
        log = srv.log_text()
        eq(log.count("fernet keys: reload failed"), 1,
           "reload failure lines within a minute")
        os.unlink(os.path.join(repo, "9"))
        wait_for(lambda: sample(scrape(srv),
                                "k8sauth_fernet_key_reload_failing_seconds")
                 == 0, timeout=10, what="the reload recovered")
        r = srv.req("GET", "/readyz", token=None)
        eq(r.json["fernet_keys"]["status"], "ok", "after recovery %r" % r.json)
        check("warnings" not in r.json, "warnings after recovery")
        check(sample(scrape(srv), "k8sauth_fernet_primary_key_age_seconds")
              < 600, "the age follows the newly loaded staged key")
        check("reloading works again" in srv.log_text(), "no recovery line")


def test_tls_expiry_follows_the_loaded_certificate():
    """k8sauth_tls_certificate_expiry_seconds is the certificate in use:
    a new file on disk counts only once SIGHUP loaded it."""
    with Server(name="tlsexp") as srv:
        first = sample(scrape(srv), "k8sauth_tls_certificate_expiry_seconds")
        want = cert_not_after(srv.cert) - time.time()
        check(first is not None and abs(first - want) < 60,
              "expiry %r, want %.0f" % (first, want))
        p = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-subj", "/CN=127.0.0.1", "-addext",
             "subjectAltName=IP:127.0.0.1", "-days", "30",
             "-keyout", srv.key + ".new", "-out", srv.cert + ".new"],
            capture_output=True, text=True, timeout=60)
        eq(p.returncode, 0, p.stderr)
        os.chmod(srv.key + ".new", 0o600)
        os.rename(srv.key + ".new", srv.key)
        os.rename(srv.cert + ".new", srv.cert)
        srv._trust_current_cert()
        near = sample(scrape(srv), "k8sauth_tls_certificate_expiry_seconds")
        check(abs(near - want) < 60, "the file on disk was reported: %r"
              % near)
        srv.signal(signal.SIGHUP)
        wait_for(lambda: sample(scrape(srv),
                                "k8sauth_tls_certificate_expiry_seconds")
                 > 20 * 86400, timeout=10, what="the reloaded certificate")
