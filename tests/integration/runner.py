#!/usr/bin/env python3
"""Run the black-box integration tests against the real binary.

    python3 tests/integration/runner.py [-k SUBSTRING]... [-v] [-x]
                                        [--db sqlite|mysql]

Discovers tests/integration/test_*.py (sorted by name) and runs every
function named test_* in file order.  A module may define setup_module()
and teardown_module() (for a server shared by its tests).  Prints
`PASS name`, `FAIL name: reason` (with the server log tail) or
`SKIP name: reason`, and ends with exactly one line
`integration: N passed, N failed, N skipped` (the prefix keeps it apart
from the closing lines of sub-suites).  Exit status 0 only when nothing
failed and at least one test passed.

A test (or setup_module) that cannot run here raises harness.Skip; with
K8SAUTH_TEST_NO_SKIP=1 (CI) that counts as a failure instead.  A test that
runs a sub-suite with its own PASS/FAIL lines returns harness.Counts and
each of its cases is counted.

--db mysql (or K8SAUTH_TEST_DB=mysql) is the MySQL pass: one private
MariaDB server (tests/db/mariadb.py) for the run, a fresh database for
every server a test starts.  Tests marked @harness.sqlite_only("why") and
modules that set SQLITE_ONLY = "why" (or OWN_DATABASE = "why": they
start a MariaDB of their own in any pass) are not run in it (-v lists them
with their reason); they are not counted.
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


class Tally:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def skip(self, name, reason):
        """A skip, or a failure when K8SAUTH_TEST_NO_SKIP is set."""
        if harness.no_skip():
            print("FAIL %s: skipped, %s, and K8SAUTH_TEST_NO_SKIP is set"
                  % (name, reason))
            self.failed += 1
        else:
            print("SKIP %s: %s" % (name, reason))
            self.skipped += 1
        sys.stdout.flush()

    def counts(self, name, c, timing):
        """A sub-suite's cases, each counted (they printed their lines)."""
        if c.failed == 0 and c.passed == 0:
            print("FAIL %s: the sub-suite ran no case" % name)
            self.failed += 1
            return False
        self.passed += c.passed
        self.failed += c.failed
        for _ in range(c.skipped):
            self.skip(name, "a case of the sub-suite skipped")
        if c.failed:
            print("FAIL %s: %d of %d cases failed (FAIL lines above)"
                  % (name, c.failed, c.passed + c.failed))
            return False
        print("PASS %s (%d cases)%s" % (name, c.passed, timing))
        return True


def sqlite_only(mod, fn):
    """Why fn runs in the SQLite pass only, or None: SQLite-specific, or a
    module with its own MariaDB (OWN_DATABASE) that needs no second pass."""
    return (getattr(fn, "sqlite_only", None) or
            getattr(mod, "SQLITE_ONLY", None) or
            getattr(mod, "OWN_DATABASE", None))


def start_mysql():
    """Start the pass's shared MariaDB (a clear failure when it cannot)."""
    import mariadb
    try:
        m = mariadb.shared()
    except AssertionError as e:
        print("FAIL setup: the MySQL pass needs a private MariaDB: %s" % e)
        return False
    print("integration: MySQL pass on MariaDB %s at 127.0.0.1:%d (%s)" % (
        m.scalar("SELECT VERSION()"), m.port, m.dir))
    sys.stdout.flush()
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", action="append", default=[],
                    help="run only tests whose name contains this")
    ap.add_argument("-v", action="store_true", help="tracebacks, timings")
    ap.add_argument("-x", action="store_true", help="stop at first failure")
    ap.add_argument("--db", choices=harness.ENGINES,
                    default=harness.DB_ENGINE,
                    help="database engine of every test server "
                    "(default K8SAUTH_TEST_DB, else sqlite)")
    args = ap.parse_args()
    if harness.DB_ENGINE not in harness.ENGINES:
        print("FAIL setup: K8SAUTH_TEST_DB=%s: expected one of %s"
              % (harness.DB_ENGINE, ", ".join(harness.ENGINES)))
        print("integration: 0 passed, 1 failed, 0 skipped")
        return 1
    harness.DB_ENGINE = args.db

    t = Tally()
    if not os.access(harness.BINARY, os.X_OK):
        print("FAIL setup: %s not found or not executable "
              "(run ./configure && make)" % harness.BINARY)
        print("integration: 0 passed, 1 failed, 0 skipped")
        return 1

    if harness.DB_ENGINE == "mysql" and not start_mysql():
        print("integration: 0 passed, 1 failed, 0 skipped")
        return 1
    files = sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    not_run = []
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
        if harness.DB_ENGINE != "sqlite":
            not_run += [("%s.%s" % (mod.__name__, f.__name__), sqlite_only(
                mod, f)) for f in selected if sqlite_only(mod, f)]
            selected = [f for f in selected if not sqlite_only(mod, f)]
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
            if isinstance(setup_error, harness.Skip):
                t.skip(name, "setup_module: %s" % setup_error)
                continue
            if setup_error is not None:
                report_fail(name, setup_error,
                            harness.ALL_SERVERS[first:], args.v)
                t.failed += 1
                continue
            before = len(harness.ALL_SERVERS)
            t0 = time.monotonic()
            timing = ""
            try:
                result = fn()
                if args.v:
                    timing = " (%.2fs)" % (time.monotonic() - t0)
                if isinstance(result, harness.Counts):
                    if not t.counts(name, result, timing) and args.x:
                        stop = True
                        break
                    continue
            except harness.Skip as e:
                t.skip(name, str(e))
            except Exception as e:  # noqa: BLE001
                # The module's shared server(s) and the test's own ones.
                touched = shared + harness.ALL_SERVERS[before:]
                for s in harness.ALL_SERVERS[before:]:
                    s.failed = True
                report_fail(name, e, touched, args.v)
                t.failed += 1
                if args.x:
                    stop = True
                    break
            else:
                print("PASS %s%s" % (name, timing))
                t.passed += 1
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
                t.failed += 1
        for s in harness.ALL_SERVERS[first:]:
            s.cleanup()

    for s in harness.ALL_SERVERS:
        s.kill()
    if not_run:
        print("(%s pass: %d tests of the SQLite pass only not run%s)" % (
            harness.DB_ENGINE, len(not_run), "" if args.v else "; -v lists them"))
        if args.v:
            for name, why in not_run:
                print("  not run %s: %s" % (name, why))
    if args.v:
        print("(%.1fs)" % (time.monotonic() - t_all))
    print("integration: %d passed, %d failed, %d skipped"
          % (t.passed, t.failed, t.skipped))
    return 0 if t.failed == 0 and t.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
