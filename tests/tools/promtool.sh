#!/bin/sh
# promtool.sh: print the path of a promtool binary, extracting it from
# Debian's prometheus package (without installing the package or starting
# its service) into tests/tmp/promtool/ when none is on PATH.
set -eu
if command -v promtool >/dev/null 2>&1; then
	command -v promtool
	exit 0
fi
cd "$(dirname "$0")/../.."
dir=$PWD/tests/tmp/promtool
if [ ! -x "$dir/usr/bin/promtool" ]; then
	mkdir -p "$dir"
	(cd "$dir" && apt-get download prometheus >/dev/null 2>&1 &&
	    dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb) || {
		echo "promtool.sh: cannot get Debian's prometheus package" >&2
		exit 1
	}
fi
echo "$dir/usr/bin/promtool"
