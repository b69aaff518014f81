#!/usr/bin/env bash
# Runs the whole stack locally, for development: installs what is missing, builds, then starts a private
# redis-server, the APNs stand-in (with development certificates generated into .run/certs), the signer,
# the api and PUSHERS pushers (default 1), uploads the sample pass model (samples/concert.pass) and creates
# one pass.
# Everything runs in the background; logs and pids are in .run/. Stop it with scripts/dev-down.sh.
# Ports: API_PORT (8080), SIGNER_PORT (8081), REDIS_PORT (6390), APNS_PORT (8443), and PUSHER_PORT (9102)
# onwards, one per pusher, for its /healthz, /readyz and /metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
./scripts/install-deps.sh
./scripts/build.sh build
./scripts/dev-down.sh >/dev/null 2>&1 || true
run=$root/.run
mkdir -p "$run"
API_PORT=${API_PORT:-8080} SIGNER_PORT=${SIGNER_PORT:-8081} REDIS_PORT=${REDIS_PORT:-6390} APNS_PORT=${APNS_PORT:-8443}
PUSHER_PORT=${PUSHER_PORT:-9102} PUSHERS=${PUSHERS:-1}
case "$PUSHERS" in [1-9]) ;; *) echo "PUSHERS must be 1 to 9" >&2; exit 1 ;; esac
pusher_ports=$(seq "$PUSHER_PORT" $((PUSHER_PORT + PUSHERS - 1)))
PASS_TYPE=${PASS_TYPE:-pass.com.example.concert}
ADMIN_TOKEN=${ADMIN_TOKEN:-$(cat "$run/admin-token" 2>/dev/null || openssl rand -hex 16)}
echo "$ADMIN_TOKEN" > "$run/admin-token"
SIGNER_TOKEN=$(cat "$run/signer-token" 2>/dev/null || openssl rand -hex 16)
echo "$SIGNER_TOKEN" > "$run/signer-token"
for port in "$API_PORT" "$SIGNER_PORT" "$REDIS_PORT" "$APNS_PORT" $pusher_ports; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use: stop what uses it, or choose others with API_PORT, SIGNER_PORT," \
         "REDIS_PORT, APNS_PORT and PUSHER_PORT" >&2
    exit 1
  fi
done
tests/certs/make-dev-certs.sh "$run/certs" DEVTEAM123 "$PASS_TYPE"

start() { # name command...
  local name=$1; shift
  "$@" > "$run/$name.log" 2>&1 &
  echo $! > "$run/$name.pid"
}
wait_http() { # url
  for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "not answering: $1 (see $run/*.log)" >&2; exit 1
}
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$run" --appendonly yes --save ''
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
kill -0 "$(cat "$run/redis.pid")" 2>/dev/null || { echo "redis-server did not start (see $run/redis.log)" >&2; exit 1; }
start apns build/bin/apns-standin --listen "127.0.0.1:$APNS_PORT" --cert "$run/certs/apns/server.pem" \
  --key "$run/certs/apns/server-key.pem" --client-ca "$run/certs/ca/chain.pem" --record "$run/apns-requests.jsonl"
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 CERTS_DIR=$run/certs PUBLIC_URL=http://localhost:$API_PORT \
  SIGNER_TOKEN=$SIGNER_TOKEN
SIGNER_LISTEN=127.0.0.1:$SIGNER_PORT start signer build/bin/passkit-signer
wait_http "http://127.0.0.1:$SIGNER_PORT/healthz"
API_LISTEN=127.0.0.1:$API_PORT SIGNER_URL=http://127.0.0.1:$SIGNER_PORT ADMIN_TOKEN=$ADMIN_TOKEN start api build/bin/passkit-api
wait_http "http://127.0.0.1:$API_PORT/readyz"
i=0
for port in $pusher_ports; do
  i=$((i + 1))
  APNS_URL=https://127.0.0.1:$APNS_PORT APNS_CA_FILE=$run/certs/ca/root.pem PUSHER_LISTEN=127.0.0.1:$port \
    start "pusher$i" build/bin/passkit-pusher
  wait_http "http://127.0.0.1:$port/readyz"
done

(cd samples/concert.pass && rm -f "$run/concert.zip" && zip -qr "$run/concert.zip" .)
auth="Authorization: Bearer $ADMIN_TOKEN"
curl -fsS -o /dev/null -X PUT -H "$auth" --data-binary @"$run/concert.zip" "http://127.0.0.1:$API_PORT/admin/v1/templates/concert"
curl -fsS -o "$run/pass.json" -X PUT -H "$auth" -H 'Content-Type: application/json' \
  -d '{"templateId":"concert","pass":{"barcodes":[{"message":"TICKET-0001","format":"PKBarcodeFormatQR","messageEncoding":"iso-8859-1"}]}}' \
  "http://127.0.0.1:$API_PORT/admin/v1/passes/$PASS_TYPE/ticket-0001"
echo "stack running (logs in .run/*.log, stop with scripts/dev-down.sh); admin token in .run/admin-token;"
echo "the pass as created (with its authenticationToken) is in .run/pass.json; pushes the APNs stand-in"
echo "received are recorded in .run/apns-requests.jsonl; pusher metrics: http://127.0.0.1:$PUSHER_PORT/metrics"
echo "download the signed sample pass:"
echo "  curl -o ticket-0001.pkpass -H \"Authorization: Bearer $ADMIN_TOKEN\" http://127.0.0.1:$API_PORT/admin/v1/passes/$PASS_TYPE/ticket-0001/pkpass"
