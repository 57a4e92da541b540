#!/bin/sh
# packaging/deb/build.sh (make deb): build the .deb without touching the
# top level of the checkout.  Copies the checkout's files (tracked and
# untracked-but-not-ignored, as they are in the working tree) into
# packaging/deb/build/keystone-k8s-auth-VERSION/, adds packaging/deb/debian
# and a changelog entry for the version in configure, runs
# `dpkg-buildpackage -b -us -uc` there and copies the .deb to the top.
# DEB_BUILD_OPTIONS (nocheck, parallel=N) is passed through.
set -eu
cd "$(dirname "$0")/../.."
top=$(pwd)
version=$(sed -n 's/^version=//p' configure)
[ -n "$version" ] || { echo "build.sh: no version= in configure" >&2; exit 1; }
build=$top/packaging/deb/build
src=$build/keystone-k8s-auth-$version

rm -rf "$build"
mkdir -p "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard |
	    tar -cf - --null --no-recursion --ignore-failed-read -T - |
	    tar -xf - -C "$src"
else
	tar -cf - --exclude=./packaging/deb/build --exclude=./packaging/rpm/build \
	    --exclude='*.o' --exclude='*.d' --exclude=./Makefile \
	    --exclude=./config.h --exclude=./config.status --exclude=./config.log \
	    --exclude=./keystone-k8s-auth . | tar -xf - -C "$src"
fi
cp -r packaging/deb/debian "$src/debian"
date=$(date -R)
cat > "$src/debian/changelog" <<EOC
keystone-k8s-auth ($version) unstable; urgency=medium

  * Package built from the checkout by make deb.

 -- keystone-k8s-auth developers <keystone-k8s-auth@localhost>  $date
EOC

(cd "$src" && dpkg-buildpackage -b -us -uc)
arch=$(dpkg --print-architecture)
deb=keystone-k8s-auth_${version}_$arch.deb
cp "$build/$deb" "$top/$deb"
echo "build.sh: $top/$deb"
