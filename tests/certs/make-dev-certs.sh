#!/usr/bin/env bash
# make-dev-certs.sh OUT_DIR TEAM_ID PASS_TYPE_ID [PASS_TYPE_ID ...]
#
# Generates a throw-away certificate hierarchy shaped like Apple's, for tests and the local stack:
#   OUT_DIR/ca/root.pem, root-key.pem      a root CA ("Test Root CA")
#   OUT_DIR/wwdr.pem (+ ca/wwdr-key.pem)   a WWDR-like intermediate (CN=... Developer Relations ..., OU=G4)
#   OUT_DIR/<ptid>/certificate.pem         a Pass Type ID certificate issued by the intermediate, subject
#   OUT_DIR/<ptid>/private-key.pem           UID=<ptid>, CN=Pass Type ID: <ptid>, OU=<TEAM_ID>, O=..., C=US,
#                                            EKU clientAuth + 1.2.840.113635.100.4.14 (as Apple issues them)
#   OUT_DIR/ca/chain.pem                   root + intermediate (what a verifier trusts)
#   OUT_DIR/apns/server.pem, server-key.pem  a TLS server certificate for localhost / 127.0.0.1, issued
#                                            by the root (for the APNs stand-in)
# Existing files are kept, so re-running adds pass types to the same hierarchy. Keys are RSA-2048.
# Nothing here is a secret of anybody: never commit the output.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 OUT_DIR TEAM_ID PASS_TYPE_ID..." >&2; exit 2; }
out=$1; team=$2; shift 2
mkdir -p "$out/ca" "$out/apns"
umask 077
cd "$out"

if [ ! -f ca/root.pem ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca/root-key.pem -out ca/root.pem -days 3650 \
    -subj "/C=US/O=PassKit Backend Test/CN=Test Root CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

if [ ! -f wwdr.pem ]; then
  openssl req -new -newkey rsa:2048 -nodes -keyout ca/wwdr-key.pem -out ca/wwdr.csr \
    -subj "/C=US/O=PassKit Backend Test/OU=G4/CN=Test Worldwide Developer Relations Certification Authority" 2>/dev/null
  printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > ca/wwdr.ext
  openssl x509 -req -in ca/wwdr.csr -CA ca/root.pem -CAkey ca/root-key.pem -CAcreateserial \
    -out wwdr.pem -days 3000 -extfile ca/wwdr.ext 2>/dev/null
  cat ca/root.pem wwdr.pem > ca/chain.pem
fi

for ptid in "$@"; do
  [ -f "$ptid/certificate.pem" ] && continue
  mkdir -p "$ptid"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$ptid/private-key.pem" -out "$ptid/req.csr" \
    -subj "/UID=$ptid/CN=Pass Type ID: $ptid/OU=$team/O=PassKit Backend Test/C=US" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth,1.2.840.113635.100.4.14\n1.2.840.113635.100.6.1.16=ASN1:UTF8String:%s\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' "$ptid" > "$ptid/ext"
  openssl x509 -req -in "$ptid/req.csr" -CA wwdr.pem -CAkey ca/wwdr-key.pem -CAcreateserial \
    -out "$ptid/certificate.pem" -days 365 -extfile "$ptid/ext" 2>/dev/null
  rm -f "$ptid/req.csr" "$ptid/ext"
done

if [ ! -f apns/server.pem ]; then
  openssl req -new -newkey rsa:2048 -nodes -keyout apns/server-key.pem -out apns/server.csr \
    -subj "/C=US/O=PassKit Backend Test/CN=localhost" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,DNS:apns-standin\n' > apns/server.ext
  openssl x509 -req -in apns/server.csr -CA ca/root.pem -CAkey ca/root-key.pem -CAcreateserial \
    -out apns/server.pem -days 3650 -extfile apns/server.ext 2>/dev/null
  rm -f apns/server.csr apns/server.ext
fi
chmod -R a+rX "$out" 2>/dev/null || true
