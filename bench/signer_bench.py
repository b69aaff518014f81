#!/usr/bin/env python3
"""Benchmark: passkit-signer throughput against OpenSSL's own RSA-2048 signing rate on the same cores.

It starts redis-server, the signer and the api (tests/integration/harness.py) with throw-away
certificates, stores Apple's Event sample (../shared/fixtures/passes/Event.pass; a generated template
when that folder is absent) as a template, creates N distinct passes through the admin API, then asks
the signer directly (GET /v1/bundles/..., K requests at a time) for:

  cold      each pass once: nothing cached, every request builds and signs a bundle
  warm      the same passes again: every request is a cache hit
  warm wrk  (--warm-seconds) wrk cycling over the same N cached passes for that long, with --clients
            connections on as many threads as there are cores: the cache-hit rate with a client that
            is not the limit
  cold #2.. (--cold-rounds) every pass updated (a new version), then fetched again: RSS must stay flat

For each round it prints passes/s (wall time, first request to last answer), p50/p99 latency, the
signer's RSS at the end of the round and its peak (VmHWM), and the CPU seconds the signer, redis-server
and the client used. `openssl speed -seconds 3 rsa2048` runs on one core and with `-multi <cores>`
before the stack starts and again at the end (the machine may be shared: compare the two), then the
ratios: cold passes/s / openssl sign/s (all cores, mean of the two runs) and cached / cold (the wrk
round's requests/s over the first cold round's passes/s, both from this run).

The cold and warm rounds' client is curl's --parallel (C, one process, one thread) when curl is
installed, else Python threads (--client python, whose GIL and http.client bound a cache-hit round).
The wrk round (Debian package wrk, installed by scripts/install-deps.sh) gives the cached figure: a C
client on every core for a fixed time, so that a single-threaded client does not set it. Without wrk
the bench says so and takes the warm round's figure instead, marked as bound by its client. Every
client runs on the same cores as the signer and Redis, whereas openssl speed has the cores to itself:
the ratios charge the signer for its client and its Redis.

Usage: bench/signer_bench.py [--passes 2000] [--clients 8] [--cold-rounds 2] [--client curl|python]
                             [--warm-seconds 10]
                             [--template DIR | --generated-template] [--env NAME=VALUE ...]
                             [--perf SECONDS [--perf-round cold|warm|"warm wrk"] [--keep-perf FILE]]
                             [--no-openssl]
Build first (./scripts/build.sh). Not a test: it prints figures.
"""
import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402
from procstat import cpu_s, proc_kb  # noqa: E402

PTID = harness.PASS_TYPE
EVENT_PASS = os.path.join(harness.SHARED_DIR, "fixtures", "passes", "Event.pass")




def children_cpu_s():
    t = os.times()
    return t.children_user + t.children_system


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))]


def template_files(folder):
    """{name: bytes} of a pass folder, or a generated template (pass.json + 1x1 PNGs) when folder is None."""
    if folder is None:
        files = harness.sample_template()
        return {k: (v.encode() if isinstance(v, str) else v) for k, v in files.items()}
    files = {}
    for root, _, names in os.walk(folder):
        for n in names:
            full = os.path.join(root, n)
            rel = os.path.relpath(full, folder)
            if rel in ("manifest.json", "signature"):
                continue
            with open(full, "rb") as f:
                files[rel] = f.read()
    return files


def create_passes(stack, serials, fields_fn, threads=8):
    errors = []

    def work(chunk):
        for s in chunk:
            r = stack.admin("PUT", "/passes/%s/%s" % (PTID, s), {"templateId": "bench", "pass": fields_fn(s)})
            if r.status not in (200, 201):
                errors.append((s, r.status, r.body[:200]))

    chunks = [serials[i::threads] for i in range(threads)]
    ts = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("creating passes failed: %r" % errors[:3])


