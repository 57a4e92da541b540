#!/bin/sh
# tests/run.sh [LAYER]...: run the test layers and print one closing line
# "suite: N passed, N failed, N skipped" for all of them.  Default layers:
# checks unit lua k8s integration interop; also: galera, fuzz, packaging.  Exit
# status 0 only when nothing failed and at least one test passed.
#
# Accounting.  Every layer ends with its own "LAYER: N passed, N failed,
# N skipped" line (printed here), from its programs' own counts: cmocka
# binaries (each test once, by name, from the [ OK ]/[ FAILED ]/[ ERROR ]/
# [ SKIPPED ] lines), busted (TAP, "# SKIP" = skipped), the programs that
# end with "N passed, N failed[, N skipped]" (the test cluster's self-test,
# the integration and interop runners, the packaging tests).  A program
# that exits non-zero without counting a failure, or prints no closing
# line, counts one failure.  What should run but cannot is a failure, not
# a skip: an unbuilt unit binary or test cluster, a missing busted.
#
# K8SAUTH_TEST_NO_SKIP=1 (CI sets it) turns every skip into a failure.
# The integration layer runs its suite twice, on SQLite and on MariaDB.
# Every program runs under timeout(1): a hang fails its layer with a
# message instead of stalling; K8SAUTH_TEST_TIMEOUT=SECONDS replaces every
# limit (the defaults are generous: sanitizer builds are slow).
#
# The checks layer: src/build/checksrc.sh, docs/configuration.md against
# the binary (make check-docs) and the man pages (test_man.sh).  The fuzz
# layer runs every target of `make fuzz` for FUZZ_SECONDS (10) each; the
# packaging layer builds and installs the .deb, checks the RPM and boots the
# .deb in a Debian 12 container under systemd (root; test_systemd.sh).
set -u
cd "$(dirname "$0")/.." || exit 2
PYTHON=${PYTHON:-python3}
MAKE=${MAKE:-make}
layers=${*:-checks unit lua k8s integration interop}
passed=0
failed=0
skipped=0
mkdir -p tests/tmp
out=tests/tmp/layer.out

case "${K8SAUTH_TEST_NO_SKIP:-0}" in
'' | 0) no_skip= ;;
*) no_skip=1 ;;
esac
export K8SAUTH_TEST_NO_SKIP="${no_skip:-0}"

# Per-program limits in seconds (K8SAUTH_TEST_TIMEOUT overrides them all).
limit() {
	if [ -n "${K8SAUTH_TEST_TIMEOUT:-}" ]; then
		echo "$K8SAUTH_TEST_TIMEOUT"
		return
	fi
	case "$1" in
	checks) echo 300 ;;
	unit) echo 600 ;;
	lua) echo 300 ;;
	k8s) echo 600 ;;
	integration) echo 2700 ;;
	interop) echo 1200 ;;
	galera) echo 600 ;;
	fuzz) echo $((${FUZZ_SECONDS:-10} + 300)) ;;
	packaging) echo 1800 ;;
	*) echo 600 ;;
	esac
}

# Counts of the layer running now.
l_ok=0
l_bad=0
l_skip=0

add() {
	l_ok=$((l_ok + $1))
	l_bad=$((l_bad + $2))
	l_skip=$((l_skip + $3))
}

# bad MESSAGE: one failure that no test program counted.
bad() {
	echo "FAIL run.sh: $*"
	add 0 1 0
}

# timed LAYER CMD...: run CMD under the layer's limit, output to $out;
# sets rc, and counts a failure with a clear message on a timeout.
timed() {
	t=$(limit "$1")
	shift
	timeout -k 30 "$t" "$@" > "$out" 2>&1
	rc=$?
	cat "$out"
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		bad "$* timed out after $t s (hung?); killed"
		return 1
	fi
	return 0
}

# counts_of LINE: "N N N" from "N passed, N failed[, N skipped]".
counts_of() {
	printf '%s\n' "$1" | sed -n -E \
	    's/^([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$/\1 \2 x\4/p'
}

