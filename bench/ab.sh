#!/bin/sh
# bench/ab.sh: before/after figures for one change -- two (or more) server
# binaries side by side, in one run, against one test cluster.
#
#   sh bench/ab.sh OLD_BINARY NEW_BINARY [...]
#
# Starts the demo set-up (tests/demo/demo.sh), then each binary as a second
# server on its own plain-HTTP port with the demo's configuration, state
# and key repository, and alternates wrk runs of the uncached login (and
# the validation) over them, AB_ROUNDS rounds of AB_SECONDS each (3 x 5 s),
# so a busy machine's drift falls on every binary alike.  Prints each
# binary's mean rate and the server CPU time (user + system, from
# /proc/PID/stat) per request: on a shared machine the CPU time is the
# steadier figure, the rate swings with the neighbours' load.
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: sh bench/ab.sh OLD_BINARY NEW_BINARY [...]" >&2; exit 2; }
for b in "$@"; do
	[ -x "$b" ] || { echo "bench: $b is not an executable" >&2; exit 2; }
done
export AB_BINS="$*"
PORT=${DEMO_PORT:-15190}
DEMO_DIR=${DEMO_DIR:-$PWD/tests/tmp/ab} DEMO_PORT=$PORT \
    DEMO_THEN="sh bench/ab_measure.sh" sh tests/demo/demo.sh |
	grep '^ab:'
