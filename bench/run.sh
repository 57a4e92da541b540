#!/bin/sh
# bench/run.sh: keystone-k8s-auth against a bare libevent responder on this
# machine, in one run, on the same cores, with the same wrk settings.
#
#   ./configure && make bench && sh bench/run.sh
#
# Starts the demo set-up (tests/demo/demo.sh: the test Kubernetes API
# server and keystone-k8s-auth with 2 workers on loopback) with an extra
# plain-HTTP listener, then bench/measure.sh runs wrk against bench/bare
# and each route over HTTP and HTTPS keep-alive, prints each rate as a ratio
# to the bare responder and checks the targets in bench/README.md; exits
# non-zero when one is missed.  Needs wrk (apt-get install wrk).
#
# BENCH_DB: sqlite (the default), mysql (the same on a private MariaDB,
# tests/db/mariadb.py) or both: the SQLite run, then the login rows on
# MariaDB (BENCH_DB_ROWS, "login-*"), and each MariaDB login rate as a
# ratio to the SQLite one (target BENCH_TARGET_DB, 0.9: issue 13).
set -eu
cd "$(dirname "$0")/.."
command -v wrk >/dev/null 2>&1 ||
	{ echo "bench: wrk is needed (apt-get install wrk / dnf install wrk)" >&2; exit 2; }
[ -x bench/bare ] && [ -x keystone-k8s-auth ] && [ -x tests/k8s/fake-k8s ] ||
	{ echo "bench: build first (./configure && make bench)" >&2; exit 2; }
export BENCH_SECONDS=${BENCH_SECONDS:-10}
PORT=${DEMO_PORT:-15150}
export BENCH_HTTP_URL="http://127.0.0.1:$((PORT + 1))"
DB=${BENCH_DB:-sqlite}
case $DB in
sqlite | mysql | both) ;;
*) echo "bench: BENCH_DB must be sqlite, mysql or both, not $DB" >&2; exit 2 ;;
esac
TMP=$PWD/tests/tmp
# one_run DIR [DATABASE_URL]: the demo set-up and bench/measure.sh
one_run() {
	DEMO_DIR=$1 DEMO_PORT=$PORT DEMO_DATABASE=${2:-} \
	    DEMO_LISTEN_EXTRA="$BENCH_HTTP_URL" \
	    DEMO_THEN="sh bench/measure.sh" sh tests/demo/demo.sh
}
fail=0
if [ "$DB" != mysql ]; then
	one_run "${DEMO_DIR:-$TMP/bench}" || fail=1
fi
[ "$DB" != sqlite ] || exit $fail

# ---- MariaDB: a private server (tests/db/mariadb.py), a fresh database
[ -f tests/db/mariadb.py ] ||
	{ echo "bench: BENCH_DB=$DB needs tests/db/mariadb.py (issue 13)" >&2; exit 2; }
MDB=$TMP/bench-mariadb
python3 tests/db/mariadb.py stop "$MDB" >/dev/null 2>&1 || true
rm -rf "$MDB"
URL=$(python3 tests/db/mariadb.py start "$MDB" bench) ||
	{ echo "bench: the private MariaDB did not start" >&2; exit 2; }
trap 'python3 tests/db/mariadb.py stop "$MDB" >/dev/null 2>&1 || true' EXIT
echo "bench: MariaDB run (${URL%%://*}://..., database bench)"
if [ "$DB" = both ]; then
	# Only the login rows count here; the rest was measured on SQLite.
	BENCH_ROWS=${BENCH_DB_ROWS:-login-*} BENCH_FILL=0 \
	    one_run "$TMP/bench-mysql" "$URL" || true
	python3 bench/db_ratio.py "${DEMO_DIR:-$TMP/bench}/bench/results" \
	    "$TMP/bench-mysql/bench/results" \
	    --target "${BENCH_TARGET_DB:-0.9}" || fail=1
else
	one_run "${DEMO_DIR:-$TMP/bench-mysql}" "$URL" || fail=1
fi
exit $fail
