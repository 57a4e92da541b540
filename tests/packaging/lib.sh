# tests/packaging/lib.sh: counters and checks shared by the packaging tests.
# Each test ends with the line "N passed, N failed, N skipped" (the
# tests/run.sh format).  With K8SAUTH_TEST_NO_SKIP=1 (CI) a skip fails.
passed=0
failed=0
skipped=0

pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

# skip DESCRIPTION: a check that cannot run here (counted, never silent).
skip() {
	case "${K8SAUTH_TEST_NO_SKIP:-0}" in
	''|0) skipped=$((skipped + 1)); echo "SKIP: $*" ;;
	*) fail "$* (skipped, and K8SAUTH_TEST_NO_SKIP is set)" ;;
	esac
}

# check DESCRIPTION CMD...: pass when CMD succeeds.
check() {
	desc=$1
	shift
	if "$@" >/dev/null 2>&1; then pass "$desc"; else fail "$desc"; fi
}

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
	if [ "$2" = "$3" ]; then
		pass "$1"
	else
		fail "$1: expected '$2', got '$3'"
	fi
}

# finish: the closing line; exit 1 when anything failed or nothing ran.
finish() {
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
	exit $?
}

# mode_owner PATH: "MODE USER:GROUP" (octal mode without leading zeros).
mode_owner() { stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing; }

# free_port: a TCP port on 127.0.0.1 nobody listens on.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# exposure UNITFILE: the overall exposure from systemd-analyze security.
exposure() {
	systemd-analyze security --offline=yes --no-pager "$1" 2>/dev/null |
	    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
