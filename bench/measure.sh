#!/bin/sh
# bench/measure.sh: the measurements, run by tests/demo/demo.sh (DEMO_THEN)
# with the server and the test cluster running; see bench/run.sh and the
# targets in bench/README.md.
#
# Every row is one wrk run with the same settings (-t2 -c64, BENCH_SECONDS,
# one precomputed request per connection, bench/request.lua) against the
# same machine, first the bare responder (bench/bare), then the server's
# routes, then the bare responder again: a row's ratio is its rate over the
# mean of the two bare runs of its scheme.  The test cluster's own
# TokenReview rate is measured alone, with the server idle.
#
# Rows that need a feature the server does not have (the TokenReview
# cache: the instance field review_cache_ttl; the local signature check:
# jwt_signature) print "not supported" and are not counted as misses.
set -eu
D=$DEMO_DIR
R=$D/bench
mkdir -p "$R"
: > "$R/results"
fail=0
SECS=${BENCH_SECONDS:-10}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNECTIONS:-64}
WORKERS=${BENCH_WORKERS:-2}
PID=$DEMO_SERVER_PID
HTTP_URL=$BENCH_HTTP_URL
HTTPS_URL=$DEMO_URL
K=$DEMO_K8S
IID=$DEMO_INSTANCE

kc() { curl -sS --cacert "$DEMO_CA" -H 'Content-Type: application/json' "$@"; }
ac() { kc -H "X-Auth-Token: $DEMO_ADMIN_TOKEN" "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$PID/status"; }
say() { echo "bench: $*"; }
miss() { echo "bench: MISSED: $*" >&2; fail=1; }

# ---- the bare responder, one per scheme, same thread count as workers
BARE_PIDS=
stop_bare() {
	# shellcheck disable=SC2086
	[ -z "$BARE_PIDS" ] || kill $BARE_PIDS 2>/dev/null || true
}
trap stop_bare EXIT
start_bare() { # start_bare NAME [TLS OPTIONS] -> prints the port
	name=$1
	shift
	rm -f "$R/$name.port"
	bench/bare -t "$WORKERS" "$@" --port-file "$R/$name.port" \
	    127.0.0.1:0 2> "$R/$name.log" &
	BARE_PIDS="$BARE_PIDS $!"
	i=0
	while [ ! -s "$R/$name.port" ] && [ $i -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -s "$R/$name.port" ] || { cat "$R/$name.log" >&2; exit 2; }
}
start_bare bare-http
start_bare bare-https --cert "$D/server.pem" --key "$D/server.key"
BARE_HTTP=http://127.0.0.1:$(cat "$R/bare-http.port")
BARE_HTTPS=https://127.0.0.1:$(cat "$R/bare-https.port")

# ---- instances: one with the review cache, one without, one verifying
# signatures.  A server without the feature refuses the field
# (unknown_field): the row is then "not supported".
REVIEWER=$(kc -X POST "$K/_test/tokens" -d '{"namespace":"kube-system","service_account":"keystone-reviewer","expires_in":86400}' | json "['token']")
CA_JSON=$(python3 -c "import json; print(json.dumps(open('$DEMO_CA').read()))")
RID=$(ac -X POST "$HTTPS_URL/v4/tokens/restrictions" -d '{"restriction": {"domain_id": "default", "user_id": "0d3a7e5d9c2b4f6e8a1b2c3d4e5f6a7b", "project_id": "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "roles": [{"id": "8c6f2a4e1b3d5f7a9c0e2b4d6f8a1c3e", "name": "member"}]}}' | json "['restriction']['id']")
# new_instance NAME EXTRA_FIELDS: creates the instance and its role "web";
# prints its id, or nothing when the server does not know a field.
new_instance() {
	ans=$(ac -X POST "$HTTPS_URL/v4/k8s_auth/instances" -d "{\"instance\": {\"domain_id\": \"default\", \"name\": \"bench-$1\", \"host\": \"$K\", \"ca_cert\": $CA_JSON, \"token_reviewer_jwt\": \"$REVIEWER\"$2}}")
	case $ans in
	*'"unknown_field"'*) return 0 ;;
	esac
	id=$(printf "%s\n" "$ans" | json "['instance']['id']") ||
		{ echo "bench: cannot create instance bench-$1: $ans" >&2; exit 2; }
	ac -o /dev/null -X POST "$HTTPS_URL/v4/k8s_auth/instances/$id/roles" -d "{\"role\": {\"name\": \"web\", \"bound_service_account_names\": [\"web\"], \"bound_service_account_namespaces\": [\"demo\"], \"bound_audience\": \"keystone\", \"token_restriction_id\": \"$RID\"}}"
	echo "$id"
}
CACHED=$(new_instance cached ", \"review_cache_ttl\": ${BENCH_CACHE_TTL:-10}")
UNCACHED=$(new_instance uncached ', "review_cache_ttl": 0')
[ -n "$UNCACHED" ] || UNCACHED=$IID # an older server reviews every login
FORGED=$(new_instance forged ", \"review_cache_ttl\": 0, ${BENCH_FORGED_FIELDS:-\"jwt_signature\": \"verify\"}")
FILL=$(new_instance fill ", \"review_cache_ttl\": ${BENCH_FILL_TTL:-300}")

