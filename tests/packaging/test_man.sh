#!/bin/sh
# tests/packaging/test_man.sh [BINARY]: the manual pages against the
# binary, so they fail when they drift: every subcommand of `--help` has an
# entry in keystone-k8s-auth(8) and every entry there is a real subcommand;
# the generated keystone-k8s-auth.conf(5) has every section and option of
# `config-check --sample`, and is what mkconfman.sh makes now; both pages
# render without groff warnings.  Fast, no root (make check-packaging).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/packaging/lib.sh

bin=${1:-./keystone-k8s-auth}
man8=docs/man/keystone-k8s-auth.8
man5=docs/man/keystone-k8s-auth.conf.5
tmp=$(mktemp -d /tmp/k8sauth-mantest.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
[ -x "$bin" ] || { echo "test_man.sh: build $bin first"; exit 2; }

# Subcommands: the lines after "subcommands:" in --help.
"$bin" --help | awk '/^subcommands:/ { on = 1; next } on && NF == 0 { exit }
    on { print $1 }' > "$tmp/cmds"
check "--help lists subcommands" test -s "$tmp/cmds"
# Entries: .TP followed by .B/.BR NAME in the SUBCOMMANDS section.
awk '/^\.SH SUBCOMMANDS/ { on = 1; next } /^\.SH/ { on = 0 }
    on && tp && /^\.BR? / { n = $2; gsub(/\\/, "", n); print n }
    { tp = ($0 == ".TP") }' "$man8" > "$tmp/entries"
while read -r c; do
	check "keystone-k8s-auth(8) documents the subcommand $c" \
	    grep -qx "$c" "$tmp/entries"
done < "$tmp/cmds"
while read -r c; do
	check "keystone-k8s-auth(8) entry $c is a subcommand of --help" \
	    grep -qx "$c" "$tmp/cmds"
done < "$tmp/entries"
for s in SIGNALS "EXIT STATUS" FILES; do
	check "keystone-k8s-auth(8) has the section $s" grep -q "^\.SH \"*$s" "$man8"
done
for sig in SIGTERM SIGINT SIGHUP; do
	check "keystone-k8s-auth(8) documents $sig" grep -q "$sig" "$man8"
done

# keystone-k8s-auth.conf(5).
sh docs/man/mkconfman.sh docs/man/keystone-k8s-auth.conf.5.in "$bin" \
    > "$tmp/conf.5"
check "mkconfman.sh generates keystone-k8s-auth.conf(5)" test -s "$tmp/conf.5"
if [ -f "$man5" ]; then
	check "$man5 is up to date (make man)" cmp -s "$man5" "$tmp/conf.5"
fi
"$bin" config-check --sample | awk '
    /^\[/ { sec = $0; print "S " sec; next }
    /^#[a-z_]+ = / { sub(/^#/, ""); print "O " sec " " $1 }' > "$tmp/opts"
check "the sample lists options" grep -q '^O ' "$tmp/opts"
# option_in_page SECTION OPTION: OPTION appears under .SS SECTION.
option_in_page() {
	awk -v s="$1" -v o="$2" '
	    /^\.SS / { in_s = ($2 == s) }
	    in_s && index($0, "\\fB" o "\\fR") == 1 { found = 1 }
	    END { exit !found }' "$tmp/conf.5"
}
while read -r kind sec opt; do
	if [ "$kind" = S ]; then
		check "keystone-k8s-auth.conf(5) has $sec" \
		    grep -qxF ".SS $sec" "$tmp/conf.5"
	else
		o=$(printf '%s' "$opt" | sed 's/-/\\\\-/g')
		check "keystone-k8s-auth.conf(5) documents $sec $opt" \
		    option_in_page "$sec" "$o"
	fi
done < "$tmp/opts"

# Rendering.
for page in "$man8" "$tmp/conf.5"; do
	LC_ALL=C.UTF-8 groff -man -ww -z -Tutf8 "$page" > "$tmp/warn" 2>&1
	check "$(basename "$page") renders without warnings" \
	    test ! -s "$tmp/warn"
done

finish
