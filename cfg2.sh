#!/bin/bash
BIN=${BIN:-/tmp/adv/build/bin/passkit-pusher}
run() {
  out=$(env -i PATH=$PATH CERTS_DIR=/tmp/adv/.run/certs REDIS_URL=redis://127.0.0.1:1/0 APNS_URL=https://127.0.0.1:1 PUSHER_LISTEN=127.0.0.1:0 "$@" timeout -s INT 2 $BIN 2>&1)
  rc=$?
  echo "[$*] rc=$rc :: $(echo "$out" | grep -E 'level=error|event=started|event=listening' | grep -v redis_unavailable | sed -E 's/ts=[^ ]+ //' | cut -c1-250 | tr '\n' '|')"
}
run PUSHER_LISTEN=127.0.0.1:18555
run PUSHER_LISTEN=garbage
run PUSHER_LISTEN=:99999
run PUSHER_LISTEN=:-1
run PUSHER_LISTEN=127.0.0.1:
run "PUSHER_LISTEN=[::1]:0"
run "PUSHER_LISTEN=[::1:0"
run "PUSHER_LISTEN=["
run "PUSHER_LISTEN=]:0"
run "PUSHER_LISTEN=:0"
run "PUSHER_LISTEN=localhost:0"
run "PUSHER_LISTEN=1.2.3.4:0"
run "PUSHER_LISTEN=OFF"
run "PUSHER_LISTEN=off"
run "PUSHER_LISTEN=:80"
run "PUSHER_LISTEN=127.0.0.1:+5"
run "PUSHER_LISTEN=127.0.0.1: 5"
run "PUSHER_CONSUMER=$(printf 'a%.0s' {1..129})"
run "PUSHER_CONSUMER=bad name"
run "PUSHER_CONSUMER=.."
run "PUSHER_CONSUMER=."
run "APNS_URL=http://x"
run "APNS_URL=https://host/path"
run "APNS_URL=https://user:pw@127.0.0.1:1"
run "APNS_URL=https://127.0.0.1:1?x=1"
run "APNS_URL=https://127.0.0.1:99999"
run "APNS_URL=https://[::1]:1"
run "APNS_URL=https://"
run "APNS_URL=https://nonexistent.invalid"
run "APNS_CA_FILE=/nonexistent"
run "APNS_CA_FILE=/etc/passwd"
run "APNS_CA_FILE=/tmp"
run "LOG_LEVEL=DEBUG"
run "LOG_LEVEL=trace"
run "REDIS_URL=redis://:secret@127.0.0.1:99999/0"
run "REDIS_URL=rediss://127.0.0.1:1/0"
run "REDIS_URL=redis://127.0.0.1:1/99"
run "CERTS_DIR=/nonexistent"
run "CERTS_DIR=/tmp/exp/emptycerts"
