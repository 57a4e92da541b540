#!/bin/sh
# demo.sh: the quick start.  Creates a local state directory (./demo/),
# starts the test Kubernetes API server and keystone-k8s-auth on loopback,
# shows a full JWT-for-token exchange with curl, then keeps the server
# running in the foreground until Ctrl-C.
#
# Run from the repository root after a build: `make demo`.
# DEMO_DATABASE: a [database] connection URL instead of the SQLite file in
# the state directory (bench/run.sh's BENCH_DB=mysql passes a private
# MariaDB's); its database must be empty.
set -eu
cd "$(dirname "$0")/../.."
BIN=./keystone-k8s-auth
K8S=./tests/k8s/fake-k8s
D=${DEMO_DIR:-$PWD/demo}
PORT=${DEMO_PORT:-5088}
[ -x "$BIN" ] && [ -x "$K8S" ] || { echo "demo: build first (make demo)" >&2; exit 1; }
command -v curl >/dev/null || { echo "demo: curl is needed" >&2; exit 1; }

mkdir -p "$D"
chmod 700 "$D"
if [ ! -f "$D/ca.pem" ]; then
	echo "== creating a local CA and certificates in $D"
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=demo CA" \
	    -keyout "$D/ca.key" -out "$D/ca.pem" 2>/dev/null
	for name in server k8s; do
		openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
		    -keyout "$D/$name.key" -out "$D/$name.csr" 2>/dev/null
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$D/$name.ext"
		openssl x509 -req -in "$D/$name.csr" -CA "$D/ca.pem" \
		    -CAkey "$D/ca.key" -CAcreateserial -days 365 \
		    -extfile "$D/$name.ext" -out "$D/$name.pem" 2>/dev/null
	done
	chmod 600 "$D"/*.key
fi
cat > "$D/keystone-k8s-auth.conf" <<EOC
# Written by tests/demo/demo.sh: a self-contained local set-up.
[server]
listen = https://127.0.0.1:$PORT${DEMO_LISTEN_EXTRA:+,$DEMO_LISTEN_EXTRA}
tls_cert = $D/server.pem
tls_key = $D/server.key
workers = 2
[database]
connection = ${DEMO_DATABASE:-sqlite:///$D/keystone-k8s-auth.db}
[fernet_tokens]
key_repository = $D/fernet-keys
[credential]
key_repository = $D/credential-keys
[bootstrap]
admin_token_file = $D/admin-token
[policy]
dir = $D/policy
EOC
C="--config $D/keystone-k8s-auth.conf"
$BIN fernet-setup $C >/dev/null
$BIN credential-setup $C >/dev/null
[ -f "$D/admin-token" ] || $BIN bootstrap $C >/dev/null
# Every run of the demo starts from an empty database.
rm -f "$D/keystone-k8s-auth.db" "$D/keystone-k8s-auth.db-wal" \
    "$D/keystone-k8s-auth.db-shm"
$BIN db-sync $C >/dev/null

pids=
cleanup() {
	# shellcheck disable=SC2086
	[ -n "$pids" ] && kill $pids 2>/dev/null
	wait 2>/dev/null
}
trap cleanup EXIT INT TERM

echo "== starting the test Kubernetes API server"
rm -f "$D/k8s.port"
$K8S --listen 127.0.0.1:0 --cert "$D/k8s.pem" --key "$D/k8s.key" \
    --port-file "$D/k8s.port" 2> "$D/k8s.log" &
pids="$!"
i=0
while [ ! -s "$D/k8s.port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
KPORT=$(cat "$D/k8s.port")
K="https://127.0.0.1:$KPORT"
kc() { curl -sS --cacert "$D/ca.pem" -H 'Content-Type: application/json' "$@"; }

echo "== starting keystone-k8s-auth on https://127.0.0.1:$PORT"
$BIN serve $C 2> "$D/server.log" &
pids="$pids $!"
U="https://127.0.0.1:$PORT"
i=0
until kc -o /dev/null "$U/healthz" 2>/dev/null; do
	sleep 0.1
	i=$((i + 1))
	[ $i -lt 100 ] || { cat "$D/server.log"; exit 1; }
done
TOKEN=$(cat "$D/admin-token")
ac() { kc -H "X-Auth-Token: $TOKEN" "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "== in the cluster: service account demo/web, pod web-0, a reviewer"
kc -o /dev/null -X POST "$K/_test/serviceaccounts" -d '{"namespace":"demo","name":"web"}'
kc -o /dev/null -X POST "$K/_test/pods" -d '{"namespace":"demo","name":"web-0","service_account":"web","node":"node-1"}'
kc -o /dev/null -X POST "$K/_test/serviceaccounts" -d '{"namespace":"kube-system","name":"keystone-reviewer"}'
kc -o /dev/null -X POST "$K/_test/reviewers" -d '{"namespace":"kube-system","name":"keystone-reviewer"}'
REVIEWER=$(kc -X POST "$K/_test/tokens" -d '{"namespace":"kube-system","service_account":"keystone-reviewer","expires_in":86400}' | json "['token']")
JWT=$(kc -X POST "$K/_test/tokens" -d '{"namespace":"demo","service_account":"web","pod":"web-0","audiences":["keystone"]}' | json "['token']")

echo "== admin: token restriction, instance (the cluster) and role"
RID=$(ac -X POST "$U/v4/tokens/restrictions" -d '{"restriction": {"domain_id": "default", "user_id": "0d3a7e5d9c2b4f6e8a1b2c3d4e5f6a7b", "project_id": "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "roles": [{"id": "8c6f2a4e1b3d5f7a9c0e2b4d6f8a1c3e", "name": "member"}]}}' | json "['restriction']['id']")
CA_JSON=$(python3 -c "import json; print(json.dumps(open('$D/ca.pem').read()))")
IID=$(ac -X POST "$U/v4/k8s_auth/instances" -d "{\"instance\": {\"domain_id\": \"default\", \"name\": \"demo-cluster\", \"host\": \"$K\", \"ca_cert\": $CA_JSON, \"token_reviewer_jwt\": \"$REVIEWER\"}}" | json "['instance']['id']")
ac -o /dev/null -X POST "$U/v4/k8s_auth/instances/$IID/roles" -d "{\"role\": {\"name\": \"web\", \"bound_service_account_names\": [\"web\"], \"bound_service_account_namespaces\": [\"demo\"], \"bound_audience\": \"keystone\", \"token_restriction_id\": \"$RID\"}}"

echo "== the pod logs in: POST $U/v4/k8s_auth/instances/$IID/auth"
kc -D "$D/login.headers" -X POST "$U/v4/k8s_auth/instances/$IID/auth" \
    -d "{\"k8s_role\": \"web\", \"jwt\": \"$JWT\"}" | python3 -m json.tool
SUBJECT=$(sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: *//p' "$D/login.headers" | tr -d '\r')
echo "X-Subject-Token: $(printf '%s' "$SUBJECT" | cut -c1-24)..."
echo "== and the token validates: GET $U/v3/auth/tokens"
ac -o /dev/null -w 'HTTP %{http_code}\n' -H "X-Subject-Token: $SUBJECT" "$U/v3/auth/tokens"

# DEMO_THEN: run a command against the running set-up instead of waiting
# (bench/run.sh uses it); the variables below describe the set-up.
if [ -n "${DEMO_THEN:-}" ]; then
	export DEMO_URL="$U" DEMO_INSTANCE="$IID" DEMO_JWT="$JWT" \
	    DEMO_ADMIN_TOKEN="$TOKEN" DEMO_K8S="$K" DEMO_CA="$D/ca.pem" \
	    DEMO_SERVER_PID="${pids##* }" DEMO_DIR="$D"
	sh -c "$DEMO_THEN"
	exit $?
fi

cat <<EOM

keystone-k8s-auth is running at $U (state in $D, log in $D/server.log).
Try it:
  export OS_TOKEN=\$(cat $D/admin-token)
  curl --cacert $D/ca.pem -H "X-Auth-Token: \$OS_TOKEN" $U/v4/k8s_auth/instances
  curl --cacert $D/ca.pem -H "X-Auth-Token: \$OS_TOKEN" $U/v4/k8s_auth/instances/$IID/roles
Press Ctrl-C to stop.
EOM
wait