def fetch_python(port, serials, clients):
    """K threads, each with a keep-alive connection. Returns [(status, seconds, bytes)], wall seconds."""
    results, lock = [], threading.Lock()
    queue = list(serials)
    headers = {"Authorization": "Bearer " + harness.SIGNER_TOKEN}

    def work():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while True:
            with lock:
                if not queue:
                    break
                s = queue.pop()
            t0 = time.perf_counter()
            conn.request("GET", "/v1/bundles/%s/%s" % (PTID, s), headers=headers)
            r = conn.getresponse()
            body = r.read()
            mine.append((r.status, time.perf_counter() - t0, len(body)))
        conn.close()
        with lock:
            results.extend(mine)

    ts = [threading.Thread(target=work) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results, time.perf_counter() - t0


def fetch_curl(port, serials, clients, tmp):
    """curl --parallel: K transfers at a time over reused connections, each written to /dev/null."""
    cfg = os.path.join(tmp, "curl.cfg")
    with open(cfg, "w") as f:
        f.write('header = "Authorization: Bearer %s"\n' % harness.SIGNER_TOKEN)
        f.write('write-out = "%{http_code} %{time_total} %{size_download}\\n"\n')
        for s in serials:
            f.write('url = "http://127.0.0.1:%d/v1/bundles/%s/%s"\noutput = "/dev/null"\n' % (port, PTID, s))
    t0 = time.perf_counter()
    p = subprocess.run(["curl", "-s", "--parallel", "--parallel-immediate", "--parallel-max", str(clients), "-K", cfg],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    results = []
    for line in p.stdout.splitlines():
        code, secs, size = line.split()
        results.append((int(code), float(secs), int(float(size))))
    return results, wall


WRK_SCRIPT = """-- written by bench/signer_bench.py: GET the cached passes' bundles in turn, forever
local paths = {%(paths)s}
local nthreads = %(threads)d
local started = 0
wrk.headers["Authorization"] = "Bearer %(token)s"

function setup(thread)
  -- each thread starts at its own share of the passes
  thread:set("at", started * math.floor(#paths / nthreads))
  started = started + 1
end

function init(args)
  requests = {}
  for i, p in ipairs(paths) do
    requests[i] = wrk.format("GET", p)
  end
end

function request()
  at = at %% #requests + 1
  return requests[at]
end

function done(summary, latency, rates)
  local e = summary.errors
  io.write(string.format("BENCH requests=%%d duration_us=%%d bytes=%%d status_errors=%%d socket_errors=%%d",
                         summary.requests, summary.duration, summary.bytes, e.status,
                         e.connect + e.read + e.write + e.timeout))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format(" p%%s=%%d", p, latency:percentile(p)))
  end
  io.write(string.format(" max=%%d\\n", latency.max))
end
"""


def fetch_wrk(port, serials, clients, seconds, tmp):
    """wrk for seconds over the passes' bundle URLs, cycled. Returns (summary dict, wrk's own lines)."""
    threads = max(1, min(os.cpu_count() or 1, clients))
    script = os.path.join(tmp, "warm.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % {"paths": ",".join('"/v1/bundles/%s/%s"' % (PTID, s) for s in serials),
                              "threads": threads, "token": harness.SIGNER_TOKEN})
    argv = ["wrk", "-t", str(threads), "-c", str(clients), "-d", "%gs" % seconds, "--timeout", "10s", "-s", script,
            "http://127.0.0.1:%d" % port]
    p = subprocess.run(argv, capture_output=True, text=True)
    m = re.search(r"^BENCH (.*)$", p.stdout, re.M)
    if p.returncode != 0 or m is None:
        raise SystemExit("`%s` failed (%d):\n%s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
    summary = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    own = [l.strip() for l in p.stdout.splitlines() if l.strip().startswith(("Latency", "Requests/sec", "Transfer/sec"))]
    return summary, own, argv


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.max_kb, self.stop_flag = pid, 0, threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            self.max_kb = max(self.max_kb, proc_kb(self.pid, "VmRSS"))
            time.sleep(0.02)


def perf_start(name, pid, args, tmp):
    """perf record of the signer for --perf seconds when this is the round --perf-round names, else None."""
    if not args.perf or name != args.perf_round:
        return None
    perf = subprocess.Popen(["perf", "record", "--call-graph", args.perf_callgraph, "-F", "999", "-p", str(pid), "-o",
                             os.path.join(tmp, "perf.data"), "--", "sleep", str(args.perf)],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "perf.log"), "w"))
    time.sleep(0.3)
    return perf


