#!/bin/sh
# long.sh: the long fuzz campaign (`make fuzz-long`).  Every libFuzzer
# target of `make fuzz` runs for FUZZ_LONG_SECONDS (300) from its corpus
# tests/fuzz/corpus/NAME, FUZZ_LONG_JOBS (2) targets at a time; then the
# inputs it grew are merged (libFuzzer -merge=1) into a fresh copy of the
# corpus, which keeps every existing file (the hand-written seeds and the
# regression inputs are named) and adds only the grown inputs that reach
# new coverage; that copy replaces tests/fuzz/corpus/NAME.  One line per
# target: executions, executions per second, corpus files before and
# after.  A crash, leak or timeout fails the campaign (exit 1) and names
# the input, left in tests/tmp/fuzz-long/NAME/crash/; the corpus of a
# failed target is not replaced.
#
#   make fuzz-long                                 # then the coverage
#   FUZZ_LONG_SECONDS=60 sh tests/fuzz/long.sh jwt fernet   # some targets
set -u
cd "$(dirname "$0")/../.." || exit 2
out=tests/tmp/fuzz-long

# one NAME: run, merge and report one target; exit status 1 on a finding.
if [ "${1:-}" = "--one" ]; then
	name=$2
	secs=${FUZZ_LONG_SECONDS:-300}
	bin=./tests/fuzz/build/fuzz_$name
	corpus=tests/fuzz/corpus/$name
	work=$out/$name
	rm -rf "$work"
	mkdir -p "$work/grown" "$work/crash" "$work/merged" "$corpus"
	before=$(ls "$corpus" | wc -l)
	nice "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix="$work/crash/" -print_final_stats=1 \
	    "$work/grown" "$corpus" > "$work/fuzz.log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/fuzz.log")
	if [ "$rc" -ne 0 ] || [ -n "$(ls "$work/crash")" ]; then
		tail -n 40 "$work/fuzz.log"
		for c in "$work"/crash/*; do
			[ -f "$c" ] && echo "fuzz-long: $name: finding in $c"
		done
		echo "fuzz-long: $name: FAILED (exit $rc) after ${execs:-?} execs"
		exit 1
	fi
	cp "$corpus"/* "$work/merged/" 2>/dev/null
	if ! nice "$bin" -merge=1 -timeout=10 -rss_limit_mb=2048 \
	    "$work/merged" "$work/grown" > "$work/merge.log" 2>&1; then
		tail -n 20 "$work/merge.log"
		echo "fuzz-long: $name: merge FAILED"
		exit 1
	fi
	rm -rf "$corpus"
	cp -r "$work/merged" "$corpus"
	after=$(ls "$corpus" | wc -l)
	echo "fuzz-long: $name: ${execs:-?} execs in ${secs}s," \
	    "${rate:-?} exec/s, corpus $before -> $after files"
	exit 0
fi

secs=${FUZZ_LONG_SECONDS:-300}
jobs=${FUZZ_LONG_JOBS:-2}
names=$*
if [ -z "$names" ]; then
	for t in tests/fuzz/build/fuzz_*; do
		[ -x "$t" ] && names="$names ${t##*/fuzz_}"
	done
fi
[ -n "$names" ] || { echo "fuzz-long: no target built (make fuzz)"; exit 2; }
mkdir -p "$out"
n=$(echo $names | wc -w)
echo "fuzz-long: $n targets, ${secs}s each, $jobs at a time"
echo $names | tr ' ' '\n' | FUZZ_LONG_SECONDS=$secs \
    xargs -P "$jobs" -I{} sh "$0" --one {} > "$out/summary.txt" 2>&1
rc=$?
cat "$out/summary.txt"
if [ "$rc" -ne 0 ]; then
	echo "fuzz-long: FAILED"
	exit 1
fi
echo "fuzz-long: $n targets passed"
