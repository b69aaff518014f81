#!/usr/bin/env python3
"""The whole lifecycle, end to end, through the three services, Redis and the APNs stand-in:
upload a template; create a pass; a device registers and lists; it fetches the signed pass (openssl
verifies it, the manifest is recomputed); the pass is PATCHed; the push reaches the stand-in with the
right topic, path and body; the device lists again and gets exactly that serial with a newer tag; it
fetches with If-Modified-Since: 200 with the new pass, then 304."""
import os

from harness import PASS_TYPE, TEAM_ID, StackTestCase, make_zip, run, sample_template, wait_until
from pkpass_check import check_bundle

V1 = "/passes/v1"
DEVICE = "b1ab9ef1d2c3e4f5a6b7c8d9e0f1a2b3"
PUSH_TOKEN = "7f2c9d1e5a3b8c4d6e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"


class LifecycleTest(StackTestCase):
    def test_lifecycle(self):
        s = self.stack
        ca = os.path.join(s.certs, "ca", "chain.pem")
        # 1. template
        r = s.admin("PUT", "/templates/concert", make_zip(sample_template()))
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(sorted(r.json()["files"]), ["en.lproj/pass.strings", "icon.png", "logo.png", "pass.json"])
        # 2. pass
        r = s.admin("PUT", "/passes/%s/seat-12A" % PASS_TYPE,
                    {"templateId": "concert", "pass": {"barcodes": [{"message": "SEAT-12A", "format": "PKBarcodeFormatQR",
                                                                     "messageEncoding": "iso-8859-1"}]}})
        self.assertEqual(r.status, 201, r.body)
        created = r.json()
        token = created["authenticationToken"]
        self.assertGreaterEqual(len(token), 16)
        auth = {"Authorization": "ApplePass " + token}
        # first distribution through the admin API
        r = s.admin("GET", "/passes/%s/seat-12A/pkpass" % PASS_TYPE)
        self.assertEqual(r.status, 200)
        files, pass_json = check_bundle(r.body, ca, "Test Worldwide Developer Relations")
        self.assertEqual(pass_json["passTypeIdentifier"], PASS_TYPE)
        self.assertEqual(pass_json["serialNumber"], "seat-12A")
        self.assertEqual(pass_json["teamIdentifier"], TEAM_ID)
        self.assertEqual(pass_json["authenticationToken"], token)
        self.assertEqual(pass_json["webServiceURL"], "http://127.0.0.1:%d/passes" % s.api_port)
        self.assertEqual(pass_json["barcodes"][0]["message"], "SEAT-12A")
        self.assertEqual(pass_json["organizationName"], "Example Venue")
        self.assertIn("en.lproj/pass.strings", files)
        # 3. the device registers and lists
        r = s.api("POST", "%s/devices/%s/registrations/%s/seat-12A" % (V1, DEVICE, PASS_TYPE), {"pushToken": PUSH_TOKEN}, auth)
        self.assertEqual(r.status, 201)
        r = s.api("GET", "%s/devices/%s/registrations/%s" % (V1, DEVICE, PASS_TYPE))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["serialNumbers"], ["seat-12A"])
        tag = r.json()["lastUpdated"]
        self.assertEqual(tag, created["lastUpdated"])
        # 4. it fetches the signed pass
        r = s.api("GET", "%s/passes/%s/seat-12A" % (V1, PASS_TYPE), headers=auth)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "application/vnd.apple.pkpass")
        check_bundle(r.body, ca)
        first_lm = r.header("last-modified")
        self.assertEqual(first_lm, created["lastModified"])
        pushes_before = len(s.apns_requests())
        # 5. the pass changes
        r = s.admin("PATCH", "/passes/%s/seat-12A" % PASS_TYPE,
                    {"pass": {"eventTicket": {"primaryFields": [{"key": "event", "label": "EVENT", "value": "Moved to Hall B"}]}}})
        self.assertEqual(r.status, 200, r.body)
        self.assertGreater(int(r.json()["lastUpdated"]), int(tag))
        self.assertEqual(r.json()["authenticationToken"], token)
        # 6. the push reaches the stand-in
        def pushed():
            return [q for q in s.apns_requests()[pushes_before:] if q["token"] == PUSH_TOKEN]
        pushes = wait_until(pushed, timeout=15, what="the push at the APNs stand-in")
        self.assertEqual(len(pushes), 1)
        p = pushes[0]
        self.assertEqual(p["method"], "POST")
        self.assertEqual(p["path"], "/3/device/" + PUSH_TOKEN)
        self.assertEqual(p["topic"], PASS_TYPE)
        self.assertEqual(p["client_uid"], PASS_TYPE)
        self.assertEqual(p["body"], "{}")
        self.assertEqual(p["status"], 200)
        # the event is acknowledged once answered
        wait_until(lambda: s.redis_cli("XPENDING", "pk:events", "pushers").split("\n")[0] == "0",
                   what="the event to be acknowledged")
        # 7. the device lists again: exactly that serial, with a newer tag
        r = s.api("GET", "%s/devices/%s/registrations/%s?passesUpdatedSince=%s" % (V1, DEVICE, PASS_TYPE, tag))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["serialNumbers"], ["seat-12A"])
        new_tag = r.json()["lastUpdated"]
        self.assertGreater(int(new_tag), int(tag))
        # 8. If-Modified-Since: 200 with the new pass, then 304
        r = s.api("GET", "%s/passes/%s/seat-12A" % (V1, PASS_TYPE), headers=dict(auth, **{"If-Modified-Since": first_lm}))
        self.assertEqual(r.status, 200)
        _, pass_json = check_bundle(r.body, ca)
        self.assertEqual(pass_json["eventTicket"]["primaryFields"][0]["value"], "Moved to Hall B")
        self.assertEqual(pass_json["barcodes"][0]["message"], "SEAT-12A")
        new_lm = r.header("last-modified")
        self.assertNotEqual(new_lm, first_lm)
        r = s.api("GET", "%s/passes/%s/seat-12A" % (V1, PASS_TYPE), headers=dict(auth, **{"If-Modified-Since": new_lm}))
        self.assertEqual(r.status, 304)
        r = s.api("GET", "%s/devices/%s/registrations/%s?passesUpdatedSince=%s" % (V1, DEVICE, PASS_TYPE, new_tag))
        self.assertEqual(r.status, 204)
        # the admin view counts the device
        r = s.admin("GET", "/passes/%s/seat-12A" % PASS_TYPE)
        self.assertEqual(r.json()["registeredDevices"], 1)
        self.assertEqual(r.json()["lastUpdated"], new_tag)


if __name__ == "__main__":
    run()
