#!/usr/bin/env python3
"""The api's /healthz, /readyz and /metrics (services/api/routes_health.c, services/api/metrics.h): the
same JSON answers as the signer's and the pusher's; ready only with Redis connected and the signer's own
/readyz answering 200 (a stand-in signer gives the answers a real one could); the metric families, with
exact increments for known requests; the signer's generic HTTP metrics next to its own."""
import http.server
import json
import os
import threading

from harness import (ADMIN_TOKEN, BIN, PASS_TYPE, Service, StackTestCase, free_port, make_zip, metric_value, request,
                     run, sample_template, wait_until)

V1 = "/passes/v1"


class FakeSigner(http.server.BaseHTTPRequestHandler):
    """Answers GET /readyz with the server's (status, body); counts what it was asked."""

    def do_GET(self):
        status, body = self.server.answer
        self.server.asked.append((self.path, self.headers.get("Authorization")))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class ApiStatusTest(StackTestCase):
    def metrics(self):
        r = self.stack.api("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8")
        return r.body.decode()

    def metric(self, name, **labels):
        return metric_value(self.metrics(), name, **labels)

    def test_healthz_and_readyz(self):
        r = self.stack.api("GET", "/healthz")
        self.assertEqual((r.status, r.header("content-type"), r.body), (200, "application/json", b'{"status":"ok"}'))
        r = self.stack.api("GET", "/readyz")
        self.assertEqual((r.status, r.body), (200, b'{"status":"ready"}'))
        self.assertEqual(self.stack.api("POST", "/readyz").status, 405)
        text = self.metrics()
        self.assertEqual(metric_value(text, "api_dependency_up", dependency="redis"), 1)
        self.assertEqual(metric_value(text, "api_dependency_up", dependency="signer"), 1)

    def test_metric_families_count_requests(self):
        s = self.stack
        text = self.metrics()
        for family, kind in (("http_requests_total", "counter"), ("http_request_duration_seconds", "histogram"),
                             ("api_redis_errors_total", "counter"), ("api_signer_requests_total", "counter"),
                             ("api_signer_request_seconds", "histogram"), ("api_events_published_total", "counter"),
                             ("api_dependency_up", "gauge")):
            self.assertIn("\n# TYPE %s %s\n" % (family, kind), text)
        route = V1 + "/passes"
        before = {
            "tpl": metric_value(text, "api_events_published_total", type="template.updated"),
            "created": metric_value(text, "api_events_published_total", type="pass.created"),
            "updated": metric_value(text, "api_events_published_total", type="pass.updated"),
            "signer": metric_value(text, "api_signer_requests_total", status="200"),
            "signer_s": metric_value(text, "api_signer_request_seconds_count"),
            "get": metric_value(text, "http_requests_total", route=route, method="GET", status="200"),
            "get_s": metric_value(text, "http_request_duration_seconds_count", route=route),
            "none": metric_value(text, "http_requests_total", route="none", method="GET", status="404"),
            "admin": metric_value(text, "http_requests_total", route="/admin/v1", method="PATCH", status="200"),
        }
        self.assertEqual(s.admin("PUT", "/templates/st", make_zip(sample_template())).status, 201)
        r = self.put_pass("st-1", template_id="st")
        self.assertEqual(r.status, 201)
        token = r.json()["authenticationToken"]
        self.assertEqual(self.put_pass("st-1", template_id="st", pass_fields={"logoText": "x"}, method="PATCH").status,
                         200)
        # the same PATCH again changes nothing: no event
        self.assertEqual(self.put_pass("st-1", template_id="st", pass_fields={"logoText": "x"}, method="PATCH").status,
                         200)
        r = s.api("GET", "%s/passes/%s/st-1" % (V1, PASS_TYPE), headers={"Authorization": "ApplePass " + token})
        self.assertEqual(r.status, 200)
        self.assertEqual(s.api("GET", "/nowhere/at/all").status, 404)

        text = self.metrics()
        self.assertEqual(metric_value(text, "api_events_published_total", type="template.updated"), before["tpl"] + 1)
        self.assertEqual(metric_value(text, "api_events_published_total", type="pass.created"), before["created"] + 1)
        self.assertEqual(metric_value(text, "api_events_published_total", type="pass.updated"), before["updated"] + 1)
        self.assertEqual(metric_value(text, "api_signer_requests_total", status="200"), before["signer"] + 1)
        self.assertEqual(metric_value(text, "api_signer_request_seconds_count"), before["signer_s"] + 1)
        self.assertEqual(metric_value(text, "http_requests_total", route=route, method="GET", status="200"),
                         before["get"] + 1)
        self.assertEqual(metric_value(text, "http_request_duration_seconds_count", route=route), before["get_s"] + 1)
        self.assertEqual(metric_value(text, "http_requests_total", route="none", method="GET", status="404"),
                         before["none"] + 1)
        self.assertEqual(metric_value(text, "http_requests_total", route="/admin/v1", method="PATCH", status="200"),
                         before["admin"] + 2)
        self.assertNotIn("st-1", text)  # routes are prefixes, never paths
        self.assertNotIn("nowhere", text)

    def test_signer_has_the_generic_http_metrics(self):
        s = self.stack
        before = s.signer_metric("http_requests_total", route="/v1/bundles", method="GET", status="404")
        own = s.signer_metric("signer_requests_total", status="404")
        self.assertEqual(s.signer_bundle(PASS_TYPE, "no-such-pass").status, 404)
        self.assertEqual(s.signer_metric("http_requests_total", route="/v1/bundles", method="GET", status="404"),
                         before + 1)
        self.assertEqual(s.signer_metric("signer_requests_total", status="404"), own + 1)

    def test_readyz_follows_the_signers_readyz(self):
        fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeSigner)
        fake.asked = []
        fake.answer = (503, b'{"status":"not ready","reason":"no certificate loaded"}')
        thread = threading.Thread(target=fake.serve_forever, daemon=True)
        thread.start()
        port = free_port()
        env = {"ADMIN_TOKEN": ADMIN_TOKEN, "REDIS_URL": self.stack.redis_url, "API_LISTEN": "127.0.0.1:%d" % port,
               "SIGNER_URL": "http://127.0.0.1:%d" % fake.server_address[1], "SIGNER_TOKEN": "a-token-never-sent"}
        api = Service("api-fake-signer", [os.path.join(BIN, "passkit-api")], env, self.stack.tmp)
        try:
            wait_until(lambda: "event=listening" in api.output(), what="api to listen")

            def readyz():
                try:
                    return request(port, "GET", "/readyz", timeout=2)
                except OSError:
                    return None

            def reason_is(reason):
                r = readyz()
                return r is not None and r.status == 503 and r.json() == {"status": "not ready", "reason": reason}

            wait_until(lambda: reason_is("signer not ready: no certificate loaded"), what="signer's reason")
            fake.answer = (503, b"overloaded")
            wait_until(lambda: reason_is("signer not ready: status 503"), what="signer's status")
            fake.answer = (200, b'{"status":"ready"}')
            wait_until(lambda: readyz() is not None and readyz().status == 200, what="ready")
            self.assertEqual(readyz().body, b'{"status":"ready"}')
            self.assertTrue(fake.asked)
            self.assertEqual(set(fake.asked), {("/readyz", None)})  # the token is for bundles only
        finally:
            code = api.stop()
            fake.shutdown()
            fake.server_close()
        self.assertEqual(code, 0, api.output()[-3000:])


if __name__ == "__main__":
    run()
