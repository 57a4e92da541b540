#!/bin/sh
# package-conf.sh FILE: turn the sample configuration written by
# `make install` (every option commented out with its default) into the
# packaged one, by setting the options a package needs to start out of the
# box.  Fails when an option is not in the sample, so a renamed option
# breaks the package build instead of silently shipping a dead setting.
set -eu
file=$1

# set_opt SECTION OPTION VALUE: uncomment OPTION in SECTION and set VALUE.
set_opt() {
	awk -v s="[$1]" -v o="$2" -v v="$3" '
		/^\[/ { in_s = ($0 == s) }
		in_s && !done && ($0 ~ "^#" o " =" || $0 ~ "^" o " =") {
			print "# Set by the package."
			print o " = " v
			done = 1
			next
		}
		{ print }
		END { exit done ? 0 : 1 }' "$file" > "$file.new" || {
		rm -f "$file.new"
		echo "package-conf.sh: [$1] $2 not found in $file" >&2
		exit 1
	}
	mv "$file.new" "$file"
}

set_opt server tls_cert /etc/keystone-k8s-auth/tls/cert.pem
set_opt server tls_key /etc/keystone-k8s-auth/tls/key.pem
set_opt database connection \
    sqlite:///var/lib/keystone-k8s-auth/keystone-k8s-auth.db
set_opt fernet_tokens key_repository /etc/keystone/fernet-keys/
set_opt credential key_repository /etc/keystone-k8s-auth/credential-keys/
set_opt bootstrap admin_token_file /etc/keystone-k8s-auth/admin-token
set_opt policy dir /etc/keystone-k8s-auth/policy
set_opt log audit_file /var/log/keystone-k8s-auth/audit.log
