#!/usr/bin/env python3
"""coverage.py: how far each fuzz target's corpus reaches (`make
fuzz-coverage`, also the end of `make fuzz-long`).

Each target built for source-based coverage (tests/fuzz/build-cov/, clang
-fprofile-instr-generate -fcoverage-mapping, no sanitizers) runs once over
its corpus tests/fuzz/corpus/NAME (-runs=0: every file once, nothing new);
llvm-profdata merges the profile and llvm-cov exports it.  Printed per
target: the line coverage of each source file it is meant to reach, and the
execution count and code regions covered of its parser functions (PARSERS
below; a function's own regions, not its callees').  Exit status 1
when a parser function of a target was never executed (a target that does
not reach its parser is a target that tests nothing), or a target could
not be measured.  A target missing from PARSERS is measured against
src/NAME.c (its whole-file line coverage must not be zero).

Environment: LLVM_PROFDATA, LLVM_COV (default llvm-profdata, llvm-cov).
"""
import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
COV_DIR = os.path.join(ROOT, "tests", "fuzz", "build-cov")
OUT = os.path.join(ROOT, "tests", "tmp", "fuzz-cov")
PROFDATA = os.environ.get("LLVM_PROFDATA", "llvm-profdata")
LLVM_COV = os.environ.get("LLVM_COV", "llvm-cov")

# target -> ([files it is meant to reach], [its parser functions])
PARSERS = {
    "admin_body": (["instance.c", "role.c", "restriction.c"],
                   ["instance_apply", "role_apply", "restriction_apply"]),
    "b64url": (["util.c"], ["util_b64url_decode"]),
    "config": (["config.c"], ["config_load"]),
    "fernet": (["fernet.c"], ["fernet_decode"]),
    "http_path": (["http.c"], ["http_target_parse", "http_route_lookup",
                               "http_list_parse"]),
    "json": (["json.c"], ["json_parse", "json_check_fields"]),
    "jwt": (["jwt.c"], ["jwt_parse"]),
    "k8s_review": (["k8s_review.c"], ["k8s_review_parse"]),
    "keystone_token": (["keystone_token.c"], ["keystone_token_parse"]),
    "keystone_revoke": (["keystone_revoke.c", "keystone.c"],
                        ["keystone_revoke_matches", "keystone_parse_time"]),
    "policy": (["policy.c"], ["policy_authorize", "policy_login"]),
    "validate": (["validate.c"], ["validate_host", "validate_pem",
                                  "validate_role_name", "validate_globs"]),
}


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def measure(name, binary):
    """(file -> (covered, total lines), function -> count) or a string."""
    corpus = os.path.join(ROOT, "tests", "fuzz", "corpus", name)
    if not os.path.isdir(corpus):
        return "no corpus %s" % corpus
    raw = os.path.join(OUT, name + ".profraw")
    data = os.path.join(OUT, name + ".profdata")
    env = dict(os.environ, LLVM_PROFILE_FILE=raw)
    p = run([binary, "-runs=0", "-timeout=30", corpus], env=env,
            timeout=1800)
    if p.returncode != 0:
        return "corpus run exited %d: %s" % (p.returncode,
                                             p.stderr[-500:])
    p = run([PROFDATA, "merge", "-sparse", raw, "-o", data])
    if p.returncode != 0:
        return "llvm-profdata: " + p.stderr.strip()
    p = run([LLVM_COV, "export", "-format=text", binary,
             "-instr-profile=" + data])
    if p.returncode != 0:
        return "llvm-cov: " + p.stderr.strip()
    doc = json.loads(p.stdout)["data"][0]
    files = {}
    for f in doc["files"]:
        lines = f["summary"]["lines"]
        files[os.path.basename(f["filename"])] = (lines["covered"],
                                                  lines["count"])
    funcs = {}
    for fn in doc["functions"]:
        short = fn["name"].split(":")[-1]
        if any(os.path.dirname(x).endswith("src") for x in fn["filenames"]):
            # regions: [line, col, end line, end col, count, file,
            # expanded file, kind]; kind 0 is code.
            code = [r for r in fn["regions"] if r[7] == 0 and r[5] == 0]
            n, hit, cov = funcs.get(short, (0, 0, 0))
            funcs[short] = (n + fn["count"],
                            hit + sum(1 for r in code if r[4] > 0),
                            cov + len(code))
    return files, funcs


def main():
    os.makedirs(OUT, exist_ok=True)
    bins = sorted(glob.glob(os.path.join(COV_DIR, "fuzz_*")))
    if not bins:
        print("fuzz-coverage: no target in %s (make fuzz-coverage)" %
              COV_DIR)
        return 1
    bad = 0
    for b in bins:
        name = os.path.basename(b)[len("fuzz_"):]
        files, funcs = PARSERS.get(name, (["%s.c" % name], []))
        m = measure(name, b)
        if isinstance(m, str):
            print("fuzz-coverage: %s: FAILED: %s" % (name, m))
            bad += 1
            continue
        got_files, got_funcs = m
        parts = []
        for f in files:
            cov, tot = got_files.get(f, (0, 0))
            pct = 100.0 * cov / tot if tot else 0.0
            parts.append("%s %d/%d lines (%.1f %%)" % (f, cov, tot, pct))
            if not funcs and cov == 0:
                print("fuzz-coverage: %s: FAILED: src/%s never reached" %
                      (name, f))
                bad += 1
        calls = []
        for fn in funcs:
            n, hit, regions = got_funcs.get(fn, (0, 0, 0))
            calls.append("%s x%d (%d/%d regions)" % (fn, n, hit, regions))
            if n == 0:
                print("fuzz-coverage: %s: FAILED: %s never executed" %
                      (name, fn))
                bad += 1
        ncorp = len(os.listdir(os.path.join(ROOT, "tests", "fuzz", "corpus",
                                            name)))
        print("fuzz-coverage: %s (%d inputs): %s; %s" % (
            name, ncorp, ", ".join(parts), ", ".join(calls) or "-"))
    print("fuzz-coverage: %s" % ("FAILED" if bad else "every target "
                                 "reaches its parser"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
