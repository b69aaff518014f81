#!/usr/bin/env python3
"""Apple's five sample pass models (../shared/fixtures/passes) upload, sign and verify. BoardingPass
first gets its trailing-comma error (its pass.json is not strict JSON); with the comma removed it goes
through like the others. Every image in our bundle has the same SHA-1 as in Apple's own signed
manifest. Skipped when ../shared/fixtures is absent."""
import io
import json
import os
import unittest
import zipfile

from harness import PASS_TYPE, SHARED_DIR, StackTestCase, make_zip, run
from pkpass_check import check_bundle

PASSES = os.path.join(SHARED_DIR, "fixtures", "passes")
ARCHIVES = os.path.join(SHARED_DIR, "fixtures", "pkpass")
STYLES = ["BoardingPass", "Coupon", "Event", "Generic", "StoreCard"]


def read_model(style):
    folder = os.path.join(PASSES, style + ".pass")
    files = {}
    for n in sorted(os.listdir(folder)):
        with open(os.path.join(folder, n), "rb") as f:
            files[n] = f.read()
    return files


def apple_manifest(style):
    with zipfile.ZipFile(os.path.join(ARCHIVES, "apple-sample-%s.pkpass" % style)) as z:
        return json.loads(z.read("manifest.json"))


@unittest.skipUnless(os.path.isdir(PASSES), "../shared/fixtures is absent")
class AppleSamplesTest(StackTestCase):
    def test_boarding_pass_trailing_comma_is_named(self):
        r = self.put_template("apple-boardingpass-raw", read_model("BoardingPass"), folder="BoardingPass.pass")
        self.assertEqual(r.status, 400, r.body)
        err = r.json()
        self.assertEqual(err["file"], "pass.json")
        self.assertEqual((err["line"], err["column"]), (76, 7))
        self.assertIn("line 76, column 7", err["error"])
        self.assertIn("trailing comma", err["error"])
        self.assertEqual(self.stack.redis_cli("EXISTS", "pk:tpl:apple-boardingpass-raw"), "0")

    def test_all_five_sign_and_verify(self):
        ca = os.path.join(self.stack.certs, "ca", "chain.pem")
        for style in STYLES:
            with self.subTest(style=style):
                files = read_model(style)
                if style == "BoardingPass":
                    text = files["pass.json"].decode()
                    fixed = text.replace('"value" :  "7/22",\n', '"value" :  "7/22"\n')
                    self.assertNotEqual(fixed, text)
                    files["pass.json"] = fixed.encode()
                tid = "apple-" + style.lower()
                r = self.put_template(tid, files, folder=style + ".pass")
                self.assertEqual(r.status, 201, r.body)
                serial = "apple-" + style.lower() + "-1"
                r = self.put_pass(serial, template_id=tid)
                self.assertEqual(r.status, 201, r.body)
                r = self.stack.admin("GET", "/passes/%s/%s/pkpass" % (PASS_TYPE, serial))
                self.assertEqual(r.status, 200, r.body)
                bundle, pass_json = check_bundle(r.body, ca)
                original = json.loads(fixed if style == "BoardingPass" else files["pass.json"])
                self.assertEqual(pass_json["organizationName"], original["organizationName"])
                self.assertEqual(pass_json["passTypeIdentifier"], PASS_TYPE)
                self.assertEqual(pass_json["serialNumber"], serial)
                style_key = [k for k in ("boardingPass", "coupon", "eventTicket", "generic", "storeCard") if k in original][0]
                self.assertEqual(pass_json[style_key], original[style_key])
                manifest = json.loads(bundle["manifest.json"])
                apple = apple_manifest(style)
                images = sorted(n for n in apple if n.endswith(".png"))
                self.assertEqual(sorted(n for n in manifest if n.endswith(".png")), images)
                for n in images:
                    self.assertEqual(manifest[n], apple[n], n)


if __name__ == "__main__":
    run()