def run_round(name, stack, serials, args, tmp):
    signer, redis = stack.services["signer"].proc.pid, stack.redis.proc.pid
    cpu0 = (cpu_s(signer), cpu_s(redis), children_cpu_s() if args.client == "curl" else time.process_time())
    sampler = RssSampler(signer)
    sampler.start()
    perf = perf_start(name, signer, args, tmp)
    if args.client == "curl":
        results, wall = fetch_curl(stack.signer_port, serials, args.clients, tmp)
        client_cpu = children_cpu_s() - cpu0[2]
    else:
        results, wall = fetch_python(stack.signer_port, serials, args.clients)
        client_cpu = time.process_time() - cpu0[2]
    sampler.stop_flag.set()
    sampler.join()
    if perf is not None:
        perf.wait()
    bad = [r for r in results if r[0] != 200]
    lat = sorted(r[1] for r in results)
    rate = len(results) / wall if wall > 0 else 0.0
    rss = proc_kb(signer, "VmRSS")
    out = {"name": name, "n": len(results), "failed": len(bad), "rate": rate, "wall": wall,
           "p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3,
           "bytes": sum(r[2] for r in results) / max(1, len(results)),
           "rss_mb": rss / 1024.0, "rss_max_mb": sampler.max_kb / 1024.0,
           "hwm_mb": proc_kb(signer, "VmHWM") / 1024.0,
           "cpu_signer": cpu_s(signer) - cpu0[0], "cpu_redis": cpu_s(redis) - cpu0[1], "cpu_client": client_cpu}
    print("%-8s %5d passes  %7.0f passes/s  p50 %6.2f ms  p99 %6.2f ms  %7.0f B/bundle  failed %d  "
          "signer RSS %.1f MB (max %.1f, VmHWM %.1f)  CPU s: signer %.2f redis %.2f client %.2f"
          % (name, out["n"], rate, out["p50_ms"], out["p99_ms"], out["bytes"], out["failed"], out["rss_mb"],
             out["rss_max_mb"], out["hwm_mb"], out["cpu_signer"], out["cpu_redis"], out["cpu_client"]),
          flush=True)
    return out


def run_wrk_round(name, stack, serials, args, tmp):
    """The cache-hit rate with wrk as the client; every request must be a hit (no signing meanwhile)."""
    signer, redis = stack.services["signer"].proc.pid, stack.redis.proc.pid
    signings0 = stack.signer_metric("signer_signings_total", result="ok")
    hits0 = stack.signer_metric("signer_cache_hits_total")
    cpu0 = (cpu_s(signer), cpu_s(redis), children_cpu_s())
    sampler = RssSampler(signer)
    sampler.start()
    perf = perf_start(name, signer, args, tmp)
    w, own, argv = fetch_wrk(stack.signer_port, serials, args.clients, args.warm_seconds, tmp)
    sampler.stop_flag.set()
    sampler.join()
    cpu = (cpu_s(signer) - cpu0[0], cpu_s(redis) - cpu0[1], children_cpu_s() - cpu0[2])
    if perf is not None:
        perf.wait()
    signings = stack.signer_metric("signer_signings_total", result="ok") - signings0
    hits = stack.signer_metric("signer_cache_hits_total") - hits0
    n, wall = int(w["requests"]), w["duration_us"] / 1e6
    rate = n / wall if wall > 0 else 0.0
    out = {"name": name, "n": n, "failed": int(w["status_errors"] + w["socket_errors"]), "rate": rate, "wall": wall,
           "p50_ms": w["p50"] / 1e3, "p99_ms": w["p99"] / 1e3, "bytes": w["bytes"] / max(1, n),
           "rss_mb": proc_kb(signer, "VmRSS") / 1024.0, "rss_max_mb": sampler.max_kb / 1024.0,
           "hwm_mb": proc_kb(signer, "VmHWM") / 1024.0,
           "cpu_signer": cpu[0], "cpu_redis": cpu[1], "cpu_client": cpu[2]}
    print("%s" % " ".join(argv))
    print("  wrk: %s" % "; ".join(own))
    print("%-8s %5d requests %7.0f req/s     p50 %6.2f ms  p90 %6.2f ms  p99 %6.2f ms  p99.9 %6.2f ms  max %6.2f ms  "
          "%7.0f B/response (headers included)  %.0f MB/s  errors %d (status) %d (socket)  signings meanwhile %d, "
          "cache hits %d  signer RSS %.1f MB (max %.1f, VmHWM %.1f)  CPU s: signer %.2f redis %.2f client %.2f"
          % (name, n, rate, w["p50"] / 1e3, w["p90"] / 1e3, w["p99"] / 1e3, w["p99.9"] / 1e3, w["max"] / 1e3,
             out["bytes"], w["bytes"] / wall / 1e6, w["status_errors"], w["socket_errors"], signings, hits,
             out["rss_mb"], out["rss_max_mb"], out["hwm_mb"], cpu[0], cpu[1], cpu[2]), flush=True)
    if signings != 0 or out["failed"] != 0:
        raise SystemExit("the wrk round signed %d bundles or saw %d errors: not a cache-hit figure"
                         % (signings, out["failed"]))
    return out


