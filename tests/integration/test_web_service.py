#!/usr/bin/env python3
"""Apple's PassKit web service endpoints, every status of the spec sheet (section 1), over real HTTP
against the api, with a private Redis and the real signer."""
import email.utils
import time

from harness import PASS_TYPE, OTHER_PASS_TYPE, StackTestCase, run, sample_template

V1 = "/passes/v1"  # PUBLIC_URL is http://127.0.0.1:<port>/passes in the harness


class WebServiceTest(StackTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = cls.stack.admin("PUT", "/templates/tpl", __import__("harness").make_zip(sample_template()))
        assert r.status == 201, r.body

    def create(self, serial, pass_type=PASS_TYPE):
        r = self.put_pass(serial, pass_type=pass_type)
        self.assertEqual(r.status, 201, r.body)
        return r.json()["authenticationToken"]

    def register(self, dli, serial, token, push="a1b2c3", pass_type=PASS_TYPE, path_prefix=V1):
        return self.stack.api("POST", "%s/devices/%s/registrations/%s/%s" % (path_prefix, dli, pass_type, serial),
                              {"pushToken": push}, {"Authorization": "ApplePass " + token})

    # -- register ---------------------------------------------------------------------------------
    def test_register_new_then_existing(self):
        token = self.create("reg-1")
        self.assertEqual(self.register("dev-reg-1", "reg-1", token).status, 201)
        r = self.register("dev-reg-1", "reg-1", token)
        self.assertEqual(r.status, 200)
        self.assertEqual(self.stack.redis_cli("SMEMBERS", "pk:regs:%s:reg-1" % PASS_TYPE), "dev-reg-1")

    def test_register_replaces_push_token(self):
        token = self.create("reg-2")
        self.register("dev-reg-2", "reg-2", token, push="aaaa")
        self.assertEqual(self.register("dev-reg-2", "reg-2", token, push="bbbb").status, 200)
        self.assertEqual(self.stack.redis_cli("GET", "pk:devtoken:dev-reg-2:%s" % PASS_TYPE), "bbbb")

    def test_register_without_or_with_wrong_auth_is_401_and_stores_nothing(self):
        self.create("reg-3")
        path = "%s/devices/dev-reg-3/registrations/%s/reg-3" % (V1, PASS_TYPE)
        self.assertEqual(self.stack.api("POST", path, {"pushToken": "aa"}).status, 401)
        r = self.stack.api("POST", path, {"pushToken": "aa"}, {"Authorization": "ApplePass wrong-token-0123456789"})
        self.assertEqual(r.status, 401)
        r = self.stack.api("POST", path, {"pushToken": "aa"}, {"Authorization": "Bearer " + "x" * 20})
        self.assertEqual(r.status, 401)
        self.assertEqual(self.stack.redis_cli("EXISTS", "pk:regs:%s:reg-3" % PASS_TYPE), "0")
        self.assertEqual(self.stack.redis_cli("EXISTS", "pk:devtoken:dev-reg-3:%s" % PASS_TYPE), "0")

    def test_register_scheme_is_case_insensitive(self):
        token = self.create("reg-4")
        path = "%s/devices/dev-reg-4/registrations/%s/reg-4" % (V1, PASS_TYPE)
        self.assertEqual(self.stack.api("POST", path, {"pushToken": "ab"}, {"authorization": "applepass " + token}).status, 201)

    def test_register_unknown_pass_is_404(self):
        r = self.register("dev-x", "no-such-serial", "0123456789abcdef0123")
        self.assertEqual(r.status, 404)

    def test_register_bad_body_is_400_and_stores_nothing(self):
        token = self.create("reg-5")
        path = "%s/devices/dev-reg-5/registrations/%s/reg-5" % (V1, PASS_TYPE)
        auth = {"Authorization": "ApplePass " + token}
        for body in ["", "{", "[]", '{"push_token":"ab"}', '{"pushToken":12}', '{"pushToken":"not hex!"}',
                     '{"pushToken":"abc"}']:
            r = self.stack.api("POST", path, body, auth)
            self.assertEqual(r.status, 400, body)
            self.assertIn("error", r.json())
        self.assertEqual(self.stack.redis_cli("EXISTS", "pk:regs:%s:reg-5" % PASS_TYPE), "0")

    def test_register_several_serials_on_one_device(self):
        t1, t2 = self.create("multi-1"), self.create("multi-2")
        self.assertEqual(self.register("dev-multi", "multi-1", t1).status, 201)
        self.assertEqual(self.register("dev-multi", "multi-2", t2).status, 201)
        r = self.stack.api("GET", "%s/devices/dev-multi/registrations/%s" % (V1, PASS_TYPE))
        self.assertEqual(r.json()["serialNumbers"], ["multi-1", "multi-2"])

    def test_registration_never_pushes_and_get_never_pushes(self):
        token = self.create("nopush-1")
        before = len(self.stack.apns_requests())
        self.register("dev-nopush", "nopush-1", token, push="cafe01")
        self.stack.api("GET", "%s/passes/%s/nopush-1" % (V1, PASS_TYPE), headers={"Authorization": "ApplePass " + token})
        time.sleep(1.0)
        self.assertEqual([r for r in self.stack.apns_requests()[before:] if r["token"] == "cafe01"], [])

    def test_double_slash_and_plain_v1_are_routed(self):
        token = self.create("slash-1")
        self.assertEqual(self.register("dev-slash", "slash-1", token, path_prefix="/passes//v1").status, 201)
        self.assertEqual(self.register("dev-slash", "slash-1", token, path_prefix="/v1").status, 200)

    # -- unregister -------------------------------------------------------------------------------
    def test_unregister(self):
        t1, t2 = self.create("unreg-1"), self.create("unreg-2")
        self.register("dev-unreg", "unreg-1", t1, push="dd01")
        self.register("dev-unreg", "unreg-2", t2, push="dd01")
        path = "%s/devices/dev-unreg/registrations/%s/unreg-1" % (V1, PASS_TYPE)
        self.assertEqual(self.stack.api("DELETE", path).status, 401)
        self.assertEqual(self.stack.api("DELETE", path, headers={"Authorization": "ApplePass " + t2}).status, 401)
        self.assertEqual(self.stack.api("DELETE", path, headers={"Authorization": "ApplePass " + t1}).status, 200)
        self.assertEqual(self.stack.redis_cli("SMEMBERS", "pk:regs:%s:unreg-1" % PASS_TYPE), "")
        # the device keeps its token while it has another registration of that type
        self.assertEqual(self.stack.redis_cli("GET", "pk:devtoken:dev-unreg:%s" % PASS_TYPE), "dd01")
        # idempotent
        self.assertEqual(self.stack.api("DELETE", path, headers={"Authorization": "ApplePass " + t1}).status, 200)
        path2 = "%s/devices/dev-unreg/registrations/%s/unreg-2" % (V1, PASS_TYPE)
        self.assertEqual(self.stack.api("DELETE", path2, headers={"Authorization": "ApplePass " + t2}).status, 200)
        self.assertEqual(self.stack.redis_cli("EXISTS", "pk:devtoken:dev-unreg:%s" % PASS_TYPE), "0")
        r = self.stack.api("GET", "%s/devices/dev-unreg/registrations/%s" % (V1, PASS_TYPE))
        self.assertEqual(r.status, 204)

    # -- list -------------------------------------------------------------------------------------
    def test_list_unknown_device_is_204_with_no_body(self):
        r = self.stack.api("GET", "%s/devices/nobody/registrations/%s" % (V1, PASS_TYPE))
        self.assertEqual(r.status, 204)
        self.assertEqual(r.body, b"")

    def test_list_filters_by_pass_type_and_tag(self):
        a = self.create("list-a")
        b = self.create("list-b")
        o = self.create("list-o", pass_type=OTHER_PASS_TYPE)
        self.register("dev-list", "list-a", a)
        self.register("dev-list", "list-b", b)
        self.register("dev-list", "list-o", o, pass_type=OTHER_PASS_TYPE)
        base = "%s/devices/dev-list/registrations/%s" % (V1, PASS_TYPE)
        r = self.stack.api("GET", base)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "application/json")
        body = r.json()
        self.assertEqual(body["serialNumbers"], ["list-a", "list-b"])
        self.assertIsInstance(body["lastUpdated"], str)
        tag = body["lastUpdated"]
        r = self.stack.api("GET", base + "?passesUpdatedSince=" + tag)
        self.assertEqual(r.status, 204)
        # two changes in the same second are both reported, and the tag moves forward each time
        self.assertEqual(self.put_pass("list-a", pass_fields={"logoText": "1"}).status, 200)
        self.assertEqual(self.put_pass("list-b", pass_fields={"logoText": "2"}).status, 200)
        r = self.stack.api("GET", base + "?passesUpdatedSince=" + tag)
        self.assertEqual(r.json()["serialNumbers"], ["list-a", "list-b"])
        tag2 = r.json()["lastUpdated"]
        self.assertGreater(int(tag2), int(tag))
        self.assertEqual(self.stack.api("GET", base + "?passesUpdatedSince=" + tag2).status, 204)
        self.assertEqual(self.put_pass("list-b", pass_fields={"logoText": "3"}).status, 200)
        r = self.stack.api("GET", base + "?passesUpdatedSince=" + tag2)
        self.assertEqual(r.json()["serialNumbers"], ["list-b"])
        self.assertGreater(int(r.json()["lastUpdated"]), int(tag2))
        # a tag this server never issued (beyond its counter: an older data set, another server) lists all
        r = self.stack.api("GET", base + "?passesUpdatedSince=999999999999")
        self.assertEqual(r.json()["serialNumbers"], ["list-a", "list-b"])
        # a tag from another server version is not a 500: everything is listed
        r = self.stack.api("GET", base + "?passesUpdatedSince=2012-07-22T14%3A25")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["serialNumbers"], ["list-a", "list-b"])
        # the other pass type lists only its own pass
        r = self.stack.api("GET", "%s/devices/dev-list/registrations/%s" % (V1, OTHER_PASS_TYPE))
        self.assertEqual(r.json()["serialNumbers"], ["list-o"])

    # -- latest pass ------------------------------------------------------------------------------
    def test_get_pass_statuses_and_caching(self):
        token = self.create("get-1")
        path = "%s/passes/%s/get-1" % (V1, PASS_TYPE)
        self.assertEqual(self.stack.api("GET", path).status, 401)
        self.assertEqual(self.stack.api("GET", path, headers={"Authorization": "ApplePass nope-nope-nope-nope"}).status, 401)
        self.assertEqual(self.stack.api("GET", "%s/passes/%s/missing" % (V1, PASS_TYPE),
                                        headers={"Authorization": "ApplePass " + token}).status, 404)
        auth = {"Authorization": "ApplePass " + token}
        r = self.stack.api("GET", path, headers=auth)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "application/vnd.apple.pkpass")
        self.assertTrue(r.body.startswith(b"PK\x03\x04"))
        lm = r.header("last-modified")
        self.assertIsNotNone(email.utils.parsedate_to_datetime(lm))
        # HEAD: same headers, no body
        h = self.stack.api("HEAD", path, headers=auth)
        self.assertEqual(h.status, 200)
        self.assertEqual(h.body, b"")
        self.assertEqual(h.header("last-modified"), lm)
        self.assertEqual(h.header("content-type"), "application/vnd.apple.pkpass")
        # If-Modified-Since equal or later -> 304 with an empty body; earlier -> 200
        r = self.stack.api("GET", path, headers=dict(auth, **{"If-Modified-Since": lm}))
        self.assertEqual(r.status, 304)
        self.assertEqual(r.body, b"")
        r = self.stack.api("GET", path, headers=dict(auth, **{"If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"}))
        self.assertEqual(r.status, 304)
        r = self.stack.api("GET", path, headers=dict(auth, **{"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}))
        self.assertEqual(r.status, 200)
        r = self.stack.api("GET", path, headers=dict(auth, **{"If-Modified-Since": "garbage"}))
        self.assertEqual(r.status, 200)
        # an update in the same second still moves Last-Modified forward
        self.assertEqual(self.put_pass("get-1", pass_fields={"logoText": "x"}).status, 200)
        r = self.stack.api("GET", path, headers=dict(auth, **{"If-Modified-Since": lm}))
        self.assertEqual(r.status, 200)
        self.assertGreater(email.utils.parsedate_to_datetime(r.header("last-modified")),
                           email.utils.parsedate_to_datetime(lm))

    def test_http2_cleartext(self):
        """h2o also speaks HTTP/2 without TLS (behind a load balancer): every header must be lower case."""
        import subprocess
        token = self.create("h2c-1")
        url = "http://127.0.0.1:%d%s/passes/%s/h2c-1" % (self.stack.api_port, V1, PASS_TYPE)
        for headers, status in ((["-H", "Authorization: ApplePass " + token], "200"), ([], "401")):
            out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                                  *headers, url], capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout, status)

    def test_wrong_pass_type_is_404(self):
        token = self.create("ptype-1")
        r = self.stack.api("GET", "%s/passes/%s/ptype-1" % (V1, OTHER_PASS_TYPE), headers={"Authorization": "ApplePass " + token})
        self.assertEqual(r.status, 404)

    # -- log --------------------------------------------------------------------------------------
    def test_log(self):
        lines = ["[2026-12-03 10:00:00 +0000] Web service error for pass.x (https://example.com/passes/): boom",
                 "second line"]
        r = self.stack.api("POST", V1 + "/log", {"logs": lines})
        self.assertEqual(r.status, 200)
        stored = self.stack.redis_cli("LRANGE", "pk:logs", "-2", "-1").split("\n")
        self.assertEqual(stored, lines)
        for body in ["", "{}", '{"logs":[]}', '{"logs":"x"}', '{"logs":[1]}', "not json"]:
            self.assertEqual(self.stack.api("POST", V1 + "/log", body).status, 400, body)

    def test_methods_and_unknown_paths(self):
        self.assertEqual(self.stack.api("GET", V1 + "/log").status, 405)
        self.assertEqual(self.stack.api("PUT", "%s/passes/%s/x" % (V1, PASS_TYPE)).status, 405)
        self.assertEqual(self.stack.api("GET", V1 + "/nothing-here").status, 404)
        self.assertEqual(self.stack.api("POST", V1 + "/log/extra", {"logs": ["x"]}).status, 404)
        self.assertEqual(self.put_pass("..").status, 400)  # "." and ".." would vanish from URLs
        self.assertEqual(self.stack.api("GET", "%s/devices/a%%2Fb/registrations/%s" % (V1, PASS_TYPE)).status, 400)


if __name__ == "__main__":
    run()
