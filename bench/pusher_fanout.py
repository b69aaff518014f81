#!/usr/bin/env python3
"""Benchmark: one pass update fanned out to N registrations (default 100,000) through passkit-pusher
to the APNs stand-in on loopback. Prints pushes per second, p50/p99 time from the event to the push
as the stand-in saw it, and the pusher's peak RSS, for 1 pusher and then for 2.

Usage: bench/pusher_fanout.py [--devices N] [--pushers 1,2]   (build first: ./scripts/build.sh)
Needs redis-server, redis-cli and the build's passkit-pusher and apns-standin.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402

PTID = harness.PASS_TYPE
SERIAL = "bench-0001"


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def populate(stack, devices):
    cmds = []
    for i in range(devices):
        dli = "dev%07d" % i
        token = "%064x" % (0xA000000 + i)
        cmds.append(resp("SET", "pk:devtoken:%s:%s" % (dli, PTID), token))
        cmds.append(resp("SADD", "pk:devpasses:%s:%s" % (dli, PTID), SERIAL))
        cmds.append(resp("SADD", "pk:regs:%s:%s" % (PTID, SERIAL), dli))
    cmds.append(resp("HSET", "pk:pass:%s:%s" % (PTID, SERIAL), "version", "1"))
    subprocess.run(["redis-cli", "-p", str(stack.redis_port), "--pipe"], input=b"".join(cmds), check=True,
                   capture_output=True)


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def current_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(devices, pushers):
    stack = harness.Stack(start_pusher=False, pass_types=(PTID,))
    try:
        stack.start_infra_only = True
        subprocess.run([os.path.join(harness.SOURCE_DIR, "tests", "certs", "make-dev-certs.sh"), stack.certs,
                        harness.TEAM_ID, PTID], check=True, capture_output=True)
        stack.start_redis()
        stack.start_apns()
        populate(stack, devices)
        names = []
        for i in range(pushers):
            name = "pusher%d" % i
            stack.start_pusher_service(name, {"LOG_LEVEL": "info", "PUSHER_BLOCK_MS": "1000"})
            names.append(name)
        time.sleep(1.0)
        pids = [stack.services[n].proc.pid for n in names]
        baseline_rss = [current_rss_kb(p) for p in pids]
        stack.redis_cli("XADD", "pk:events", "*", "type", "pass.updated", "passTypeIdentifier", PTID,
                        "serialNumber", SERIAL, "version", "2")
        t0 = time.time()
        rss_samples = []
        count = 0
        while time.time() - t0 < 300:
            count = stack.apns_request_count()
            rss_samples.append([current_rss_kb(p) for p in pids])
            if count >= devices:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        peak = [rss_kb(p) for p in pids]
        cpu = {"pushers": sum(cpu_s(p) for p in pids), "standin": cpu_s(stack.services["apns"].proc.pid)}
        reqs = stack.apns_requests()
    finally:
        results = stack.stop()
    ok = [r for r in reqs if r.get("status") == 200]
    tokens = {r["token"] for r in ok}
    event_ms = None
    for line in open(os.path.join(stack.tmp, "event_ms"), "r") if os.path.exists(os.path.join(stack.tmp, "event_ms")) else []:
        event_ms = int(line)
    times = sorted(r["time_ms"] for r in ok)
    stack.cleanup()
    return {"requests": len(reqs), "ok": len(ok), "distinct": len(tokens), "times": times,
            "peak_rss_kb": peak, "cpu": cpu, "baseline_rss_kb": baseline_rss, "rss_samples": rss_samples,
            "exit": {k: v[0] for k, v in results.items()}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100000)
    ap.add_argument("--pushers", default="1,2")
    args = ap.parse_args()
    for n in [int(x) for x in args.pushers.split(",")]:
        r = run_once(args.devices, n)
        t = r["times"]
        span = (t[-1] - t[0]) / 1000.0 if len(t) > 1 else 0
        print("pushers=%d ok=%d distinct=%d requests=%d span_s=%.2f pushes_per_s=%.0f peak_rss_kb=%s" % (
            n, r["ok"], r["distinct"], r["requests"], span, r["ok"] / span if span else 0, r["peak_rss_kb"]), r["cpu"])


if __name__ == "__main__":
    main()
