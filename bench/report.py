#!/usr/bin/env python3
"""bench/report.py: the table of bench/measure.sh -- each row as a ratio to
the bare responder of its scheme (the mean of its two runs), uncached logins
also as a ratio to the test cluster's own TokenReview rate, checked against
the targets of bench/README.md (environment overrides).  Exits 1 when a
target is missed."""
import argparse
import os
import sys


def target(name, default):
    return float(os.environ.get(name, default))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--idle-kib", type=int, required=True)
    ap.add_argument("--peak-kib", type=int, required=True)
    ap.add_argument("--fill-bytes", default="")
    ap.add_argument("--cached", default="no")
    ap.add_argument("--forged", default="no")
    a = ap.parse_args()
    rows = {}
    for line in open(a.results):
        row, rps, bad, total, p99 = line.split()
        rows[row] = (int(rps), int(bad), int(total), p99)
    # (row, what it is compared with, target, env name)
    checks = [
        ("healthz", "bare", "BENCH_TARGET_HEALTHZ", 0.9),
        ("login-cached", "bare", None, None),
        ("login-uncached", "bare", None, None),
        ("login-uncached", "cluster", "BENCH_TARGET_UNCACHED", 0.6),
        ("validate", "bare", "BENCH_TARGET_VALIDATE", 0.6),
        ("admin-list", "bare", None, None),
        ("forged", "bare", "BENCH_TARGET_FORGED", 0.4),
    ]
    cached_targets = {"http": ("BENCH_TARGET_CACHED_HTTP", 0.5),
                      "https": ("BENCH_TARGET_CACHED_HTTPS", 0.3)}
    failed = []
    cluster = rows.get("cluster", (0, 0, 0, "-"))[0]
    print("bench: test cluster alone: %d TokenReviews/s" % cluster)
    print("bench: %-16s %-6s %9s %8s %8s  %s" %
          ("measurement", "scheme", "req/s", "ratio", "target", "verdict"))
    for scheme in ("http", "https"):
        b1 = rows.get("bare-1." + scheme, (0,))[0]
        b2 = rows.get("bare-2." + scheme, (0,))[0]
        bare = (b1 + b2) / 2.0
        print("bench: %-16s %-6s %9d %8s %8s  (runs %d, %d)" %
              ("bare responder", scheme, bare, "1.00x", "", b1, b2))
        for name, base, env, default in checks:
            key = name + "." + scheme
            if name == "login-cached" and env is None:
                env, default = cached_targets[scheme]
            if key not in rows:
                why = ("not supported (no review_cache_ttl)"
                       if name == "login-cached" else
                       "not supported (no jwt_signature)"
                       if name == "forged" else "not measured")
                print("bench: %-16s %-6s %9s %8s %8s  %s" %
                      (name, scheme, "-", "-", "", why))
                continue
            rps, bad, total, p99 = rows[key]
            denom = bare if base == "bare" else cluster
            ratio = rps / denom if denom else 0.0
            tgt = target(env, default) if env else None
            verdict = "ok"
            if name == "forged":
                if bad != total:
                    verdict = "MISSED: %d of %d answers not 401" % (
                        total - bad, total)
            elif bad:
                verdict = "MISSED: %d non-2xx answers" % bad
            if verdict == "ok" and tgt is not None and ratio < tgt:
                verdict = "MISSED"
            if tgt is None and verdict == "ok":
                verdict = ""
            label = name if base == "bare" else name + "/cluster"
            print("bench: %-16s %-6s %9d %7.3fx %8s  %s (p99 %s)" %
                  (label, scheme, rps, ratio,
                   ">= %.2fx" % tgt if tgt is not None else "", verdict, p99))
            if verdict.startswith("MISSED"):
                failed.append(key)
    idle_mib = a.idle_kib / 1024.0
    tgt = target("BENCH_TARGET_IDLE_MIB", 15)
    ok = idle_mib <= tgt
    print("bench: idle rss %.1f MiB (target <= %g MiB) %s; peak %.1f MiB" %
          (idle_mib, tgt, "ok" if ok else "MISSED", a.peak_kib / 1024.0))
    if not ok:
        failed.append("idle rss")
    if a.fill_bytes:
        per = float(a.fill_bytes)
        tgt = target("BENCH_TARGET_ENTRY_BYTES", 1024)
        ok = per <= tgt
        print("bench: rss per cached review %.0f bytes (target <= %g) %s" %
              (per, tgt, "ok" if ok else "MISSED"))
        if not ok:
            failed.append("cache entry size")
    elif a.cached != "yes":
        print("bench: rss per cached review: not supported "
              "(no review_cache_ttl)")
    if failed:
        print("bench: targets missed: " + ", ".join(failed), file=sys.stderr)
        return 1
    print("bench: all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
