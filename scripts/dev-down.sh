#!/usr/bin/env bash
# Stops what scripts/dev-up.sh started (SIGTERM, then waits for each process to exit).
cd "$(dirname "$0")/.."
for pidfile in .run/pusher*.pid .run/api.pid .run/signer.pid .run/apns.pid .run/redis.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$pidfile: pid $pid still running after 40 s, killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
done
