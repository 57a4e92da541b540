#!/bin/sh
# tests/packaging/test_rpm.sh: build the RPM (make rpm: rpmbuild from a
# tarball of the checkout, --nodeps on Debian) and check it without
# installing it: the file list with modes, owners and config flags, the
# scriptlets, the dependencies, the spec's BuildRequires, that %check ran
# the unit tests, and the payload itself (the binary validates the
# packaged configuration; the unit's security exposure).
# Needs rpmbuild (Debian package rpm) and rpm2archive; no root needed.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/packaging/lib.sh

PKG=keystone-k8s-auth
version=$(sed -n 's/^version=//p' configure)
tmp=$(mktemp -d /tmp/k8sauth-rpmtest.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
if sh packaging/rpm/build.sh > "$tmp/build.log" 2>&1; then
	pass "make rpm in $(( $(date +%s) - start )) s"
else
	tail -n 30 "$tmp/build.log"
	fail "make rpm"
	finish
fi
rpm=$(ls "$PKG-$version"-*.rpm 2>/dev/null | head -n 1)
check "RPM $PKG-$version-*.rpm exists" test -f "$rpm"
check "%check ran the unit tests" \
    grep -Eq '^suite: [0-9]+ passed, 0 failed, 0 skipped$' "$tmp/build.log"
check "build.sh says it uses --nodeps" grep -q -- '--nodeps' "$tmp/build.log"

check_eq "name and version" "$PKG $version" \
    "$(rpm -qp --qf '%{NAME} %{VERSION}' "$rpm" 2>/dev/null)"

# File list: "MODE USER:GROUP FLAGS PATH".
rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' \
    "$rpm" > "$tmp/files" 2>/dev/null
# has PATTERN: a line of the file list matches the extended regex.
has() { grep -Eq "$1" "$tmp/files"; }
check "binary /usr/bin/$PKG 0755 root" \
    has "^-rwxr-xr-x root:root +/usr/bin/$PKG\$"
check "configuration %config(noreplace) 0640 root:$PKG" \
    has "^-rw-r----- root:$PKG cn /etc/$PKG/$PKG.conf\$"
check "configuration directory 0750 root:$PKG" \
    has "^drwxr-x--- root:$PKG +/etc/$PKG\$"
check "policy directory" has " /etc/$PKG/policy\$"
check "tls directory 0750 root:$PKG" has "^drwxr-x--- root:$PKG +/etc/$PKG/tls\$"
check "state directory 0750 $PKG:$PKG" \
    has "^drwxr-x--- $PKG:$PKG +/var/lib/$PKG\$"
check "lua directory" has " /usr/share/$PKG/lua\$"
check "systemd unit in /usr/lib/systemd/system" \
    has " /usr/lib/systemd/system/$PKG.service\$"
check "sysusers.d entry" has " /usr/lib/sysusers.d/$PKG.conf\$"
check "package-setup" has "^-rwxr-xr-x root:root +/usr/libexec/$PKG/package-setup\$"
check "man page (8)" has " /usr/share/man/man8/$PKG.8(\.gz)?\$"
check "man page (5)" has " /usr/share/man/man5/$PKG.conf.5(\.gz)?\$"
for f in $(grep -E " /etc/$PKG/policy/.+\.lua\$" "$tmp/files" | awk '{print $NF}'); do
	check "policy $f is %config(noreplace)" has "^[^ ]+ [^ ]+ cn $f\$"
done
check "no secret or state file is packaged" sh -c \
    "! grep -Eq 'admin-token|credential-keys|\.db\$|\.pem\$' '$tmp/files'"

# Scriptlets.
rpm -qp --scripts "$rpm" > "$tmp/scripts" 2>/dev/null
check "%pre creates the group" grep -q "groupadd -r $PKG" "$tmp/scripts"
check "%pre creates the system user" \
    grep -q "useradd -r -g $PKG -d /var/lib/$PKG -s /sbin/nologin" "$tmp/scripts"
check "%post runs package-setup" grep -q "/usr/libexec/$PKG/package-setup" "$tmp/scripts"
check "%post presets the unit" grep -q "preset $PKG.service" "$tmp/scripts"
check "%preun stops the unit on erase" grep -q "disable --now $PKG.service" "$tmp/scripts"
check "%postun does not restart on upgrade (%pre stopped it, %post starts it after db-sync)" \
    sh -c "! grep -q 'try-restart $PKG.service' '$tmp/scripts'"
check "%pre stops a running server on upgrade" \
    grep -q "systemctl stop $PKG.service" "$tmp/scripts"
check "no unexpanded macro in the scriptlets" sh -c "! grep -q '%{' '$tmp/scripts'"
for s in preinstall postinstall preuninstall postuninstall; do
	awk -v s="$s" '/scriptlet \(using/ { on = ($1 == s); next } on' \
	    "$tmp/scripts" > "$tmp/$s.sh"
	check "$s scriptlet is valid sh" sh -n "$tmp/$s.sh"
done

# Dependencies.
rpm -qpR "$rpm" > "$tmp/requires" 2>/dev/null
for r in openssl util-linux shadow-utils 'libcjson.so' 'libevent-2.1.so' \
    'libsqlite3.so' 'libmsgpackc.so' 'libinih.so' 'libcurl.so'; do
	check "Requires $r" grep -q "^$r" "$tmp/requires"
done
breq=$(rpmspec -q --buildrequires packaging/rpm/$PKG.spec 2>/dev/null | tr '\n' ' ')
for b in pkgconf-pkg-config libevent-devel openssl-devel libcurl-devel \
    cjson-devel sqlite-devel msgpack-devel lua-devel inih-devel libcmocka-devel; do
	check "BuildRequires $b" sh -c "echo ' $breq' | grep -q ' $b '"
done

# The payload: the packaged configuration validates with the packaged binary.
mkdir -p "$tmp/root"
rpm2archive - < "$rpm" | tar -xzf - -C "$tmp/root"
conf=$tmp/root/etc/$PKG/$PKG.conf
check_eq "packaged binary validates the packaged configuration" "$conf: ok" \
    "$("$tmp/root/usr/bin/$PKG" config-check --config "$conf" 2>&1)"
dump=$("$tmp/root/usr/bin/$PKG" config-check --dump --config "$conf" 2>&1)
for want in "tls_cert = /etc/$PKG/tls/cert.pem" \
    "connection = sqlite:///var/lib/$PKG/$PKG.db" \
    "audit_file = /var/log/$PKG/audit.log"; do
	check "configuration sets $want" \
	    sh -c "printf '%s\n' '$dump' | grep -qxF '$want'"
done
check "logrotate snippet in the payload" \
    test -f "$tmp/root/etc/logrotate.d/$PKG"
check "logrotate snippet is %config(noreplace)" \
    sh -c "rpm -qp --configfiles '$rpm' | grep -qx /etc/logrotate.d/$PKG"
for doc in README.md policy.md tokens.md deploy.md \
    examples/keystone-policy-exchange.yaml; do
	check "documentation $doc is shipped" \
	    sh -c "ls '$tmp'/root/usr/share/doc/$PKG*/$doc"
done
unit=$tmp/root/usr/lib/systemd/system/$PKG.service
check "unit: LogsDirectory=$PKG" grep -qx "LogsDirectory=$PKG" "$unit"
check "unit: RestartPreventExitStatus=1" \
    grep -qx "RestartPreventExitStatus=1" "$unit"
check "%pre stops the server on upgrade, %post starts it after db-sync" \
    sh -c "rpm -qp --scripts '$rpm' | grep -q 'upgrade-restart'"
if command -v systemd-analyze >/dev/null 2>&1; then
	e=$(exposure "$tmp/root/usr/lib/systemd/system/$PKG.service")
	check "unit exposure ${e:-?} <= 2.0" \
	    awk -v e="${e:-99}" 'BEGIN { exit !(e <= 2.0) }'
else
	skip "unit exposure: no systemd-analyze"
fi

finish
