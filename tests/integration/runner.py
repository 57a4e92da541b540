#!/usr/bin/env python3
"""Run the black-box integration tests against the real binary.

    python3 tests/integration/runner.py [-k SUBSTRING]... [-v] [-x]

Discovers tests/integration/test_*.py (sorted by name) and runs every
function named test_* in file order.  A module may define setup_module()
and teardown_module() (for a server shared by its tests).  Prints
`PASS name` or `FAIL name: reason` (with the server log tail), and ends
with exactly one line `N passed, N failed`.  Exit status 0 only when
nothing failed and at least one test ran.
"""
import argparse
import glob
import importlib.util
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


def load(path):
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def tests_of(mod):
    fns = [f for n, f in vars(mod).items()
           if n.startswith("test_") and callable(f)
           and getattr(f, "__module__", None) == mod.__name__]
    return sorted(fns, key=lambda f: f.__code__.co_firstlineno)


def reason_of(exc):
    if isinstance(exc, AssertionError) and str(exc):
        return str(exc)
    return "%s: %s" % (type(exc).__name__, exc)


def where(exc):
    """The innermost frame inside a test module, as file:line."""
    for fs in reversed(traceback.extract_tb(exc.__traceback__)):
        if os.path.basename(fs.filename).startswith("test_"):
            return "%s:%d" % (os.path.basename(fs.filename), fs.lineno)
    return ""


def report_fail(name, exc, servers, verbose):
    loc = where(exc)
    reason = reason_of(exc).replace("\n", "\n    ")
    print("FAIL %s: %s%s" % (name, reason, " (%s)" % loc if loc else ""))
    if verbose or not isinstance(exc, AssertionError):
        print("".join(traceback.format_exception(type(exc), exc,
                                                 exc.__traceback__)))
    for s in servers:
        tail = s.log_tail(25)
        if tail:
            print("  server log %s (tail):\n%s" % (s.log, tail))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", action="append", default=[],
                    help="run only tests whose name contains this")
    ap.add_argument("-v", action="store_true", help="tracebacks, timings")
    ap.add_argument("-x", action="store_true", help="stop at first failure")
    args = ap.parse_args()

    passed = failed = 0
    if not os.access(harness.BINARY, os.X_OK):
        print("FAIL setup: %s not found or not executable "
              "(run ./configure && make)" % harness.BINARY)
        print("0 passed, 1 failed")
        return 1

    files = sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    t_all = time.monotonic()
    stop = False
    for path in files:
        if stop:
            break
        mod = load(path)
        selected = [f for f in tests_of(mod)
                    if not args.k or any(k in "%s.%s" % (mod.__name__,
                                                         f.__name__)
                                         for k in args.k)]
        if not selected:
            continue
        first = len(harness.ALL_SERVERS)
        setup_error = None
        if hasattr(mod, "setup_module"):
            try:
                mod.setup_module()
            except Exception as e:  # noqa: BLE001
                setup_error = e
        shared = harness.ALL_SERVERS[first:]
        for fn in selected:
            name = "%s.%s" % (mod.__name__, fn.__name__)
            if setup_error is not None:
                report_fail(name, setup_error,
                            harness.ALL_SERVERS[first:], args.v)
                failed += 1
                continue
            before = len(harness.ALL_SERVERS)
            t0 = time.monotonic()
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                # The module's shared server(s) and the test's own ones.
                touched = shared + harness.ALL_SERVERS[before:]
                for s in harness.ALL_SERVERS[before:]:
                    s.failed = True
                report_fail(name, e, touched, args.v)
                failed += 1
                if args.x:
                    stop = True
                    break
            else:
                print("PASS %s%s" % (name, " (%.2fs)" % (time.monotonic() - t0)
                                     if args.v else ""))
                passed += 1
            finally:
                for s in harness.ALL_SERVERS[before:]:
                    s.cleanup()
            sys.stdout.flush()
        if hasattr(mod, "teardown_module") and setup_error is None:
            try:
                mod.teardown_module()
            except Exception as e:  # noqa: BLE001
                for s in harness.ALL_SERVERS[first:]:
                    s.failed = True
                report_fail("%s.teardown_module" % mod.__name__, e,
                            harness.ALL_SERVERS[first:], args.v)
                failed += 1
        for s in harness.ALL_SERVERS[first:]:
            s.cleanup()

    for s in harness.ALL_SERVERS:
        s.kill()
    if args.v:
        print("(%.1fs)" % (time.monotonic() - t_all))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
