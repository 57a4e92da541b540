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
pids=
trap 'kill $pids 2>/dev/null || true' EXIT
i=0
for bin in $AB_BINS; do
	i=$((i + 1))
	port=$((DEMO_PORT + 10 + i))
	sed "s|^listen = .*|listen = http://127.0.0.1:$port|" \
	    "$D/keystone-k8s-auth.conf" > "$R/$i.conf"
	"$bin" serve --config "$R/$i.conf" 2> "$R/$i.log" &
	pids="$pids $!"
	n=0
	until curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; do
		sleep 0.1
		n=$((n + 1))
		[ $n -lt 100 ] || { cat "$R/$i.log" >&2; exit 1; }
	done
done
one() { # one ROUTE PORT -> req/s
	if [ "$1" = login ]; then
		BENCH_METHOD=POST BENCH_BODY_FILE="$R/login.json" BENCH_AUTH= \
		    BENCH_SUBJECT= wrk -t1 -c"$CONNS" -d"${SECS}s" \
		    -s bench/request.lua \
		    "http://127.0.0.1:$2/v4/k8s_auth/instances/$DEMO_INSTANCE/auth"
	else
		BENCH_METHOD=GET BENCH_BODY_FILE= BENCH_AUTH="$DEMO_ADMIN_TOKEN" \
		    BENCH_SUBJECT="$SUBJECT" wrk -t1 -c"$CONNS" -d"${SECS}s" \
		    -s bench/request.lua "http://127.0.0.1:$2/v3/auth/tokens"
	fi | awk '/Non-2xx/ { bad = 1 } /^Requests\/sec/ { r = $2 }
	    END { print (bad ? "ERR" : int(r)) }'
}
for route in login validate; do
	: > "$R/$route.sum"
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		r=$((r + 1))
		i=0
		for bin in $AB_BINS; do
			i=$((i + 1))
			echo "$i $(one $route $((DEMO_PORT + 10 + i)))" >> "$R/$route.sum"
		done
	done
	i=0
	for bin in $AB_BINS; do
		i=$((i + 1))
		awk -v i=$i -v bin="$bin" -v route=$route '
		    $1 == i { s += $2; n++; all = all " " $2 }
		    END { printf "ab: %-8s %-40s %7d req/s (runs%s)\n", route, bin, s / n, all }' \
		    "$R/$route.sum"
	done
done
