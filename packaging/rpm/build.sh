#!/bin/sh
# packaging/rpm/build.sh (make rpm): build the binary RPM with rpmbuild
# from a tarball of the checkout (tracked and untracked-but-not-ignored
# files as they are in the working tree), in packaging/rpm/build/, and copy
# it to the top of the checkout.  The spec's Version is set from configure.
#
# On Debian the BuildRequires (Fedora names) cannot be satisfied from
# rpm's own empty database, so rpmbuild runs with --nodeps and builds
# against the Debian -dev packages; debuginfo packages are off there
# (no find-debuginfo).  On Fedora/RHEL, NODEPS=0 keeps the dependency check.
set -eu
cd "$(dirname "$0")/../.."
top=$(pwd)
version=$(sed -n 's/^version=//p' configure)
[ -n "$version" ] || { echo "build.sh: no version= in configure" >&2; exit 1; }
build=$top/packaging/rpm/build
name=keystone-k8s-auth-$version

rm -rf "$build"
mkdir -p "$build/SOURCES" "$build/SPECS" "$build/stage/$name"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard |
	    tar -cf - --null --no-recursion --ignore-failed-read -T - |
	    tar -xf - -C "$build/stage/$name"
else
	tar -cf - --exclude=./packaging/deb/build --exclude=./packaging/rpm/build \
	    --exclude='*.o' --exclude='*.d' --exclude=./Makefile \
	    --exclude=./config.h --exclude=./config.status --exclude=./config.log \
	    --exclude=./keystone-k8s-auth . | tar -xf - -C "$build/stage/$name"
fi
tar -czf "$build/SOURCES/$name.tar.gz" -C "$build/stage" "$name"
sed "s/^Version:.*/Version:        $version/" \
    packaging/rpm/keystone-k8s-auth.spec > "$build/SPECS/keystone-k8s-auth.spec"

set -- --define "_topdir $build"
if [ "${NODEPS:-1}" = 1 ]; then
	echo "build.sh: rpmbuild --nodeps (BuildRequires are Fedora/RHEL names)"
	set -- "$@" --nodeps
fi
if [ -f /etc/debian_version ]; then
	set -- "$@" --define "debug_package %{nil}"
fi
rpmbuild -bb "$@" "$build/SPECS/keystone-k8s-auth.spec"
rpm=$(find "$build/RPMS" -name "keystone-k8s-auth-$version-*.rpm" | head -n 1)
[ -n "$rpm" ] || { echo "build.sh: no RPM built" >&2; exit 1; }
cp "$rpm" "$top/"
echo "build.sh: $top/$(basename "$rpm")"
