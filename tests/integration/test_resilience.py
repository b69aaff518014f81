#!/usr/bin/env python3
"""Failures around the api: the signer down (503 + Retry-After, everything else keeps working), Redis
down and back, clients that disconnect while their Redis or signer call is in flight, APNs answering
410 / 400 BadDeviceToken (registrations removed), and misconfigured services that must say what is
wrong and exit non-zero."""
import os
import shutil
import socket
import subprocess
import time

from harness import (ADMIN_TOKEN, BIN, PASS_TYPE, SIGNER_TOKEN, TEAM_ID, SOURCE_DIR, Stack, StackTestCase, free_port,
                     make_zip, metric_value, redis_server, run, sample_template, signer_unreachable, wait_until)

V1 = "/passes/v1"


def fire_and_forget(port, raw, count):
    """Sends raw request bytes and closes the socket at once, count times."""
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(raw)
        s.close()


class ResilienceTest(StackTestCase):
    stack_kwargs = {"apns_rules": ["dead01=410:Unregistered", "bad002=400:BadDeviceToken"]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        assert cls.stack.admin("PUT", "/templates/tpl", make_zip(sample_template())).status == 201

    def create(self, serial):
        r = self.put_pass(serial)
        self.assertEqual(r.status, 201, r.body)
        return r.json()["authenticationToken"]

    def test_signer_down_is_503_and_the_rest_keeps_working(self):
        token = self.create("sd-1")
        auth = {"Authorization": "ApplePass " + token}
        code, _ = self.stack.stop_service("signer")
        self.assertEqual(code, 0)
        try:
            # the probe (every 2 s) notices; the reason is curl's detailed message
            wait_until(lambda: signer_unreachable(self.stack), timeout=10, what="api not ready")
            self.assertEqual(self.stack.api("GET", "/readyz").status, 503)
            self.assertEqual(self.stack.api("GET", "/healthz").json(), {"status": "ok"})
            self.create("sd-2")  # a new version nobody signed yet
            r = self.stack.api("GET", "%s/passes/%s/sd-1" % (V1, PASS_TYPE), headers=auth)
            self.assertEqual(r.status, 503)
            self.assertEqual(r.header("retry-after"), "10")
            self.assertIn("signer", r.json()["error"])
            r = self.stack.api("POST", "%s/devices/sd-dev/registrations/%s/sd-1" % (V1, PASS_TYPE),
                               {"pushToken": "abab"}, auth)
            self.assertEqual(r.status, 201)
            self.assertEqual(self.stack.api("GET", "%s/devices/sd-dev/registrations/%s" % (V1, PASS_TYPE)).status, 200)
            self.assertEqual(self.put_pass("sd-1", pass_fields={"logoText": "x"}).status, 200)
            self.assertEqual(self.stack.admin("GET", "/passes/%s/sd-1/pkpass" % PASS_TYPE).status, 503)
        finally:
            self.stack.start_signer()
        wait_until(lambda: self.stack.api("GET", "/readyz").status == 200, timeout=10, what="api ready again")
        self.assertEqual(self.stack.api("GET", "/readyz").json(), {"status": "ready"})
        self.assertEqual(self.stack.api("GET", "%s/passes/%s/sd-1" % (V1, PASS_TYPE), headers=auth).status, 200)

    def test_clients_disconnecting_mid_request(self):
        token = self.create("dc-1")
        port = self.stack.api_port
        host = "Host: 127.0.0.1\r\n"
        requests = [
            ("GET %s/passes/%s/dc-1 HTTP/1.1\r\n%sAuthorization: ApplePass %s\r\n\r\n" % (V1, PASS_TYPE, host, token)).encode(),
            ("GET %s/devices/dc-dev/registrations/%s HTTP/1.1\r\n%s\r\n" % (V1, PASS_TYPE, host)).encode(),
            ("POST %s/devices/dc-dev/registrations/%s/dc-1 HTTP/1.1\r\n%sAuthorization: ApplePass %s\r\n"
             "Content-Length: 19\r\n\r\n{\"pushToken\":\"ab\"}" % (V1, PASS_TYPE, host, token)).encode(),
            ("PUT /admin/v1/passes/%s/dc-2 HTTP/1.1\r\n%sAuthorization: Bearer %s\r\nContent-Length: 33\r\n\r\n"
             "{\"templateId\":\"tpl\",\"pass\":{}}   " % (PASS_TYPE, host, ADMIN_TOKEN)).encode(),
            ("GET /admin/v1/passes/%s/dc-1/pkpass HTTP/1.1\r\n%sAuthorization: Bearer %s\r\n\r\n"
             % (PASS_TYPE, host, ADMIN_TOKEN)).encode(),
            # a body announced but never sent
            ("PUT /admin/v1/templates/dc HTTP/1.1\r\n%sAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\nPK"
             % (host, ADMIN_TOKEN)).encode(),
        ]
        for raw in requests:
            fire_and_forget(port, raw, 100)
        time.sleep(1.0)
        self.assertEqual(self.stack.api("GET", "/healthz").status, 200)
        r = self.stack.api("GET", "%s/passes/%s/dc-1" % (V1, PASS_TYPE), headers={"Authorization": "ApplePass " + token})
        self.assertEqual(r.status, 200)
        self.assertEqual(self.stack.redis_cli("EXISTS", "pk:tpl:dc"), "0")

    def test_redis_down_then_back(self):
        token = self.create("rd-1")
        auth = {"Authorization": "ApplePass " + token}
        s = self.stack
        s.redis_cli("SAVE")  # keep the data across the restart
        errors = lambda kind: metric_value(s.api("GET", "/metrics").body.decode(), "api_redis_errors_total", kind=kind)
        before = {k: errors(k) for k in ("disconnect", "not_connected", "connect")}
        s.redis.stop()
        try:
            r = s.api("GET", "%s/devices/rd-dev/registrations/%s" % (V1, PASS_TYPE))
            self.assertEqual(r.status, 503)
            self.assertIn("storage unavailable", r.json()["error"])
            r = s.api("GET", "/readyz")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json(), {"status": "not ready", "reason": "redis: not connected"})
            self.assertEqual(s.api("GET", "/healthz").status, 200)
            self.assertEqual(errors("disconnect"), before["disconnect"] + 1)
            self.assertEqual(errors("not_connected"), before["not_connected"] + 1)
            signer_before = s.signer_metric("signer_redis_errors_total", call="bundle")
            self.assertEqual(s.signer_bundle(PASS_TYPE, "rd-1").status, 503)
            self.assertEqual(s.signer_metric("signer_redis_errors_total", call="bundle"), signer_before + 1)
            time.sleep(2.0)  # several reconnects fail (connection refused) before Redis is back
            self.assertEqual(s.api("GET", "%s/devices/rd-dev/registrations/%s" % (V1, PASS_TYPE)).status, 503)
            self.assertGreaterEqual(errors("connect"), before["connect"] + 2)
            self.assertGreaterEqual(s.signer_metric("signer_redis_errors_total", call="ping"), 1)
        finally:
            s.restart_redis()
        wait_until(lambda: s.api("GET", "/readyz").status == 200, timeout=10, what="api to reconnect")
        self.assertEqual(s.api("GET", "%s/passes/%s/rd-1" % (V1, PASS_TYPE), headers=auth).status, 200)

    def test_redis_killed_under_load(self):
        """SIGKILL (no FIN from a clean shutdown): requests in flight get 503 quickly, /readyz turns 503,
        and the api recovers once Redis is back."""
        import threading
        s = self.stack
        token = self.create("rk-1")
        s.redis_cli("SAVE")
        statuses, stop = [], threading.Event()

        def load():
            while not stop.is_set():
                try:
                    statuses.append(s.api("GET", "%s/devices/rk-dev/registrations/%s" % (V1, PASS_TYPE)).status)
                except OSError:
                    statuses.append(None)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        s.redis.proc.kill()
        s.redis.proc.wait()
        try:
            wait_until(lambda: s.api("GET", "/readyz").status == 503, timeout=10, what="/readyz to report Redis down")
            time.sleep(1.0)
            stop.set()
            for t in threads:
                t.join(timeout=30)
            self.assertFalse(any(t.is_alive() for t in threads), "requests hung with Redis dead")
            self.assertIn(503, statuses)
            self.assertTrue(set(statuses) <= {204, 503}, set(statuses))
        finally:
            stop.set()
            s.redis.log.close()
            s.restart_redis()
        wait_until(lambda: s.api("GET", "/readyz").status == 200, timeout=10, what="api to reconnect")
        self.assertEqual(s.api("GET", "%s/passes/%s/rk-1" % (V1, PASS_TYPE),
                               headers={"Authorization": "ApplePass " + token}).status, 200)

    def test_apns_410_and_bad_device_token_remove_registrations(self):
        s = self.stack
        tokens = {}
        for serial in ("gone-1", "gone-2"):
            tokens[serial] = self.create(serial)
        # dead01 -> 410, bad002 -> 400 BadDeviceToken, good03 -> 200
        for dli, push, serial in [("dev-dead", "dead01", "gone-1"), ("dev-bad", "bad002", "gone-1"),
                                  ("dev-good", "900d03", "gone-1"), ("dev-dead", "dead01", "gone-2")]:
            r = s.api("POST", "%s/devices/%s/registrations/%s/%s" % (V1, dli, PASS_TYPE, serial),
                      {"pushToken": push}, {"Authorization": "ApplePass " + tokens[serial]})
            self.assertIn(r.status, (200, 201))
        self.assertEqual(self.put_pass("gone-1", pass_fields={"logoText": "changed"}).status, 200)
        wait_until(lambda: s.redis_cli("SMEMBERS", "pk:regs:%s:gone-1" % PASS_TYPE) == "dev-good", timeout=15,
                   what="410 and BadDeviceToken registrations to be removed")
        # the 410 device loses every registration of that pass type, and its token
        self.assertEqual(s.redis_cli("SMEMBERS", "pk:regs:%s:gone-2" % PASS_TYPE), "")
        self.assertEqual(s.redis_cli("EXISTS", "pk:devtoken:dev-dead:%s" % PASS_TYPE), "0")
        self.assertEqual(s.redis_cli("EXISTS", "pk:devtoken:dev-bad:%s" % PASS_TYPE), "0")
        self.assertEqual(s.redis_cli("GET", "pk:devtoken:dev-good:%s" % PASS_TYPE), "900d03")
        answered = {q["token"]: q["status"] for q in s.apns_requests()}
        self.assertEqual(answered.get("dead01"), 410)
        self.assertEqual(answered.get("bad002"), 400)
        self.assertEqual(answered.get("900d03"), 200)
        wait_until(lambda: s.redis_cli("XPENDING", "pk:events", "pushers").split("\n")[0] == "0",
                   what="events acknowledged")