def openssl_speed(multi):
    argv = ["openssl", "speed", "-seconds", "3"]
    if multi > 1:
        argv += ["-multi", str(multi)]
    argv.append("rsa2048")
    p = subprocess.run(argv, capture_output=True, text=True)
    rate = None
    for line in p.stdout.splitlines():
        m = re.match(r"\s*rsa\s+2048\s+bits\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            rate = float(m.group(3))
    if rate is None:
        raise SystemExit("cannot parse `%s`:\n%s%s" % (" ".join(argv), p.stdout, p.stderr))
    return rate


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--cold-rounds", type=int, default=2)
    ap.add_argument("--client", choices=("curl", "python"), default="curl" if shutil.which("curl") else "python")
    ap.add_argument("--warm-seconds", type=float, default=10, help="length of the wrk round (cache hits)")
    ap.add_argument("--template", default=None, help="pass folder (default: Apple's Event.pass when present)")
    ap.add_argument("--generated-template", action="store_true", help="use the small generated template")
    ap.add_argument("--env", action="append", default=[], help="extra signer environment, NAME=VALUE")
    ap.add_argument("--perf", type=float, default=0, help="perf record the signer for SECONDS of a round")
    ap.add_argument("--perf-round", default="cold", help="the round --perf records: cold (default), warm, warm wrk")
    ap.add_argument("--keep-perf", default=None, help="copy perf.data there")
    ap.add_argument("--perf-callgraph", default="fp", help="perf record --call-graph mode (fp, dwarf)")
    ap.add_argument("--no-openssl", action="store_true")
    args = ap.parse_args()

    folder = None if args.generated_template else (args.template or (EVENT_PASS if os.path.isdir(EVENT_PASS) else None))
    files = template_files(folder)
    cores = os.cpu_count()
    print("signer bench: %d passes, %d concurrent requests (%s client), %d cores, template %s (%d files, %d bytes)"
          % (args.passes, args.clients, args.client, cores, folder or "generated", len(files),
             sum(len(v) for v in files.values())), flush=True)

    have_wrk = shutil.which("wrk") is not None
    if not have_wrk:
        print("wrk not found (Debian package wrk, see scripts/install-deps.sh): the cached figure below is the "
              "warm round's, measured with the %s client on one thread: a client-bound figure, not the signer's"
              % args.client, flush=True)
    env = {"LOG_LEVEL": "info"}
    env.update(dict(e.split("=", 1) for e in args.env))
    before = None
    if not args.no_openssl:
        # the cores are shared with whatever else runs on the machine: measure OpenSSL before and after
        before = (openssl_speed(1), openssl_speed(cores))
        print("openssl speed -seconds 3 rsa2048 (before): %.0f sign/s (1 core), %.0f sign/s (-multi %d)"
              % (before[0], before[1], cores), flush=True)
    stack = harness.Stack(start_pusher=False, pass_types=(PTID,), signer_env=env)
    tmp = tempfile.mkdtemp(prefix="signer-bench-")
    rounds = []
    try:
        subprocess.run([os.path.join(harness.SOURCE_DIR, "tests", "certs", "make-dev-certs.sh"), stack.certs,
                        harness.TEAM_ID, PTID], check=True, capture_output=True)
        stack.start_redis()
        stack.start_signer()
        stack.start_api()
        r = stack.admin("PUT", "/templates/bench", harness.make_zip(files))
        if r.status not in (200, 201):
            raise SystemExit("template refused: %d %s" % (r.status, r.body[:300]))
        serials = ["b%06d" % i for i in range(args.passes)]
        t0 = time.time()
        create_passes(stack, serials, lambda s: {"serialNumber": s, "barcode": {
            "message": s, "format": "PKBarcodeFormatPDF417", "messageEncoding": "iso-8859-1"}})
        print("created %d passes in %.1f s; signer RSS before the first request %.1f MB"
              % (len(serials), time.time() - t0, proc_kb(stack.services["signer"].proc.pid, "VmRSS") / 1024.0),
              flush=True)
        rounds.append(run_round("cold", stack, serials, args, tmp))
        rounds.append(run_round("warm", stack, serials, args, tmp))
        if have_wrk:
            cached = run_wrk_round("warm wrk", stack, serials, args, tmp)
        else:
            cached = rounds[-1]
        for i in range(2, args.cold_rounds + 1):
            create_passes(stack, serials, lambda s: {"serialNumber": s, "logoText": "round %d" % i})
            rounds.append(run_round("cold #%d" % i, stack, serials, args, tmp))
        signings = stack.signer_metric("signer_signings_total", result="ok")
        hits = stack.signer_metric("signer_cache_hits_total")
        print("signer metrics: signer_signings_total{result=\"ok\"} %d, signer_cache_hits_total %d"
              % (signings, hits), flush=True)
        if args.perf:
            for sort in ("dso", "dso,sym"):
                rep = subprocess.run(["perf", "report", "-i", os.path.join(tmp, "perf.data"), "--no-children",
                                      "--sort", sort, "--percent-limit", "1", "--stdio", "-g", "none"],
                                     capture_output=True, text=True)
                print("perf report --sort %s (signer, %s round):" % (sort, args.perf_round))
                lines = [l for l in rep.stdout.splitlines() if l.strip() and not l.startswith("#")]
                if not lines:
                    with open(os.path.join(tmp, "perf.log")) as f:
                        print("no samples; perf record said: %s; perf report said: %s" % (f.read().strip(),
                                                                                         rep.stderr.strip()))
                print("\n".join(lines)[:6000])
    finally:
        stack.stop()
        stack.cleanup()
        if args.keep_perf and args.perf:
            shutil.copy(os.path.join(tmp, "perf.data"), args.keep_perf)
        shutil.rmtree(tmp, ignore_errors=True)

    cold, warm = rounds[0], rounds[1]
    print("warm (%s) / cold throughput: %.0f / %.0f = %.1fx" % (args.client, warm["rate"], cold["rate"],
                                                              warm["rate"] / cold["rate"] if cold["rate"] else 0.0))
    print("cached / cold throughput: %.0f req/s (%s) / %.0f passes/s (first cold round, %s) = %.1fx%s"
          % (cached["rate"], "wrk" if have_wrk else args.client + ", client-bound", cold["rate"], args.client,
             cached["rate"] / cold["rate"] if cold["rate"] else 0.0,
             "" if have_wrk else " (wrk not found: this figure is bound by the client)"))
    colds = [r for r in rounds if r["name"].startswith("cold")]
    if len(colds) > 1:
        print("signer RSS after each cold round: %s MB" % ", ".join("%.1f" % r["rss_mb"] for r in colds))
    if args.no_openssl:
        return
    after = (openssl_speed(1), openssl_speed(cores))
    print("openssl speed -seconds 3 rsa2048 (after): %.0f sign/s (1 core), %.0f sign/s (-multi %d)"
          % (after[0], after[1], cores))
    one, multi = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    best_cold = max(r["rate"] for r in colds)
    print("cold passes/s / openssl sign/s (mean of before and after): first cold round %.0f / %.0f = %.0f%%, "
          "best cold round %.0f / %.0f = %.0f%% (all %d cores); %.0f%% of one core's rate"
          % (cold["rate"], multi, 100.0 * cold["rate"] / multi, best_cold, multi, 100.0 * best_cold / multi, cores,
             100.0 * best_cold / one))


if __name__ == "__main__":
    main()
