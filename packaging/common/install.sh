#!/bin/sh
# install.sh DESTDIR UNITDIR: what a package installs on top of
# `make install`: the systemd unit, the sysusers.d entry, the logrotate
# snippet, the shared post-install script and the packaged configuration
# values.  Run from the
# top of the source tree by debian/rules and the RPM spec.
set -eu
dest=$1
unitdir=$2
here=packaging/common

install -d "$dest$unitdir" "$dest/usr/lib/sysusers.d" \
    "$dest/usr/libexec/keystone-k8s-auth" "$dest/etc/logrotate.d"
install -m 0644 "$here/keystone-k8s-auth.logrotate" \
    "$dest/etc/logrotate.d/keystone-k8s-auth"
install -m 0644 "$here/keystone-k8s-auth.service" "$dest$unitdir/"
install -m 0644 "$here/keystone-k8s-auth.sysusers" \
    "$dest/usr/lib/sysusers.d/keystone-k8s-auth.conf"
install -m 0755 "$here/package-setup" "$dest/usr/libexec/keystone-k8s-auth/"
sh "$here/package-conf.sh" "$dest/etc/keystone-k8s-auth/keystone-k8s-auth.conf"
install -d -m 0750 "$dest/etc/keystone-k8s-auth/tls" \
    "$dest/var/lib/keystone-k8s-auth"
