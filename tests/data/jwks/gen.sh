#!/bin/sh
# gen.sh: regenerate the JWK/JWS test vectors of tests/unit/test_jwks.c
# with the openssl command line only (plus xxd, tr and sed for encoding).
# Run from this directory: sh gen.sh.  Writes *.json and *.jwt; the
# private keys are made in a temporary directory and thrown away.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
hex2b64url() { xxd -r -p | b64url; }
# INTEGER values (hex) of a DER ECDSA signature, padded to 32 bytes each.
rs_of_der() {
	openssl asn1parse -inform DER -in "$1" |
	    sed -n 's/.*INTEGER *:\([0-9A-F]*\)$/\1/p' |
	    while read -r h; do printf '%064s' "$h" | tr ' ' 0; done
}
rsa_jwk() { # key.pem kid
	n=$(openssl rsa -in "$1" -noout -modulus | sed 's/^Modulus=//' |
	    hex2b64url)
	printf '{"kty":"RSA","kid":"%s","use":"sig","alg":"RS256","n":"%s","e":"AQAB"}' \
	    "$2" "$n"
}
ec_jwk() { # key.pem kid crv bytes
	openssl ec -in "$1" -pubout -outform DER -out "$tmp/ecpub.der" \
	    2>/dev/null
	pub=$(xxd -p "$tmp/ecpub.der" | tr -d '\n')
	len=$(( $4 * 4 ))             # hex digits of x||y
	xy=$(printf '%s' "$pub" | tail -c "$len")
	x=$(printf '%s' "$xy" | cut -c1-$(( len / 2 )) | hex2b64url)
	y=$(printf '%s' "$xy" | cut -c$(( len / 2 + 1 ))- | hex2b64url)
	printf '{"kty":"EC","kid":"%s","crv":"%s","x":"%s","y":"%s"}' \
	    "$2" "$3" "$x" "$y"
}
jws() { # header claims key.pem kind(rsa|ec)
	si="$(printf '%s' "$1" | b64url).$(printf '%s' "$2" | b64url)"
	printf '%s' "$si" > "$tmp/si"
	openssl dgst -sha256 -sign "$3" -out "$tmp/sig" "$tmp/si"
	if [ "$4" = ec ]; then
		sig=$(rs_of_der "$tmp/sig" | hex2b64url)
	else
		sig=$(b64url < "$tmp/sig")
	fi
	printf '%s.%s\n' "$si" "$sig"
}

claims='{"iss":"https://kubernetes.default.svc.cluster.local","sub":"system:serviceaccount:default:web","exp":4102444800}'

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out "$tmp/rsa.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out "$tmp/other.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 \
    -out "$tmp/rsa1024.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$tmp/ec.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 \
    -out "$tmp/ec384.pem" 2>/dev/null

printf '{"keys":[%s,%s]}\n' "$(rsa_jwk "$tmp/rsa.pem" rsa1)" \
    "$(ec_jwk "$tmp/ec.pem" ec1 P-256 32)" > keys.json
printf '{"keys":[%s]}\n' "$(rsa_jwk "$tmp/other.pem" rsa1)" > other.json
printf '{"keys":[%s]}\n' "$(rsa_jwk "$tmp/rsa1024.pem" small)" > rsa1024.json
printf '{"keys":[%s]}\n' "$(ec_jwk "$tmp/ec384.pem" p384 P-384 48)" \
    > p384.json

jws '{"alg":"RS256","kid":"rsa1"}' "$claims" "$tmp/rsa.pem" rsa > rs256.jwt
jws '{"alg":"ES256","kid":"ec1"}' "$claims" "$tmp/ec.pem" ec > es256.jwt
# Alg confusion: HS256 keyed with the RSA public key (PEM text).
openssl rsa -in "$tmp/rsa.pem" -pubout -out "$tmp/pub.pem" 2>/dev/null
si="$(printf '%s' '{"alg":"HS256","kid":"rsa1"}' | b64url).$(printf '%s' \
    "$claims" | b64url)"
sig=$(printf '%s' "$si" | openssl dgst -sha256 -binary -mac HMAC \
    -macopt "hexkey:$(xxd -p "$tmp/pub.pem" | tr -d '\n')" | b64url)
printf '%s.%s\n' "$si" "$sig" > hs256.jwt