class ApnsOutageTest(StackTestCase):
    """APNs unreachable for longer than the pusher's attempts: the event is not acknowledged, and the
    push goes out once APNs is back."""
    stack_kwargs = {"start_pusher": False}

    def test_push_survives_an_apns_outage(self):
        s = self.stack
        s.start_pusher_service(env_overrides={"PUSHER_MAX_ATTEMPTS": "2", "PUSHER_CLAIM_IDLE_MS": "1000"})
        self.assertEqual(s.admin("PUT", "/templates/tpl", make_zip(sample_template())).status, 201)
        token = self.put_pass("out-1").json()["authenticationToken"]
        r = s.api("POST", "%s/devices/out-dev/registrations/%s/out-1" % (V1, PASS_TYPE), {"pushToken": "abab01"},
                  {"Authorization": "ApplePass " + token})
        self.assertEqual(r.status, 201)
        port = s.apns_port
        self.assertEqual(s.stop_service("apns")[0], 0)
        self.assertEqual(self.put_pass("out-1", pass_fields={"logoText": "while APNs is down"}).status, 200)
        wait_until(lambda: "event=event_left_pending" in s.services["pusher"].output(), timeout=30,
                   what="the pusher to give up this round without acknowledging")
        self.assertEqual(s.redis_cli("XPENDING", "pk:events", "pushers").split("\n")[0], "1")
        s.start_apns(port)
        wait_until(lambda: [q for q in s.apns_requests() if q["token"] == "abab01" and q["status"] == 200],
                   timeout=30, what="the push once APNs is back")
        wait_until(lambda: s.redis_cli("XPENDING", "pk:events", "pushers").split("\n")[0] == "0",
                   what="the event to be acknowledged")


