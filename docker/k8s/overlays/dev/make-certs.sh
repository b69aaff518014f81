#!/usr/bin/env bash
# make-certs.sh: the throw-away certificates of the dev overlay, in certs/ beside this script
# (gitignored), and certs/secrets.yaml, the dev Secrets made from them (a resource of
# kustomization.yaml). Runs tests/certs/make-dev-certs.sh, which keeps what already exists, so
# running this again changes nothing; delete certs/ to start over.
#   certs/ca/root.pem, ca/chain.pem                  test root CA, root + test WWDR
#   certs/wwdr.pem                                   the test WWDR intermediate (projected into CERTS_DIR)
#   certs/pass.com.example.concert/{certificate,private-key}.pem   the example pass type
#   certs/apns/server.pem, server-key.pem            the APNs stand-in's server certificate (SAN apns-standin)
# Nothing here is a secret of anybody: never commit it.
#
# Why a file of Secrets rather than a kustomize secretGenerator over these files: kustomize writes
# generated Secret data as base64 folded into 70-column lines. The API server accepts that (Go's
# base64 decoder skips newlines), but schema validators that check the "byte" format strictly, as
# shared/tools/k8s-validate does, reject it. stringData holds the PEM text as it is and validates.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
certs=$here/certs
"$repo/tests/certs/make-dev-certs.sh" "$certs" DEVTEAM123 pass.com.example.concert

# secret NAME TYPE KEY=FILE...: one Secret with stringData, each FILE (relative to certs/) as a block.
secret() {
  local name=$1 type=$2 pair key file
  shift 2
  printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n' "$name"
  printf '  labels:\n    app.kubernetes.io/part-of: passkit\n'
  printf 'type: %s\nstringData:\n' "$type"
  for pair in "$@"; do
    key=${pair%%=*} file=$certs/${pair#*=}
    [ -s "$file" ] || { echo "make-certs.sh: $file is missing" >&2; exit 1; }
    printf '  %s: |\n' "$key"
    sed 's/^/    /' "$file"
  done
}
tmp=$certs/secrets.yaml.tmp
{
  echo "# Written by make-certs.sh from the files beside it: dev only, do not edit, never commit."
  secret passkit-passtype-concert kubernetes.io/tls \
    tls.crt=pass.com.example.concert/certificate.pem tls.key=pass.com.example.concert/private-key.pem
  secret passkit-dev-ca Opaque root.pem=ca/root.pem chain.pem=ca/chain.pem wwdr.pem=wwdr.pem
  secret passkit-dev-apns Opaque server.pem=apns/server.pem server-key.pem=apns/server-key.pem
} > "$tmp"
mv "$tmp" "$certs/secrets.yaml"
echo "dev certificates and $certs/secrets.yaml ready"
