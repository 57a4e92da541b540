#!/bin/sh
# bench/ab_measure.sh: run by tests/demo/demo.sh for bench/ab.sh.
set -eu
D=$DEMO_DIR
R=$D/ab
mkdir -p "$R"
ROUNDS=${AB_ROUNDS:-3}
SECS=${AB_SECONDS:-5}
CONNS=${AB_CONNECTIONS:-16}
python3 -c "import sys; open(sys.argv[1], 'w').write('{\"k8s_role\": \"web\", \"jwt\": \"%s\"}' % sys.argv[2])" \
    "$R/login.json" "$DEMO_JWT"
SUBJECT=$(curl -sS --cacert "$DEMO_CA" -D - -o /dev/null \
    -H 'Content-Type: application/json' --data-binary "@$R/login.json" \
    "$DEMO_URL/v4/k8s_auth/instances/$DEMO_INSTANCE/auth" |
    sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: *//p' | tr -d '\r')
# AB_ROUTES: login (the demo instance: review_cache_ttl at its default,
# so one review per 10 s, not per login), login-uncached (an instance with
# review_cache_ttl 0: a TokenReview every login), login-cached (an
# instance with review_cache_ttl 60), validate, healthz; a ".https"
# suffix runs the route over the binary's HTTPS listener instead of plain
# HTTP.
ROUTES=${AB_ROUTES:-login validate}
kc() { curl -sS --cacert "$DEMO_CA" -H 'Content-Type: application/json' "$@"; }
ac() { kc -H "X-Auth-Token: $DEMO_ADMIN_TOKEN" "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
UNCACHED=
case $ROUTES in
*login-uncached*)
	REVIEWER=$(kc -X POST "$DEMO_K8S/_test/tokens" -d '{"namespace":"kube-system","service_account":"keystone-reviewer","expires_in":86400}' | json "['token']")
	CA_JSON=$(python3 -c "import json,sys; print(json.dumps(open(sys.argv[1]).read()))" "$DEMO_CA")
	UNCACHED=$(ac -X POST "$DEMO_URL/v4/k8s_auth/instances" -d "{\"instance\": {\"domain_id\": \"default\", \"name\": \"ab-uncached\", \"host\": \"$DEMO_K8S\", \"ca_cert\": $CA_JSON, \"token_reviewer_jwt\": \"$REVIEWER\", \"review_cache_ttl\": 0}}" | json "['instance']['id']")
	RID=$(ac -X POST "$DEMO_URL/v4/tokens/restrictions" -d '{"restriction": {"domain_id": "default", "user_id": "0d3a7e5d9c2b4f6e8a1b2c3d4e5f6a7b", "project_id": "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "roles": [{"id": "8c6f2a4e1b3d5f7a9c0e2b4d6f8a1c3e", "name": "member"}]}}' | json "['restriction']['id']")
	ac -o /dev/null -X POST "$DEMO_URL/v4/k8s_auth/instances/$UNCACHED/roles" -d "{\"role\": {\"name\": \"web\", \"bound_service_account_names\": [\"web\"], \"bound_service_account_namespaces\": [\"demo\"], \"bound_audience\": \"keystone\", \"token_restriction_id\": \"$RID\"}}"
	;;
esac
CACHED=
case $ROUTES in
*login-cached*)
	REVIEWER=$(kc -X POST "$DEMO_K8S/_test/tokens" -d '{"namespace":"kube-system","service_account":"keystone-reviewer","expires_in":86400}' | json "['token']")
	CA_JSON=$(python3 -c "import json,sys; print(json.dumps(open(sys.argv[1]).read()))" "$DEMO_CA")
	CACHED=$(ac -X POST "$DEMO_URL/v4/k8s_auth/instances" -d "{\"instance\": {\"domain_id\": \"default\", \"name\": \"ab-cached\", \"host\": \"$DEMO_K8S\", \"ca_cert\": $CA_JSON, \"token_reviewer_jwt\": \"$REVIEWER\", \"review_cache_ttl\": 60}}" | json "['instance']['id']")
	RID=$(ac -X POST "$DEMO_URL/v4/tokens/restrictions" -d '{"restriction": {"domain_id": "default", "user_id": "0d3a7e5d9c2b4f6e8a1b2c3d4e5f6a7b", "project_id": "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "roles": [{"id": "8c6f2a4e1b3d5f7a9c0e2b4d6f8a1c3e", "name": "member"}]}}' | json "['restriction']['id']")
	ac -o /dev/null -X POST "$DEMO_URL/v4/k8s_auth/instances/$CACHED/roles" -d "{\"role\": {\"name\": \"web\", \"bound_service_account_names\": [\"web\"], \"bound_service_account_namespaces\": [\"demo\"], \"bound_audience\": \"keystone\", \"token_restriction_id\": \"$RID\"}}"
	;;
esac
pids=
trap 'kill $pids 2>/dev/null || true' EXIT
i=0
for bin in $AB_BINS; do
	i=$((i + 1))
	port=$((DEMO_PORT + 10 + i))
	sed "s|^listen = .*|listen = http://127.0.0.1:$port,https://127.0.0.1:$((port + 20))|" \
	    "$D/keystone-k8s-auth.conf" > "$R/$i.conf"
	"$bin" serve --config "$R/$i.conf" 2> "$R/$i.log" &
	pids="$pids $!"
	echo $! > "$R/$i.pid"
	n=0
	until curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; do
		sleep 0.1
		n=$((n + 1))
		[ $n -lt 100 ] || { cat "$R/$i.log" >&2; exit 1; }
	done
