#!/bin/sh
# promtool.sh: print the path of the promtool binary (Debian's prometheus
# package, Fedora's golang-github-prometheus), or fail saying how to get
# it.  Nothing is downloaded at test time: `./configure --install-deps`
# installs the package (without starting its service).
set -eu
for p in "${PROMTOOL:-}" "$(command -v promtool 2>/dev/null || true)" \
    /usr/bin/promtool; do
	if [ -n "$p" ] && [ -x "$p" ]; then
		echo "$p"
		exit 0
	fi
done
echo "promtool.sh: promtool not found; ./configure --install-deps installs it (Debian: prometheus, Fedora: golang-github-prometheus)" >&2
exit 1
