#!/usr/bin/env python3
"""SIGTERM under load: the api and the signer drain without failing a request or losing an event.

Load: client threads, each on one persistent (keep-alive) HTTP/1.1 connection, as a well-behaved client
uses it: a new connection only when the server said "Connection: close" (or at the start). The mix: admin
PATCH of a pass (a new version and its pk:events entry), GET /v1/passes/... (the signed bundle, through
the signer), GET /v1/devices/.../registrations and POST registrations.

What counts as a failure: a request that was sent (its connection was open) and did not get a complete
HTTP answer (reset, EOF, timeout), or an answer other than the one expected for its kind (no 5xx). A
connection refused at connect once the listener closed is not a failure: the client stops there.

The api (SIGTERM while the load runs): it exits 0 within its grace time; answers came after the signal
(the test overlapped); every 2xx PATCH has its event in pk:events, with the version the answer gave,
and no event exists that no answer announced (nothing was done without its client hearing); the pusher
consumes every event and pushes the registered devices; after a restart the stored passes are those of
the newest answered PATCH, and every answered registration is there.

The signer (SIGTERM while bundles are requested through the api): it exits 0 within its grace time;
requests the api had sent it before complete (200 answers arrive after the signal); the api answers
503 with Retry-After only for requests it could not even connect to the signer for (every
event=signer_unavailable line of the api says it failed to connect to the signer: no transfer was cut
mid-way); /readyz turns 503 "signer unreachable: ..." and back to 200 once the signer is restarted.
"""
import http.client
import json
import signal
import threading
import time

from harness import (ADMIN_TOKEN, PASS_TYPE, StackTestCase, make_zip, run, sample_template, signer_unreachable,
                     wait_until)

V1 = "/passes/v1"
PASSES = 4
DEVICES_PER_PASS = 3
THREADS = 8
API_GRACE_S = 10  # services/api/main.c SHUTDOWN_GRACE_MS
SIGNER_GRACE_S = 25  # services/signer/main.c SHUTDOWN_GRACE_MS


class Result:
    def __init__(self, kind, op, status, headers, body, started, ended):
        self.kind, self.op, self.status, self.headers, self.body = kind, op, status, headers, body
        self.started, self.ended = started, ended


class Client(threading.Thread):
    """Sends ops (a function of the thread's request counter) until told to stop or refused at connect."""

    def __init__(self, port, next_op, stop):
        super().__init__(daemon=True)
        self.port, self.next_op, self.stop = port, next_op, stop
        self.results, self.failures, self.refused = [], [], 0

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            self.send_until_done(conn)
        finally:
            conn.close()

    def send_until_done(self, conn):
        i = 0
        while not self.stop.is_set():
            if conn.sock is None:
                try:
                    conn.connect()
                except ConnectionRefusedError:
                    self.refused += 1
                    return  # the listener is closed: this client is done
            kind, method, path, body, headers = self.next_op(i)
            i += 1
            started = time.monotonic()
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
            except Exception as e:  # sent, and no complete answer: a failure
                self.failures.append("%s %s: %r" % (method, path, e))
                conn.close()
                continue
            self.results.append(Result(kind, (method, path, body), r.status, {k.lower(): v for k, v in r.getheaders()},
                                       data, started, time.monotonic()))
            # http.client closes the connection itself after an answer with "Connection: close"


class Run:
    """What sigterm_under_load saw."""

    def __init__(self, clients, t_sigterm, code, took, log):
        self.t_sigterm, self.code, self.took, self.log = t_sigterm, code, took, log
        self.results = [r for c in clients for r in c.results]
        self.failures = [f for c in clients for f in c.failures]
        self.refused = [c.refused for c in clients]


def sigterm_under_load(stack, name, port, ops, grace_s, linger_s):
    """Runs THREADS clients (client k sends ops(k)(i)) against port, sends SIGTERM to the service name
    after 1.5 s, waits for it to exit (at most grace_s + 5 s) and linger_s more, then stops the clients.
    The service leaves the stack (killed if it did not exit by itself): the caller starts it again."""
    stop = threading.Event()
    clients = [Client(port, ops(k), stop) for k in range(THREADS)]
    service = stack.services[name]
    code, took = None, None
    try:
        for c in clients:
            c.start()
        time.sleep(1.5)
        t_sigterm = time.monotonic()
        service.proc.terminate()
        try:
            code = service.proc.wait(timeout=grace_s + 5)
        finally:
            took = time.monotonic() - t_sigterm
        time.sleep(linger_s)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=60)
        stack.services.pop(name).stop(signal.SIGKILL)
    assert not any(c.is_alive() for c in clients), "a client hung"
    return Run(clients, t_sigterm, code, took, service.output())