# ---- request bodies: a login of about 1 KB (padded with JSON white
# space), the same with a forged signature, a TokenReview
pad_body() { # pad_body FILE JWT
	python3 - "$1" "$2" <<'EOF'
import sys
body = '{"k8s_role": "web", "jwt": "%s"}' % sys.argv[2]
body = body[:-1] + " " * max(0, 1024 - len(body)) + "}"
open(sys.argv[1], "w").write(body)
EOF
}
pad_body "$R/login.json" "$DEMO_JWT"
# A forged token: the genuine header and claims, the last signature byte
# changed (base64url "A" <-> "Q" keeps the encoding canonical).
FORGED_JWT=$(printf '%s' "$DEMO_JWT" | python3 -c "import sys; t=sys.stdin.read(); h,p,s=t.split('.'); s=s[:-2]+('Q' if s[-2]!='Q' else 'A')+s[-1]; print(h+'.'+p+'.'+s)")
pad_body "$R/forged.json" "$FORGED_JWT"
printf '{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "%s", "audiences": ["keystone"]}}' \
    "$DEMO_JWT" > "$R/review.json"
SUBJECT=$(kc -D - -o /dev/null -X POST --data-binary "@$R/login.json" \
    "$HTTPS_URL/v4/k8s_auth/instances/$IID/auth" |
    sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: *//p' | tr -d '\r')
[ -n "$SUBJECT" ] || { echo "bench: the first login failed" >&2; exit 2; }

# ---- BENCH_ROWS: the rows to run (shell patterns, e.g. "bare-* healthz.*
# login-cached.*"; default all; the bare rows are always run, they are the
# unit).  BENCH_PROFILE: a row pattern whose runs are profiled with
# `perf record -g` (BENCH_PROFILE_OPTS, e.g. "--call-graph dwarf") on the server
# (R/ROW.perf.data; perf report -i ...).
ROWS=${BENCH_ROWS:-*}
PROFILE=${BENCH_PROFILE:-}
PERF_PID=
# row_matches ROW PATTERNS: ROW matches one of the patterns (the words of
# PATTERNS, not expanded as file names).
row_matches() {
	set -f
	# shellcheck disable=SC2086
	set -- "$1" $2
	set +f
	# not "row": wrk_run's own variable (sh has no locals)
	candidate=$1
	shift
	for pat in "$@"; do
		# shellcheck disable=SC2254
		case $candidate in $pat) return 0 ;; esac
	done
	return 1
}
row_selected() {
	case $1 in
	bare-*) return 0 ;;
	# the uncached login's unit: measured whenever one of those is
	cluster)
		row_matches login-uncached.http "$ROWS" ||
		    row_matches login-uncached.https "$ROWS" ||
		    row_matches cluster "$ROWS"
		return
		;;
	esac
	row_matches "$1" "$ROWS"
}
profile_start() {
	if row_matches "$1" "$PROFILE"; then
		profile_record "$1"
	fi
}
profile_record() {
	perf record -q ${BENCH_PROFILE_OPTS:--g} -p "$PID" -o "$R/$1.perf.data" 2> "$R/$1.perf.log" &
	PERF_PID=$!
	sleep 0.5
}
profile_stop() {
	[ -n "$PERF_PID" ] || return 0
	kill -INT "$PERF_PID" 2>/dev/null || true
	wait "$PERF_PID" 2>/dev/null || true
	PERF_PID=
}

# ---- one wrk run: wrk_run ROW URL [VAR=VALUE...] -> a line in results:
# ROW RPS NON2XX REQUESTS P99
wrk_run() {
	row=$1 url=$2
	shift 2
	row_selected "$row" || return 0
	profile_start "$row"
	out=$(env BENCH_METHOD=GET BENCH_BODY_FILE= BENCH_AUTH= \
	    BENCH_SUBJECT= BENCH_BEARER= "$@" wrk -t"$THREADS" -c"$CONNS" \
	    -d"${SECS}s" --latency -s bench/request.lua "$url" 2>&1) || {
		echo "$out" >&2
		miss "$row: wrk failed"
		echo "$row 0 0 0 -" >> "$R/results"
		return 0
	}
	profile_stop
	rps=$(echo "$out" | awk '/^Requests\/sec/ { print int($2) }')
	total=$(echo "$out" | awk '/ requests in / { print $1 }')
	p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
	bad=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
	errs=$(echo "$out" | awk '/Socket errors/ { print }')
	echo "$row ${rps:-0} ${bad:-0} ${total:-0} ${p99:--}" >> "$R/results"
	printf 'bench:   %-22s %8s req/s  p99 %-8s non-2xx %s/%s %s\n' \
	    "$row" "${rps:-0}" "${p99:--}" "${bad:-0}" "${total:-0}" "$errs"
}
login() { # login ROW BASE_URL INSTANCE BODY_FILE
	wrk_run "$1" "$2/v4/k8s_auth/instances/$3/auth" BENCH_METHOD=POST \
	    BENCH_BODY_FILE="$4"
}
# The test cluster's count of TokenReviews served so far.
reviews() { kc "$K/_test/stats" | json "['tokenreviews']"; }
# login_counted ROW BASE_URL INSTANCE BODY_FILE MAX: a login row that may
# cause at most MAX TokenReviews ("-": only reported).
login_counted() {
	row_selected "$1" || return 0
	r0=$(reviews)
	login "$1" "$2" "$3" "$4"
	n=$(($(reviews) - r0))
	say "  $1: $n TokenReviews reached the cluster"
	if [ "$5" != - ] && [ "$n" -gt "$5" ]; then
		miss "$1: $n TokenReviews, at most $5 expected"
	fi
}

