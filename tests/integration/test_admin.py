#!/usr/bin/env python3
"""The admin API: templates, passes, merge patches, the bundle download, and every bad input getting
a clear JSON error with nothing stored."""
import json
import os

from harness import (ADMIN_TOKEN, PASS_TYPE, PNG_1X1, SIGNER_TOKEN, StackTestCase, make_zip, request, run,
                     sample_template)
from pkpass_check import check_bundle


class AdminTest(StackTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        assert cls.stack.admin("PUT", "/templates/tpl", make_zip(sample_template())).status == 201

    def keys(self, pattern):
        out = self.stack.redis_cli("KEYS", pattern)
        return sorted(out.split("\n")) if out else []

    def assert_error(self, r, status, fragment):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertIn(fragment, r.json()["error"])

    # -- auth ---------------------------------------------------------------------------------------
    def test_admin_requires_the_bearer_token(self):
        port = self.stack.api_port
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "ApplePass " + ADMIN_TOKEN}]:
            r = request(port, "GET", "/admin/v1/passes/%s/x" % PASS_TYPE, headers=headers)
            self.assert_error(r, 401, "ADMIN_TOKEN")
        r = request(port, "PUT", "/admin/v1/templates/evil", make_zip(sample_template()), {"Authorization": "Bearer x"})
        self.assertEqual(r.status, 401)
        self.assertEqual(self.keys("pk:tpl:evil"), [])

    # -- templates ----------------------------------------------------------------------------------
    def test_template_created_then_replaced(self):
        r = self.put_template("t-replace", sample_template())
        self.assertEqual(r.status, 201, r.body)
        rev1 = r.json()["revision"]
        r = self.put_template("t-replace", dict(sample_template(), **{"strip.png": PNG_1X1}))
        self.assertEqual(r.status, 200)
        self.assertGreater(r.json()["revision"], rev1)
        self.assertIn("strip.png", r.json()["files"])

    def test_template_in_a_folder_and_junk_dropped(self):
        files = dict(sample_template(), **{".DS_Store": b"junk", "Thumbs.db": b"x", "._icon.png": b"fork"})
        r = self.put_template("t-folder", files, folder="Event.pass")
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(sorted(r.json()["files"]), ["en.lproj/pass.strings", "icon.png", "logo.png", "pass.json"])
        self.assertEqual(sorted(r.json()["ignored"]), [".DS_Store", "._icon.png", "Thumbs.db"])
        fields = self.stack.redis_cli("HKEYS", "pk:tpl:t-folder").split("\n")
        self.assertEqual(sorted(fields), ["@files", "@rev", "file:en.lproj/pass.strings", "file:icon.png",
                                          "file:logo.png", "file:pass.json"])

    def test_template_errors_store_nothing(self):
        """What cannot be read as a pass model is 400; what Wallet would refuse in a readable one is 422
        (test_validation.py)."""
        import io
        import warnings
        import zipfile
        twice = io.BytesIO()
        with warnings.catch_warnings(), zipfile.ZipFile(twice, "w") as z:
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name, which is the point
            for name, data in (("pass.json", "{}"), ("icon.png", PNG_1X1), ("icon.png", PNG_1X1)):
                z.writestr(name, data)
        cases = [
            (twice.getvalue(), "two entries with the same name", None),
            (b"", "body is empty", None),
            (make_zip({"pass.json": "{}", "icon.png": PNG_1X1, "ICON.png": PNG_1X1}), "clashes", "ICON.png"),
            (make_zip({"pass.json": "{}", "icon.png": PNG_1X1, "pass.json/x": PNG_1X1}), "clashes", "pass.json/x"),
            (b"this is not a zip", "not a zip archive", None),
            (make_zip({"pass.json": "{}", "icon.png": PNG_1X1, "../evil.png": PNG_1X1}), "not allowed", "../evil.png"),
            (make_zip({"pass.json": "{}", "icon.png": PNG_1X1, "a/b/c.png": PNG_1X1}), "not allowed", "a/b/c.png"),
            # names the signer could not put in a bundle are refused at upload, not at download
            (make_zip({"pass.json": "{}", "icon.png": PNG_1X1, "my logo.png": PNG_1X1}), "not allowed", "my logo.png"),
            (make_zip({"pass.json": "{}", "icon.png": PNG_1X1, "./x.png": PNG_1X1}), "not allowed", "./x.png"),
            (make_zip({"pass.json": "{}", "icon.png": PNG_1X1, "caf\u00e9.png": PNG_1X1}), "not allowed", "caf??.png"),
            (make_zip({"pass.json": "{}", "icon.png": PNG_1X1, "a\x01b.png": PNG_1X1}), "not allowed", "a?b.png"),
            (make_zip({"pass.json": '{"a": 1, "a": 2}', "icon.png": PNG_1X1}), "duplicate", "pass.json"),
        ]
        for body, fragment, file in cases:
            r = self.stack.admin("PUT", "/templates/t-bad", body)
            self.assert_error(r, 400, fragment)
            if file:
                self.assertEqual(r.json()["file"], file)
        self.assertEqual(self.keys("pk:tpl:t-bad"), [])

    def test_trailing_comma_is_refused_with_line_and_column(self):
        text = '{\n  "formatVersion" : 1,\n  "description" : "x",\n}\n'
        r = self.put_template("t-comma", {"pass.json": text, "icon.png": PNG_1X1})
        self.assert_error(r, 400, "pass.json is not valid JSON")
        self.assertEqual(r.json()["file"], "pass.json")
        self.assertEqual((r.json()["line"], r.json()["column"]), (4, 1))
        self.assertIn("line 4, column 1", r.json()["error"])
        self.assertEqual(self.keys("pk:tpl:t-comma"), [])

    def test_oversized_body_is_413_before_it_is_read(self):
        """MAX_BODY_BYTES is 2 MiB in the harness: a larger announced body is refused at the headers."""
        import socket
        s = socket.create_connection(("127.0.0.1", self.stack.api_port), timeout=10)
        s.sendall(("PUT /admin/v1/templates/t-big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: %d\r\n\r\n" % (ADMIN_TOKEN, 2 * 1024 * 1024 + 1)).encode())
        answer = s.recv(4096).decode(errors="replace")
        s.close()
        self.assertTrue(answer.startswith("HTTP/1.1 413"), answer)
        # exactly at the limit it is read (and here refused for what it is)
        r = self.stack.admin("PUT", "/templates/t-big", b"x" * (2 * 1024 * 1024))
        self.assert_error(r, 400, "not a zip")
        self.assertEqual(self.keys("pk:tpl:t-big"), [])

    def test_zip_bomb_is_refused(self):
        r = self.put_template("t-bomb", {"pass.json": "{}", "icon.png": PNG_1X1, "big.png": b"\0" * (40 << 20)})
        self.assert_error(r, 400, "larger than")
        self.assertEqual(self.keys("pk:tpl:t-bomb"), [])

    # -- passes -------------------------------------------------------------------------------------
    def test_put_created_replaced_and_get(self):
        r = self.put_pass("p-1", pass_fields={"logoText": "One", "authenticationToken": "abcdefghijklmnop1234"})
        self.assertEqual(r.status, 201, r.body)
        body = r.json()
        self.assertEqual(body["authenticationToken"], "abcdefghijklmnop1234")
        self.assertEqual(body["serialNumber"], "p-1")
        self.assertRegex(body["lastUpdated"], r"^[0-9]+$")
        r = self.put_pass("p-1", pass_fields={"logoText": "Two"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["authenticationToken"], "abcdefghijklmnop1234")
        self.assertGreater(int(r.json()["lastUpdated"]), int(body["lastUpdated"]))
        r = self.stack.admin("GET", "/passes/%s/p-1" % PASS_TYPE)
        self.assertEqual(r.status, 200)
        state = r.json()
        self.assertEqual(state["pass"], {"logoText": "Two"})
        self.assertEqual(state["passJson"]["logoText"], "Two")
        self.assertEqual(state["passJson"]["organizationName"], "Example Venue")
        self.assertEqual(state["registeredDevices"], 0)
        self.assertEqual(state["templateId"], "tpl")
        self.assertEqual(self.stack.admin("GET", "/passes/%s/nope" % PASS_TYPE).status, 404)

    def test_patch_is_a_merge_patch(self):
        self.put_pass("p-patch", pass_fields={"logoText": "A", "foregroundColor": "rgb(1, 2, 3)"})
        r = self.stack.admin("PATCH", "/passes/%s/p-patch" % PASS_TYPE, {"pass": {"logoText": None, "labelColor": "rgb(9, 9, 9)"}})
        self.assertEqual(r.status, 200, r.body)
        state = self.stack.admin("GET", "/passes/%s/p-patch" % PASS_TYPE).json()
        self.assertEqual(state["pass"], {"foregroundColor": "rgb(1, 2, 3)", "labelColor": "rgb(9, 9, 9)"})
        # a bare patch of the pass itself
        r = self.stack.admin("PATCH", "/passes/%s/p-patch" % PASS_TYPE, {"foregroundColor": "rgb(4, 5, 6)"})
        self.assertEqual(r.status, 200, r.body)
        state = self.stack.admin("GET", "/passes/%s/p-patch" % PASS_TYPE).json()
        self.assertEqual(state["pass"]["foregroundColor"], "rgb(4, 5, 6)")
        self.assertEqual(self.stack.admin("PATCH", "/passes/%s/unknown" % PASS_TYPE, {"pass": {}}).status, 404)
        self.assertEqual(self.keys("pk:pass:%s:unknown" % PASS_TYPE), [])

    def test_every_change_is_one_event(self):
        before = int(self.stack.redis_cli("XLEN", "pk:events"))
        self.put_pass("p-events")
        self.put_pass("p-events", pass_fields={"logoText": "x"})
        self.stack.admin("PATCH", "/passes/%s/p-events" % PASS_TYPE, {"logoText": "y"})
        entries = self.stack.redis_cli("XRANGE", "pk:events", "-", "+").split("\n")
        self.assertEqual(int(self.stack.redis_cli("XLEN", "pk:events")), before + 3)
        self.assertIn("pass.created", entries)
        self.assertEqual(entries.count("p-events"), 3)
        # a write that changes nothing takes no version, publishes nothing and so pushes nobody
        tag = self.stack.admin("GET", "/passes/%s/p-events" % PASS_TYPE).json()["lastUpdated"]
        r = self.stack.admin("PATCH", "/passes/%s/p-events" % PASS_TYPE, {"logoText": "y"})
        self.assertEqual((r.status, r.json()["lastUpdated"]), (200, tag))
        r = self.stack.admin("PATCH", "/passes/%s/p-events" % PASS_TYPE, {})
        self.assertEqual((r.status, r.json()["lastUpdated"]), (200, tag))
        self.assertEqual(int(self.stack.redis_cli("XLEN", "pk:events")), before + 3)

    def test_pass_errors_store_nothing(self):
        path = "/passes/%s/p-bad" % PASS_TYPE
        cases = [
            ("{not json", 400, "not valid JSON"),
            ("[]", 400, "must be a JSON object"),
            ({"pass": {}}, 400, "templateId"),
            ({"templateId": "tpl", "pass": []}, 400, "pass must be a JSON object"),
            ({"templateId": "tpl", "pass": {}, "extra": 1}, 400, "unknown field"),
            ({"templateId": "tpl", "pass": {"authenticationToken": "short"}}, 400, "at least 16"),
            ({"templateId": "tpl", "pass": {"authenticationToken": 1234567890123456789}}, 400, "authenticationToken"),
            ({"templateId": "tpl", "pass": {"serialNumber": "other"}}, 400, "serialNumber"),
            ({"templateId": "no-such-template", "pass": {}}, 422, "does not exist"),
        ]
        for body, status, fragment in cases:
            r = self.stack.admin("PUT", path, body)
            self.assert_error(r, status, fragment)
        r = self.stack.admin("PUT", "/passes/pass.com.example.nocert/p-bad", {"templateId": "tpl", "pass": {}})
        self.assert_error(r, 422, "no certificate for pass type pass.com.example.nocert")
        r = self.stack.admin("PUT", "/passes/not-a-pass-type/p-bad", {"templateId": "tpl", "pass": {}})
        self.assert_error(r, 400, "passTypeIdentifier")
        r = self.stack.admin("PUT", "/passes/%s/bad%%20serial" % PASS_TYPE, {"templateId": "tpl", "pass": {}})
        self.assert_error(r, 400, "serialNumber")
        r = self.stack.admin("PUT", path, '{"templateId": "tpl", "templateId": "tpl", "pass": {}}')
        self.assert_error(r, 400, "duplicate")
        r = self.stack.admin("PUT", path, {"templateId": "tpl", "pass": {"description": "x" * 300000}})
        self.assert_error(r, 400, "more than the 262144 allowed")
        self.assertEqual(self.keys("pk:pass:*p-bad"), [])

    def test_unknown_admin_paths_are_json_404(self):
        for path in ["/foo", "/passes/%s/x/zzz" % PASS_TYPE, "/templates"]:
            self.assert_error(self.stack.admin("GET", path), 404, "no such admin resource")

    def test_concurrent_patches_all_land(self):
        import threading
        self.assertEqual(self.put_pass("p-race").status, 201)
        results = []

        def patch(i):
            r = self.stack.admin("PATCH", "/passes/%s/p-race" % PASS_TYPE, {"pass": {"k%02d" % i: i}})
            results.append((r.status, r.json().get("lastUpdated")))

        threads = [threading.Thread(target=patch, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([s for s, _ in results], [200] * 40)
        self.assertEqual(len({tag for _, tag in results}), 40)
        state = self.stack.admin("GET", "/passes/%s/p-race" % PASS_TYPE).json()
        self.assertEqual(state["pass"], {"k%02d" % i: i for i in range(40)})

    def test_racing_creations_with_different_tokens(self):
        import threading
        results = []

        def put(i):
            r = self.put_pass("p-token-race", pass_fields={"authenticationToken": "race-token-%02d-abcdefgh" % i})
            results.append((r.status, r.json().get("authenticationToken")))

        threads = [threading.Thread(target=put, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(s for s, _ in results), [201] + [409] * 19)
        winner = [tok for s, tok in results if s == 201][0]
        self.assertEqual(self.stack.admin("GET", "/passes/%s/p-token-race" % PASS_TYPE).json()["authenticationToken"],
                         winner)

    def test_signer_requires_its_token(self):
        path = "/v1/bundles/%s/p-signer" % PASS_TYPE
        self.assertEqual(self.put_pass("p-signer").status, 201)
        self.assertEqual(request(self.stack.signer_port, "GET", path).status, 401)
        r = request(self.stack.signer_port, "GET", path, headers={"Authorization": "Bearer nope"})
        self.assertEqual(r.status, 401)
        r = request(self.stack.signer_port, "GET", path, headers={"Authorization": "Bearer " + SIGNER_TOKEN})
        self.assertEqual(r.status, 200)

    def test_authentication_token_cannot_change(self):
        self.put_pass("p-token", pass_fields={"authenticationToken": "first-token-0123456789"})
        r = self.put_pass("p-token", pass_fields={"authenticationToken": "second-token-0123456789"})
        self.assert_error(r, 409, "cannot change")
        state = self.stack.admin("GET", "/passes/%s/p-token" % PASS_TYPE).json()
        self.assertEqual(state["authenticationToken"], "first-token-0123456789")

    def test_download_is_signed_and_server_keys_win(self):
        template = sample_template(passTypeIdentifier="pass.com.apple.devpubs.example", teamIdentifier="A93A5CM278",
                                   webServiceURL="https://example.com/passes/", serialNumber="x")
        self.assertEqual(self.put_template("t-apple-like", template).status, 201)
        r = self.put_pass("p-dl", template_id="t-apple-like")
        self.assertEqual(r.status, 201)
        r = self.stack.admin("GET", "/passes/%s/p-dl/pkpass" % PASS_TYPE)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "application/vnd.apple.pkpass")
        self.assertIn("p-dl.pkpass", r.header("content-disposition"))
        _, pass_json = check_bundle(r.body, os.path.join(self.stack.certs, "ca", "chain.pem"))
        self.assertEqual(pass_json["passTypeIdentifier"], PASS_TYPE)
        self.assertEqual(pass_json["serialNumber"], "p-dl")
        self.assertEqual(pass_json["teamIdentifier"], "TEAM123456")
        self.assertTrue(pass_json["webServiceURL"].endswith("/passes"))
        self.assertEqual(self.stack.admin("GET", "/passes/%s/none/pkpass" % PASS_TYPE).status, 404)

    def test_second_download_is_not_signed_again(self):
        self.put_pass("p-cache")
        first = self.stack.admin("GET", "/passes/%s/p-cache/pkpass" % PASS_TYPE)
        second = self.stack.admin("GET", "/passes/%s/p-cache/pkpass" % PASS_TYPE)
        self.assertEqual(first.status, 200)
        self.assertEqual(first.body, second.body)  # the same signature bytes: served from the cache
        self.assertEqual(self.keys("pk:bundle:%s:p-cache*" % PASS_TYPE), ["pk:bundle:%s:p-cache" % PASS_TYPE])
        # a new version replaces the cached bundle rather than adding one
        self.assertEqual(self.put_pass("p-cache", pass_fields={"logoText": "v2"}).status, 200)
        third = self.stack.admin("GET", "/passes/%s/p-cache/pkpass" % PASS_TYPE)
        self.assertNotEqual(third.body, first.body)
        self.assertEqual(self.keys("pk:bundle:%s:p-cache*" % PASS_TYPE), ["pk:bundle:%s:p-cache" % PASS_TYPE])
        state = self.stack.redis_cli("HGET", "pk:bundle:%s:p-cache" % PASS_TYPE, "id")
        self.assertTrue(state.startswith(self.stack.admin("GET", "/passes/%s/p-cache" % PASS_TYPE).json()["lastUpdated"] + ":"))


if __name__ == "__main__":
    run()
