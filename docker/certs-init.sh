#!/usr/bin/env bash
# passkit-certs-init: the compose stack's one-shot certificate step (service "certs").
#
# When CERTS_DIR already holds a pass type certificate (CERTS_DIR/pass.*/certificate.pem), it only
# lists them and exits 0: that is a mounted production folder, or development certificates made by
# an earlier run. Otherwise, when DEV_CERTS=1, it generates throw-away development certificates for
# the pass types in PASS_TYPE_IDS (space-separated) with tests/certs/make-dev-certs.sh: a test root,
# a WWDR-like intermediate (CERTS_DIR/wwdr.pem, which the signer then uses instead of Apple's), one
# certificate per pass type, and the APNs stand-in's server certificate. With DEV_CERTS=0 and no
# certificate it fails, naming the folder, so a production stack never signs with test certificates.
set -euo pipefail
dir=${CERTS_DIR:-/etc/passkit/certs}
shopt -s nullglob
found=("$dir"/pass.*/certificate.pem)
if [ ${#found[@]} -gt 0 ]; then
  for f in "${found[@]}"; do echo "certs: using $f"; done
  exit 0
fi
if [ "${DEV_CERTS:-0}" != 1 ]; then
  echo "certs: no pass type certificate in $dir (expected $dir/pass.<id>/certificate.pem and" \
       "private-key.pem): mount your certificate folder there, or set DEV_CERTS=1 for development ones" >&2
  exit 1
fi
read -r -a ptids <<< "${PASS_TYPE_IDS:-pass.com.example.concert}"
[ ${#ptids[@]} -gt 0 ] || { echo "certs: PASS_TYPE_IDS is empty" >&2; exit 1; }
make-dev-certs.sh "$dir" "${TEAM_ID:-DEVTEAM123}" "${ptids[@]}"
echo "certs: generated development certificates for ${ptids[*]} in $dir (test root CA, not Apple's)"
