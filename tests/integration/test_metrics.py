"""/metrics after real traffic, checked by Prometheus's own promtool.

Logins that succeed and fail, admin requests and a TokenReview latency
sample, then the scrape is linted with `promtool check metrics` (from
Debian's prometheus package, extracted by tests/tools/promtool.sh) and
its values are checked against what the test did.
"""
import os
import re
import subprocess

from harness import ROOT, Server, check, eq, fail
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
              is not None, "key repository age missing")
