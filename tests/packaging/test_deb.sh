#!/bin/sh
# tests/packaging/test_deb.sh: build the .deb (make deb), install it on this
# machine with apt, check what it installed and what its postinst set up,
# run the installed binary as the service user against the installed
# configuration (config-check; serve from a copy whose state lives in a
# temporary directory: GET /healthz over TLS with the generated
# certificate), run it against a key repository owned by keystone (0700
# directory, 0600 keys) with and without the ACL recipe of
# keystone-k8s-auth(8), verify the unit, then remove and purge and check
# the state is kept on remove and gone after purge.
#
# Needs root, dpkg-buildpackage (dpkg-dev, debhelper), apt and setfacl
# (package acl).  It installs and purges the package keystone-k8s-auth on
# this machine.  A user and group "keystone" are created for the test when
# absent (and removed again).  SKIP_BUILD=1 reuses the .deb.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/packaging/lib.sh

PKG=keystone-k8s-auth
USR=keystone-k8s-auth
ETC=/etc/keystone-k8s-auth
CONF=$ETC/keystone-k8s-auth.conf
STATE=/var/lib/keystone-k8s-auth
BIN=/usr/bin/keystone-k8s-auth
version=$(sed -n 's/^version=//p' configure)
deb=${PKG}_${version}_$(dpkg --print-architecture).deb
tmp=$(mktemp -d /tmp/k8sauth-pkgtest.XXXXXX)
keys=$(mktemp -d /tmp/k8sauth-keystone.XXXXXX)
made_group=no
made_user=no
server=

cleanup() {
	[ -n "$server" ] && kill "$server" 2>/dev/null
	[ "$made_user" = yes ] && userdel keystone 2>/dev/null
	[ "$made_group" = yes ] && groupdel keystone 2>/dev/null
	rm -rf "$tmp" "$keys"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "test_deb.sh: needs root"; exit 2; }
export DEBIAN_FRONTEND=noninteractive

# Build.
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f "$deb" ]; then
	start=$(date +%s)
	if sh packaging/deb/build.sh > "$tmp/build.log" 2>&1; then
		pass "make deb builds $deb in $(( $(date +%s) - start )) s"
	else
		tail -n 30 "$tmp/build.log"
		fail "make deb"
		finish
	fi
fi
check "the unit tests ran during the build" \
    grep -Eq '^suite: [0-9]+ passed, 0 failed, 0 skipped$' "$tmp/build.log"

# A clean slate: no earlier installation; Keystone's user and group.
dpkg-query -W "$PKG" >/dev/null 2>&1 && apt-get -o DPkg::Lock::Timeout=300 purge -y -qq "$PKG" >/dev/null
if ! getent group keystone >/dev/null; then
	groupadd --system keystone && made_group=yes
fi
if ! getent passwd keystone >/dev/null; then
	useradd --system --gid keystone --no-create-home \
	    --shell /usr/sbin/nologin keystone && made_user=yes
fi

# Install.
if apt-get -o DPkg::Lock::Timeout=300 install -y -q "./$deb" > "$tmp/install.log" 2>&1; then
	pass "apt-get install ./$deb"
else
	cat "$tmp/install.log"
	fail "apt-get install ./$deb"
	finish
fi
check_eq "package state" "install ok installed" \
    "$(dpkg-query -W -f='${Status}' "$PKG")"
check "postinst says the certificate is self-signed and must be replaced" \
    grep -q "generated a SELF-SIGNED certificate $ETC/tls/cert.pem.*replace" \
    "$tmp/install.log"
check "postinst reported no failed step" \
    sh -c "! grep -q '$PKG: warning' '$tmp/install.log'"
check "the unit is not enabled at install" \
    sh -c "! ls /etc/systemd/system/*.wants/$PKG.service"
check "postinst does not start the service" \
    sh -c "! pgrep -x -u $USR $PKG"

# Files.
check "binary $BIN" test -x "$BIN"
check "unit file" test -f /lib/systemd/system/$PKG.service
check "man page keystone-k8s-auth(8)" test -f /usr/share/man/man8/$PKG.8.gz
check "man page keystone-k8s-auth.conf(5)" \
    test -f /usr/share/man/man5/$PKG.conf.5.gz
check "man -w finds keystone-k8s-auth.conf(5)" man -w 5 $PKG.conf
check "lua directory" test -d /usr/share/$PKG/lua
check "sysusers.d entry" test -f /usr/lib/sysusers.d/$PKG.conf
check "logrotate snippet" test -f /etc/logrotate.d/$PKG
if command -v logrotate >/dev/null 2>&1; then
	check "logrotate accepts the snippet" \
	    logrotate -d /etc/logrotate.d/$PKG
