#!/bin/sh
# bench/measure.sh: the measurements, run by tests/demo/demo.sh (DEMO_THEN)
# with the server and the test cluster running; see bench/run.sh.
set -eu
fail=0
rss() { awk '/^VmRSS/ { print int($2 / 1024) }' "/proc/$DEMO_SERVER_PID/status"; }

# wrk_run NAME TARGET_RPS LUA_SCRIPT URL: one wrk run, checked.
wrk_run() {
	name=$1 target=$2 script=$3 url=$4
	out=$(wrk -t2 -c"$BENCH_CONNECTIONS" -d"${BENCH_SECONDS}s" --latency \
	    -s "$script" "$url")
	rps=$(echo "$out" | awk '/^Requests\/sec/ { print int($2) }')
	p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
	bad=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
	echo "bench: $name: $rps requests/s, p99 $p99, non-2xx ${bad:-0}," \
	    "rss $(rss) MiB"
	if [ "${bad:-0}" != 0 ] || [ "$rps" -lt "$target" ]; then
		echo "bench: $name: below the target of $target requests/s" \
		    "without errors" >&2
		fail=1
	fi
}

echo "bench: $(nproc) CPUs, ${BENCH_SECONDS}s per run, $BENCH_CONNECTIONS connections"
echo "bench: idle rss $(rss) MiB"
wrk_run "login (JWT -> TokenReview -> Fernet token)" \
    "${BENCH_LOGIN_TARGET:-2000}" bench/login.lua \
    "$DEMO_URL/v4/k8s_auth/instances/$DEMO_INSTANCE/auth"
wrk_run "admin list (GET /v4/k8s_auth/instances)" \
    "${BENCH_ADMIN_TARGET:-10000}" bench/admin.lua \
    "$DEMO_URL/v4/k8s_auth/instances"
wrk_run "token validation (GET /v3/auth/tokens)" \
    "${BENCH_VALIDATE_TARGET:-5000}" bench/validate.lua "$DEMO_URL/v3/auth/tokens"
peak=$(awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$DEMO_SERVER_PID/status")
echo "bench: peak rss $peak MiB"
if [ "$peak" -gt "${BENCH_RSS_TARGET:-128}" ]; then
	echo "bench: peak rss above ${BENCH_RSS_TARGET:-128} MiB" >&2
	fail=1
fi
exit $fail
