"""Crash safety of the store: kill -9 of the server under write load loses
no acknowledged write and leaves an intact database.

The short version of bench/crash.sh (same code, bench/soak.py CrashRun):
six threads of admin creates, updates and deletes of restrictions, three
kill -9 about ten seconds apart, after each PRAGMA integrity_check, a
restart and a check of every write answered 2xx before the kill (the
store runs journal_mode=WAL, synchronous=NORMAL: a process kill must lose
nothing committed).  A write whose answer the kill cut off may be there
or not.  Then the checker itself is checked: a restriction deleted behind
the server's back must be reported as a lost write.
"""
import os
import sys

from harness import check, eq, sqlite_only, timeout_scale

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), "bench"))
from soak import CrashRun  # noqa: E402


@sqlite_only("checks the SQLite file (integrity_check); MariaDB's case is "
             "test_replicas' SIGKILL")
def test_kill9_under_writes_loses_no_acknowledged_write():
    every = 10 * min(timeout_scale(), 2.0)
    run = CrashRun(minutes=3 * every / 60.0, every=every, threads=6,
                   rate=60.0)
    run.setup()
    try:
        run.run()
        check(not run.violations, "after kill -9: %s" %
              "; ".join(run.violations[:5]))
        eq(run.kills, 3, "kills")
        check(run.acked > 50, "only %d writes acknowledged" % run.acked)
        check(run.checked > 0, "no object checked after the kills")
        # The checker must see a lost write.
        lost = run.lose_one_write()
        check(lost is not None, "no acknowledged object to lose")
        run.verify()
        check(len(run.violations) == 1 and lost in run.violations[0],
              "a write deleted behind the server's back was not reported: "
              "%r" % run.violations[:3])
        run.violations = []
    finally:
        run.stop.set()
        run.teardown()
    check(not run.violations, "server stop: %s" % run.violations)
