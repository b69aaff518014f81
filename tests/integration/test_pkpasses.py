#!/usr/bin/env python3
"""GET /admin/v1/pkpasses?pass=<ptid>/<serial>&...: several signed passes in one .pkpasses. The answer is
unzipped with Python's zipfile; every inner <serial>.pkpass is stored uncompressed, is byte for byte the
single admin download, and is verified by openssl and by our reader (pkpass_check.check_bundle). 1 and
11 passes, unknown passes, malformed, repeated and clashing parameters are refused with the exact error,
all or nothing."""
import io
import os
import socket
import threading
import time
import zipfile

from harness import ADMIN_TOKEN, OTHER_PASS_TYPE, PASS_TYPE, StackTestCase, make_zip, request, run, sample_template
from pkpass_check import check_bundle

MIME = "application/vnd.apple.pkpasses"
COUNT_ERROR = ("a .pkpasses holds 2 to 10 passes (pass=<passTypeIdentifier>/<serialNumber>, repeated); got %s")


def query(*passes):
    return "/pkpasses?" + "&".join("pass=%s/%s" % p for p in passes)


class PkpassesTest(StackTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        assert cls.stack.admin("PUT", "/templates/tpl", make_zip(sample_template())).status == 201
        for i in range(1, 12):
            assert cls.stack.admin("PUT", "/passes/%s/s%d" % (PASS_TYPE, i),
                                   {"templateId": "tpl", "pass": {}}).status == 201
        for serial in ("o1", "s1"):
            assert cls.stack.admin("PUT", "/passes/%s/%s" % (OTHER_PASS_TYPE, serial),
                                   {"templateId": "tpl", "pass": {}}).status == 201

    def assert_error(self, r, status, message):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(r.json(), {"error": message})

    def test_three_passes_of_two_types(self):
        passes = [(PASS_TYPE, "s1"), (PASS_TYPE, "s2"), (OTHER_PASS_TYPE, "o1")]
        r = self.stack.admin("GET", query(*passes))
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.header("content-type"), MIME)
        self.assertEqual(r.header("content-disposition"), 'attachment; filename="passes.pkpasses"')
        ca = os.path.join(self.stack.certs, "ca", "chain.pem")
        with zipfile.ZipFile(io.BytesIO(r.body)) as z:
            self.assertIsNone(z.testzip())
            self.assertEqual(z.namelist(), ["s1.pkpass", "s2.pkpass", "o1.pkpass"])
            for info, (ptid, serial) in zip(z.infolist(), passes):
                with self.subTest(serial=serial):
                    self.assertEqual(info.compress_type, zipfile.ZIP_STORED)
                    inner = z.read(info)
                    _, pass_json = check_bundle(inner, ca, "Test Worldwide Developer Relations")
                    self.assertEqual((pass_json["passTypeIdentifier"], pass_json["serialNumber"]), (ptid, serial))
                    single = self.stack.admin("GET", "/passes/%s/%s/pkpass" % (ptid, serial))
                    self.assertEqual(single.status, 200)
                    self.assertEqual(inner, single.body)  # the signer's cached bundle, unchanged

    def test_ten_passes_is_the_limit(self):
        passes = [(PASS_TYPE, "s%d" % i) for i in range(1, 11)]
        r = self.stack.admin("GET", query(*passes))
        self.assertEqual(r.status, 200, r.body)
        with zipfile.ZipFile(io.BytesIO(r.body)) as z:
            self.assertEqual(z.namelist(), ["s%d.pkpass" % i for i in range(1, 11)])
        head = self.stack.admin("HEAD", query(*passes))
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("content-type"), MIME)
        self.assertEqual(head.header("content-length"), str(len(r.body)))
        self.assertEqual(head.body, b"")

    def test_one_zero_and_eleven_passes_are_refused(self):
        self.assert_error(self.stack.admin("GET", query((PASS_TYPE, "s1"))), 400, COUNT_ERROR % "1")
        self.assert_error(self.stack.admin("GET", "/pkpasses"), 400, COUNT_ERROR % "0")
        eleven = [(PASS_TYPE, "s%d" % i) for i in range(1, 12)]
        self.assert_error(self.stack.admin("GET", query(*eleven)), 400, COUNT_ERROR % "11")

    def test_unknown_passes_are_named_and_nothing_is_sent(self):
        r = self.stack.admin("GET", query((PASS_TYPE, "s1"), (PASS_TYPE, "nope"), (OTHER_PASS_TYPE, "gone")))
        self.assertEqual(r.status, 404, r.body)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(r.json(), {"error": "no pass %s/nope, %s/gone" % (PASS_TYPE, OTHER_PASS_TYPE),
                                    "passes": ["%s/nope" % PASS_TYPE, "%s/gone" % OTHER_PASS_TYPE]})

    def test_bad_parameters(self):
        self.assert_error(self.stack.admin("GET", "/pkpasses?pass=%s/s1&pass=s2" % PASS_TYPE), 400,
                          'pass=s2 is not <passTypeIdentifier>/<serialNumber> ("pass." and [A-Za-z0-9.-], then 1 to '
                          '128 characters [A-Za-z0-9._-])')
        self.assert_error(self.stack.admin("GET", "/pkpasses?pass=%s/s1&pass=com.x/s2" % PASS_TYPE), 400,
                          'pass=com.x/s2 is not <passTypeIdentifier>/<serialNumber> ("pass." and [A-Za-z0-9.-], '
                          'then 1 to 128 characters [A-Za-z0-9._-])')
        self.assert_error(self.stack.admin("GET", "/pkpasses?pass=%s/s1&pass=%%ZZ" % PASS_TYPE), 400,
                          "pass parameter 2 is malformed or longer than 257 characters")
        self.assert_error(self.stack.admin("GET", query((PASS_TYPE, "s1"), (PASS_TYPE, "s1"))), 400,
                          "pass=%s/s1 is listed twice" % PASS_TYPE)
        self.assert_error(self.stack.admin("GET", query((PASS_TYPE, "s1"), (OTHER_PASS_TYPE, "s1"))), 400,
                          "pass=%s/s1 and pass=%s/s1 share a serial number: both files would be named s1.pkpass in "
                          "the .pkpasses" % (PASS_TYPE, OTHER_PASS_TYPE))
        # the separator may come percent-encoded
        r = self.stack.admin("GET", "/pkpasses?pass=%s%%2Fs1&pass=%s%%2Fs2" % (PASS_TYPE, PASS_TYPE))
        self.assertEqual(r.status, 200, r.body)

    def test_method_and_token(self):
        r = self.stack.admin("POST", query((PASS_TYPE, "s1"), (PASS_TYPE, "s2")))
        self.assert_error(r, 405, "method not allowed here (allowed: GET, HEAD)")
        self.assertEqual(r.header("allow"), "GET, HEAD")
        r = request(self.stack.api_port, "GET", "/admin/v1" + query((PASS_TYPE, "s1"), (PASS_TYPE, "s2")),
                    headers={"Authorization": "Bearer not-" + ADMIN_TOKEN})
        self.assertEqual(r.status, 401)

    def test_parallel_downloads_and_health_checks(self):
        """The loop keeps answering while .pkpasses are built (the ZIP is made on a worker thread)."""
        passes = [(PASS_TYPE, "s%d" % i) for i in range(1, 11)]
        results = []

        def download():
            results.append(self.stack.admin("GET", query(*passes)))

        threads = [threading.Thread(target=download) for _ in range(4)]
        for t in threads:
            t.start()
        health = [request(self.stack.api_port, "GET", "/healthz").status for _ in range(10)]
        for t in threads:
            t.join()
        self.assertEqual(health, [200] * 10)
        self.assertEqual([r.status for r in results], [200] * 4)
        self.assertEqual(len({r.body for r in results}), 1)
        # the entries carry the passes' newest Last-Modified, not the time of the request: the same
        # versions give the same bytes a second later too
        time.sleep(1.1)
        self.assertEqual(self.stack.admin("GET", query(*passes)).body, results[0].body)

    def test_clients_that_go_away(self):
        """Clients that hang up before the answer: nothing is written to them, nothing leaks (the class
        fails on a sanitizer report), and the api goes on answering."""
        target = "/admin/v1" + query(*[(PASS_TYPE, "s%d" % i) for i in range(1, 11)])
        for delay in (0, 0.001, 0.005, 0.02):
            with socket.create_connection(("127.0.0.1", self.stack.api_port)) as c:
                c.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                           % (target, ADMIN_TOKEN)).encode())
                time.sleep(delay)
        time.sleep(0.5)
        self.assertEqual(request(self.stack.api_port, "GET", "/healthz").status, 200)
        self.assertEqual(self.stack.admin("GET", query((PASS_TYPE, "s1"), (PASS_TYPE, "s2"))).status, 200)

    def test_zz_signer_unavailable(self):
        """Runs last: stops the signer, then starts it again."""
        code, _ = self.stack.stop_service("signer")
        self.assertEqual(code, 0)
        try:
            r = self.stack.admin("GET", query((PASS_TYPE, "s1"), (PASS_TYPE, "s2")))
            self.assert_error(r, 503, "the signer is unavailable, try again later")
            self.assertEqual(r.header("retry-after"), "10")
        finally:
            self.stack.start_signer()
        self.assertEqual(self.stack.admin("GET", query((PASS_TYPE, "s1"), (PASS_TYPE, "s2"))).status, 200)


if __name__ == "__main__":
    run()
