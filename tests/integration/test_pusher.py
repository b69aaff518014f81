#!/usr/bin/env python3
"""The pusher against the APNs stand-in: what is retried, removed, dead-lettered and acknowledged
for each APNs answer; GOAWAY, dropped connections and a small MAX_CONCURRENT_STREAMS; coalescing of
bursts; several pass types; large fan-outs split and shared by several pushers; stream trimming;
/healthz, /readyz and /metrics; SIGTERM; and the crash test (three pushers share 10,000
registrations, one is SIGKILLed mid-fan-out, every token still gets its push; without the kill
none gets two)."""
import collections
import json
import os
import shutil
import signal
import time
import unittest

from harness import (OTHER_PASS_TYPE, PASS_TYPE, Stack, StackTestCase, make_zip, run, sample_template,
                     wait_until)

V1 = "/passes/v1"


def pending(stack, stream="pk:events"):
    return int(stack.redis_cli("XPENDING", stream, "pushers").split("\n")[0])


def statuses_by_token(stack):
    """{token: [status or error, ...]} in the order the stand-in saw them."""
    out = collections.defaultdict(list)
    for q in stack.apns_requests():
        out[q["token"]].append(q["status"] if q["status"] is not None else q["error"])
    return out


class PusherCase(StackTestCase):
    def setUp(self):
        s = self.stack
        if not hasattr(type(self), "_template_done"):
            self.assertEqual(s.admin("PUT", "/templates/tpl", make_zip(sample_template())).status, 201)
            type(self)._template_done = True

    def create(self, serial, pass_type=PASS_TYPE):
        r = self.put_pass(serial, pass_type=pass_type)
        self.assertEqual(r.status, 201, r.body)
        return r.json()["authenticationToken"]

    def register(self, dli, token, serial, auth, pass_type=PASS_TYPE):
        r = self.stack.api("POST", "%s/devices/%s/registrations/%s/%s" % (V1, dli, pass_type, serial),
                           {"pushToken": token}, {"Authorization": "ApplePass " + auth})
        self.assertIn(r.status, (200, 201), r.body)

    def update(self, serial, value, pass_type=PASS_TYPE):
        r = self.put_pass(serial, pass_fields={"logoText": value}, pass_type=pass_type, method="PATCH")
        self.assertEqual(r.status, 200, r.body)

    def wait_acked(self, timeout=30):
        wait_until(lambda: pending(self.stack) == 0 and pending(self.stack, "pk:fanout") == 0, timeout=timeout,
                   what="every stream entry acknowledged")


