#!/bin/sh
# tests/packaging/test_systemd.sh: the .deb under a real systemd.
#
# Builds the .deb, makes a Debian 12 root with debootstrap (systemd, dbus,
# acl and the .deb's dependencies; cached as a tarball under
# tests/tmp/systemd-cache/, keyed by that package list), boots it with
# `systemd-nspawn -b --register=no --keep-unit` (the host's network: no
# --private-network) and reaches its systemd with `nsenter -t PID1 -a`.
# Inside, the .deb is installed by dpkg under the running systemd, and
# Keystone's key repository is laid out as the keystone package leaves it
# (user and group keystone, /etc/keystone 0750, fernet-keys 0700, keys
# 0600, all keystone's), then the ACL recipe of keystone-k8s-auth(8), KEY
# ACCESS, is applied: the setfacl lines are taken from the man page itself,
# so the test follows exactly what operators are told.  The test
# Kubernetes API server (tests/k8s/fake-k8s, built on the host) runs on the
# host's loopback with its own CA.
#
# Checked: the unit is neither enabled nor started by the install; without
# the ACL `systemctl start` itself fails (Type=notify: no READY=1), the
# server exits 1, is not retried, and its message naming the repository is
# in `journalctl -p err`; with it `systemctl start` returns once /healthz
# answers (READY=1), the unit is active, an instance,
# restriction and role made through the admin API give a login over TLS
# whose token is a Fernet token signed with Keystone's primary key and
# validates; the service's user namespace (PrivateUsers=yes) shows
# Keystone's files as nobody yet the ACL grants the read; `systemctl
# reload` swaps a policy (login 200 -> 401 policy_denied -> 200); kill -9
# of the main PID is restarted by systemd; `systemctl stop` during an
# in-flight login drains it and exits 0 within the unit's TimeoutStopSec;
# the journal since the good start has no line at priority err (the server
# prefixes each line with its priority when stderr is the journal) nor
# any "error:" line, and has the server's info lines at priority info;
# `systemd-analyze security`
# exposure is printed and must stay <= 2.0.
#
# Needs root, debootstrap, systemd-nspawn (systemd-container), nsenter,
# openssl, curl, python3, dpkg-buildpackage, a built tests/k8s/fake-k8s
# (make tools) and the Debian mirror (only for a cold root; the mirror is
# K8SAUTH_DEBIAN_MIRROR, default http://deb.debian.org/debian).  A machine
# that cannot do it reports a SKIP (a FAIL under K8SAUTH_TEST_NO_SKIP=1).
# SKIP_BUILD=1 reuses the .deb; K8SAUTH_KEEP_TMP=1 keeps tests/tmp/systemd;
# K8SAUTH_SYSTEMD_CACHE=DIR keeps the cached root elsewhere (a CI machine
# that starts from a fresh clone can keep it between runs there).
# The container, its processes and the fake cluster are removed on every
# exit (trap).
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/packaging/lib.sh

