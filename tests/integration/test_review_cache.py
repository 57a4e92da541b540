"""The TokenReview cache, single flight, review slots and circuit breaker.

API.md §8: a genuine JWT costs at most one TokenReview per window, logins
of a JWT under review wait for that one review whatever worker they land
on, errors are never cached, a full queue and an open breaker answer 503
with Retry-After without reaching the cluster, and cached reviews keep
working while the breaker is open.  Every claim about the cluster is
checked against the fake API server's own TokenReview counter.
"""
import threading
import time

from harness import Server, assert_error, check, eq, timeout_scale, wait_for
from k8s_fixture import FakeK8s, Login

K8S = None
SRV = None


def setup_module():
    global K8S, SRV
    K8S = FakeK8s("rcache").start()
    SRV = Server(extra={"k8s_auth": {"review_timeout": 10,
                                     "negative_cache_ttl": 2}},
                 workers=2, name="rcache")
    SRV.start()


def teardown_module():
    try:
        SRV.stop()
    finally:
        K8S.stop()


def metric(srv, name, iid=None):
    """One sample of /metrics (the instance's when iid is given)."""
    text = srv.req("GET", "/metrics", token=None).raw.decode()
    want = name + ('{instance="%s"}' % iid if iid else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def reviews_during(fn):
    """(fn's result, TokenReviews the fake received meanwhile)."""
    before = K8S.reviews()
    out = fn()
    return out, K8S.reviews() - before


def parallel(n, fn):
    """Run fn(i) in n threads released at once; their results."""
    results = [None] * n
    go = threading.Event()

    def one(i):
        go.wait()
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    go.set()
    return threads, results


def test_instance_field_review_cache_ttl():
    L = Login(SRV, K8S)
    eq(L.inst["review_cache_ttl"], 10, "default review_cache_ttl")
    for bad in (-1, 301, 1.5, "5", None):
        r = SRV.req("PATCH", "/v4/k8s_auth/instances/%s" % L.iid,
                    {"instance": {"review_cache_ttl": bad}})
        assert_error(r, 400, "invalid_value", names="review_cache_ttl")
    up = L.patch_instance(review_cache_ttl=300)
    eq(up.json["instance"]["review_cache_ttl"], 300, "patched value")
    got = SRV.ok("GET", "/v4/k8s_auth/instances/%s" % L.iid)
    eq(got.json["instance"]["review_cache_ttl"], 300, "stored value")


def test_cached_login_until_pod_deleted_and_ttl_passed():
    L = Login(SRV, K8S, inst={"review_cache_ttl": 3},
              role={"bound_pod_names": ["api-*"]})
    K8S.pod(L.ns, "api-0", "web")
    jwt = L.jwt(pod="api-0")
    _, n = reviews_during(lambda: L.ok(jwt))
    eq(n, 1, "TokenReviews for the first login")
    r, n = reviews_during(lambda: L.ok(jwt))
    eq(n, 0, "TokenReviews for a cached login")
    # The bound pod is re-checked on the cached review, as on a fresh one.
    eq(r.json["token"]["k8s_auth"]["pod_name"], "api-0", "cached pod_name")
    check(metric(SRV, "k8sauth_review_cache_hits_total", L.iid) >= 1,
          "cache hits not counted")
    t0 = time.monotonic()
    K8S.delete_pod(L.ns, "api-0")
    _, n = reviews_during(lambda: L.ok(jwt))
    eq(n, 0, "TokenReviews within the TTL after the pod was deleted")
    time.sleep(max(0, 3.2 - (time.monotonic() - t0)))
    r, n = reviews_during(lambda: L.login(jwt))
    assert_error(r, 401, "token_invalid")
    eq(n, 1, "TokenReviews once the TTL passed")


def test_cache_off_reviews_every_login():
    L = Login(SRV, K8S, inst={"review_cache_ttl": 0})
    jwt = L.jwt()
    for i in range(3):
        _, n = reviews_during(lambda: L.ok(jwt))
        eq(n, 1, "TokenReviews for uncached login %d" % i)


def test_concurrent_identical_logins_make_one_review():
    L = Login(SRV, K8S)
    jwt = L.jwt()
    merged = metric(SRV, "k8sauth_review_merged_total", L.iid)
    before = K8S.reviews()
    K8S.fault("latency", latency_ms=1000)
    try:
        threads, results = parallel(20, lambda i: L.login(jwt).status)
        for t in threads:
            t.join(30 * timeout_scale())
    finally:
        K8S.clear_faults()
    eq(results, [200] * 20, "statuses of 20 concurrent logins")
    eq(K8S.reviews() - before, 1, "TokenReviews for 20 concurrent logins")
    eq(metric(SRV, "k8sauth_review_merged_total", L.iid) - merged, 19,
       "logins merged into the one review")
    check("waits for the review in flight on worker" in SRV.log_text(),
          "no login waited for a review on the other worker")


def test_refused_review_cached_for_negative_ttl():
    L = Login(SRV, K8S, role={"bound_service_account_names": ["*"]})
    K8S.sa(L.ns, "gone")
    jwt = L.jwt(sa="gone")
    K8S.delete_sa(L.ns, "gone")
    r, n = reviews_during(lambda: L.login(jwt))
    assert_error(r, 401, "token_invalid")
    eq(n, 1, "TokenReviews for the first refused login")
    t0 = time.monotonic()
    r, n = reviews_during(lambda: L.login(jwt))
    assert_error(r, 401, "token_invalid")
    eq(n, 0, "TokenReviews for a refusal within negative_cache_ttl")
    check(metric(SRV, "k8sauth_review_cache_negative_hits_total",
                 L.iid) >= 1, "negative hits not counted")
    time.sleep(max(0, 2.2 - (time.monotonic() - t0)))
    r, n = reviews_during(lambda: L.login(jwt))
    assert_error(r, 401, "token_invalid")
    eq(n, 1, "TokenReviews once negative_cache_ttl passed")


def test_errors_are_never_cached():
    L = Login(SRV, K8S)
    jwt = L.jwt()
    K8S.fault("status", status=503, count=1)
    r, n = reviews_during(lambda: L.login(jwt))
    assert_error(r, 503, "cluster_unavailable")
    eq(n, 1, "TokenReviews for the failed login")
    _, n = reviews_during(lambda: L.ok(jwt))
    eq(n, 1, "TokenReviews after an error (not cached)")


def test_instance_update_drops_its_cached_reviews():
    L = Login(SRV, K8S)
    jwt = L.jwt()
    L.ok(jwt)
    _, n = reviews_during(lambda: L.ok(jwt))
    eq(n, 0, "TokenReviews for a cached login")
    # The same host and CA written again: the trust anchor was touched.
    L.patch_instance(host=K8S.host, ca_cert=K8S.ca_pem,
                     token_reviewer_jwt=L.reviewer_jwt)
    _, n = reviews_during(lambda: L.ok(jwt))
    eq(n, 1, "TokenReviews after the instance's host and CA were written")
    _, n = reviews_during(lambda: L.ok(jwt))
    eq(n, 0, "TokenReviews once cached again")


def test_full_review_queue_is_503_with_retry_after():
    with Server(extra={"k8s_auth": {"max_reviews_per_instance": 1,
                                    "review_queue_size": 1}},
                name="rqueue") as srv:
        L = Login(srv, K8S)
        jwts = [L.jwt() for _ in range(3)]
        # The first review is held by the cluster, the second waits for
        # the instance's only slot, the third finds the queue full.
        K8S.fault("latency", latency_ms=600000, count=1)
        try:
            threads, results = parallel(
                1, lambda i: L.login(jwts[0]).status)
            K8S.wait_parked(1, "review holding the slot")
            before = K8S.reviews()
            t2, r2 = parallel(1, lambda i: L.login(jwts[1]).status)
            wait_for(lambda: metric(srv, "k8sauth_review_queue_depth",
                                    L.iid) == 1,
                     what="one login queued for the slot")
            r = L.login(jwts[2])
            assert_error(r, 503, "cluster_unavailable")
            h = r.headers.get("retry-after")
            check(h is not None and h.isdigit() and int(h) >= 1,
                  "Retry-After on a full queue: %r" % h)
            eq(K8S.reviews(), before, "TokenReviews sent while queued")
            eq(metric(srv, "k8sauth_review_queue_rejected_total", L.iid),
               1, "queue rejections")
            K8S.release()
            for t in threads + t2:
                t.join(30 * timeout_scale())
        finally:
            K8S.clear_faults()
        eq(results + r2, [200, 200], "the held and the queued logins")
        eq(K8S.reviews() - before, 1, "TokenReviews of the queued login")


def test_circuit_breaker_opens_fails_fast_and_one_probe_closes_it():
    with Server(extra={"k8s_auth": {"breaker_failures": 3,
                                    "breaker_cooldown": 2}},
                name="rbreaker") as srv:
        L = Login(srv, K8S, inst={"review_cache_ttl": 60})
        cached = L.jwt()
        L.ok(cached)
        jwts = [L.jwt() for _ in range(3)]
        K8S.fault("status", status=503)
        try:
            for i in range(3):
                r, n = reviews_during(lambda: L.login(jwts[0]))
                assert_error(r, 503, "cluster_unavailable")
                eq(n, 1, "TokenReviews for cluster error %d" % (i + 1))
            eq(metric(srv, "k8sauth_review_breaker_state", L.iid), 1,
               "breaker state after 3 errors")
            eq(metric(srv, "k8sauth_review_breaker_opens_total", L.iid), 1,
               "breaker opens")
            t_open = time.monotonic()
            r, n = reviews_during(lambda: L.login(jwts[1]))
            assert_error(r, 503, "cluster_unavailable")
            eq(n, 0, "TokenReviews while the breaker is open")
            h = r.headers.get("retry-after")
            check(h is not None and h.isdigit() and 1 <= int(h) <= 2,
                  "Retry-After from an open breaker: %r" % h)
            _, n = reviews_during(lambda: L.ok(cached))
            eq(n, 0, "TokenReviews for a cached login, breaker open")
        finally:
            K8S.clear_faults()
        time.sleep(max(0, 2.2 - (time.monotonic() - t_open)))
        # Half-open: one probe goes through (held here); others fail fast.
        K8S.fault("latency", latency_ms=600000, count=1)
        try:
            threads, results = parallel(1, lambda i: L.login(jwts[1]).status)
            K8S.wait_parked(1, "the breaker's probe")
            eq(metric(srv, "k8sauth_review_breaker_state", L.iid), 2,
               "breaker state while probing")
            r, n = reviews_during(lambda: L.login(jwts[2]))
            assert_error(r, 503, "cluster_unavailable")
            eq(n, 0, "TokenReviews besides the probe")
            K8S.release()
            for t in threads:
                t.join(30 * timeout_scale())
        finally:
            K8S.clear_faults()
        eq(results, [200], "the probe's login")
        eq(metric(srv, "k8sauth_review_breaker_state", L.iid), 0,
           "breaker state after the probe")
        _, n = reviews_during(lambda: L.ok(jwts[2]))
        eq(n, 1, "TokenReviews once the breaker closed")
