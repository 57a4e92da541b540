#!/bin/sh
# coverage.sh: line coverage of each fuzz target over its corpus; see
# tests/fuzz/coverage.py.
cd "$(dirname "$0")/../.." || exit 2
exec "${PYTHON:-python3}" tests/fuzz/coverage.py "$@"