say "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), wrk -t$THREADS -c$CONNS -d${SECS}s, $WORKERS workers, login body $(wc -c < "$R/login.json") bytes"
IDLE_KIB=$(rss_kib)
say "idle rss $((IDLE_KIB / 1024)) MiB ($IDLE_KIB KiB)"

# The forged login must be a 401 without a TokenReview before it is worth
# measuring (the instance's keys are fetched asynchronously: allow 10 s).
if [ -n "$FORGED" ]; then
	i=0
	while :; do
		r0=$(reviews)
		code=$(kc -o /dev/null -w '%{http_code}' -X POST \
		    --data-binary "@$R/forged.json" \
		    "$HTTPS_URL/v4/k8s_auth/instances/$FORGED/auth")
		[ "$code" = 401 ] && [ "$(reviews)" = "$r0" ] && break
		i=$((i + 1))
		if [ $i -ge 100 ]; then
			miss "forged login: HTTP $code, reviews $r0 -> $(reviews); not a 401 without a review"
			break
		fi
		sleep 0.1
	done
fi

say "the test cluster alone (TokenReview, HTTPS, server idle):"
wrk_run cluster "$K/apis/authentication.k8s.io/v1/tokenreviews" \
    BENCH_METHOD=POST BENCH_BODY_FILE="$R/review.json" \
    BENCH_BEARER="$REVIEWER"
for scheme in http https; do
	if [ $scheme = http ]; then U=$HTTP_URL B=$BARE_HTTP; else U=$HTTPS_URL B=$BARE_HTTPS; fi
	say "over $scheme keep-alive:"
	wrk_run "bare-1.$scheme" "$B/v4/k8s_auth/instances/x/auth" \
	    BENCH_METHOD=POST BENCH_BODY_FILE="$R/login.json"
	wrk_run "healthz.$scheme" "$U/healthz"
	if [ -n "$CACHED" ]; then
		# one review per TTL window at most (and one to fill it)
		login_counted "login-cached.$scheme" "$U" "$CACHED" \
		    "$R/login.json" $((SECS / ${BENCH_CACHE_TTL:-10} + 2))
	fi
	login "login-uncached.$scheme" "$U" "$UNCACHED" "$R/login.json"
	wrk_run "validate.$scheme" "$U/v3/auth/tokens" \
	    BENCH_AUTH="$DEMO_ADMIN_TOKEN" BENCH_SUBJECT="$SUBJECT"
	wrk_run "admin-list.$scheme" "$U/v4/k8s_auth/instances" \
	    BENCH_AUTH="$DEMO_ADMIN_TOKEN"
	if [ -n "$FORGED" ]; then
		login_counted "forged.$scheme" "$U" "$FORGED" "$R/forged.json" 0
	fi
	wrk_run "bare-2.$scheme" "$B/v4/k8s_auth/instances/x/auth" \
	    BENCH_METHOD=POST BENCH_BODY_FILE="$R/login.json"
done
PEAK_KIB=$(awk '/^VmHWM/ { print $2 }' "/proc/$PID/status")

# ---- the cache fill: 100k distinct JWTs of the test cluster, one login
# each through the cache, RSS growth per entry
FILL_N=${BENCH_FILL:-100000}
FILL_BYTES=
if [ -n "$FILL" ] && [ "$FILL_N" -gt 0 ]; then
	say "filling the review cache with $FILL_N distinct JWTs..."
	FILL_BYTES=$(python3 bench/fill.py --k8s "$K" --cacert "$DEMO_CA" \
	    --url "$HTTP_URL" --instance "$FILL" --count "$FILL_N" \
	    --pid "$PID" --dir "$R") || miss "cache fill failed"
fi

# ---- the table: ratios and targets
python3 bench/report.py "$R/results" \
    --idle-kib "$IDLE_KIB" --peak-kib "$PEAK_KIB" \
    --fill-bytes "${FILL_BYTES:-}" \
    --cached "$([ -n "$CACHED" ] && echo yes || echo no)" \
    --forged "$([ -n "$FORGED" ] && echo yes || echo no)" || fail=1
exit $fail
