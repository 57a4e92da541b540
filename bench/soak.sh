#!/bin/sh
# soak.sh: the server with two workers under a steady mixed load with
# faults for SOAK_MINUTES (30), sampled every minute; exits non-zero on a
# violation.  Not in CI (it takes half an hour).  The load, the faults and
# the pass criteria are described atop bench/soak.py; the figures of the
# last runs are in bench/README.md ("Soak and crash safety").
#
#   sh bench/soak.sh                      # 30 minutes, ./keystone-k8s-auth
#   SOAK_MINUTES=10 K8SAUTH_BIN=/path/to/asan/keystone-k8s-auth \
#       FAKE_K8S_BIN=/path/to/asan/tests/k8s/fake-k8s sh bench/soak.sh
#
# Other knobs: SOAK_RATE (requests/s, 150), SOAK_THREADS (12),
# SOAK_SPIKE_MS (1500), SOAK_RSS_DRIFT (0.05), SOAK_SAMPLE_SECONDS (60).
# Run it under nice on a shared machine.
set -eu
cd "$(dirname "$0")/.."
BIN=${K8SAUTH_BIN:-./keystone-k8s-auth}
K8S=${FAKE_K8S_BIN:-./tests/k8s/fake-k8s}
[ -x "$BIN" ] && [ -x "$K8S" ] || {
	echo "soak: build first (./configure && make && make tools)" >&2
	exit 2
}
exec "${PYTHON:-python3}" bench/soak.py soak