PKG=keystone-k8s-auth
SUITE=bookworm
MIRROR=${K8SAUTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
top=$(pwd)
version=$(sed -n 's/^version=//p' configure)
deb=${PKG}_${version}_$(dpkg --print-architecture 2>/dev/null || echo amd64).deb
work=$top/tests/tmp/systemd
cache=${K8SAUTH_SYSTEMD_CACHE:-$top/tests/tmp/systemd-cache}
root=$work/root
machine=k8sauth-systemd-$$
nspawn=
cpid=
fk=
t_start=$(date +%s)

# stop_container: power the container off (SIGTERM makes nspawn ask its
# systemd for a clean shutdown), kill it after 20 s, and unmount anything
# left under the root.
stop_container() {
	if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
		kill -TERM "$nspawn" 2>/dev/null
		i=0
		while kill -0 "$nspawn" 2>/dev/null && [ $i -lt 200 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if kill -0 "$nspawn" 2>/dev/null; then
			echo "test_systemd.sh: the container did not power off in 20 s; killing it"
			[ -n "$cpid" ] && kill -KILL "$cpid" 2>/dev/null
			kill -KILL "$nspawn" 2>/dev/null
		fi
		wait "$nspawn" 2>/dev/null
	fi
	nspawn=
	cpid=
	# nspawn mounts in its own namespace; this catches anything else.
	awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' \
	    /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null
	done
}

cleanup() {
	stop_container
	if [ -n "$fk" ]; then
		kill -TERM "$fk" 2>/dev/null
		wait "$fk" 2>/dev/null
	fi
	if [ "${K8SAUTH_KEEP_TMP:-0}" = 1 ]; then
		echo "test_systemd.sh: kept $work"
	else
		rm -rf "$root" "$work/bootstrap"
	fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

# cannot MESSAGE: this machine cannot run the test: one counted skip (a
# failure under K8SAUTH_TEST_NO_SKIP=1), then the closing line.
cannot() {
	skip "test_systemd.sh cannot run here: $*"
	echo "$passed passed, $failed failed, $skipped skipped"
	exit $((failed > 0))
}

# inside CMD...: run CMD in every namespace of the container.
inside() { nsenter -t "$cpid" -a -- "$@"; }

# unit_prop NAME: a property of the service.
unit_prop() { inside systemctl show -p "$1" --value "$PKG.service" 2>/dev/null; }

# wait_until SECONDS CMD...: poll CMD every 0.2 s; false on timeout.
wait_until() {
	n=$(($1 * 5))
	shift
	while [ "$n" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
		n=$((n - 1))
	done
	return 1
}

[ "$(id -u)" -eq 0 ] || cannot "needs root"
for tool in debootstrap systemd-nspawn nsenter openssl curl python3 \
    dpkg-buildpackage tar; do
	command -v "$tool" >/dev/null 2>&1 ||
		cannot "no $tool (./configure --install-deps installs it)"
done
rm -rf "$work"
mkdir -p "$work" "$cache"
# The test cluster runs on the host; build it when the tree has not (CI's
# packages stage starts from a distclean tree and only configures it).
if [ ! -x tests/k8s/fake-k8s ]; then
	if ${MAKE:-make} tests/k8s/fake-k8s > "$work/fake-k8s.log" 2>&1; then
		pass "builds tests/k8s/fake-k8s"
	else
		tail -n 20 "$work/fake-k8s.log"
		fail "cannot build tests/k8s/fake-k8s (./configure first)"
		finish
	fi
fi

# -- the .deb -----------------------------------------------------------------
# The unit tests ran in test_deb.sh's build; this one only needs the package.
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f "$deb" ]; then
	start=$(date +%s)
	if DEB_BUILD_OPTIONS="nocheck ${DEB_BUILD_OPTIONS:-}" \
	    sh packaging/deb/build.sh > "$work/build.log" 2>&1; then
		pass "make deb (nocheck) builds $deb in $(($(date +%s) - start)) s"
	else
		tail -n 30 "$work/build.log"
		fail "make deb"
		finish
	fi
fi

# -- the Debian 12 root (cached) ----------------------------------------------
# The .deb's Depends, first alternative, without versions.
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' |
    sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' | grep . |
    grep -v '^\$' | sort -u | paste -sd, -)
include=systemd,systemd-sysv,dbus,acl,$deps
key=$(printf '%s %s %s\n' "$SUITE" "$MIRROR" "$include" | sha256sum | cut -c1-16)
tarball=$cache/debian-$SUITE-$key.tar
if [ ! -f "$tarball" ]; then
	echo "test_systemd.sh: no cached root; debootstrap $SUITE ($include)"
	start=$(date +%s)
	rm -rf "$work/bootstrap"
	if debootstrap --variant=minbase --include="$include" "$SUITE" \
	    "$work/bootstrap" "$MIRROR" > "$work/debootstrap.log" 2>&1; then
		rm -rf "$work/bootstrap/var/cache/apt/archives/"*.deb \
		    "$work/bootstrap/var/lib/apt/lists/"*_* 2>/dev/null
		# Roots for another package list are stale now.
		rm -f "$cache"/debian-"$SUITE"-*.tar
		tar --numeric-owner --xattrs --acls -C "$work/bootstrap" \
		    -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
		rm -rf "$work/bootstrap"
		echo "test_systemd.sh: cold root made and cached in $(($(date +%s) - start)) s"
	else
		tail -n 20 "$work/debootstrap.log"
		rm -rf "$work/bootstrap" "$tarball.tmp"
		cannot "debootstrap $SUITE from $MIRROR failed (see above)"
	fi
fi
mkdir -p "$root"
if ! tar --numeric-owner --xattrs --acls -C "$root" -xf "$tarball"; then
	rm -f "$tarball"
	fail "unpack the cached root $tarball (removed; the next run rebuilds it)"
	finish
fi
echo "$machine" > "$root/etc/hostname"
: > "$root/etc/machine-id"
cp "$deb" "$root/root/$deb"
# The container's own Keystone user (the keystone package's layout) exists
# before boot, as it would on a Keystone node.
chroot "$root" groupadd --system keystone
chroot "$root" useradd --system --gid keystone --home-dir /var/lib/keystone \
    --no-create-home --shell /usr/sbin/nologin keystone

# -- the test Kubernetes API server on the host's loopback -------------------
k8s=$work/k8s
mkdir -p "$k8s"
(
	cd "$k8s" &&
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=fake-k8s-ca \
	    -keyout ca.key -out ca.pem &&
	openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
	    -keyout srv.key -out srv.csr &&
	echo subjectAltName=IP:127.0.0.1 > srv.ext &&
	openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key \
	    -CAcreateserial -days 2 -extfile srv.ext -out srv.pem
) > "$k8s/openssl.log" 2>&1 || { cat "$k8s/openssl.log"; fail "CA for fake-k8s"; finish; }
tests/k8s/fake-k8s --listen 127.0.0.1:0 --cert "$k8s/srv.pem" \
    --key "$k8s/srv.key" --port-file "$k8s/port" --quiet \
    > /dev/null 2> "$k8s/fake-k8s.log" &
fk=$!
wait_until 10 test -s "$k8s/port" || { fail "fake-k8s wrote no port"; finish; }
fkport=$(cat "$k8s/port")

# fkapi METHOD PATH [JSON]: the fake's control API; prints the body.
fkapi() {
	curl -sS --cacert "$k8s/ca.pem" -X "$1" -H 'Content-Type: application/json' \
	    ${3:+--data-binary "$3"} "https://127.0.0.1:$fkport$2"
}

# jget KEY.KEY... < JSON: one field of a JSON document.
jget() {
	python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[k]
print(v)' "$1"
}

# -- boot ---------------------------------------------------------------------
systemd-nspawn -q -D "$root" -M "$machine" -b --register=no --keep-unit \
    --console=read-only > "$work/boot.log" 2>&1 &
nspawn=$!
# The container's PID 1 is the child of the nspawn process.
find_init() {
	cpid=$(pgrep -P "$nspawn" 2>/dev/null | head -n 1)
	[ -n "$cpid" ] && [ "$(cat /proc/"$cpid"/comm 2>/dev/null)" = systemd ]
}
if ! wait_until 30 find_init; then
	tail -n 30 "$work/boot.log"
	cannot "systemd-nspawn -b did not start a systemd in 30 s (boot log above)"
fi
boot_ok() {
	s=$(inside systemctl is-system-running 2>/dev/null)
	[ "$s" = running ] || [ "$s" = degraded ]
}
if ! wait_until 90 boot_ok; then
	tail -n 30 "$work/boot.log"
	cannot "the container's systemd did not finish booting in 90 s: $(inside systemctl is-system-running 2>&1)"
fi
pass "the Debian $SUITE root boots under systemd-nspawn in $(($(date +%s) - t_start)) s since the start of the test"
state=$(inside systemctl is-system-running 2>/dev/null)
if [ "$state" = degraded ]; then
	echo "test_systemd.sh: the container is degraded; failed units:"
	inside systemctl --failed --no-pager --plain
fi

# -- install ------------------------------------------------------------------
if inside env DEBIAN_FRONTEND=noninteractive dpkg -i "/root/$deb" \
    > "$work/install.log" 2>&1; then
	pass "dpkg -i $deb under the running systemd"
else
	cat "$work/install.log"
	fail "dpkg -i $deb"
	finish
fi
check "postinst reported no failed step" \
    sh -c "! grep -q '$PKG: warning' '$work/install.log'"
check_eq "the install does not enable the unit" disabled \
    "$(inside systemctl is-enabled "$PKG" 2>/dev/null)"
check_eq "the install does not start the unit" inactive \
    "$(inside systemctl is-active "$PKG" 2>/dev/null)"
check "systemctl knows the unit (daemon-reloaded by the install)" \
    inside systemctl cat "$PKG.service"

# -- Keystone's key repository as the keystone package leaves it -------------
inside install -d -o keystone -g keystone -m 0750 /etc/keystone
inside install -d -o keystone -g keystone -m 0700 /etc/keystone/fernet-keys
# mkkey N: a key as keystone-manage writes it: as keystone, umask 0177,
# 32 random bytes in urlsafe base64, written aside and renamed.
mkkey() {
	inside runuser -u keystone -- sh -c "umask 0177 && cd /etc/keystone/fernet-keys &&
	    head -c 32 /dev/urandom | base64 | tr '+/' '-_' > .tmp.$1 && mv .tmp.$1 $1"
}
mkkey 0 && mkkey 1
# The container's names (its uids differ from the host's).
cmode() { inside stat -c '%a %U:%G' "$1" 2>&1; }
check_eq "Keystone's /etc/keystone: 750 keystone:keystone" \
    "750 keystone:keystone" "$(cmode /etc/keystone)"
check_eq "Keystone's repository: 700 keystone:keystone" \
    "700 keystone:keystone" "$(cmode /etc/keystone/fernet-keys)"
check_eq "Keystone's key 1: 600 keystone:keystone" "600 keystone:keystone" \
    "$(cmode /etc/keystone/fernet-keys/1)"

# The configuration: listen on a free port of the (shared) loopback.
port=$(free_port)
conf=$root/etc/$PKG/$PKG.conf
sed -i "s|^#listen = .*|listen = https://127.0.0.1:$port|" "$conf"
check "the configuration listens on 127.0.0.1:$port" \
    grep -qx "listen = https://127.0.0.1:$port" "$conf"
cacert=$root/etc/$PKG/tls/cert.pem
admin=$(cat "$root/etc/$PKG/admin-token")
url=https://127.0.0.1:$port

# -- without the ACL: one failed start, not retried ---------------------------
# Type=notify: systemctl start waits for READY=1, which a server that
# cannot read its keys never sends, so the start itself fails.
inside systemctl start "$PKG" > "$work/start0.log" 2>&1
rc0=$?
check "without the ACL systemctl start fails (exit $rc0, not 0)" test "$rc0" -ne 0
failed_state() { [ "$(inside systemctl is-active "$PKG")" = failed ]; }
check "without the ACL the unit fails" wait_until 15 failed_state
check_eq "without the ACL the main process exits 1" 1 "$(unit_prop ExecMainStatus)"
# RestartSec=2s: a retry would have happened by now.
sleep 3
check_eq "without the ACL the failed start is not retried (RestartPreventExitStatus=1)" \
    "0 failed" "$(unit_prop NRestarts) $(inside systemctl is-active "$PKG")"
check "without the ACL the journal names the repository and the cause" \
    sh -c "nsenter -t $cpid -a -- journalctl -u $PKG -o cat --no-pager |
    grep -q 'cannot start: key repository /etc/keystone/fernet-keys/: Permission denied'"
# The server's error line is filed at priority err (its "<3>" prefix).
check "without the ACL the error is in journalctl -p err" \
    sh -c "nsenter -t $cpid -a -- journalctl -u $PKG -p err -o cat --no-pager |
    grep -q 'error: fatal: cannot start: key repository'"
check "without the ACL the info lines are not at priority err" \
    sh -c "! nsenter -t $cpid -a -- journalctl -u $PKG -p err -o cat --no-pager |
    grep -q ' info: '"
inside systemctl reset-failed "$PKG"

# -- the ACL recipe, exactly as keystone-k8s-auth(8) gives it ------------------
recipe=$(sed -n '/^\.SH KEY ACCESS/,/^\.SH /p' docs/man/$PKG.8 |
    sed -n 's/\\-/-/g; /^setfacl /p')
check_eq "keystone-k8s-auth(8) KEY ACCESS gives four setfacl lines" 4 \
    "$(printf '%s\n' "$recipe" | grep -c .)"
printf '%s\n' "$recipe" > "$work/recipe.sh"
if inside sh -e < "$work/recipe.sh"; then
	pass "the ACL recipe of keystone-k8s-auth(8) applied in the container"
else
	fail "the ACL recipe of keystone-k8s-auth(8)"
fi
sleep 1
since=$(inside date +%s)
sleep 1

# -- start --------------------------------------------------------------------
if inside systemctl start "$PKG" > "$work/start.log" 2>&1; then
	pass "systemctl start $PKG"
else
	cat "$work/start.log"
	fail "systemctl start $PKG"
fi
healthy() {
	[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$cacert" \
	    "$url/healthz")" = 200 ]
}
check_eq "the unit is active" active "$(inside systemctl is-active "$PKG")"
# READY=1 comes after the listeners are bound and the keys are read: the
# first request right after systemctl start returned is answered.
if healthy; then
	pass "GET /healthz over TLS as soon as systemctl start returned"
else
	fail "GET /healthz over TLS"
	inside journalctl -u "$PKG" --no-pager -n 30
	finish
fi
mainpid=$(unit_prop MainPID)
check_eq "the server runs as $PKG" "$PKG" \
    "$(inside stat -c %U /proc/"$mainpid")"

# PrivateUsers=yes: in the service's user namespace only root and the
# service's own user and group are mapped; Keystone's files appear as
# nobody's, and the kernel still honours the ACL on the real ids.
inns() { inside nsenter -t "$mainpid" -U -m -- "$@"; }
check_eq "PrivateUsers: two uid mappings in the service's namespace" 2 \
    "$(inside cat /proc/"$mainpid"/uid_map | grep -c .)"
check_eq "PrivateUsers: the service sees Keystone's /etc/keystone as nobody's" \
    "65534:65534" "$(inns stat -c %u:%g /etc/keystone 2>&1)"

# -- a login over TLS ---------------------------------------------------------
# api METHOD PATH [JSON]: admin API call; body in $work/resp, status printed.
api() {
	curl -s -o "$work/resp" -D "$work/hdr" -w '%{http_code}' \
	    --cacert "$cacert" -X "$1" -H "X-Auth-Token: $admin" \
	    -H 'Content-Type: application/json' ${3:+--data-binary "$3"} \
	    "$url$2"
}
hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
fkapi POST /_test/serviceaccounts '{"namespace":"kube-system","name":"reviewer"}' >/dev/null
fkapi POST /_test/reviewers '{"namespace":"kube-system","name":"reviewer"}' >/dev/null
rjwt=$(fkapi POST /_test/tokens \
    '{"namespace":"kube-system","service_account":"reviewer","expires_in":86400}' |
    jget token)
fkapi POST /_test/serviceaccounts '{"namespace":"apps","name":"web"}' >/dev/null
check_eq "create a token restriction" 201 "$(api POST /v4/tokens/restrictions \
    "{\"restriction\":{\"domain_id\":\"default\",\"user_id\":\"$(hex)\",
    \"project_id\":\"$(hex)\",\"roles\":[{\"id\":\"$(hex)\",\"name\":\"member\"}]}}")"
rid=$(jget restriction.id < "$work/resp" 2>/dev/null)
ca=$(python3 -c 'import json, sys; print(json.dumps(open(sys.argv[1]).read()))' "$k8s/ca.pem")
check_eq "create an instance for the test cluster" 201 "$(api POST /v4/k8s_auth/instances \
    "{\"instance\":{\"domain_id\":\"default\",\"name\":\"test-cluster\",
    \"host\":\"https://127.0.0.1:$fkport\",\"ca_cert\":$ca,
    \"token_reviewer_jwt\":\"$rjwt\"}}")"
iid=$(jget instance.id < "$work/resp" 2>/dev/null)
check_eq "create a role" 201 "$(api POST "/v4/k8s_auth/instances/$iid/roles" \
    "{\"role\":{\"name\":\"web\",\"bound_service_account_names\":[\"web\"],
    \"bound_service_account_namespaces\":[\"apps\"],\"token_restriction_id\":\"$rid\"}}")"
# login: a fresh JWT of apps/web; the status is printed, the token left in
# $work/hdr.
login() {
	jwt=$(fkapi POST /_test/tokens '{"namespace":"apps","service_account":"web"}' |
	    jget token)
	curl -s -o "$work/login" -D "$work/hdr" -w '%{http_code}' \
	    --cacert "$cacert" -H 'Content-Type: application/json' \
	    --data-binary "{\"k8s_role\":\"web\",\"jwt\":\"$jwt\"}" \
	    "$url/v4/k8s_auth/instances/$iid/auth"
}
subject() { sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: *\([^[:space:]]*\).*/\1/p' "$work/hdr"; }
check_eq "login over TLS against the test cluster" 200 "$(login)"
token=$(subject)
# A Fernet token: version byte 0x80, HMAC-SHA256 with the signing half of
# Keystone's primary key (the highest-numbered one, 1).
check "the token is a Fernet token signed with Keystone's primary key" \
    python3 -c 'import base64, hashlib, hmac, sys
key = base64.urlsafe_b64decode(open(sys.argv[1]).read().strip())
raw = base64.urlsafe_b64decode(sys.argv[2] + "=" * (-len(sys.argv[2]) % 4))
mac = hmac.new(key[:16], raw[:-32], hashlib.sha256).digest()
sys.exit(not (raw[0] == 0x80 and hmac.compare_digest(mac, raw[-32:])))' \
    "$root/etc/keystone/fernet-keys/1" "$token"
check_eq "the token validates (GET /v3/auth/tokens)" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$cacert" \
    -H "X-Auth-Token: $admin" -H "X-Subject-Token: $token" "$url/v3/auth/tokens")"
check "the database is under StateDirectory" \
    test -s "$root/var/lib/$PKG/$PKG.db"
check "the audit trail under LogsDirectory records the login" \
    grep -q "$iid" "$root/var/log/$PKG/audit.log"

# -- reload swaps a policy ----------------------------------------------------
pol=$root/etc/$PKG/policy/login.lua
cp -p "$pol" "$work/login.lua.orig"
reloads() {
	inside journalctl -u "$PKG" -o cat --no-pager | grep -c 'reload: done'
}
# reload: systemctl reload and wait for the server's "reload: done".
reload() {
	before=$(reloads)
	inside systemctl reload "$PKG" &&
	    wait_until 15 sh -c "[ \$(nsenter -t $cpid -a -- journalctl -u $PKG -o cat --no-pager | grep -c 'reload: done') -gt $before ]"
}
printf '%s\n' 'return { check = function(ctx) return false, "test_systemd: denied after reload" end }' > "$pol.new"
chmod 0644 "$pol.new"
mv "$pol.new" "$pol"
check "systemctl reload (deny-all login policy)" reload
check_eq "after the reload the login is denied (401)" 401 "$(login)"
check "... with reason policy_denied" grep -q '"policy_denied"' "$work/login"
cp -p "$work/login.lua.orig" "$pol"
check "systemctl reload (the packaged policy again)" reload
check_eq "after the second reload the login works again" 200 "$(login)"
check_eq "reloads do not restart the server" "$mainpid" "$(unit_prop MainPID)"

# -- kill -9 of the main PID: systemd restarts it -----------------------------
inside sh -c "kill -9 $mainpid"
restarted() {
	p=$(unit_prop MainPID)
	[ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$mainpid" ] &&
	    [ "$(inside systemctl is-active "$PKG")" = active ] && healthy
}
if wait_until 20 restarted; then
	pass "kill -9 of the main PID: systemd restarted the server (Restart=on-failure)"
else
	fail "kill -9 of the main PID: no restart within 20 s ($(inside systemctl is-active "$PKG"))"
fi
check_eq "NRestarts after kill -9" 1 "$(unit_prop NRestarts)"
check_eq "a login after the restart" 200 "$(login)"

# -- stop with a login in flight: drained, exit 0 -----------------------------
fkapi POST /_test/faults '{"mode":"latency","latency_ms":3000,"count":1}' >/dev/null
login > "$work/inflight.status" 2>&1 &
inflight=$!
wait_until 10 sh -c "curl -s --cacert '$k8s/ca.pem' https://127.0.0.1:$fkport/_test/faults | grep -q '\"parked\": *1'" ||
	echo "test_systemd.sh: the in-flight login did not reach the cluster"
stop_limit=$(unit_prop TimeoutStopUSec)
start=$(date +%s)
inside systemctl stop "$PKG"
took=$(($(date +%s) - start))
wait "$inflight"
# 000 would be a reply the server logged 200 but never wrote: the drain
# waits for replies to be written out (test_lifecycle.py,
# test_sigterm_delivers_every_answered_login, tests it hard).
check_eq "the login in flight during stop got its reply" 200 "$(cat "$work/inflight.status")"
inside systemctl show -p ExecMainCode -p ExecMainStatus -p Result "$PKG"
check_eq "systemctl stop: main process status 0, result success" "0 success" \
    "$(unit_prop ExecMainStatus) $(unit_prop Result)"
check "systemctl stop: the server said it stopped (its clean exit)" \
    sh -c "nsenter -t $cpid -a -- journalctl -u $PKG -o cat --no-pager | tail -n 5 | grep -q ' info: stopped\$'"
check "systemctl stop took $took s, within TimeoutStopSec ($stop_limit)" \
    test "$took" -lt 45
check_eq "the unit is inactive after stop" inactive "$(inside systemctl is-active "$PKG")"

# -- the journal --------------------------------------------------------------
inside journalctl -u "$PKG" --since "@$since" --no-pager -o short-precise \
    > "$work/journal.txt" 2>&1
errs=$(inside journalctl -u "$PKG" --since "@$since" -p err --no-pager -q -o cat)
check_eq "journalctl -u $PKG -p err since the good start: nothing" "" "$errs"
check "the server's info lines are at priority info (its <6> prefix)" \
    sh -c "nsenter -t $cpid -a -- journalctl -u $PKG --since @$since -p info -o cat --no-pager | grep -q ' info: .* serving with'"
check "and not at priority notice or above" \
    sh -c "! nsenter -t $cpid -a -- journalctl -u $PKG --since @$since -p notice -o cat --no-pager | grep -q ' info: '"
check_eq "no server line at level error since the good start" "" \
    "$(inside journalctl -u "$PKG" --since "@$since" -o cat --no-pager |
    grep -E '^[0-9TZ:.+-]+ error: ')"
check "the journal shows the kill -9 and the restart" \
    grep -q 'status=9/KILL' "$work/journal.txt"
echo "test_systemd.sh: journal of $PKG since the good start:"
sed 's/^/    /' "$work/journal.txt"

# -- systemd-analyze security -------------------------------------------------
inside systemd-analyze security --no-pager "$PKG.service" > "$work/security.txt" 2>&1
e=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$work/security.txt")
echo "test_systemd.sh: systemd-analyze security $PKG.service: exposure ${e:-?}"
check "systemd-analyze security exposure ${e:-?} <= 2.0" \
    awk -v e="${e:-99}" 'BEGIN { exit !(e <= 2.0) }'

echo "test_systemd.sh: took $(($(date +%s) - t_start)) s"
finish
