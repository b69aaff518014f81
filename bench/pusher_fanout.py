#!/usr/bin/env python3
"""Benchmark: one pass update fanned out to N registrations (default 100,000) through passkit-pusher
to the APNs stand-in on loopback, with 1 pusher and then with 2.

For each run it prints: pushes answered 200, pushes per second (first to last push the stand-in
saw), p50/p99 time from the event (its stream id's timestamp) to the push reaching the stand-in,
each pusher's RSS before the event, sampled during the run (max) and at the end, and the CPU
seconds used by the pushers, the stand-in and redis-server.

Usage: bench/pusher_fanout.py [--devices N] [--pushers 1,2] [--env NAME=VALUE ...]
Build first (./scripts/build.sh); needs redis-server and redis-cli. Nothing here is a pass/fail
test: it prints figures. The stand-in runs on the same 2 cores, so it competes with the pushers.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402
from procstat import cpu_s, proc_kb  # noqa: E402

PTID = harness.PASS_TYPE
SERIAL = "bench-0001"




def percentile(sorted_values, p):
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))]


def run_once(devices, pushers, env):
    stack = harness.Stack(start_pusher=False, pass_types=(PTID,))
    import subprocess
    subprocess.run([os.path.join(harness.SOURCE_DIR, "tests", "certs", "make-dev-certs.sh"), stack.certs,
                    harness.TEAM_ID, PTID], check=True, capture_output=True)
    try:
        stack.start_redis()
        stack.start_apns()
        stack.register_many(PTID, SERIAL, devices, prefix="b")
        stack.redis_cli("HSET", "pk:pass:%s:%s" % (PTID, SERIAL), "version", "1")
        names = []
        for i in range(pushers):
            name = "pusher%d" % i
            e = {"LOG_LEVEL": "info", "PUSHER_BLOCK_MS": "1000", "PUSHER_COALESCE_MS": "100"}
            e.update(env)
            stack.start_pusher_service(name, e)
            names.append(name)
        pids = [stack.services[n].proc.pid for n in names]
        rss_before = [proc_kb(p, "VmRSS") for p in pids]
        cpu0 = {"pushers": sum(cpu_s(p) for p in pids), "standin": cpu_s(stack.services["apns"].proc.pid),
                "redis": cpu_s(stack.redis.proc.pid)}
        event_id = stack.redis_cli("XADD", "pk:events", "*", "type", "pass.updated", "passTypeIdentifier", PTID,
                                   "serialNumber", SERIAL, "version", "2")
        event_ms = int(event_id.split("-")[0])
        t0 = time.time()
        rss_max = list(rss_before)
        while time.time() - t0 < 600:
            for i, p in enumerate(pids):
                rss_max[i] = max(rss_max[i], proc_kb(p, "VmRSS"))
            if stack.apns_request_count() >= devices:
                break
            time.sleep(0.1)
        time.sleep(0.3)
        rss_after = [proc_kb(p, "VmRSS") for p in pids]
        cpu = {"pushers": sum(cpu_s(p) for p in pids) - cpu0["pushers"],
               "standin": cpu_s(stack.services["apns"].proc.pid) - cpu0["standin"],
               "redis": cpu_s(stack.redis.proc.pid) - cpu0["redis"]}
        reqs = stack.apns_requests()
    finally:
        stack.stop()
        stack.cleanup()
    ok = [r for r in reqs if r.get("status") == 200]
    times = sorted(r["time_ms"] for r in ok)
    lat = sorted(t - event_ms for t in times)
    span = (times[-1] - times[0]) / 1000.0 if len(times) > 1 else 0.0
    return {"ok": len(ok), "requests": len(reqs), "distinct": len({r["token"] for r in ok}),
            "rate": len(ok) / span if span else 0.0, "p50": percentile(lat, 50), "p99": percentile(lat, 99),
            "rss_before": rss_before, "rss_max": rss_max, "rss_after": rss_after, "cpu": cpu}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100000)
    ap.add_argument("--pushers", default="1,2")
    ap.add_argument("--env", action="append", default=[], help="extra pusher variable NAME=VALUE")
    args = ap.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    print("devices=%d nproc=%d pusher_env=%s" % (args.devices, os.cpu_count(), env or "defaults"))
    for n in [int(x) for x in args.pushers.split(",")]:
        r = run_once(args.devices, n, env)
        print("pushers=%d ok=%d distinct=%d requests=%d pushes_per_s=%.0f event_to_push_p50_ms=%d p99_ms=%d "
              "rss_kb_before=%s rss_kb_max=%s rss_kb_after=%s cpu_s_pushers=%.2f cpu_s_standin=%.2f "
              "cpu_s_redis=%.2f" % (n, r["ok"], r["distinct"], r["requests"], r["rate"], r["p50"], r["p99"],
                                    r["rss_before"], r["rss_max"], r["rss_after"], r["cpu"]["pushers"],
                                    r["cpu"]["standin"], r["cpu"]["redis"]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