class ApnsAnswersTest(PusherCase):
    """One update pushed to one device per kind of APNs answer; each outcome asserted exactly."""
    stack_kwargs = {
        "start_pusher": False,
        "apns_rules": ["a429=429:TooManyRequests*2",
                       "a5ff=503:ServiceUnavailable*1", "a5ff=500:InternalServerError*1",
                       "dead=503:ServiceUnavailable",
                       "b400=400:BadDeviceToken", "c410=410:Unregistered", "d4ff=400:DeviceTokenNotForTopic",
                       "f403=403:Forbidden", "f404=403:Forbidden", "e413=413:PayloadTooLarge"],
        "pusher_env": {"PUSHER_MAX_ATTEMPTS": "3"},
    }

    def test_each_answer(self):
        s = self.stack
        s.start_pusher_service()
        auth = self.create("answers")
        tokens = ["a429", "a5ff", "dead", "b400", "c410", "d4ff", "f403", "f404", "e413", "0c0c"]
        for t in tokens:
            self.register("dev-" + t, t, "answers", auth)
        self.update("answers", "v2")
        self.wait_acked(timeout=40)
        seen = statuses_by_token(s)
        self.assertEqual(seen["a429"], [429, 429, 200])  # TooManyRequests retried after a delay
        self.assertEqual(seen["a5ff"], [503, 500, 200])  # 5xx retried with backoff
        self.assertEqual(seen["dead"], [503, 503, 503])  # PUSHER_MAX_ATTEMPTS=3, then dead-lettered
        for t in ("b400", "c410", "d4ff", "f403", "f404", "e413"):  # never retried
            self.assertEqual(len(seen[t]), 1, t)
        self.assertEqual(seen["0c0c"], [200])

        # 410, BadDeviceToken and DeviceTokenNotForTopic remove the device's registrations
        regs = set(s.redis_cli("SMEMBERS", "pk:regs:%s:answers" % PASS_TYPE).split())
        self.assertEqual(regs, {"dev-" + t for t in ("a429", "a5ff", "dead", "f403", "f404", "e413", "0c0c")})
        for t in ("b400", "c410", "d4ff"):
            self.assertEqual(s.redis_cli("EXISTS", "pk:devtoken:dev-%s:%s" % (t, PASS_TYPE)), "0")

        # exactly one dead letter, with its last status and reason
        self.assertEqual(s.redis_cli("XLEN", "pk:deadletter"), "1")
        entry = s.redis_cli("XRANGE", "pk:deadletter", "-", "+").split("\n")[1:]
        fields = dict(zip(entry[0::2], entry[1::2]))
        self.assertEqual(fields["token"], "dead")
        self.assertEqual(fields["status"], "503")
        self.assertEqual(fields["reason"], "ServiceUnavailable")
        self.assertEqual(fields["attempts"], "3")
        self.assertEqual(fields["passTypeIdentifier"], PASS_TYPE)
        self.assertEqual(fields["devices"], "dev-dead")
        self.assertEqual(fields["serialNumbers"], "answers")

        # the event was acknowledged: everything was answered or dead-lettered
        self.assertEqual(pending(s), 0)
        out = s.services["pusher"].output()
        self.assertEqual(out.count("event=apns_certificate_refused"), 1, "403 logged once per certificate")

        m = lambda **kw: s.pusher_metric("pusher", "pusher_pushes_total", **kw)  # noqa: E731
        wait_until(lambda: m(outcome="ok") == 3, what="metrics")
        self.assertEqual(m(outcome="removed"), 3)
        self.assertEqual(m(outcome="dead_lettered", reason="ServiceUnavailable"), 1)
        self.assertEqual(m(outcome="certificate_refused"), 2)
        self.assertEqual(m(outcome="rejected", reason="PayloadTooLarge"), 1)
        self.assertEqual(s.pusher_metric("pusher", "pusher_push_retries_total"), 6)
        self.assertEqual(s.pusher_metric("pusher", "pusher_push_retries_total", reason="TooManyRequests"), 2)
        self.assertEqual(s.pusher_metric("pusher", "pusher_registrations_removed_total"), 3)


class ConnectionTroubleTest(PusherCase):
    """GOAWAY in the middle of a burst and dropped connections: nothing lost, nothing answered twice."""
    stack_kwargs = {"start_pusher": False, "apns_args": ["--goaway-after", "7"]}

    def test_goaway_mid_stream(self):
        s = self.stack
        s.start_pusher_service()
        auth = self.create("goaway")
        devices = s.register_many(PASS_TYPE, "goaway", 60, prefix="g")
        self.update("goaway", "v2")
        self.wait_acked()
        seen = statuses_by_token(s)
        for dli, token in devices.items():
            self.assertEqual([x for x in seen[token] if x == 200], [200], token)
        self.assertEqual(set(seen) - set(devices.values()), set())
        refused = sum(1 for v in seen.values() for x in v if isinstance(x, str))
        self.assertGreater(s.pusher_metric("pusher", "pusher_apns_goaways_total"), 0)
        self.assertEqual(s.pusher_metric("pusher", "pusher_apns_refused_streams_total"), refused)
        self.assertEqual(s.pusher_metric("pusher", "pusher_pushes_total", outcome="ok"), 60)
        del auth


class DroppedConnectionTest(PusherCase):
    stack_kwargs = {"start_pusher": False, "apns_args": ["--drop-after", "9"]}

    def test_dropped_connection(self):
        s = self.stack
        s.start_pusher_service()
        self.create("drop")
        devices = s.register_many(PASS_TYPE, "drop", 40, prefix="x")
        self.update("drop", "v2")
        self.wait_acked(timeout=60)
        seen = statuses_by_token(s)
        for token in devices.values():
            self.assertEqual([x for x in seen[token] if x == 200], [200], token)
        self.assertEqual(s.pusher_metric("pusher", "pusher_pushes_total", outcome="ok"), 40)