fi
for doc in README.md operations.md configuration.md api.md policy.md \
    tokens.md deploy.md examples/keystone-policy-exchange.yaml \
    examples/keystone-policy-service-user.yaml; do
	check "documentation $doc is shipped" \
	    sh -c "test -f /usr/share/doc/$PKG/$doc || test -f /usr/share/doc/$PKG/$doc.gz"
done
unit=/lib/systemd/system/$PKG.service
check "unit: LogsDirectory=$PKG" grep -qx "LogsDirectory=$PKG" "$unit"
check "unit: a failed start (exit 1) is not retried in a loop" \
    grep -qx "RestartPreventExitStatus=1" "$unit"
check "unit: no word of group keystone giving key access" \
    sh -c "! grep -qi 'group .keystone. gives\|membership' '$unit'"
check "preinst stops the server on upgrade" \
    grep -q "systemctl stop" /var/lib/dpkg/info/$PKG.preinst
check_eq "version" "$PKG $version" "$($BIN version)"
for f in $(dpkg -L "$PKG" | grep "^/usr/share/$PKG/lua/.*\.lua$"); do
	check "lua helper $f" test -f "$f"
done

# Conffiles: the configuration and every shipped policy file.
conffiles=$(dpkg-query -W -f='${Conffiles}\n' "$PKG" | awk 'NF { print $1 }')
check "configuration is a conffile" \
    sh -c "printf '%s\n' '$conffiles' | grep -qx '$CONF'"
for f in $(dpkg -L "$PKG" | grep "^$ETC/policy/.*\.lua$"); do
	check "policy $f is a conffile" \
	    sh -c "printf '%s\n' '$conffiles' | grep -qx '$f'"
done

# The service user.
check "user $USR exists" getent passwd "$USR"
check "group $USR exists" getent group "$USR"
uid=$(id -u "$USR" 2>/dev/null || echo 99999)
check "user $USR is a system user (uid $uid)" test "$uid" -lt 1000
check_eq "home of $USR" "$STATE" "$(getent passwd "$USR" | cut -d: -f6)"
check_eq "shell of $USR" "/usr/sbin/nologin" \
    "$(getent passwd "$USR" | cut -d: -f7)"
check "$USR is not in group keystone (keys are read through an ACL)" \
    sh -c "! id -nG $USR | tr ' ' '\n' | grep -qx keystone"
check_eq "mode of /var/log/$PKG" "750 $USR:$USR" \
    "$(mode_owner /var/log/$PKG)"

# Modes and owners set up by postinst.
check_eq "mode of $ETC" "750 root:$USR" "$(mode_owner "$ETC")"
check_eq "mode of the configuration" "640 root:$USR" "$(mode_owner "$CONF")"
check_eq "mode of the admin token" "600 $USR:$USR" \
    "$(mode_owner "$ETC/admin-token")"
check_eq "mode of the credential keys" "700 $USR:$USR" \
    "$(mode_owner "$ETC/credential-keys")"
check "a credential key exists" test -s "$ETC/credential-keys/1"
check_eq "mode of the TLS key" "640 root:$USR" "$(mode_owner "$ETC/tls/key.pem")"
check_eq "mode of the TLS certificate" "644 root:$USR" \
    "$(mode_owner "$ETC/tls/cert.pem")"
check_eq "mode of $STATE" "750 $USR:$USR" "$(mode_owner "$STATE")"
check_eq "owner of the database" "$USR:$USR" \
    "$(stat -c %U:%G "$STATE/$PKG.db" 2>/dev/null)"
check "certificate names localhost" \
    sh -c "openssl x509 -in $ETC/tls/cert.pem -noout -ext subjectAltName | grep -q 'DNS:localhost'"
check "certificate matches the key" sh -c \
    "[ \"\$(openssl x509 -in $ETC/tls/cert.pem -noout -pubkey)\" = \
    \"\$(openssl pkey -in $ETC/tls/key.pem -pubout)\" ]"

# The packaged configuration.
dump=$($BIN config-check --dump --config "$CONF" 2>&1)
for want in "tls_cert = $ETC/tls/cert.pem" "tls_key = $ETC/tls/key.pem" \
    "connection = sqlite://$STATE/$PKG.db" \
    "admin_token_file = $ETC/admin-token" \
    "audit_file = /var/log/$PKG/audit.log"; do
	check "configuration sets $want" \
	    sh -c "printf '%s\n' '$dump' | grep -qxF '$want'"
done
check_eq "config-check of the installed configuration" "$CONF: ok" \
    "$($BIN config-check --config "$CONF" 2>&1)"
