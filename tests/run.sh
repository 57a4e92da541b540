#!/bin/sh
# tests/run.sh [unit|lua|k8s|integration|interop|fuzz]...: run the test layers and print one
# closing line "N passed, N failed" for all of them.  Exit status is 0 only
# when nothing failed and at least one test ran.
#
# Each layer reports its own counts: cmocka binaries ([ OK ]/[ FAILED ]
# lines), busted (TAP), the test cluster's self-test and the Python
# integration runner (their closing lines).  The fuzz layer (not run by
# default) runs every target of `make fuzz` for FUZZ_SECONDS (10) each.
set -u
cd "$(dirname "$0")/.." || exit 2
PYTHON=${PYTHON:-python3}
layers=${*:-unit lua k8s integration interop}
passed=0
failed=0
mkdir -p tests/tmp
out=tests/tmp/layer.out

add() {
	passed=$((passed + $1))
	failed=$((failed + $2))
}

run_unit() {
	for t in tests/unit/test_*; do
		case "$t" in *.c|*.o|*.d) continue ;; esac
		[ -x "$t" ] || continue
		echo "== unit: $t"
		"./$t" > "$out" 2>&1
		rc=$?
		cat "$out"
		ok=$(grep -c '^\[       OK \]' "$out")
		bad=$(grep -cE '^\[  (FAILED|ERROR)   ?\] [a-z_]' "$out")
		if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
			bad=1
			echo "unit: $t exited with $rc"
		fi
		add "$ok" "$bad"
	done
}

run_lua() {
	ls tests/lua/*_spec.lua >/dev/null 2>&1 || return 0
	echo "== lua: busted"
	busted --lua=lua5.4 -o TAP tests/lua > "$out" 2>&1
	rc=$?
	cat "$out"
	ok=$(grep -c '^ok ' "$out")
	bad=$(grep -c '^not ok ' "$out")
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
	add "$ok" "$bad"
}

# run_counted TITLE CMD...: run a test program that ends with the line
# "N passed, N failed" and add its counts.
run_counted() {
	title=$1
	shift
	echo "== $title"
	"$@" > "$out" 2>&1
	rc=$?
	cat "$out"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
	ok=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
	bad=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
	ok=${ok:-0}
	bad=${bad:-0}
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
	add "$ok" "$bad"
}

run_k8s() {
	[ -x tests/k8s/fake-k8s ] || return 0
	run_counted "k8s: the test Kubernetes API server's own self-test" \
	    "$PYTHON" tests/k8s/selftest.py
}

run_integration() {
	ls tests/integration/test_*.py >/dev/null 2>&1 || return 0
	run_counted "integration" "$PYTHON" tests/integration/runner.py
}

run_interop() {
	ls tests/interop/test_*.py >/dev/null 2>&1 || return 0
	run_counted "interop: the real Keystone" \
	    "$PYTHON" tests/interop/test_keystone.py
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
		"./$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		    -artifact_prefix="$work/crash/" -print_final_stats=1 \
		    "$work/corpus" $seeds > "$out" 2>&1
		rc=$?
		if [ "$rc" -eq 0 ]; then
			grep -E '^(Done|stat::number_of_executed_units)' "$out"
			add 1 0
		else
			tail -n 60 "$out"
			for c in "$work"/crash/*; do
				[ -f "$c" ] && echo "fuzz: $name crashed on $c"
			done
			echo "fuzz: $name exited with $rc"
			add 0 1
		fi
	done
	if [ "$found" -eq 0 ]; then
		echo "fuzz: no target in tests/fuzz/build (run make fuzz)"
		add 0 1
	fi
}

for layer in $layers; do
	case "$layer" in
	unit) run_unit ;;
	lua) run_lua ;;
	k8s) run_k8s ;;
	integration) run_integration ;;
	interop) run_interop ;;
	fuzz) run_fuzz ;;
	*) echo "run.sh: unknown layer $layer" >&2; exit 2 ;;
	esac
done
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