class MaxStreamsTest(PusherCase):
    """The stand-in allows 2 concurrent streams and answers slowly: the pusher waits for free slots
    (the stand-in would end the connection with GOAWAY PROTOCOL_ERROR otherwise)."""
    stack_kwargs = {"start_pusher": False, "apns_args": ["--max-streams", "2", "--delay-ms", "20"],
                    "pusher_env": {"PUSHER_APNS_CONNECTIONS": "1"}}

    def test_never_more_streams_than_allowed(self):
        s = self.stack
        s.start_pusher_service()
        self.create("streams")
        devices = s.register_many(PASS_TYPE, "streams", 30, prefix="m")
        self.update("streams", "v2")
        self.wait_acked()
        seen = statuses_by_token(s)
        for token in devices.values():
            self.assertEqual(seen[token], [200], token)
        apns_log = s.services["apns"].output()
        self.assertNotIn("PROTOCOL_ERROR", apns_log)
        conns = {q["conn"] for q in s.apns_requests()}
        self.assertEqual(len(conns), 1, "one connection per certificate")


class CoalescingTest(PusherCase):
    """A burst of updates inside PUSHER_COALESCE_MS gives each device one push, and a token registered
    for several passes of the type one push per batch."""
    stack_kwargs = {"start_pusher": False, "pusher_env": {"PUSHER_COALESCE_MS": "3000"}}

    def test_burst_gives_one_push(self):
        s = self.stack
        s.start_pusher_service()
        auths = {serial: self.create(serial) for serial in ("co-1", "co-2", "co-3")}
        for serial, auth in auths.items():
            self.register("co-dev-x", "c0c0aa", serial, auth)  # one device, three passes of one type
        self.register("co-dev-y", "c0c0bb", "co-1", auths["co-1"])
        t0 = time.time()
        for i in range(5):
            self.update("co-1", "burst %d" % i)
        self.update("co-2", "burst")
        self.update("co-3", "burst")
        self.assertLess(time.time() - t0, 2.5, "the burst must fit in the window for this test to mean anything")
        self.wait_acked()
        time.sleep(0.5)
        seen = statuses_by_token(s)
        self.assertEqual(seen["c0c0aa"], [200])
        self.assertEqual(seen["c0c0bb"], [200])
        self.assertEqual(s.pusher_metric("pusher", "pusher_items_total", stream="events", result="superseded"), 4)


class PassTypesTest(PusherCase):
    """Two pass types, each with its own certificate and connection; topics match certificates."""
    stack_kwargs = {"start_pusher": False}

    def test_each_type_its_certificate(self):
        s = self.stack
        s.start_pusher_service()
        a = self.create("pt-a", PASS_TYPE)
        b = self.create("pt-b", OTHER_PASS_TYPE)
        self.register("pt-dev", "aaaa01", "pt-a", a, PASS_TYPE)
        self.register("pt-dev", "bbbb02", "pt-b", b, OTHER_PASS_TYPE)
        self.update("pt-a", "x", PASS_TYPE)
        self.update("pt-b", "y", OTHER_PASS_TYPE)
        self.wait_acked()
        reqs = {q["token"]: q for q in s.apns_requests()}
        self.assertEqual(reqs["aaaa01"]["topic"], PASS_TYPE)
        self.assertEqual(reqs["aaaa01"]["client_uid"], PASS_TYPE)
        self.assertEqual(reqs["bbbb02"]["topic"], OTHER_PASS_TYPE)
        self.assertEqual(reqs["bbbb02"]["client_uid"], OTHER_PASS_TYPE)
        self.assertNotEqual(reqs["aaaa01"]["conn"], reqs["bbbb02"]["conn"])
        self.assertEqual(s.pusher_metric("pusher", "pusher_apns_connections_open"), 2)


