#!/usr/bin/env python3
"""bench/db_ratio.py: the MariaDB run's login rates as ratios to SQLite's.

    python3 bench/db_ratio.py SQLITE_RESULTS MYSQL_RESULTS [--target 0.9]

Reads two bench/measure.sh results files (lines "ROW RPS NON2XX REQUESTS
P99") of one bench/run.sh BENCH_DB=both run and prints, for every login row
measured in both, each rate and MariaDB / SQLite.  Issue 13: with the
in-memory snapshot the MariaDB mode's login rate must be within 10 % of
the SQLite mode's.  Exits 1 when a ratio is under the target, a row has
non-2xx answers, or no login row was measured in both.
"""
import argparse
import sys


def rows(path):
    out = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3:
                out[p[0]] = (int(p[1]), int(p[2]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sqlite")
    ap.add_argument("mysql")
    ap.add_argument("--target", type=float, default=0.9)
    a = ap.parse_args()
    s, m = rows(a.sqlite), rows(a.mysql)
    common = [r for r in s if r.startswith("login") and r in m]
    if not common:
        print("bench: no login row measured on both engines", file=sys.stderr)
        return 1
    bad = 0
    print("bench: %-22s %10s %10s %7s  target" % ("login row", "sqlite/s",
                                                  "mariadb/s", "ratio"))
    for r in common:
        (srps, sbad), (mrps, mbad) = s[r], m[r]
        ratio = mrps / srps if srps else 0.0
        ok = ratio >= a.target and sbad == 0 and mbad == 0
        bad += not ok
        print("bench: %-22s %10d %10d %6.2fx  >= %.2fx %s%s" % (
            r, srps, mrps, ratio, a.target, "ok" if ok else "MISSED",
            "" if sbad == 0 and mbad == 0 else
            " (non-2xx: sqlite %d, mariadb %d)" % (sbad, mbad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