check_eq "config-check as $USR" "$CONF: ok" \
    "$(runuser -u "$USR" -- $BIN config-check --config "$CONF" 2>&1)"

# Setup is idempotent and never overwrites secrets.
sums() {
	cat "$ETC/admin-token" "$ETC/credential-keys/1" "$ETC/tls/cert.pem" \
	    "$ETC/tls/key.pem" | sha256sum
}
before=$(sums)
/usr/libexec/$PKG/package-setup > "$tmp/setup.log" 2>&1
check_eq "package-setup again keeps token, keys and certificate" \
    "$before" "$(sums)"
check "package-setup again generates nothing" \
    sh -c "! grep -q 'generated\|written' '$tmp/setup.log'"

# An upgrade from a version that put the user into group keystone takes
# that membership away.
usermod -a -G keystone "$USR"
/usr/libexec/$PKG/package-setup > "$tmp/setup-group.log" 2>&1
check "package-setup removes the old group keystone membership" \
    sh -c "! id -nG $USR | tr ' ' '\n' | grep -qx keystone"
check "package-setup says it removed the membership" \
    grep -q "removed $USR from group keystone" "$tmp/setup-group.log"

# A modified conffile survives a reinstall.
echo "# local change $$" >> "$CONF"
dpkg -i "$deb" > "$tmp/reinstall.log" 2>&1
check "reinstall succeeds" grep -q "Setting up $PKG" "$tmp/reinstall.log"
check "a modified configuration is kept on upgrade" \
    grep -q "^# local change $$\$" "$CONF"
check_eq "reinstall keeps token, keys and certificate" "$before" "$(sums)"

# Serve as the service user from a copy of the installed configuration whose
# state (database, Fernet keys) lives in a temporary directory.
port=$(free_port)
chown "$USR:$USR" "$tmp"
sed -e "s|^#listen = .*|listen = https://127.0.0.1:$port|" \
    -e "s|^connection = .*|connection = sqlite://$tmp/test.db|" \
    -e "/^\[fernet_tokens\]/,/^\[/s|^key_repository = .*|key_repository = $tmp/fernet-keys/|" \
    "$CONF" > "$tmp/test.conf"
chmod 0644 "$tmp/test.conf"
check "fernet-setup into the temporary directory" \
    runuser -u "$USR" -- $BIN fernet-setup --config "$tmp/test.conf"
# setpriv execs (runuser would fork and stand between us and the server).
setpriv --reuid="$USR" --regid="$USR" --init-groups -- \
    $BIN serve --config "$tmp/test.conf" > "$tmp/serve.log" 2>&1 &
server=$!
code=000
i=0
while [ $i -lt 50 ]; do
	code=$(curl -s -o /dev/null -w '%{http_code}' \
	    --cacert "$ETC/tls/cert.pem" "https://localhost:$port/healthz")
	[ "$code" = 200 ] && break
	sleep 0.1
	i=$((i + 1))
done
check_eq "GET /healthz over TLS with the generated certificate" 200 "$code"
token=$(cat "$ETC/admin-token")
check_eq "admin API accepts the bootstrap token" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ETC/tls/cert.pem" \
    -H "X-Auth-Token: $token" "https://localhost:$port/v4/k8s_auth/instances")"
check_eq "admin API refuses a wrong token" 401 \
    "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ETC/tls/cert.pem" \
    -H "X-Auth-Token: wrong" "https://localhost:$port/v4/k8s_auth/instances")"
kill -HUP "$server"
sleep 0.3
check_eq "still serving after SIGHUP" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ETC/tls/cert.pem" \
    "https://localhost:$port/healthz")"
kill -TERM "$server"
wait "$server"
rc=$?
server=
check_eq "serve exits 0 on SIGTERM" 0 "$rc"
check "the test database belongs to $USR" \
    test "$(stat -c %U "$tmp/test.db" 2>/dev/null)" = "$USR"

# Key access: Keystone's repository as keystone-manage leaves it (a 0750
# keystone directory standing for /etc/keystone, fernet-keys 0700, keys
# 0600, all keystone's), then the ACL recipe of keystone-k8s-auth(8).
etck=$keys/keystone
repo=$etck/fernet-keys
chmod 0755 "$keys"
install -d -o keystone -g keystone -m 0750 "$etck"
install -d -o keystone -g keystone -m 0700 "$repo"
# mkkey NAME: a key written the way keystone-manage's fernet_utils does
# (umask 0177, open(..., 'w'), rename), as user keystone.
mkkey() {
	runuser -u keystone -- python3 -c '
import base64, os, sys
os.umask(0o177)
tmp = os.path.join(sys.argv[1], ".tmp")
with open(tmp, "w") as f:
    f.write(base64.urlsafe_b64encode(os.urandom(32)).decode())
os.rename(tmp, os.path.join(sys.argv[1], sys.argv[2]))' "$repo" "$1"
}
mkkey 0
mkkey 1
check_eq "mode of Keystone's key 1" "600 keystone:keystone" \
    "$(mode_owner "$repo/1")"