class FanoutAndTrimTest(PusherCase):
    """An event with more devices than PUSHER_FANOUT_CHUNK is split into pk:fanout chunks that two
    pushers share; acknowledged entries are trimmed, but never what another group still needs."""
    stack_kwargs = {"start_pusher": False,
                    "pusher_env": {"PUSHER_FANOUT_CHUNK": "10", "PUSHER_MAINTAIN_MS": "1000",
                                   "PUSHER_CHUNKS_PER_READ": "1"},
                    "apns_args": ["--delay-ms", "30"]}

    def test_split_share_and_trim(self):
        s = self.stack
        s.start_pusher_service("p1")
        s.start_pusher_service("p2")
        self.create("fan")
        devices = s.register_many(PASS_TYPE, "fan", 95, prefix="f")
        self.update("fan", "v2")
        self.wait_acked()
        seen = statuses_by_token(s)
        for token in devices.values():
            self.assertEqual(seen[token], [200], token)
        logs = s.services["p1"].output() + s.services["p2"].output()
        self.assertIn("chunks=10", logs)
        shares = [s.pusher_metric(n, "pusher_pushes_total", outcome="ok") for n in ("p1", "p2")]
        self.assertEqual(sum(shares), 95)
        self.assertTrue(all(x > 0 for x in shares), "both pushers took a share: %s" % shares)
        # trimmed below what the group acknowledged (the newest entry of each stream may stay)
        wait_until(lambda: int(s.redis_cli("XLEN", "pk:fanout")) <= 1 and int(s.redis_cli("XLEN", "pk:events")) <= 1,
                   timeout=10, what="streams trimmed")
        # a second group that has read nothing keeps everything from now on
        s.redis_cli("XGROUP", "CREATE", "pk:events", "audit", "$")
        before = int(s.redis_cli("XLEN", "pk:events"))
        self.update("fan", "v3")
        self.update("fan", "v4")
        self.wait_acked()
        time.sleep(2.5)
        self.assertEqual(int(s.redis_cli("XLEN", "pk:events")), before + 2)
        s.redis_cli("XGROUP", "DESTROY", "pk:events", "audit")


class StatusTest(PusherCase):
    stack_kwargs = {"start_pusher": False}

    def test_health_ready_metrics(self):
        s = self.stack
        s.start_pusher_service()
        self.assertEqual(s.pusher_get("pusher", "/healthz").status, 200)
        r = s.pusher_get("pusher", "/readyz")
        self.assertEqual(r.status, 200)
        r = s.pusher_get("pusher", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("content-type").startswith("text/plain"))
        text = r.body.decode()
        for family in ("pusher_pushes_total", "pusher_push_retries_total", "pusher_push_duration_seconds",
                       "pusher_group_pending", "pusher_group_lag", "pusher_apns_connections_open",
                       "pusher_event_to_push_seconds"):
            self.assertIn("# TYPE " + family, text)
        # a pusher whose Redis is unreachable is alive but not ready, and says why
        from harness import free_port
        s.start_pusher_service("lonely", {"REDIS_URL": "redis://127.0.0.1:%d/0" % free_port()}, wait_ready=False)
        port = s.pusher_ports["lonely"]
        wait_until(lambda: s._healthy(port), what="lonely pusher's /healthz")
        r = s.pusher_get("lonely", "/readyz")
        self.assertEqual(r.status, 503)
        self.assertIn("redis", r.json()["reason"])


class ShutdownAndRestartTest(PusherCase):
    """SIGTERM mid-fan-out: the batch in hand is finished and acknowledged, the pusher exits 0, no push
    is lost or sent twice. SIGKILL and a restart under the same consumer name: it resumes its own
    pending entries."""
    stack_kwargs = {"start_pusher": False, "apns_args": ["--delay-ms", "100", "--max-streams", "20"],
                    "pusher_env": {"PUSHER_FANOUT_CHUNK": "100", "PUSHER_APNS_CONNECTIONS": "1", "PUSHER_CHUNKS_PER_READ": "1",
                                   "PUSHER_CLAIM_IDLE_MS": "600000"}}

    def test_sigterm_then_sigkill_and_resume(self):
        s = self.stack
        s.start_pusher_service("t1", {"PUSHER_CONSUMER": "steady-1"})
        self.create("term")
        devices = s.register_many(PASS_TYPE, "term", 400, prefix="t")
        self.update("term", "v2")
        wait_until(lambda: s.apns_request_count() >= 50, what="the fan-out to start")
        code, out = s.stop_service("t1", signal.SIGTERM)
        self.assertEqual(code, 0, out[-2000:])
        self.assertIn("event=stopped", out)
        after_stop = s.apns_request_count()
        time.sleep(0.5)
        self.assertEqual(s.apns_request_count(), after_stop, "nothing pushed after exit")
        seen = statuses_by_token(s)
        self.assertTrue(all(v == [200] for v in seen.values()))
        self.assertLess(len(seen), 400, "the SIGTERM came mid-fan-out")

        # the same consumer, SIGKILLed mid-batch, then restarted: it re-reads its own pending chunks
        s.start_pusher_service("t2", {"PUSHER_CONSUMER": "steady-1"})
        wait_until(lambda: s.apns_request_count() >= after_stop + 30, what="the fan-out to go on")
        s.services["t2"].proc.kill()
        s.stop_service("t2")
        s.start_pusher_service("t3", {"PUSHER_CONSUMER": "steady-1"})
        self.wait_acked()
        seen = statuses_by_token(s)
        for token in devices.values():
            self.assertIn(200, seen[token], token)
        self.assertIn("source=pending", s.services["t3"].output())