class MisconfigurationTest(StackTestCase):
    """Each service, misconfigured, names the problem and exits non-zero before serving."""

    def run_service(self, name, env):
        full = dict(os.environ)
        full.update(env)
        p = subprocess.run([os.path.join(BIN, name)], env=full, capture_output=True, text=True, timeout=20)
        out = p.stdout + p.stderr
        self.assertNotIn("Sanitizer", out)  # a refused start must not leak or misbehave either
        self.assertNotIn("runtime error:", out)
        return p.returncode, out

    def standalone_api(self, name, redis_url, timeout_ms=5000, signer_token=SIGNER_TOKEN, **extra_env):
        """An api of its own (not the stack's) on a free port, using the stack's signer; returns once it listens."""
        from harness import Service
        api_port = free_port()
        env = {"ADMIN_TOKEN": ADMIN_TOKEN, "REDIS_URL": redis_url, "REDIS_TIMEOUT_MS": str(timeout_ms),
               "API_LISTEN": "127.0.0.1:%d" % api_port, "SIGNER_URL": "http://127.0.0.1:%d" % self.stack.signer_port,
               "SIGNER_TOKEN": signer_token, **extra_env}
        api = Service(name, [os.path.join(BIN, "passkit-api")], env, self.stack.tmp)
        wait_until(lambda: "event=listening" in api.output(), what=name + " to listen")
        return api, api_port

    def broken_certs(self):
        d = os.path.join(self.stack.tmp, "broken-certs")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(self.stack.certs, d)
        return d

    def test_api_reports_every_bad_variable(self):
        code, out = self.run_service("passkit-api", {"ADMIN_TOKEN": "short", "MAX_BODY_BYTES": "lots",
                                                     "LOG_LEVEL": "chatty", "REDIS_URL": self.stack.redis_url,
                                                     "API_LISTEN": "127.0.0.1:%d" % free_port()})
        self.assertNotEqual(code, 0)
        for name in ("ADMIN_TOKEN", "MAX_BODY_BYTES", "LOG_LEVEL"):
            self.assertIn("var=" + name, out)

    def test_api_started_before_redis_and_public_url_ending_in_v1(self):
        from harness import request
        redis_port = free_port()
        # by name: the api looks it up off its loop, then connects to the address (services/api/redis_async.c)
        api, api_port = self.standalone_api("api-early", "redis://localhost:%d/0" % redis_port,
                                            PUBLIC_URL="https://passes.example.com/v1")
        redis = None
        try:
            time.sleep(1.5)  # a few connection attempts are refused first
            r = request(api_port, "GET", "/readyz")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json(), {"status": "not ready", "reason": "redis: not connected"})
            redis = redis_server("redis-late", redis_port, self.stack.tmp, self.stack.tmp)
            wait_until(lambda: request(api_port, "GET", "/readyz").status == 200, timeout=10, what="api to connect")
            # Wallet calls webServiceURL + "/v1/...": here "/v1/v1/..."
            r = request(api_port, "GET", "/v1/v1/devices/d/registrations/%s" % PASS_TYPE)
            self.assertEqual(r.status, 204)
            r = request(api_port, "GET", "/v1/devices/d/registrations/%s" % PASS_TYPE)
            self.assertEqual(r.status, 204)
            self.assertIn("event=redis_connected host=localhost port=%d" % redis_port, api.output())
        finally:
            self.assertEqual(api.stop(), 0, api.output())
            if redis is not None:
                redis.stop()

    def test_api_with_a_redis_name_that_does_not_resolve(self):
        """The lookup fails in the thread pool: the api keeps answering /healthz, /readyz says why, the log
        names the host and the lookup's error, and SIGTERM still exits 0."""
        from harness import request
        api, api_port = self.standalone_api("api-no-such-redis", "redis://redis.invalid:6379/0")
        try:
            wait_until(lambda: "reason=\"lookup: " in api.output(), what="a failed lookup in the log")
            line = next(l for l in api.output().splitlines() if "reason=\"lookup: " in l)
            self.assertIn("event=redis_connect_failed host=redis.invalid port=6379", line)
            for _ in range(20):
                started = time.monotonic()
                self.assertEqual(request(api_port, "GET", "/healthz").status, 200)
                self.assertLess(time.monotonic() - started, 1.0)
                time.sleep(0.05)
            r = request(api_port, "GET", "/readyz")
            self.assertEqual((r.status, r.json()), (503, {"status": "not ready", "reason": "redis: not connected"}))
        finally:
            self.assertEqual(api.stop(), 0, api.output())

    def test_api_with_a_frozen_redis(self):
        """SIGSTOP: the kernel still accepts connections and keeps them open, Redis just never answers.
        The request in flight gets 503 once REDIS_TIMEOUT_MS is over (hiredis alone would wait for the
        reply forever), the api is not ready for as long as Redis is frozen (a reconnect completes, but its
        PING is never answered), and everything is back on its own after SIGCONT. Frozen while the api is
        idle, the keepalive PING notices it."""
        import signal
        from harness import request
        redis_port = free_port()
        redis = redis_server("redis-frozen", redis_port, self.stack.tmp, self.stack.tmp)
        api, api_port = self.standalone_api("api-frozen-redis", "redis://127.0.0.1:%d" % redis_port, 1000)
        metric = lambda name, **labels: metric_value(request(api_port, "GET", "/metrics").body.decode(), name, **labels)
        listing = "/v1/devices/d/registrations/%s" % PASS_TYPE
        try:
            wait_until(lambda: request(api_port, "GET", "/readyz").status == 200, timeout=10, what="api ready")
            self.assertEqual(metric("api_dependency_up", dependency="redis"), 1)
            timeouts = metric("api_redis_errors_total", kind="timeout")
            os.kill(redis.proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                r = request(api_port, "GET", listing, timeout=10)
                waited = time.monotonic() - started
                self.assertEqual(r.status, 503)
                self.assertIn("storage unavailable", r.json()["error"])
                self.assertGreater(waited, 0.9)
                self.assertLess(waited, 3.0)
                frozen_until = time.monotonic() + 4.0  # a few reconnects, each PING timing out
                while time.monotonic() < frozen_until:
                    r = request(api_port, "GET", "/readyz")
                    self.assertEqual((r.status, r.json()), (503, {"status": "not ready",
                                                                  "reason": "redis: not connected"}))
                    self.assertEqual(request(api_port, "GET", listing).status, 503)
                    self.assertEqual(request(api_port, "GET", "/healthz").status, 200)
                    time.sleep(0.1)
                self.assertEqual(metric("api_dependency_up", dependency="redis"), 0)
                # one timeout per connection dropped: the first one and the reconnects' PINGs (at most one
                # per 1.5 s), not one per watchdog tick
                dropped = metric("api_redis_errors_total", kind="timeout") - timeouts
                self.assertGreaterEqual(dropped, 2)
                self.assertLessEqual(dropped, 5)
                self.assertIn(api.output().count("event=redis_timeout"), (dropped, dropped + 1))  # one may just have come
                self.assertIn('event=redis_disconnected reason="no reply within REDIS_TIMEOUT_MS"', api.output())
            finally:
                os.kill(redis.proc.pid, signal.SIGCONT)
            wait_until(lambda: request(api_port, "GET", "/readyz").status == 200, timeout=10, what="api ready again")
            self.assertEqual(metric("api_dependency_up", dependency="redis"), 1)
            self.assertEqual(request(api_port, "GET", listing).status, 204)
            # frozen while nothing is asked of it: the idle connection's PING (every 1 s) notices
            os.kill(redis.proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                wait_until(lambda: request(api_port, "GET", "/readyz").status == 503, timeout=8,
                           what="an idle api to notice the frozen Redis")
                self.assertLess(time.monotonic() - started, 4.0)
            finally:
                os.kill(redis.proc.pid, signal.SIGCONT)
            wait_until(lambda: request(api_port, "GET", "/readyz").status == 200, timeout=10, what="api ready again")
        finally:
            self.assertEqual(api.stop(), 0, api.output())
            redis.stop()

    def test_api_with_a_redis_that_never_completes_the_connect(self):
        """A listener whose backlog is full: the kernel drops the SYNs, as a black-holed address does. Each
        connect is abandoned after REDIS_TIMEOUT_MS and tried again; the api stays alive and says why."""
        from harness import request
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler = socket.create_connection(("127.0.0.1", port))  # takes the only backlog slot
        api, api_port = self.standalone_api("api-blackhole-redis", "redis://127.0.0.1:%d" % port, 500)
        try:
            line = 'event=redis_connect_failed host=127.0.0.1 port=%d reason="not connected after 500 ms"' % port
            wait_until(lambda: api.output().count(line) >= 2, timeout=10, what="two abandoned connects")
            self.assertEqual(request(api_port, "GET", "/healthz").status, 200)
            r = request(api_port, "GET", "/readyz")
            self.assertEqual((r.status, r.json()), (503, {"status": "not ready", "reason": "redis: not connected"}))
            r = request(api_port, "GET", "/v1/devices/d/registrations/%s" % PASS_TYPE)
            self.assertEqual(r.status, 503)
            text = request(api_port, "GET", "/metrics").body.decode()
            self.assertEqual(metric_value(text, "api_dependency_up", dependency="redis"), 0)
            self.assertGreaterEqual(metric_value(text, "api_redis_errors_total", kind="connect"), 2)
        finally:
            self.assertEqual(api.stop(), 0, api.output())
            filler.close()
            listener.close()

    def test_api_with_the_wrong_signer_token(self):
        """The signer refuses the api's bundle requests: the device gets 502, and the api's log gives the
        signer's own error text (its JSON "error"), not the JSON mangled."""
        from harness import request
        self.assertEqual(self.stack.admin("PUT", "/templates/tok", make_zip(sample_template())).status, 201)
        r = self.put_pass("tok-1", template_id="tok")
        self.assertEqual(r.status, 201, r.body)
        token = r.json()["authenticationToken"]
        api, api_port = self.standalone_api("api-wrong-signer-token", self.stack.redis_url,
                                            signer_token="not-the-signer-token-0123456789")
        try:
            r = request(api_port, "GET", "/v1/passes/%s/tok-1" % PASS_TYPE,
                        headers={"Authorization": "ApplePass " + token})
            self.assertEqual((r.status, r.json()), (502, {"error": "the signer could not build the pass (status 401)"}))
            self.assertIn('event=signer_failed ptid=%s serial=tok-1 status=401 '
                          'reason="missing or wrong Authorization: Bearer <SIGNER_TOKEN>"' % PASS_TYPE, api.output())
        finally:
            self.assertEqual(api.stop(), 0, api.output())

    def test_api_without_admin_token(self):
        code, out = self.run_service("passkit-api", {"ADMIN_TOKEN": "", "REDIS_URL": self.stack.redis_url,
                                                     "API_LISTEN": "127.0.0.1:%d" % free_port()})
        self.assertNotEqual(code, 0)
        self.assertIn("ADMIN_TOKEN", out)
        code, out = self.run_service("passkit-api", {"ADMIN_TOKEN": ADMIN_TOKEN, "REDIS_URL": "http://nope",
                                                     "API_LISTEN": "127.0.0.1:%d" % free_port()})
        self.assertNotEqual(code, 0)
        self.assertIn("REDIS_URL", out)

    def signer_env(self, certs):
        return {"REDIS_URL": self.stack.redis_url, "SIGNER_LISTEN": "127.0.0.1:%d" % free_port(), "CERTS_DIR": certs}

    def pusher_env(self, certs):
        return {"REDIS_URL": self.stack.redis_url, "CERTS_DIR": certs}

    def test_certificate_folder_differs_from_uid(self):
        d = self.broken_certs()
        os.rename(os.path.join(d, PASS_TYPE), os.path.join(d, "pass.com.example.renamed"))
        for name, env in (("passkit-signer", self.signer_env(d)), ("passkit-pusher", self.pusher_env(d))):
            code, out = self.run_service(name, env)
            self.assertNotEqual(code, 0, name)
            self.assertIn("pass.com.example.renamed", out, name)
            self.assertIn(PASS_TYPE, out, name)

    def test_missing_or_unreadable_key(self):
        d = self.broken_certs()
        os.remove(os.path.join(d, PASS_TYPE, "private-key.pem"))
        for name, env in (("passkit-signer", self.signer_env(d)), ("passkit-pusher", self.pusher_env(d))):
            code, out = self.run_service(name, env)
            self.assertNotEqual(code, 0, name)
            self.assertIn("private-key.pem", out, name)
        d = self.broken_certs()
        with open(os.path.join(d, PASS_TYPE, "certificate.pem"), "w") as f:
            f.write("not a certificate\n")
        code, out = self.run_service("passkit-signer", self.signer_env(d))
        self.assertNotEqual(code, 0)
        self.assertIn("certificate.pem", out)

    def test_key_of_another_certificate(self):
        d = self.broken_certs()
        shutil.copy(os.path.join(d, "pass.com.example.other", "private-key.pem"), os.path.join(d, PASS_TYPE, "private-key.pem"))
        code, out = self.run_service("passkit-signer", self.signer_env(d))
        self.assertNotEqual(code, 0)
        self.assertIn(PASS_TYPE, out)

    def test_signer_without_wwdr(self):
        """No wwdr.pem and no WWDR_CERT: the default is Apple's WWDR G4, which did not issue the test
        certificates (test_signer_certs.py checks the exact reasons)."""
        d = self.broken_certs()
        os.remove(os.path.join(d, "wwdr.pem"))
        code, out = self.run_service("passkit-signer", self.signer_env(d))
        self.assertNotEqual(code, 0)
        self.assertIn("not by the configured WWDR", out)
        self.assertIn("(built-in Apple WWDR G4)", out)


if __name__ == "__main__":
    run()