run_checks() {
	echo "== checks: checksrc"
	if timed checks sh src/build/checksrc.sh src/*.c tests/k8s/*.c; then
		if [ "$rc" -eq 0 ]; then add 1 0 0; else bad "checksrc (exit $rc)"; fi
	fi
	echo "== checks: docs/configuration.md against the binary"
	if timed checks "$MAKE" -s check-docs; then
		if [ "$rc" -eq 0 ]; then add 1 0 0; else bad "check-docs (exit $rc)"; fi
	fi
	run_counted checks "checks: the man pages" "" \
	    sh tests/packaging/test_man.sh
}

# The unit layer's private MariaDB (tests/db/mariadb.py): started once,
# a fresh database per test binary that names K8SAUTH_TEST_MYSQL_URL in
# its source, stopped at the end.  Unset URL: that binary's MySQL tests
# fail with what to install, never skip.
unit_mdb=
unit_mysql_start() {
	unit_mdb=tests/tmp/mdb-unit-$$
	echo "== unit: a private mariadbd in $unit_mdb"
	if ! timeout -k 10 120 "$PYTHON" tests/db/mariadb.py start \
	    "$unit_mdb" unit_probe > "$out" 2>&1; then
		cat "$out"
		bad "the unit layer's MariaDB did not start (see above)"
		unit_mdb=
	fi
}

unit_mysql_url() {
	K8SAUTH_TEST_MYSQL_URL=
	[ -n "$unit_mdb" ] || return 0
	K8SAUTH_TEST_MYSQL_URL=$(timeout -k 10 60 "$PYTHON" \
	    tests/db/mariadb.py start "$unit_mdb" "$1" 2>/dev/null | tail -n 1)
}

unit_mysql_stop() {
	[ -n "$unit_mdb" ] || return 0
	timeout -k 10 120 "$PYTHON" tests/db/mariadb.py stop "$unit_mdb" \
	    >/dev/null 2>&1
	case "${K8SAUTH_KEEP_TMP:-0}" in '' | 0) rm -rf "$unit_mdb" ;; esac
}

run_unit() {
	found=0
	if grep -l K8SAUTH_TEST_MYSQL_URL tests/unit/test_*.c >/dev/null 2>&1; then
		unit_mysql_start
	fi
	for src in tests/unit/test_*.c; do
		[ -f "$src" ] || continue
		found=1
		t=${src%.c}
		echo "== unit: $t"
		if [ ! -x "$t" ]; then
			bad "$t is not built (make tools)"
			continue
		fi
		K8SAUTH_TEST_MYSQL_URL=
		if grep -q K8SAUTH_TEST_MYSQL_URL "$src"; then
			unit_mysql_url "unit_$(basename "$t")"
		fi
		export K8SAUTH_TEST_MYSQL_URL
		timed unit "./$t" || continue
		# Each test once, by name: a failure is listed twice.
		ok=$(grep -E '^\[       OK \] [A-Za-z_]' "$out" | sort -u | wc -l)
		nok=$(grep -E '^\[  (FAILED|ERROR)   ?\] [A-Za-z_]' "$out" |
		    sed 's/^\[[^]]*\] //' | sort -u | wc -l)
		skp=$(grep -E '^\[  SKIPPED \] [A-Za-z_]' "$out" |
		    sed 's/^\[[^]]*\] //' | sort -u | wc -l)
		ran=$(sed -n 's/^\[==========\] \([0-9]*\) test(s) run\.$/\1/p' \
		    "$out" | tail -n 1)
		add "$ok" "$nok" "$skp"
		if [ -z "$ran" ]; then
			bad "$t printed no cmocka summary (exit $rc)"
		elif [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then
			bad "$t exited with $rc"
		elif [ $((ok + nok + skp)) -ne "$ran" ]; then
			bad "$t: $ran tests run but $((ok + nok + skp)) reported"
		fi
	done
	[ "$found" -eq 1 ] || bad "no tests/unit/test_*.c"
	unit_mysql_stop
}

run_lua() {
	ls tests/lua/*_spec.lua >/dev/null 2>&1 || return 0
	echo "== lua: busted"
	if ! command -v busted >/dev/null 2>&1; then
		bad "busted not found (./configure --install-deps installs lua-busted)"
		return
	fi
	timed lua busted --lua=lua5.4 -o TAP tests/lua || return
	ok=$(grep -E '^ok ' "$out" | grep -vc '# SKIP')
	skp=$(grep -E '^ok .*# SKIP' "$out" | wc -l)
	nok=$(grep -c '^not ok ' "$out")
	add "$ok" "$nok" "$skp"
	if [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then
		bad "busted exited with $rc"
	fi
}

# run_counted LAYER TITLE PREFIX CMD...: run a test program whose closing
# line is "[PREFIX: ]N passed, N failed[, N skipped]" and add its counts.
# Only a line with that exact form counts, the last one.
run_counted() {
	layer=$1 title=$2 prefix=$3
	shift 3
	cmd=$*
	echo "== $title"
	timed "$layer" "$@" || return
	re='[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$'
	[ -n "$prefix" ] && re="^$prefix: $re" || re="^$re"
	line=$(grep -E "$re" "$out" | tail -n 1)
	if [ -z "$line" ]; then
		bad "$cmd printed no closing line (exit $rc)"
		return
	fi
	# shellcheck disable=SC2046 # three numbers
	set -- $(counts_of "${line#"$prefix: "}")
	ok=$1 nok=$2 skp=${3#x}
	skp=${skp:-0}
	add "$ok" "$nok" "$skp"
	if [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then
		bad "$cmd exited with $rc"
	fi
}

run_k8s() {
	ls tests/k8s/*.c >/dev/null 2>&1 || return 0
	if [ ! -x tests/k8s/fake-k8s ]; then
		echo "== k8s"
		bad "tests/k8s/fake-k8s is not built (make tools)"
		return
	fi
	run_counted k8s "k8s: the test Kubernetes API server's own self-test" \
	    "" "$PYTHON" tests/k8s/selftest.py
}

# The integration suite runs once per database engine (issue 13): on
# SQLite, then with every test server on a fresh database of one private
# MariaDB (runner.py --db mysql, tests/db/mariadb.py).
# K8SAUTH_TEST_ENGINES="sqlite" runs one pass (a quick local look; CI's
# main suite runs both, its sanitizer stage the SQLite pass, with the unit
# layer's store and db tests still on both engines).
run_integration() {
	ls tests/integration/test_*.py >/dev/null 2>&1 || return 0
	for engine in ${K8SAUTH_TEST_ENGINES:-sqlite mysql}; do
		case $engine in
		sqlite | mysql) ;;
		*)
			bad "K8SAUTH_TEST_ENGINES: unknown engine '$engine' (sqlite, mysql)"
			continue
			;;
		esac
		run_counted integration "integration ($engine)" integration \
		    "$PYTHON" tests/integration/runner.py --db "$engine"
	done
}

# Not a default layer (make check-galera, CI): two replicas on a three-node
# Galera cluster on loopback, about a minute.
run_galera() {
	run_counted galera "galera: two replicas on a three-node cluster" \
	    galera "$PYTHON" tests/db/check_galera.py
}

run_interop() {
	ls tests/interop/test_*.py >/dev/null 2>&1 || return 0
	run_counted interop "interop: the real Keystone" interop \
	    "$PYTHON" tests/interop/test_keystone.py
}

run_packaging() {
	run_counted packaging "packaging: the .deb" "" \
	    sh tests/packaging/test_deb.sh
	run_counted packaging "packaging: the RPM" "" \
	    sh tests/packaging/test_rpm.sh
	run_counted packaging "packaging: the .deb under systemd (nspawn)" "" \
	    sh tests/packaging/test_systemd.sh
}

# run_fuzz: each libFuzzer target of `make fuzz` for FUZZ_SECONDS from its
# seed corpus tests/fuzz/corpus/NAME (new inputs go to tests/tmp/fuzz, not
# into the tree).  A target that ends without a crash is one passed test;
# a crash, leak or timeout one failed, with the input that caused it.
run_fuzz() {
	secs=${FUZZ_SECONDS:-10}
	found=0
	for t in tests/fuzz/build/fuzz_*; do
		[ -x "$t" ] || continue
		found=1
		name=${t##*/fuzz_}
		work=tests/tmp/fuzz/$name
		rm -rf "$work"
		mkdir -p "$work/corpus" "$work/crash"
		seeds=
		[ -d "tests/fuzz/corpus/$name" ] && seeds=tests/fuzz/corpus/$name
		echo "== fuzz: $name for ${secs}s"
		timeout -k 30 "$(limit fuzz)" "./$t" -max_total_time="$secs" \
		    -timeout=10 -rss_limit_mb=2048 \
		    -artifact_prefix="$work/crash/" -print_final_stats=1 \
		    "$work/corpus" $seeds > "$out" 2>&1
		rc=$?
		if [ "$rc" -eq 0 ]; then
			grep -E '^(Done|stat::number_of_executed_units)' "$out"
			add 1 0 0
		else
			tail -n 60 "$out"
			for c in "$work"/crash/*; do
				[ -f "$c" ] && echo "fuzz: $name crashed on $c"
			done
			bad "fuzz: $name exited with $rc"
		fi
	done
	[ "$found" -eq 1 ] || bad "fuzz: no target in tests/fuzz/build (run make fuzz)"
}

for layer in $layers; do
	case "$layer" in
	checks | unit | lua | k8s | integration | interop | galera | fuzz | packaging) ;;
	*) echo "run.sh: unknown layer $layer" >&2; exit 2 ;;
	esac
	l_ok=0 l_bad=0 l_skip=0
	"run_$layer"
	if [ -n "$no_skip" ] && [ "$l_skip" -gt 0 ]; then
		echo "FAIL run.sh: $layer: $l_skip skipped and K8SAUTH_TEST_NO_SKIP is set: each counts as a failure"
		l_bad=$((l_bad + l_skip))
		l_skip=0
	fi
	echo "-- $layer: $l_ok passed, $l_bad failed, $l_skip skipped"
	passed=$((passed + l_ok))
	failed=$((failed + l_bad))
	skipped=$((skipped + l_skip))
done
echo
echo "suite: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