class ShutdownTest(StackTestCase):
    # no trimming of pk:events while the test reads it (the pusher trims acknowledged entries)
    stack_kwargs = {"pusher_env": {"PUSHER_MAINTAIN_MS": "3600000"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.stack
        assert s.admin("PUT", "/templates/tpl", make_zip(sample_template())).status == 201
        cls.tokens, cls.created_versions, cls.devices = {}, {}, {}
        for p in range(PASSES):
            serial = "sd-%d" % p
            r = s.admin("PUT", "/passes/%s/%s" % (PASS_TYPE, serial), {"templateId": "tpl", "pass": {}})
            assert r.status == 201, r.body
            cls.tokens[serial] = r.json()["authenticationToken"]
            cls.created_versions[serial] = r.json()["lastUpdated"]
            for d in range(DEVICES_PER_PASS):
                dli, push = "dev-%d-%d" % (p, d), "%02x%02x" % (p + 0x10, d + 0xa0) * 4
                r = s.api("POST", "%s/devices/%s/registrations/%s/%s" % (V1, dli, PASS_TYPE, serial),
                          {"pushToken": push}, {"Authorization": "ApplePass " + cls.tokens[serial]})
                assert r.status == 201, r.body
                cls.devices[dli] = (serial, push)

    def auth(self, serial):
        return {"Authorization": "ApplePass " + self.tokens[serial]}

    def api_ops(self, k):
        """The mixed load of client k."""
        admin = {"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"}

        def op(i):
            serial = "sd-%d" % ((k + i) % PASSES)
            n = i % 4
            if n == 0:
                body = json.dumps({"pass": {"logoText": "t%d-%d" % (k, i)}})
                return "patch", "PATCH", "/admin/v1/passes/%s/%s" % (PASS_TYPE, serial), body, admin
            if n == 1:
                return "pass", "GET", "%s/passes/%s/%s" % (V1, PASS_TYPE, serial), None, self.auth(serial)
            if n == 2:
                dli = "dev-%d-%d" % ((k + i) % PASSES, i % DEVICES_PER_PASS)
                return "list", "GET", "%s/devices/%s/registrations/%s" % (V1, dli, PASS_TYPE), None, {}
            body = json.dumps({"pushToken": "%02x%06x" % (k, i)})
            headers = dict(self.auth(serial), **{"Content-Type": "application/json"})
            return ("register", "POST", "%s/devices/new-%d-%d/registrations/%s/%s" % (V1, k, i, PASS_TYPE, serial),
                    body, headers)
        return op

    def assert_expected(self, results, allowed):
        for r in results:
            self.assertIn(r.status, allowed[r.kind], "%s %s -> %d %r" % (r.op[0], r.op[1], r.status, r.body[:200]))

    def events(self):
        """pk:events as a list of dicts (a script flattens each entry to one line)."""
        script = ("local out = {} for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do "
                  "out[#out + 1] = cjson.encode(e[2]) end return out")
        lines = self.stack.redis_cli("EVAL", script, "1", "pk:events").splitlines()
        events = []
        for line in lines:
            flat = json.loads(line)
            events.append(dict(zip(flat[0::2], flat[1::2])))
        return events

    def test_api_sigterm_under_load(self):
        s = self.stack
        try:
            # linger: the clients see the closed listener
            run = sigterm_under_load(s, "api", s.api_port, self.api_ops, API_GRACE_S, 0.2)
        finally:
            s.start_api()
        results = run.results

        self.assertEqual(run.failures, [], "requests cut without an answer")
        self.assert_expected(results, {"patch": {200}, "pass": {200}, "list": {200, 204}, "register": {201}})
        self.assertEqual(run.code, 0, run.log[-3000:])
        self.assertLess(run.took, API_GRACE_S)
        self.assertTrue("event=shutdown_drained" in run.log and "shutdown_grace_expired" not in run.log,
                        run.log[-3000:])
        t_sig = run.t_sigterm
        in_flight = [r for r in results if r.started < t_sig < r.ended]
        after = [r for r in results if r.ended > t_sig]
        print("requests: %d, in flight at SIGTERM: %d, answered after it: %d, refused at connect: %d"
              % (len(results), len(in_flight), len(after), sum(run.refused)))
        self.assertGreater(len(after), 0, "nothing overlapped the SIGTERM")
        self.assertGreater(len(in_flight), 0, "no request was in flight at the SIGTERM")
        # answers written once the shutdown had started close their connection
        self.assertTrue(any(r.headers.get("connection") == "close" for r in after))
        self.assertEqual(run.refused, [1] * THREADS)

        # No lost event, and no event without an answer: the versions in pk:events per pass are exactly
        # the creation's and those the 2xx PATCH answers gave.
        answered = {serial: {v} for serial, v in self.created_versions.items()}
        newest = {}
        for r in results:
            if r.kind == "patch":
                serial = r.op[1].rsplit("/", 1)[1]
                version = json.loads(r.body)["lastUpdated"]
                answered[serial].add(version)
                if serial not in newest or int(version) > int(newest[serial][0]):
                    newest[serial] = (version, json.loads(r.op[2])["pass"]["logoText"])
        in_stream = {serial: set() for serial in answered}
        for e in self.events():
            if e["type"] in ("pass.created", "pass.updated") and e["passTypeIdentifier"] == PASS_TYPE:
                in_stream[e["serialNumber"]].add(e["version"])
        self.assertEqual(in_stream, answered)

        # The pusher consumes every event and pushes each pass's devices.
        wait_until(lambda: s.redis_cli("XPENDING", "pk:events", "pushers").split("\n")[0] == "0", timeout=30,
                   what="events acknowledged")
        last_id = s.redis_cli("XREVRANGE", "pk:events", "+", "-", "COUNT", "1").split("\n")[0]
        groups = s.redis_cli("XINFO", "GROUPS", "pk:events").split("\n")
        self.assertEqual(groups[groups.index("last-delivered-id") + 1], last_id)
        pushed = lambda: {q["token"] for q in s.apns_requests() if q["status"] == 200}
        wait_until(lambda: {push for _, push in self.devices.values()} <= pushed(), timeout=30,
                   what="a push to every registered device")

        # After the restart the data is what the answers said.
        for serial, (version, logo) in newest.items():
            r = s.admin("GET", "/passes/%s/%s" % (PASS_TYPE, serial))
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["lastUpdated"], version)
            self.assertEqual(r.json()["pass"], {"logoText": logo})
            self.assertEqual(r.json()["passJson"]["logoText"], logo)
        for r in results:
            if r.kind == "register":
                parts = r.op[1].split("/")  # /passes/v1/devices/{dli}/registrations/{ptid}/{serial}
                dli, serial = parts[4], parts[7]
                self.assertEqual(s.redis_cli("SISMEMBER", "pk:regs:%s:%s" % (PASS_TYPE, serial), dli), "1")
        r = s.api("GET", "%s/passes/%s/sd-0" % (V1, PASS_TYPE), headers=self.auth("sd-0"))
        self.assertEqual(r.status, 200)

    def signer_ops(self, k):
        """Bundles through the api; client 0 keeps changing the passes, so bundles need signing."""
        admin = {"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"}

        def op(i):
            serial = "sd-%d" % ((k + i) % PASSES)
            if k == 0:
                body = json.dumps({"pass": {"logoText": "s%d" % i}})
                return "patch", "PATCH", "/admin/v1/passes/%s/%s" % (PASS_TYPE, serial), body, admin
            return "pass", "GET", "%s/passes/%s/%s" % (V1, PASS_TYPE, serial), None, self.auth(serial)
        return op

    def test_signer_sigterm_under_load(self):
        s = self.stack
        api_log_before = len(s.services["api"].output())
        try:
            # linger: requests keep coming while the signer is gone
            run = sigterm_under_load(s, "signer", s.api_port, self.signer_ops, SIGNER_GRACE_S, 1.0)
            wait_until(lambda: signer_unreachable(s), timeout=10, what="api not ready")
        finally:
            s.start_signer()
        results = run.results

        self.assertEqual(run.failures, [], "requests cut without an answer")
        self.assert_expected(results, {"patch": {200}, "pass": {200, 503}})
        self.assertEqual(run.refused, [0] * THREADS)  # the api itself stays up
        self.assertEqual(run.code, 0, run.log[-3000:])
        self.assertLess(run.took, SIGNER_GRACE_S)
        # the api waited for every bundle it asked for
        self.assertFalse("client=gone" in run.log or "shutdown_grace_expired" in run.log, run.log[-3000:])
        for r in results:
            if r.status == 503:
                self.assertEqual(r.headers.get("retry-after"), "10")
                self.assertEqual(json.loads(r.body), {"error": "the signer is unavailable, try again later"})
                self.assertGreater(r.ended, run.t_sigterm)
        bundles_after = [r for r in results if r.kind == "pass" and r.status == 200 and r.ended > run.t_sigterm]
        unavailable = [r for r in results if r.status == 503]
        print("bundles: %d, 200 after SIGTERM: %d, 503: %d" % (
            sum(r.kind == "pass" for r in results), len(bundles_after), len(unavailable)))
        self.assertGreater(len(bundles_after), 0, "no bundle request was in flight at the SIGTERM")
        self.assertGreater(len(unavailable), 0, "no request came after the signer was gone")
        api_log = s.services["api"].output()[api_log_before:]
        lines = [l for l in api_log.splitlines() if "event=signer_unavailable" in l]
        self.assertEqual(len(lines), len(unavailable))
        connect_failed = r'reason="Failed to connect to 127\.0\.0\.1 port %d after \d+ ?ms: Couldn\'t connect to server"'
        for line in lines:
            self.assertRegex(line, connect_failed % s.signer_port)

        wait_until(lambda: s.api("GET", "/readyz").status == 200, timeout=10, what="api ready again")
        self.assertEqual(s.api("GET", "%s/passes/%s/sd-1" % (V1, PASS_TYPE), headers=self.auth("sd-1")).status, 200)

if __name__ == "__main__":
    run()
