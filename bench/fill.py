#!/usr/bin/env python3
"""bench/fill.py: fill the server's TokenReview cache and measure what an
entry costs.  Mints COUNT distinct service-account JWTs from the test
cluster (POST /_test/tokens: each has its own jti and signature), logs in
once with each through an instance with the review cache on, and prints the
growth of the server's resident set per login in bytes (stdout, one
number).  Progress goes to stderr.  The instance's review_cache_ttl must
outlast the fill (bench/measure.sh gives it BENCH_FILL_TTL, 300 s)."""
import argparse
import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("fill: no VmRSS for pid %d" % pid)


def connect(url, cafile):
    u = urllib.parse.urlsplit(url)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=cafile)
        return http.client.HTTPSConnection(u.hostname, u.port, context=ctx)
    return http.client.HTTPConnection(u.hostname, u.port)


def parallel(n, workers, fn):
    """Run fn(conn_index, i) for i in range(n) over `workers` threads."""
    errors = []

    def run(w):
        try:
            for i in range(w, n, workers):
                fn(w, i)
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("fill: %s" % errors[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s", required=True)
    ap.add_argument("--cacert", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--instance", required=True)
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()
    tokens = [None] * a.count
    conns = [connect(a.k8s, a.cacert) for _ in range(a.workers)]
    mint = json.dumps({"namespace": "demo", "service_account": "web",
                       "pod": "web-0", "audiences": ["keystone"]})
    t0 = time.time()

    def mint_one(w, i):
        c = conns[w]
        c.request("POST", "/_test/tokens", mint,
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read()
        if r.status != 201:
            raise RuntimeError("minting: HTTP %d %s" % (r.status, body[:200]))
        tokens[i] = json.loads(body)["token"]

    parallel(a.count, a.workers, mint_one)
    print("fill: minted %d JWTs in %.0f s" % (a.count, time.time() - t0),
          file=sys.stderr)
    conns = [connect(a.url, a.cacert) for _ in range(a.workers)]
    path = "/v4/k8s_auth/instances/%s/auth" % a.instance
    before = rss_kib(a.pid)
    t0 = time.time()

    def login_one(w, i):
        c = conns[w]
        body = json.dumps({"k8s_role": "web", "jwt": tokens[i]})
        c.request("POST", path, body, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 200 and r.status != 201:
            raise RuntimeError("login %d: HTTP %d" % (i, r.status))

    parallel(a.count, a.workers, login_one)
    time.sleep(1)
    after = rss_kib(a.pid)
    print("fill: %d logins in %.0f s; rss %d -> %d KiB" %
          (a.count, time.time() - t0, before, after), file=sys.stderr)
    print("%.0f" % ((after - before) * 1024.0 / a.count))


if __name__ == "__main__":
    main()