done
# cpu_ticks PID: the process's user + system time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
one() { # one ROUTE PORT -> req/s requests
	u=http://127.0.0.1:$2
	case $1 in *.https) u=https://127.0.0.1:$(($2 + 20)) ;; esac
	case $1 in
	login | login.https)
		BENCH_METHOD=POST BENCH_BODY_FILE="$R/login.json" BENCH_AUTH= \
		    BENCH_SUBJECT= wrk -t1 -c"$CONNS" -d"${SECS}s" \
		    -s bench/request.lua \
		    "$u/v4/k8s_auth/instances/$DEMO_INSTANCE/auth" ;;
	login-uncached | login-uncached.https)
		BENCH_METHOD=POST BENCH_BODY_FILE="$R/login.json" BENCH_AUTH= \
		    BENCH_SUBJECT= wrk -t1 -c"$CONNS" -d"${SECS}s" \
		    -s bench/request.lua \
		    "$u/v4/k8s_auth/instances/$UNCACHED/auth" ;;
	login-cached | login-cached.https)
		BENCH_METHOD=POST BENCH_BODY_FILE="$R/login.json" BENCH_AUTH= \
		    BENCH_SUBJECT= wrk -t1 -c"$CONNS" -d"${SECS}s" \
		    -s bench/request.lua \
		    "$u/v4/k8s_auth/instances/$CACHED/auth" ;;
	healthz | healthz.https)
		BENCH_METHOD=GET BENCH_BODY_FILE= BENCH_AUTH= BENCH_SUBJECT= \
		    wrk -t1 -c"$CONNS" -d"${SECS}s" -s bench/request.lua \
		    "$u/healthz" ;;
	*)
		BENCH_METHOD=GET BENCH_BODY_FILE= BENCH_AUTH="$DEMO_ADMIN_TOKEN" \
		    BENCH_SUBJECT="$SUBJECT" wrk -t1 -c"$CONNS" -d"${SECS}s" \
		    -s bench/request.lua "$u/v3/auth/tokens" ;;
	esac | awk '/Non-2xx/ { bad = 1 } /^Requests\/sec/ { r = $2 }
	    / requests in / { n = $1 }
	    END { print (bad ? "ERR" : int(r)), n + 0 }'
}
# AB_ALLOCS=1: also count the server's malloc + calloc + realloc calls
# during each run with perf uprobes on libc (needs root; the probes are
# added here and removed at exit), printed per request.
ALLOC_PID=
LIBC=
if [ -n "${AB_ALLOCS:-}" ]; then
	LIBC=$(awk '$NF ~ /\/libc\.so\.6$/ { print $NF; exit }' \
	    "/proc/$(cat "$R/1.pid")/maps")
	for f in malloc calloc realloc; do
		perf probe -q -x "$LIBC" -a "ab_$f=$f" 2>/dev/null || true
	done
	# A first count right after the probes appear can come out empty.
	perf stat -e probe_libc:ab_malloc -p "$(cat "$R/1.pid")" sleep 1 \
	    >/dev/null 2>&1 || true
	trap 'kill $pids 2>/dev/null || true; perf probe -q -d "probe_libc:ab_*" 2>/dev/null || true' EXIT
fi
allocs_start() {
	[ -n "$LIBC" ] || return 0
	perf stat -x, -o "$R/allocs" -e probe_libc:ab_malloc \
	    -e probe_libc:ab_calloc -e probe_libc:ab_realloc -p "$1" &
	ALLOC_PID=$!
	sleep 0.3
}
allocs_stop() { # -> ALLOCS
	ALLOCS=0
	[ -n "$ALLOC_PID" ] || return 0
	kill -INT "$ALLOC_PID" 2>/dev/null || true
	wait "$ALLOC_PID" 2>/dev/null || true
	ALLOC_PID=
	ALLOCS=$(awk -F, '$3 ~ /probe_libc/ { n += $1 } END { print n + 0 }' \
	    "$R/allocs")
}
for route in $ROUTES; do
	: > "$R/$route.sum"
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		r=$((r + 1))
		i=0
		for bin in $AB_BINS; do
			i=$((i + 1))
			pid=$(cat "$R/$i.pid")
			allocs_start "$pid"
			t0=$(cpu_ticks "$pid")
			res=$(one $route $((DEMO_PORT + 10 + i)))
			t1=$(cpu_ticks "$pid")
			allocs_stop # not in $(...): it must wait for its perf
			echo "$i $res $((t1 - t0)) $ALLOCS" >> "$R/$route.sum"
		done
	done
	i=0
	for bin in $AB_BINS; do
		i=$((i + 1))
		awk -v i=$i -v bin="$bin" -v route=$route '
		    $1 == i { s += $2; n++; all = all " " $2; req += $3; tk += $4; al += $5 }
		    END { printf "ab: %-18s %-28s %7d req/s (runs%s), %4.0f us CPU per request%s\n",
		        route, bin, s / n, all, tk * 1e6 / hz / req,
		        allocs ? sprintf(", %.1f allocations per request", al / req) : "" }' \
		    hz="$(getconf CLK_TCK)" allocs="${AB_ALLOCS:-}" \
		    "$R/$route.sum"
	done
done
