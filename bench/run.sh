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
set -eu
cd "$(dirname "$0")/.."
command -v wrk >/dev/null 2>&1 ||
	{ echo "bench: wrk is needed (apt-get install wrk / dnf install wrk)" >&2; exit 2; }
[ -x bench/bare ] && [ -x keystone-k8s-auth ] && [ -x tests/k8s/fake-k8s ] ||
	{ echo "bench: build first (./configure && make bench)" >&2; exit 2; }
export BENCH_SECONDS=${BENCH_SECONDS:-10}
PORT=${DEMO_PORT:-15150}
export BENCH_HTTP_URL="http://127.0.0.1:$((PORT + 1))"
DEMO_DIR=${DEMO_DIR:-$PWD/tests/tmp/bench} DEMO_PORT=$PORT \
    DEMO_LISTEN_EXTRA="$BENCH_HTTP_URL" \
    DEMO_THEN="sh bench/measure.sh" sh tests/demo/demo.sh
