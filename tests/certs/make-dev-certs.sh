#!/usr/bin/env bash
# make-dev-certs.sh [OPTIONS] OUT_DIR TEAM_ID PASS_TYPE_ID [PASS_TYPE_ID ...]
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
#
# Options, for the pass type certificates of this run (to make the ones a service must refuse):
#   --replace             issue a new certificate and key even when the pass type already has them
#   --days N              valid for N days from now (default 365)
#   --not-before DATE --not-after DATE
#                         explicit validity, DATE as YYYYMMDDHHMMSSZ (e.g. an expired certificate)
#   --expired             shorthand: valid from 2020-01-01 to 2021-01-01
#   --issuer g1           issued by a second intermediate, ca/wwdr-g1.pem, named like Apple's first WWDR
#                         ("OU=PassKit Backend Test Worldwide Developer Relations", no "G4"), not by wwdr.pem
#   --uid VALUE           subject UID VALUE instead of the pass type identifier (the folder name)
set -euo pipefail
usage() { echo "usage: $0 [--replace] [--days N] [--not-before DATE --not-after DATE] [--expired]" \
  "[--issuer g1] [--uid VALUE] OUT_DIR TEAM_ID PASS_TYPE_ID..." >&2; exit 2; }
replace=0; days=365; not_before=; not_after=; issuer=g4; uid=
while [ $# -gt 0 ]; do
  case $1 in
    --replace) replace=1; shift ;;
    --days) days=$2; shift 2 ;;
    --not-before) not_before=$2; shift 2 ;;
    --not-after) not_after=$2; shift 2 ;;
    --expired) not_before=20200101000000Z; not_after=20210101000000Z; shift ;;
    --issuer) issuer=$2; shift 2 ;;
    --uid) uid=$2; shift 2 ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || usage
case $issuer in g4|g1) ;; *) usage ;; esac
if [ -n "$not_before$not_after" ] && { [ -z "$not_before" ] || [ -z "$not_after" ]; }; then usage; fi
out=$1; team=$2; shift 2
mkdir -p "$out/ca" "$out/apns"
out=$(cd "$out" && pwd)   # absolute: the script cds into it, and the last chmod names it again
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

if [ "$issuer" = g1 ] && [ ! -f ca/wwdr-g1.pem ]; then
  openssl req -new -newkey rsa:2048 -nodes -keyout ca/wwdr-g1-key.pem -out ca/wwdr-g1.csr \
    -subj "/C=US/O=PassKit Backend Test/OU=PassKit Backend Test Worldwide Developer Relations/CN=Test Worldwide Developer Relations Certification Authority" 2>/dev/null
  openssl x509 -req -in ca/wwdr-g1.csr -CA ca/root.pem -CAkey ca/root-key.pem -CAcreateserial \
    -out ca/wwdr-g1.pem -days 3000 -extfile ca/wwdr.ext 2>/dev/null
  rm -f ca/wwdr-g1.csr
fi
if [ "$issuer" = g1 ]; then ca_cert=ca/wwdr-g1.pem; ca_key=ca/wwdr-g1-key.pem; else ca_cert=wwdr.pem; ca_key=ca/wwdr-key.pem; fi

# openssl x509 -req (OpenSSL 3.0) cannot backdate: explicit dates go through a minimal `openssl ca`.
if [ -n "$not_before" ]; then
  mkdir -p ca/db
  [ -f ca/db/index.txt ] || : > ca/db/index.txt
  [ -f ca/db/serial ] || openssl rand -hex 8 > ca/db/serial
  printf '[ca]\ndefault_ca = dev\n[dev]\ndatabase = ca/db/index.txt\nnew_certs_dir = ca/db\nserial = ca/db/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\nUID = optional\ncommonName = optional\norganizationalUnitName = optional\norganizationName = optional\ncountryName = optional\n' > ca/db/ca.cnf
fi

for ptid in "$@"; do
  [ "$replace" = 0 ] && [ -f "$ptid/certificate.pem" ] && continue
  mkdir -p "$ptid"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$ptid/private-key.pem" -out "$ptid/req.csr" \
    -subj "/UID=${uid:-$ptid}/CN=Pass Type ID: $ptid/OU=$team/O=PassKit Backend Test/C=US" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth,1.2.840.113635.100.4.14\n1.2.840.113635.100.6.1.16=ASN1:UTF8String:%s\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' "$ptid" > "$ptid/ext"
  if [ -n "$not_before" ]; then
    openssl ca -batch -config ca/db/ca.cnf -cert "$ca_cert" -keyfile "$ca_key" -in "$ptid/req.csr" \
      -out "$ptid/certificate.pem" -startdate "$not_before" -enddate "$not_after" -extfile "$ptid/ext" \
      -notext -preserveDN 2>/dev/null
  else
    openssl x509 -req -in "$ptid/req.csr" -CA "$ca_cert" -CAkey "$ca_key" -CAcreateserial \
      -out "$ptid/certificate.pem" -days "$days" -extfile "$ptid/ext" 2>/dev/null
  fi
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