sed -e "/^\[fernet_tokens\]/,/^\[/s|^key_repository = .*|key_repository = $repo/|" \
    "$tmp/test.conf" > "$tmp/keys.conf"
chmod 0644 "$tmp/keys.conf"
# serve_once: start serve as $USR; sets $code to the /healthz status (000
# when it exited) and leaves the server's pid in $server.  Not in a
# subshell: $server must reach the caller.
serve_once() {
	setpriv --reuid="$USR" --regid="$USR" --init-groups -- \
	    $BIN serve --config "$tmp/keys.conf" > "$tmp/keys.log" 2>&1 &
	server=$!
	code=000
	i=0
	while [ $i -lt 50 ] && kill -0 "$server" 2>/dev/null; do
		code=$(curl -s -o /dev/null -w '%{http_code}' \
		    --cacert "$ETC/tls/cert.pem" "https://localhost:$port/healthz")
		[ "$code" = 200 ] && break
		sleep 0.1
		i=$((i + 1))
	done
}
serve_once
check_eq "without the ACL the server does not start" 000 "$code"
wait "$server"
rc=$?
server=
check_eq "without the ACL serve exits 1 (not retried by the unit)" 1 "$rc"
check "without the ACL the message names the repository and the cause" \
    grep -q "cannot start: key repository $repo/: Permission denied" \
    "$tmp/keys.log"
# The recipe, word for word as in keystone-k8s-auth(8) with /etc/keystone
# replaced by the test's directory.
setfacl -m u:$USR:--x "$etck"
setfacl -m u:$USR:r-x "$repo"
setfacl -d -m u:$USR:r "$repo"
setfacl -m u:$USR:r "$repo"/*
serve_once
check_eq "with the ACL the server loads Keystone's keys" 200 "$code"
kill -TERM "$server"
wait "$server"
server=
check "the log says the keys were loaded from the repository" \
    grep -q "fernet keys: 2 loaded from $repo" "$tmp/keys.log"
mkkey 2
check "the default ACL lets $USR read a key written after the recipe" \
    runuser -u "$USR" -- cat "$repo/2"
check "getfacl shows the effective read permission" \
    sh -c "getfacl -p '$repo/2' | grep -q '^user:$USR:r--\$'"
chmod 0600 "$repo/2"
check "the mask trap: chmod 0600 takes the read permission away" \
    sh -c "! runuser -u '$USR' -- cat '$repo/2'"
check "getfacl shows the trap (#effective:---)" \
    sh -c "getfacl -p '$repo/2' | grep -q '#effective:---'"
setfacl -m u:$USR:r "$repo"/*
check "re-applying the ACL repairs it" runuser -u "$USR" -- cat "$repo/2"

# The installed unit.
if command -v systemd-analyze >/dev/null 2>&1; then
	check "systemd-analyze verify $PKG.service" \
	    systemd-analyze verify /lib/systemd/system/$PKG.service
	e=$(exposure /lib/systemd/system/$PKG.service)
	check "systemd-analyze security exposure ${e:-?} <= 2.0" \
	    awk -v e="${e:-99}" 'BEGIN { exit !(e <= 2.0) }'
else
	skip "systemd-analyze verify and security: no systemd-analyze"
fi

# Remove keeps the state, purge removes it.
apt-get -o DPkg::Lock::Timeout=300 remove -y -q "$PKG" > "$tmp/remove.log" 2>&1
check "remove" sh -c "! test -e $BIN"
check "remove keeps the database" test -f "$STATE/$PKG.db"
check "remove keeps the audit trail directory" test -d /var/log/$PKG
check "remove keeps the admin token" test -f "$ETC/admin-token"
check "remove keeps the configuration" test -f "$CONF"
apt-get -o DPkg::Lock::Timeout=300 purge -y -q "$PKG" > "$tmp/purge.log" 2>&1
check_eq "purge" "" "$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null)"
for gone in "$STATE" /var/log/$PKG "$ETC/admin-token" "$ETC/credential-keys" \
    "$ETC/tls/cert.pem" "$ETC/tls/key.pem" "$CONF" "$ETC"; do
	check "purge removes $gone" sh -c "! test -e '$gone'"
done

finish
