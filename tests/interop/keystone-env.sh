#!/bin/sh
# tests/interop/keystone-env.sh start|stop DIR
#
# A throw-away real Keystone (Debian 12's `keystone` package, 22.0.x) for the
# interoperability test, on loopback, without Apache and without touching the
# system Keystone's configuration or database:
#
#   start DIR  checks that keystone + uWSGI are installed (it installs
#              nothing: `./configure --install-deps` does), writes DIR/keystone.conf
#              (SQLite in WAL mode, Fernet tokens, key repositories in DIR),
#              runs db_sync / fernet_setup / credential_setup / bootstrap,
#              serves keystone-wsgi-public with uWSGI on 127.0.0.1:PORT
#              (PORT written to DIR/port), waits for GET /v3 and creates the
#              test fixtures through the REST API; every id and secret is
#              written to DIR/env.json.  Any previous state in DIR is wiped.
#   stop DIR   stops that uWSGI and removes DIR's runtime files (pid, port);
#              logs, database and keys stay for post-mortems.
#
# Exit status: 0 done; 77 the packages are not installed (callers report a
# skip, which CI counts as a failure); 1 anything else (callers must fail);
# 2 usage.
#
# Must run as root (keystone-manage writes root-owned keys).
# Environment: KEYSTONE_ENV_PROCESSES (uWSGI workers, default 2),
# KEYSTONE_ENV_TIMEOUT (seconds to wait for /v3, default 90).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
PROCESSES=${KEYSTONE_ENV_PROCESSES:-2}
TIMEOUT=${KEYSTONE_ENV_TIMEOUT:-90}
ADMIN_PASSWORD=interop-admin-secret
REGION=RegionOne
# What the environment needs from the distribution.
PACKAGES="keystone uwsgi uwsgi-plugin-python3"

say() {
	echo "keystone-env: $*" >&2
}

die() {
	say "error: $*"
	exit 1
}

# cannot_run: exit 77, the one status that lets a caller skip (keystone is
# not installed here); every other failure is 1.
cannot_run() {
	say "cannot run: $*"
	exit 77
}

usage() {
	echo "usage: $0 start|stop DIR" >&2
	exit 2
}

now() {
	date +%s
}

# installed: true when every binary and plugin the environment uses is there.
installed() {
	command -v keystone-manage >/dev/null 2>&1 || return 1
	command -v keystone-wsgi-public >/dev/null 2>&1 || return 1
	command -v uwsgi >/dev/null 2>&1 || return 1
	[ -f /usr/lib/uwsgi/plugins/python3_plugin.so ] || return 1
	command -v dpkg-query >/dev/null 2>&1 || return 0
	for p in $PACKAGES; do
		dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null |
		    grep -q '^install ok installed$' || return 1
	done
	return 0
}

# require_installed: exit 77 with what to do when a package is missing;
# the test suite never installs anything itself.
require_installed() {
	installed && return 0
	cannot_run "$PACKAGES not installed (./configure --install-deps installs them)"
}

# pid_alive FILE: the process named in a pid file still runs.
pid_alive() {
	[ -s "$1" ] || return 1
	kill -0 "$(cat "$1")" 2>/dev/null
}

# stop_uwsgi DIR: SIGTERM the master (die-on-term), then SIGKILL after 10 s.
stop_uwsgi() {
	pidfile=$1/uwsgi.pid
	if pid_alive "$pidfile"; then
		pid=$(cat "$pidfile")
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if kill -0 "$pid" 2>/dev/null; then
			say "uWSGI $pid ignored SIGTERM; SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidfile" "$1/port"
}