class NoCertificateTest(PusherCase):
    """A pusher without the pass type's certificate leaves the entry pending; one that has it pushes it."""
    stack_kwargs = {"start_pusher": False, "pusher_env": {"PUSHER_CLAIM_IDLE_MS": "1000"}}

    def test_left_for_a_pusher_with_the_certificate(self):
        s = self.stack
        partial = os.path.join(s.tmp, "certs-partial")
        shutil.copytree(s.certs, partial)
        shutil.rmtree(os.path.join(partial, OTHER_PASS_TYPE))
        s.start_pusher_service("partial", {"CERTS_DIR": partial})
        auth = self.create("nc-1", OTHER_PASS_TYPE)
        self.register("nc-dev", "abcd99", "nc-1", auth, OTHER_PASS_TYPE)
        self.update("nc-1", "x", OTHER_PASS_TYPE)
        wait_until(lambda: "event=no_certificate" in s.services["partial"].output(), what="the refusal")
        time.sleep(1.5)
        self.assertEqual(pending(s), 1, "left pending, not acknowledged")
        self.assertEqual(statuses_by_token(s).get("abcd99"), None)
        s.start_pusher_service("full")
        wait_until(lambda: statuses_by_token(s).get("abcd99") == [200], timeout=20, what="the push")
        self.wait_acked()


class OutageThenRefusalTest(PusherCase):
    """Attempts without any answer make a push an outage case: its entry is left pending, never
    dead-lettered, even when the last attempt got a 503; the next delivery pushes it."""
    stack_kwargs = {"start_pusher": False, "apns_rules": ["0e0e=503:ServiceUnavailable*1"],
                    "pusher_env": {"PUSHER_MAX_ATTEMPTS": "2", "PUSHER_CLAIM_IDLE_MS": "1000"}}

    def test_not_dead_lettered(self):
        s = self.stack
        s.start_pusher_service()
        auth = self.create("ot-1")
        self.register("ot-dev", "0e0e", "ot-1", auth)
        port = s.apns_port
        self.assertEqual(s.stop_service("apns")[0], 0)
        self.update("ot-1", "x")
        wait_until(lambda: "event=push_retry" in s.services["pusher"].output(), timeout=20, what="a failed attempt")
        s.start_apns(port)
        wait_until(lambda: statuses_by_token(s).get("0e0e") == [503, 200], timeout=30, what="503 then 200")
        self.wait_acked()
        self.assertEqual(s.redis_cli("XLEN", "pk:deadletter"), "0")
        self.assertIn("event=event_left_pending", s.services["pusher"].output())


class StopDuringRetriesTest(PusherCase):
    """SIGTERM while a push waits for its next attempt: the pusher exits at once (exit 0) and leaves
    the entry pending for another pusher, which pushes it."""
    stack_kwargs = {"start_pusher": False, "apns_rules": ["5e5e=503:ServiceUnavailable*3"],
                    "pusher_env": {"PUSHER_CLAIM_IDLE_MS": "1000"}}

    def test_sigterm_does_not_wait_for_backoff(self):
        s = self.stack
        s.start_pusher_service("first")
        auth = self.create("sr-1")
        self.register("sr-dev", "5e5e", "sr-1", auth)
        self.update("sr-1", "x")
        wait_until(lambda: statuses_by_token(s).get("5e5e") == [503, 503], timeout=20, what="two 503s")
        t0 = time.time()
        code, out = s.stop_service("first", signal.SIGTERM)
        self.assertEqual(code, 0, out[-2000:])
        self.assertLess(time.time() - t0, 3.0, "exit without waiting for the backoff")
        self.assertIn("event=batch_drained items_left_pending=1", out)
        self.assertEqual(pending(s), 1)
        s.start_pusher_service("second")
        wait_until(lambda: statuses_by_token(s).get("5e5e", [])[-1:] == [200], timeout=20, what="the push")
        self.wait_acked()
        self.assertEqual(s.redis_cli("XLEN", "pk:deadletter"), "0")


