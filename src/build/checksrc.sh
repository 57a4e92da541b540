#!/bin/sh
# checksrc.sh FILE...: refuse banned functions (STYLE.md rule 13).
status=0
for f do
	[ -f "$f" ] || continue
	if grep -nE '(^|[^_a-zA-Z0-9.>])(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|gets|system|rand|srand)[[:space:]]*\(' "$f" |
	    grep -vE '^[0-9]+:[[:space:]]*(/?\*|//)'; then
		echo "checksrc: $f uses a banned function" >&2
		status=1
	fi
done
[ $status -eq 0 ] && echo "checksrc: ok"
exit $status