free_port() {
	"$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

write_conf() {
	dir=$1
	cat > "$dir/keystone.conf" <<-EOF
	# Written by tests/interop/keystone-env.sh; /etc/keystone is not read.
	[DEFAULT]
	log_file = $dir/keystone.log
	use_stderr = false
	debug = false

	[database]
	connection = sqlite:///$dir/keystone.db

	[token]
	provider = fernet
	expiration = 3600

	[assignment]
	# Keystone refuses a role implying admin by default; the tests need one
	# (keystone-k8s-auth must refuse it to a domain manager).
	prohibited_implied_role = k8s-never-implied

	[fernet_tokens]
	key_repository = $dir/fernet-keys
	max_active_keys = 3

	[fernet_receipts]
	key_repository = $dir/fernet-receipts

	[credential]
	key_repository = $dir/credential-keys

	[auth]
	methods = external,password,token,oauth1,mapped,application_credential

	[oslo_policy]
	policy_file = $dir/policy.yaml
	policy_dirs = $dir/policy.d

	[identity]
	# bcrypt's minimum: the fixtures create a dozen users.
	password_hash_rounds = 4

	[cache]
	enabled = false
	EOF
}

# manage ARGS: keystone-manage on DIR's configuration only; its chatter
# (eventlet tracebacks at exit) goes to DIR/keystone-manage.log.
manage() {
	echo "+ keystone-manage $1" >> "$DIR/keystone-manage.log"
	if ! keystone-manage --config-file "$DIR/keystone.conf" \
	    --config-dir "$DIR/keystone.conf.d" "$@" \
	    >> "$DIR/keystone-manage.log" 2>&1; then
		tail -n 30 "$DIR/keystone-manage.log" >&2
		die "keystone-manage $1 failed (see $DIR/keystone-manage.log)"
	fi
}

setup_keystone() {
	t0=$(now)
	rm -rf "$DIR/fernet-keys" "$DIR/fernet-receipts" \
	    "$DIR/credential-keys" "$DIR/policy.d" "$DIR/keystone.conf.d"
	rm -f "$DIR/keystone.db" "$DIR/keystone.db-wal" \
	    "$DIR/keystone.db-shm" "$DIR/keystone.log" "$DIR/uwsgi.log" \
	    "$DIR/env.json" "$DIR/policy.yaml" "$DIR/keystone-manage.log"
	mkdir -p "$DIR/policy.d" "$DIR/keystone.conf.d"
	write_conf "$DIR"
	manage db_sync
	sqlite3 "$DIR/keystone.db" 'PRAGMA journal_mode=WAL;' >/dev/null
	manage fernet_setup --keystone-user root --keystone-group root
	[ -f "$DIR/fernet-keys/0" ] || die "fernet_setup made no keys"
	manage receipt_setup --keystone-user root --keystone-group root
	manage credential_setup --keystone-user root --keystone-group root
	url=http://127.0.0.1:$PORT/v3/
	manage bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
	    --bootstrap-username admin \
	    --bootstrap-project-name admin \
	    --bootstrap-role-name admin \
	    --bootstrap-service-name keystone \
	    --bootstrap-region-id "$REGION" \
	    --bootstrap-admin-url "$url" \
	    --bootstrap-public-url "$url" \
	    --bootstrap-internal-url "$url"
	say "keystone-manage set-up in $(($(now) - t0)) s"
}

start_uwsgi() {
	t0=$(now)
	wsgi=$(command -v keystone-wsgi-public)
	# lazy-apps: every worker opens its own SQLite connection after fork.
	# "Connection: close": --http-socket serves one request per
	# connection; without the header keystoneauth (the openstack CLI)
	# reuses the connection and gets "connection reset by peer".
	OS_KEYSTONE_CONFIG_FILES=$DIR/keystone.conf \
	OS_KEYSTONE_CONFIG_DIR='' \
	uwsgi --plugin python3 \
	    --http-socket "127.0.0.1:$PORT" \
	    --wsgi-file "$wsgi" \
	    --master --processes "$PROCESSES" --threads 1 \
	    --lazy-apps --enable-threads --die-on-term --need-app \
	    --buffer-size 65535 \
	    --add-header 'Connection: close' \
	    --chdir "$DIR" \
	    --procname-prefix keystone-env- \
	    --pidfile "$DIR/uwsgi.pid" \
	    --daemonize "$DIR/uwsgi.log"
	echo "$PORT" > "$DIR/port"
	i=0
	while :; do
		code=$(curl -s -o /dev/null -w '%{http_code}' \
		    "http://127.0.0.1:$PORT/v3" 2>/dev/null) || code=000
		[ "$code" = 200 ] && break
		i=$((i + 1))
		if [ "$i" -gt $((TIMEOUT * 5)) ]; then
			tail -n 40 "$DIR/uwsgi.log" >&2 || true
			stop_uwsgi "$DIR"
			die "Keystone did not answer GET /v3 within $TIMEOUT s"
		fi
		if [ "$i" -gt 10 ] && ! pid_alive "$DIR/uwsgi.pid"; then
			tail -n 40 "$DIR/uwsgi.log" >&2 || true
			die "uWSGI exited (see $DIR/uwsgi.log)"
		fi
		sleep 0.2
	done
	say "Keystone answers on http://127.0.0.1:$PORT/v3" \
	    "($(($(now) - t0)) s)"
}

cmd_start() {
	t_start=$(now)
	require_installed
	mkdir -p "$DIR"
	DIR=$(cd "$DIR" && pwd)
	stop_uwsgi "$DIR"
	PORT=$(free_port)
	setup_keystone
	start_uwsgi
	t0=$(now)
	"$PYTHON" "$HERE/keystone_fixtures.py" "$DIR" \
	    "http://127.0.0.1:$PORT" "$ADMIN_PASSWORD" ||
	    { stop_uwsgi "$DIR"; die "fixtures failed"; }
	say "fixtures created in $(($(now) - t0)) s"
	say "started in $(($(now) - t_start)) s; ids and secrets in $DIR/env.json"
}

cmd_stop() {
	[ -d "$DIR" ] || return 0
	DIR=$(cd "$DIR" && pwd)
	stop_uwsgi "$DIR"
}

[ $# -eq 2 ] || usage
DIR=$2
trap 'exit 130' INT TERM
case "$1" in
start) cmd_start ;;
stop) cmd_stop ;;
*) usage ;;
esac
