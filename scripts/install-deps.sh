#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs to build, run, test and benchmark (wrk: bench/signer_bench.py),
# skipping those present.
# Runs apt-get update first when something is missing. Needs root (or sudo).
set -euo pipefail
packages=(build-essential cmake pkg-config git ca-certificates curl openssl zip unzip python3
          libh2o-dev libuv1-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev libzip-dev libcmocka-dev
          libssl-dev libnghttp2-dev redis-server redis-tools clang wrk)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
