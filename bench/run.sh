#!/bin/sh
# bench/run.sh: throughput, latency and memory of keystone-k8s-auth on this
# machine, against the project's test Kubernetes API server on loopback.
#
#   ./configure && make && make tools && sh bench/run.sh
#
# Uses wrk (Debian's package; installed when missing and possible) over
# HTTPS keep-alive connections.  Prints one line per measurement and checks
# the targets in bench/README.md; exits non-zero when one is missed.
set -eu
cd "$(dirname "$0")/.."
command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk >/dev/null ||
	{ echo "bench: wrk is needed (apt-get install wrk)" >&2; exit 2; }
export BENCH_SECONDS=${BENCH_SECONDS:-10}
export BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-32}
DEMO_DIR=${DEMO_DIR:-$PWD/tests/tmp/bench} DEMO_PORT=${DEMO_PORT:-15150} \
    DEMO_THEN="sh bench/measure.sh" sh tests/demo/demo.sh
