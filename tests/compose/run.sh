#!/usr/bin/env bash
# tests/compose/run.sh: runs the project's own docker-compose.yml for real and drives it as a user
# would, through the published api port only (tests/compose/drive.py):
#   1. build the images and `up -d` the stack (redis, certs, signer, api, one pusher, APNs stand-in)
#   2. lifecycle: template, pass, signed bundle verified with openssl, register, fetch, update, push
#   3. `up -d --scale pusher=3`: a pass with 90 devices changes; chunks of 10 shared by the pushers;
#      every device gets exactly one push
#   4. redis removed and created again (a new container on the same named volume): the data is still
#      there (append-only file), and one more change pushes every device once
#   5. `stop`: every service exits 0 on SIGTERM; then `down -v` and a check that nothing is left
#   6. production settings (docker/production.env.example with a folder of ours): the certs step
#      refuses an empty folder, naming it, takes a mounted folder of certificates as it is, and
#      refuses the development certificates a dev run left in the named volume
#
# Container engine: a running Docker engine when there is one; else ../shared/tools/container-runtime
# (podman's Docker API + docker-compose v1, needs root), as on CI. Exits 77 (skipped) when neither
# is available. Compose: `docker-compose` (v1) when installed, else `docker compose`.
# Environment: PASSKIT_SHARED_DIR (default ../shared beside the repository), KEEP_STACK=1 to leave
# the stack running for a look after a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
shared=${PASSKIT_SHARED_DIR:-$root/../shared}
log() { echo "compose-test: $*"; }

if ! docker info >/dev/null 2>&1; then
  runtime=$shared/tools/container-runtime
  if [ ! -x "$runtime" ] || [ "$(id -u)" -ne 0 ]; then
    log "skipped: no Docker engine, and $runtime is missing or needs root"
    exit 77
  fi
  log "no Docker engine: starting podman's Docker API with $runtime"
  # from /: the podman service it may start keeps this working directory, and its containers cannot
  # start once that folder is deleted (a clone removed after a run: "write child: broken pipe")
  eval "$(cd / && "$runtime" setup)"
fi
if command -v docker-compose >/dev/null; then compose_bin=docker-compose; else compose_bin="docker compose"; fi
# The build needs the host's pkpass-inspect (drive.py checks bundles with it, as the integration tests do).
[ -x build/bin/pkpass-inspect ] || ./scripts/build.sh build >/dev/null

project=passkit-compose-test
API_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export API_PORT PUSHER_FANOUT_CHUNK=10
export COMPOSE="$compose_bin -p $project -f $root/docker-compose.yml"
logs=$(mktemp -d)

teardown() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    log "FAILED (exit $rc); the last lines of every service's log:"
    $COMPOSE logs --no-color --tail=60 2>&1 | tail -300 || true
  fi
  if [ "${KEEP_STACK:-0}" = 1 ] && [ "$rc" -ne 0 ]; then
    log "KEEP_STACK=1: the stack is left running ($COMPOSE ps)"
    exit "$rc"
  fi
  $COMPOSE down -v --remove-orphans >"$logs/down.log" 2>&1 || { cat "$logs/down.log"; rc=1; }
  rm -rf "$logs"
  exit "$rc"
}
trap teardown EXIT

log "$($compose_bin version 2>/dev/null | head -1)"
$COMPOSE down -v --remove-orphans >/dev/null 2>&1 || true
start=$(date +%s)
$COMPOSE build >"$logs/build.log" 2>&1 || { tail -40 "$logs/build.log"; exit 1; }
log "images built in $(( $(date +%s) - start )) s: $(docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep passkit/ | sort | tr '\n' ' ')"
$COMPOSE up -d 2>&1 | grep -v '^$' | sed 's/^/  /'
$COMPOSE ps
python3 tests/compose/drive.py lifecycle

$COMPOSE up -d --scale pusher=3 2>&1 | grep -v '^$' | sed 's/^/  /'
python3 tests/compose/drive.py fanout

$COMPOSE rm -sf redis 2>&1 | sed 's/^/  /'
$COMPOSE up -d --no-deps redis 2>&1 | sed 's/^/  /'
python3 tests/compose/drive.py persisted

$COMPOSE stop -t 45 2>&1 | sed 's/^/  /'
$COMPOSE ps
# Every long-running service must have exited 0 on SIGTERM (certs is a one-shot step that exited 0).
bad=$($COMPOSE ps | awk 'NR > 2 && $0 !~ /Exit 0/ {print $1}')
if [ -n "$bad" ]; then
  log "not stopped cleanly by SIGTERM: $bad"
  exit 1
fi
log "every service exited 0 on SIGTERM"
$COMPOSE down -v --remove-orphans 2>&1 | sed 's/^/  /'
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project" | wc -l)
vols=$(docker volume ls -q | grep -c "^${project}_" || true)
[ "$left" -eq 0 ] && [ "$vols" -eq 0 ] || { log "left behind: $left containers, $vols volumes"; exit 1; }
log "torn down: no container or volume of $project left"

# Production settings: no stand-in, no generated certificates, a mounted folder.
prod_env=$logs/production.env
mkdir -p "$logs/empty" "$logs/real"
sed -e "s|^PASSKIT_CERTS=.*|PASSKIT_CERTS=$logs/empty|" -e 's|^ADMIN_TOKEN=.*|ADMIN_TOKEN=prod-admin-token-0123456789|' \
    -e 's|^SIGNER_TOKEN=.*|SIGNER_TOKEN=prod-signer-token-0123456789|' docker/production.env.example > "$prod_env"
chmod 755 "$logs"
if out=$($COMPOSE --env-file "$prod_env" run --rm --no-deps certs 2>&1); then
  log "the certs step accepted an empty certificate folder: $out"; exit 1
fi
echo "$out" | grep -q "no pass type certificate in /etc/passkit/certs" || { log "unexpected: $out"; exit 1; }
log "production settings, empty folder: refused ($(echo "$out" | grep -o 'no pass type certificate in [^ ]*'))"
tests/certs/make-dev-certs.sh "$logs/real" PRODTEAM12 pass.com.example.concert >/dev/null
sed -i "s|^PASSKIT_CERTS=.*|PASSKIT_CERTS=$logs/real|" "$prod_env"
out=$($COMPOSE --env-file "$prod_env" run --rm --no-deps certs 2>&1) || { log "refused a real folder: $out"; exit 1; }
echo "$out" | grep -q "certs: using /etc/passkit/certs/pass.com.example.concert/certificate.pem" \
  || { log "unexpected: $out"; exit 1; }
[ -z "$(ls "$logs/real" | grep -v -x -e ca -e apns -e wwdr.pem -e wwdr.srl -e pass.com.example.concert)" ] \
  || { log "the certs step wrote into the mounted folder"; exit 1; }
log "production settings, mounted folder: used as it is"
# Development certificates left in the named volume by a dev run are refused with DEV_CERTS=0.
$COMPOSE run --rm --no-deps certs >/dev/null 2>&1 || { log "the dev certs step failed"; exit 1; }
grep -v '^PASSKIT_CERTS=' "$prod_env" > "$logs/prod-no-folder.env"
if out=$($COMPOSE --env-file "$logs/prod-no-folder.env" run --rm --no-deps certs 2>&1); then
  log "production settings took the development certificates of the named volume: $out"; exit 1
fi
echo "$out" | grep -q "holds the development certificates" || { log "unexpected: $out"; exit 1; }
log "production settings, development certificates left in the volume: refused"
$COMPOSE --env-file "$prod_env" down -v --remove-orphans >/dev/null 2>&1
log "passed"
