#!/usr/bin/env python3
"""loadtest.py: measure TokenReview throughput of a running fake-k8s.

Usage: python3 tests/k8s/loadtest.py --port PORT --cacert CA.crt
           [--procs N] [--conns-per-proc N] [--seconds S] [--new-conn]
           [--tokens N]

Creates a reviewer and pod-bound workload tokens through the control API,
then N processes each keep C keep-alive HTTPS connections busy with
TokenReview requests for S seconds (--new-conn: a new TLS connection per
request, to measure handshake cost).  Prints reviews/s and checks every
answer is 201 with authenticated true.  Python 3 standard library only.
"""

import argparse
import http.client
import json
import multiprocessing
import ssl
import sys
import time

TR_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"


def call(port, ctx, method, path, body):
    c = http.client.HTTPSConnection("localhost", port, context=ctx)
    c.request(method, path, body=json.dumps(body),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    doc = json.loads(r.read() or b"{}")
    c.close()
    return r.status, doc


def setup(port, ctx, ntokens):
    """A reviewer token and ntokens workload tokens (idempotent)."""
    call(port, ctx, "POST", "/_test/serviceaccounts",
         {"namespace": "load", "name": "reviewer"})
    call(port, ctx, "POST", "/_test/reviewers",
         {"namespace": "load", "name": "reviewer"})
    call(port, ctx, "POST", "/_test/serviceaccounts",
         {"namespace": "load", "name": "app"})
    call(port, ctx, "POST", "/_test/pods", {"namespace": "load",
                                            "name": "app-0",
                                            "service_account": "app"})
    _, rt = call(port, ctx, "POST", "/_test/tokens",
                 {"namespace": "load", "service_account": "reviewer"})
    wts = []
    for _ in range(ntokens):
        _, wt = call(port, ctx, "POST", "/_test/tokens",
                     {"namespace": "load", "service_account": "app",
                      "pod": "app-0", "audiences": ["keystone"]})
        wts.append(wt["token"])
    return rt["token"], wts


def worker(args, rt, wts, q):
    ctx = ssl.create_default_context(cafile=args.cacert)
    bodies = [json.dumps({"apiVersion": "authentication.k8s.io/v1",
                          "kind": "TokenReview",
                          "spec": {"token": wt, "audiences": ["keystone"]}})
              for wt in wts]
    hdrs = {"Authorization": "Bearer " + rt,
            "Content-Type": "application/json"}
    conns = [http.client.HTTPSConnection("localhost", args.port,
                                         context=ctx)
             for _ in range(args.conns_per_proc)]
    done = bad = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        for i, c in enumerate(conns):
            c.request("POST", TR_PATH, body=bodies[(done + i) % len(bodies)],
                      headers=hdrs)
        for i, c in enumerate(conns):
            r = c.getresponse()
            doc = json.loads(r.read())
            if r.status != 201 or not doc["status"].get("authenticated"):
                bad += 1
            done += 1
            if args.new_conn:
                c.close()
                conns[i] = http.client.HTTPSConnection(
                    "localhost", args.port, context=ctx)
    q.put((done, bad))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cacert", required=True)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--conns-per-proc", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--new-conn", action="store_true")
    p.add_argument("--tokens", type=int, default=1,
                   help="distinct workload tokens to rotate through")
    args = p.parse_args()
    ctx = ssl.create_default_context(cafile=args.cacert)
    rt, wts = setup(args.port, ctx, args.tokens)
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=worker, args=(args, rt, wts, q))
             for _ in range(args.procs)]
    t0 = time.monotonic()
    for pr in procs:
        pr.start()
    res = [q.get() for _ in procs]
    for pr in procs:
        pr.join()
    elapsed = time.monotonic() - t0
    done = sum(r[0] for r in res)
    bad = sum(r[1] for r in res)
    print("%d reviews in %.2f s: %.0f reviews/s, %d bad (%d procs x %d "
          "conns%s)" % (done, elapsed, done / elapsed, bad, args.procs,
                        args.conns_per_proc,
                        ", new TLS connection per request"
                        if args.new_conn else ", keep-alive"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
