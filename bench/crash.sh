#!/bin/sh
# crash.sh: crash safety of the store.  Under write load (admin creates,
# updates and deletes), kill -9 the server every CRASH_EVERY seconds (120)
# for CRASH_MINUTES (10); after each kill: PRAGMA integrity_check, restart,
# and every acknowledged write must be there (the details atop
# bench/soak.py).  The database runs journal_mode=WAL with
# synchronous=NORMAL (src/db.c): a process kill must lose nothing that was
# acknowledged (a power loss may lose the last commits, which this does
# not test).  tests/integration/test_crash.py is the short version in CI.
#
#   sh bench/crash.sh
#   CRASH_MINUTES=1 CRASH_EVERY=10 sh bench/crash.sh
set -eu
cd "$(dirname "$0")/.."
BIN=${K8SAUTH_BIN:-./keystone-k8s-auth}
[ -x "$BIN" ] || { echo "crash: build first (./configure && make)" >&2; exit 2; }
exec "${PYTHON:-python3}" bench/soak.py crash
