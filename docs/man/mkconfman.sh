#!/bin/sh
# mkconfman.sh TEMPLATE BINARY: print keystone-k8s-auth.conf(5), replacing
# the line @OPTIONS@ of TEMPLATE with the option reference converted from
# `BINARY config-check --docs` (Markdown tables, one per section), so the
# manual page cannot drift from the options table in src/config.c.
set -eu
template=$1
bin=$2
opts=$(mktemp)
trap 'rm -f "$opts"' EXIT

"$bin" config-check --docs | awk '
# roff: escape backslashes, hyphens in names; protect leading dots.
function esc(s) {
	gsub(/\\/, "\\e", s)
	sub(/^[.'\'']/, "\\\\\\&&", s)
	return s
}
function trim(s) {
	sub(/^[ \t]+/, "", s)
	sub(/[ \t]+$/, "", s)
	gsub(/`/, "", s)
	return s
}
/^### \[/ {
	sec = $2
	printf ".SS %s\n", sec
	next
}
/^\| `/ {
	n = split($0, f, "|")
	if (n != 8) {
		print "mkconfman.sh: unexpected row: " $0 > "/dev/stderr"
		exit 1
	}
	name = trim(f[2]); type = trim(f[3]); def = trim(f[4])
	range = trim(f[5]); reload = trim(f[6]); help = trim(f[7])
	gsub(/-/, "\\-", name)
	printf ".TP\n\\fB%s\\fR = ", name
	if (def == "(unset)")
		printf "\\fI(unset)\\fR\n"
	else
		printf "\\fI%s\\fR\n", esc(def)
	printf "%s\n", esc(help)
	extra = type
	if (range != "")
		extra = extra ", " range
	if (reload == "yes")
		extra = extra ", reloaded by SIGHUP"
	printf ".br\n(%s)\n", esc(extra)
	rows++
}
END { if (rows == 0) { print "mkconfman.sh: no options" > "/dev/stderr"; exit 1 } }
' > "$opts"

awk -v f="$opts" '
$0 == "@OPTIONS@" { while ((getline l < f) > 0) print l; found = 1; next }
{ print }
END { if (!found) { print "mkconfman.sh: no @OPTIONS@ line" > "/dev/stderr"; exit 1 } }
' "$template"