class StopReleasesEntriesTest(PusherCase):
    """A pusher stopped (scale-in, rollout) with an entry it could not finish releases it: another
    pusher that is running pushes it within seconds, not after PUSHER_CLAIM_IDLE_MS (60 s here)."""
    stack_kwargs = {"start_pusher": False, "apns_rules": ["5f5f=503:ServiceUnavailable*3"]}

    def test_sigterm_releases_unfinished_entries(self):
        s = self.stack
        s.start_pusher_service("first")
        auth = self.create("rel-1")
        self.register("rel-dev", "5f5f", "rel-1", auth)
        self.update("rel-1", "x")
        wait_until(lambda: statuses_by_token(s).get("5f5f") == [503, 503], timeout=20, what="two 503s")
        s.start_pusher_service("second")
        code, out = s.stop_service("first", signal.SIGTERM)
        self.assertEqual(code, 0, out[-2000:])
        self.assertIn("event=batch_drained items_left_pending=1", out)
        t0 = time.time()
        wait_until(lambda: statuses_by_token(s).get("5f5f", [])[-1:] == [200], timeout=12,
                   what="the released entry pushed by the running pusher")
        self.assertLess(time.time() - t0, 12)
        self.wait_acked()


class CrashTest(unittest.TestCase):
    """Three pushers share 10,000 registrations of one pass; one is SIGKILLed mid-fan-out and every
    token still receives its push. Without the kill, none receives two."""
    DEVICES = 10000

    def run_fanout(self, kill):
        stack = Stack(start_pusher=False, apns_args=["--delay-ms", "50", "--max-streams", "100"],
                      pusher_env={"PUSHER_FANOUT_CHUNK": "500", "PUSHER_CLAIM_IDLE_MS": "2000",
                                  "PUSHER_APNS_CONNECTIONS": "2", "LOG_LEVEL": "info"})
        try:
            stack.start()
            self.assertEqual(stack.admin("PUT", "/templates/tpl", make_zip(sample_template())).status, 201)
            self.assertEqual(stack.admin("PUT", "/passes/%s/crash" % PASS_TYPE,
                                         {"templateId": "tpl", "pass": {}}).status, 201)
            devices = stack.register_many(PASS_TYPE, "crash", self.DEVICES, prefix="k")
            for name in ("p1", "p2", "p3"):
                stack.start_pusher_service(name)
            self.assertEqual(stack.admin("PATCH", "/passes/%s/crash" % PASS_TYPE,
                                         {"pass": {"logoText": "gate change"}}).status, 200)
            if kill:
                wait_until(lambda: stack.apns_request_count() >= 2000, timeout=60, what="the fan-out to be going")
                victim = stack.services["p2"]
                self.assertIsNone(victim.proc.poll())
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
                stack.services.pop("p2").log.close()
            wait_until(lambda: pending(stack) == 0 and pending(stack, "pk:fanout") == 0, timeout=120,
                       what="every entry acknowledged")
            time.sleep(0.5)
            ok = collections.Counter(q["token"] for q in stack.apns_requests() if q["status"] == 200)
            return devices, ok, stack
        finally:
            results = stack.stop()
            for name, (code, out) in results.items():
                if name.startswith("p"):
                    self.assertEqual(code, 0, "%s exited %s:\n%s" % (name, code, out[-3000:]))
                    self.assertNotIn("Sanitizer", out)
            stack.cleanup()

    def test_kill_one_of_three(self):
        devices, ok, _ = self.run_fanout(kill=True)
        missing = [t for t in devices.values() if ok[t] == 0]
        self.assertEqual(missing, [], "%d tokens never got their push" % len(missing))

    def test_no_kill_no_duplicates(self):
        devices, ok, _ = self.run_fanout(kill=False)
        self.assertEqual(set(ok), set(devices.values()))
        twice = [t for t, n in ok.items() if n > 1]
        self.assertEqual(twice, [], "%d tokens got more than one push" % len(twice))


if __name__ == "__main__":
    run()
