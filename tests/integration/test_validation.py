#!/usr/bin/env python3
"""Validation at upload: a pass model (PUT /admin/v1/templates/...), a pass (PUT/PATCH
/admin/v1/passes/...) or a pass's own image (PUT /admin/v1/passes/.../files/...) that Wallet would
refuse is answered 422 with every problem at once, each named by its JSON pointer or file, and nothing
is stored. macOS/Windows leftovers are dropped and listed as "ignored". Apple's five sample models and
the localization samples of ../shared/fixtures go through (skipped when ../shared is absent). A pass's
own image lands in its signed bundle, replaces the template's file of that name, and pushes the pass's
devices."""
import io
import json
import os
import struct
import subprocess
import unittest
import zipfile
import zlib

from harness import (PASS_TYPE, PNG_1X1, SHARED_DIR, StackTestCase, make_zip, run, sample_template, wait_until)
from pkpass_check import check_bundle

FIXTURES = os.path.join(SHARED_DIR, "fixtures")
PASSES = os.path.join(FIXTURES, "passes")
V1 = "/passes/v1"

DATE = "must be a date with a time zone, like 2026-12-03T19:00:00+01:00 or 2026-12-03T18:00Z"
COLOR = "must be a colour like rgb(60, 65, 76), each part from 0 to 255 (or rgba(60, 65, 76, 0.75))"
URL = "must be an absolute URL, like https://example.com/path"
BOTH = "is also at the top level: an image goes either at the top level or in .lproj folders, not both"
SIGNER_MADE = "is made by the signer when it signs the pass: leave it out of the pass model"
BAD_LPROJ = ("is not a localization folder name: use a language code of 2 or 3 letters, optionally with a script "
             "or region (en.lproj, pt-BR.lproj, zh-Hans.lproj)")


def png(width, height, rgb=(255, 0, 0)):
    """A real PNG of the given size in one colour (zlib + struct, as the format says)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def pass_json_of(files):
    return json.loads(files["pass.json"])


def with_pass(**changes):
    """sample_template() with pass.json keys changed (None removes a key)."""
    files = sample_template()
    doc = pass_json_of(files)
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    files["pass.json"] = json.dumps(doc)
    return files


def utf16(text, big_endian=False):
    return (b"\xfe\xff" + text.encode("utf-16-be")) if big_endian else (b"\xff\xfe" + text.encode("utf-16-le"))


def p(where, message):
    """One expected problem: a JSON pointer when where starts with '/' or is '', else a file."""
    key = "pointer" if where == "" or where.startswith("/") else "file"
    return {key: where, "message": message}


class ValidationTest(StackTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        assert cls.stack.admin("PUT", "/templates/tpl", make_zip(sample_template())).status == 201

    # -- helpers ------------------------------------------------------------------------------------
    def raw(self, *args):
        """redis-cli's answer as bytes (hash values hold images)."""
        return subprocess.run(["redis-cli", "-p", str(self.stack.redis_port), "--raw", *args], capture_output=True,
                              check=True).stdout

    def state(self):
        """What a refused upload must leave as it was: every key with its type and size, pk:seq, events."""
        s = self.stack
        keys = sorted(k for k in s.redis_cli("KEYS", "pk:*").split("\n") if k and not k.startswith("pk:bundle:"))
        out = {}
        for k in keys:
            kind = s.redis_cli("TYPE", k)
            if kind == "hash":
                out[k] = self.raw("HGETALL", k)
            elif kind == "string":
                out[k] = s.redis_cli("GET", k)
            elif kind == "stream":  # the pushers trim acknowledged entries: compare the newest one
                out[k] = s.redis_cli("XREVRANGE", k, "+", "-", "COUNT", "1")
            else:
                out[k] = kind
        return out

    def assert_refused(self, r, problems, summary, status=422):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.header("content-type"), "application/json")
        body = r.json()
        self.assertEqual(body["problems"], problems)
        self.assertEqual(body["error"], "%s: %d problem%s" % (summary, len(problems), "" if len(problems) == 1 else "s"))

    def refuse_template(self, files, problems, tid="t-bad"):
        before = self.state()
        r = self.put_template(tid, files)
        self.assert_refused(r, problems, "pass model refused")
        self.assertEqual(r.json()["templateId"], tid)
        self.assertEqual(self.state(), before)

    # -- templates: files ---------------------------------------------------------------------------
    def test_template_every_problem_at_once(self):
        files = with_pass(formatVersion=2, description=None,
                          barcodes=[{"message": 1234, "format": "PKBarcodeFormatQR", "messageEncoding": "iso-8859-1"}],
                          backgroundColor="#3c414c")
        files.update({"logo.png": b"GIF89a not a png", "fr.lproj/logo.png": PNG_1X1, "manifest.json": "{}",
                      "English.lproj/pass.strings": '"a" = "b";'})
        del files["icon.png"]
        self.refuse_template(files, [
            p("logo.png", "not a PNG image"),
            p("fr.lproj/logo.png", "logo.png " + BOTH),
            p("manifest.json", SIGNER_MADE),
            p("English.lproj", BAD_LPROJ),
            p("icon.png", "is required at the top level: Wallet refuses a pass without an icon"),
            p("/formatVersion", "must be the number 1"),
            p("/description", "is required"),
            p("/barcodes/0/message", "must be a string"),
            p("/backgroundColor", COLOR),
        ])

    def test_template_file_rules(self):
        base = sample_template()
        cases = [
            ({"signature": b"x", "manifest.json": b"{}"}, [p("signature", SIGNER_MADE), p("manifest.json", SIGNER_MADE)]),
            ({"strip.png": PNG_1X1[:20]}, [p("strip.png", "not a PNG image: no IHDR chunk after the PNG signature")]),
            ({"thumbnail.png": PNG_1X1[:16] + b"\0\0\0\0" + PNG_1X1[20:]},
             [p("thumbnail.png", "not a PNG image: its IHDR chunk gives a width or height of 0")]),
            ({"notes.txt": b"x"}, [p("notes.txt", "does not belong in a pass (a pass model holds pass.json, PNG "
                                                  "images and .lproj folders)")]),
            ({"images/strip.png": PNG_1X1},
             [p("images", "is not a localization folder: a pass holds only .lproj folders (like en.lproj)")]),
            ({"english.lproj/pass.strings": '"a" = "b";', "e.lproj/pass.strings": '"a" = "b";'},
             [p("english.lproj", BAD_LPROJ), p("e.lproj", BAD_LPROJ)]),
            ({"en.lproj/readme.txt": b"x"},
             [p("en.lproj/readme.txt", "does not belong in a .lproj folder (it holds pass.strings and PNG images)")]),
            ({"de.lproj/logo.png": PNG_1X1}, [p("de.lproj/logo.png", "logo.png " + BOTH)]),
            ({"de.lproj/pass.strings": '"a" = "b"\n"c" = "d";'},
             [p("de.lproj/pass.strings", "expected ';' after the entry \"a\" at line 2")]),
            ({"de.lproj/pass.strings": '/* no end'}, [p("de.lproj/pass.strings", "unterminated comment at line 1")]),
            ({"de.lproj/pass.strings": "'GATE' = \"Tor\";"},
             [p("de.lproj/pass.strings", "expected a key (a quoted string) at line 1, found '''")]),
            ({"de.lproj/pass.strings": '"GATE" = "Tor";\n"GATE" = "Gate";'},
             [p("de.lproj/pass.strings", 'the key "GATE" appears twice (again at line 2)')]),
            ({"de.lproj/pass.strings": '"GATE" = "T\xf6r";'.encode("latin-1")},
             [p("de.lproj/pass.strings",
                "neither UTF-8 nor UTF-16 with a byte order mark (FF FE or FE FF): byte 0xf6 at line 1")]),
            ({"de.lproj/pass.strings": '"GATE" = "Tor";'.encode("utf-16-le")},
             [p("de.lproj/pass.strings", "a NUL byte at line 1: UTF-16 text needs a byte order mark (FF FE or FE FF)")]),
            ({"de.lproj/pass.strings": utf16('"GATE" = "Tor";')[:-1]},
             [p("de.lproj/pass.strings", "UTF-16 text with an odd number of bytes (31)")]),
        ]
        for extra, problems in cases:
            with self.subTest(extra=list(extra)):
                self.refuse_template(dict(base, **extra), problems)
        no_pass = dict(base)
        del no_pass["pass.json"]
        self.refuse_template(no_pass, [p("pass.json", "is required")])
        self.refuse_template(dict(base, **{"pass.json": "[1]"}), [p("", "must be a JSON object")])

    def test_template_strings_encodings_and_lproj_names(self):
        strings = '/* comment */\n"EVENT" = "\u00c9v\u00e9nement";\n// line\n"GATE" = "Porte \\"A\\"";\n'
        files = dict(sample_template(), **{
            "fr.lproj/pass.strings": utf16(strings), "de.lproj/pass.strings": utf16(strings, big_endian=True),
            "es.lproj/pass.strings": b"\xef\xbb\xbf" + strings.encode(), "it.lproj/pass.strings": strings.encode(),
            "pt-BR.lproj/pass.strings": '"a" = "b";\nGATE = Tor;\n"short";', "zh-Hans.lproj/strip.png": PNG_1X1,
            "zh_CN.lproj/strip.png": PNG_1X1, "es-419.lproj/strip.png": PNG_1X1})
        r = self.put_template("t-locales", files)
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json()["ignored"], [])

    def test_template_junk_is_dropped_and_listed(self):
        files = dict(sample_template(), **{".DS_Store": b"x", "en.lproj/.DS_Store": b"x", "Thumbs.db": b"x",
                                          "._logo.png": b"fork"})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in files.items():
                z.writestr("Event.pass/" + name, data)
            z.writestr("__MACOSX/Event.pass/._icon.png", b"fork")
            z.writestr("Event.pass/images/", b"")  # a directory entry: not a file, not listed
        r = self.stack.admin("PUT", "/templates/t-junk", buf.getvalue())
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(sorted(r.json()["ignored"]),
                         [".DS_Store", "._logo.png", "Thumbs.db", "__MACOSX/Event.pass/._icon.png", "en.lproj/.DS_Store"])
        self.assertEqual(sorted(r.json()["files"]), ["en.lproj/pass.strings", "icon.png", "logo.png", "pass.json"])
        fields = self.stack.redis_cli("HKEYS", "pk:tpl:t-junk").split("\n")
        self.assertEqual(sorted(f for f in fields if f.startswith("file:")),
                         ["file:en.lproj/pass.strings", "file:icon.png", "file:logo.png", "file:pass.json"])
        self.put_pass("p-junk", template_id="t-junk")
        bundle, _ = check_bundle(self.stack.admin("GET", "/passes/%s/p-junk/pkpass" % PASS_TYPE).body,
                                 os.path.join(self.stack.certs, "ca", "chain.pem"))
        self.assertEqual(sorted(bundle), ["en.lproj/pass.strings", "icon.png", "logo.png", "manifest.json",
                                          "pass.json", "signature"])

    def test_refused_replacement_keeps_the_old_template(self):
        self.assertEqual(self.put_template("t-keep", sample_template()).status, 201)
        before = self.raw("HGETALL", "pk:tpl:t-keep")
        r = self.put_template("t-keep", with_pass(eventTicket=None))
        self.assert_refused(r, [p("", "needs one style key: boardingPass, coupon, eventTicket, generic or storeCard")],
                            "pass model refused")
        self.assertEqual(self.raw("HGETALL", "pk:tpl:t-keep"), before)

    # -- templates: pass.json -----------------------------------------------------------------------
    def test_template_pass_json_rules(self):
        eleven = [{"latitude": 1, "longitude": 2}] * 11
        cases = [
            (dict(formatVersion=None, organizationName=None, description=7),
             [p("/formatVersion", "is required"), p("/organizationName", "is required"), p("/description", "must be a string")]),
            (dict(coupon={"primaryFields": []}),
             [p("", "has 2 style keys (coupon, eventTicket): a pass has exactly one")]),
            (dict(eventTicket=None, boardingPass={"primaryFields": []}),
             [p("/boardingPass/transitType", "is required in a boarding pass")]),
            (dict(eventTicket=None, boardingPass={"transitType": "PKTransitTypeRocket"}),
             [p("/boardingPass/transitType", "must be one of PKTransitTypeAir, PKTransitTypeBoat, PKTransitTypeBus, "
                                             "PKTransitTypeGeneric, PKTransitTypeTrain")]),
            (dict(eventTicket={"primaryFields": [{"key": "a", "value": "1"}, {"label": "x", "value": "2"}],
                               "secondaryFields": [{"key": "a", "value": {"x": 1}}], "backFields": "none"}),
             [p("/eventTicket/primaryFields/1/key", "is required"),
              p("/eventTicket/secondaryFields/0/key", 'repeats the field key "a" of /eventTicket/primaryFields/0/key: '
                                                      'field keys are unique in a pass'),
              p("/eventTicket/secondaryFields/0/value", "must be a string or a number"),
              p("/eventTicket/backFields", "must be an array")]),
            (dict(eventTicket={"primaryFields": [{"key": "d", "value": "3 December", "dateStyle": "PKDateStyleShort"}]}),
             [p("/eventTicket/primaryFields/0/value", DATE + " (the field has a dateStyle or timeStyle)")]),
            (dict(barcodes=[{"message": 1234, "format": "PKBarcodeFormatEAN13"}], barcode={"message": "x"}),
             [p("/barcode/format", "is required"), p("/barcode/messageEncoding", "is required"),
              p("/barcodes/0/message", "must be a string"),
              p("/barcodes/0/format", "must be one of PKBarcodeFormatQR, PKBarcodeFormatPDF417, PKBarcodeFormatAztec, "
                                      "PKBarcodeFormatCode128"),
              p("/barcodes/0/messageEncoding", "is required")]),
            (dict(relevantDate="2026-12-03T19:00:00", expirationDate="2026-12-03",
                  relevantDates=[{"startDate": "2026-12-03T19:00Z"}, {"date": "soon"}]),
             [p("/relevantDate", DATE), p("/expirationDate", DATE),
              p("/relevantDates/0", "needs a date, or a startDate and an endDate"), p("/relevantDates/1/date", DATE)]),
            (dict(foregroundColor="rgb(300, 0, 0)", labelColor="white"),
             [p("/foregroundColor", COLOR), p("/labelColor", COLOR)]),
            (dict(locations=eleven + [{"latitude": "north"}], beacons=[{"proximityUUID": "u"}] * 11),
             [p("/locations", "has 12 entries: a pass has at most 10"),
              p("/locations/11/latitude", "must be a number from -90 to 90"),
              p("/locations/11/longitude", "is required"),
              p("/beacons", "has 11 entries: a pass has at most 10")]),
            (dict(webServiceURL="example.com/passes", appLaunchURL="not a url", bagPolicyURL="https://",
                  purchaseWifiURL=42),
             [p("/webServiceURL", URL), p("/appLaunchURL", URL), p("/bagPolicyURL", URL),
              p("/purchaseWifiURL", "must be a string")]),
            (dict(description="x" * 300000),
             [p("pass.json", "is %d bytes once compacted, more than the 262144 a pass may have"
                % len(json.dumps(pass_json_of(with_pass(description="x" * 300000)), separators=(",", ":"))))]),
        ]
        for changes, problems in cases:
            with self.subTest(changes=list(changes)):
                self.refuse_template(with_pass(**changes), problems)

    def test_template_that_wallet_takes(self):
        files = with_pass(relevantDate="2013-04-24T10:00-05:00", expirationDate="2026-12-03T19:00:00.5Z",
                          relevantDates=[{"startDate": "2026-12-03T19:00:00+01:00", "endDate": "2026-12-03T23:00:00+01:00"}],
                          locations=[{"latitude": 37.6, "longitude": -122.3}] * 10, beacons=[{"proximityUUID": "u"}] * 10,
                          foregroundColor="rgb(255,255,255)", appLaunchURL="myapp://ticket/1",
                          sellURL="https://example.com/sell", webServiceURL="https://example.com/passes/",
                          authenticationToken="short", passTypeIdentifier="pass.other", teamIdentifier="X")
        r = self.put_template("t-good", files)
        self.assertEqual(r.status, 201, r.body)

    # -- passes -------------------------------------------------------------------------------------
    def test_pass_writes_are_checked_on_the_merged_pass(self):
        r = self.put_pass("p-valid", pass_fields={"logoText": "ok"})
        self.assertEqual(r.status, 201, r.body)
        old = self.stack.admin("GET", "/passes/%s/p-valid" % PASS_TYPE).json()
        before = self.state()
        path = "/passes/%s/p-valid" % PASS_TYPE
        cases = [
            ("PUT", {"templateId": "tpl", "pass": {"barcodes": [{"message": 42, "format": "PKBarcodeFormatQR",
                                                                   "messageEncoding": "utf-8"}]}},
             [p("/barcodes/0/message", "must be a string")]),
            # null in a PUT hides the template's key (in a PATCH it would only remove the pass's own)
            ("PUT", {"templateId": "tpl", "pass": {"description": None, "relevantDate": "tomorrow"}},
             [p("/description", "is required"), p("/relevantDate", DATE)]),
            ("PATCH", {"pass": {"labelColor": "rgb(1,2)"}}, [p("/labelColor", COLOR)]),
            ("PATCH", {"webServiceURL": "ftp//nowhere", "eventTicket": {"primaryFields": [{"key": "event", "value": []}]}},
             [p("/eventTicket/primaryFields/0/value", "must be a string or a number"), p("/webServiceURL", URL)]),
            ("PATCH", {"generic": {}}, [p("", "has 2 style keys (eventTicket, generic): a pass has exactly one")]),
        ]
        for method, body, problems in cases:
            with self.subTest(method=method, body=body):
                r = self.stack.admin(method, path, body)
                self.assert_refused(r, problems, "pass refused")
                self.assertEqual(r.json()["templateId"], "tpl")
        self.assertEqual(self.state(), before)
        self.assertEqual(self.stack.admin("GET", path).json(), old)
        # a new pass that would be refused is not created
        r = self.put_pass("p-never", pass_fields={"foregroundColor": "red"})
        self.assert_refused(r, [p("/foregroundColor", COLOR)], "pass refused")
        self.assertEqual(self.stack.admin("GET", "/passes/%s/p-never" % PASS_TYPE).status, 404)
        self.assertEqual(self.state(), before)

    # -- a pass's own files -------------------------------------------------------------------------
    def file_path(self, serial, name):
        return "/passes/%s/%s/files/%s" % (PASS_TYPE, serial, name)

    def download(self, serial):
        r = self.stack.admin("GET", "/passes/%s/%s/pkpass" % (PASS_TYPE, serial))
        self.assertEqual(r.status, 200, r.body)
        return check_bundle(r.body, os.path.join(self.stack.certs, "ca", "chain.pem"))[0]

    def test_pass_image_lands_in_the_bundle_and_pushes(self):
        s = self.stack
        r = self.put_pass("p-img")
        self.assertEqual(r.status, 201, r.body)
        auth, tag = r.json()["authenticationToken"], r.json()["lastUpdated"]
        token = "ab12cd34" * 8
        r = s.api("POST", "%s/devices/dev-img/registrations/%s/p-img" % (V1, PASS_TYPE), {"pushToken": token},
                  {"Authorization": "ApplePass " + auth})
        self.assertEqual(r.status, 201, r.body)
        template_logo = self.download("p-img")["logo.png"]
        pushes_before = len(s.apns_requests())

        strip, logo = png(4, 2, (0, 128, 0)), png(3, 3, (0, 0, 255))
        r = s.admin("PUT", self.file_path("p-img", "strip@2x.png"), strip)
        self.assertEqual(r.status, 201, r.body)
        body = r.json()
        self.assertEqual((body["file"], body["bytes"], body["passTypeIdentifier"], body["serialNumber"]),
                         ("strip@2x.png", len(strip), PASS_TYPE, "p-img"))
        self.assertGreater(int(body["lastUpdated"]), int(tag))
        # the change pushes the pass's device, as any change does
        pushed = wait_until(lambda: [q for q in s.apns_requests()[pushes_before:] if q["token"] == token],
                            timeout=15, what="the push for the new image")
        self.assertEqual((pushed[0]["topic"], pushed[0]["body"], pushed[0]["status"]), (PASS_TYPE, "{}", 200))
        # the device sees the pass as changed and gets the image
        r = s.api("GET", "%s/devices/dev-img/registrations/%s?passesUpdatedSince=%s" % (V1, PASS_TYPE, tag))
        self.assertEqual(r.json(), {"serialNumbers": ["p-img"], "lastUpdated": body["lastUpdated"]})
        r = s.api("GET", "%s/passes/%s/p-img" % (V1, PASS_TYPE), headers={"Authorization": "ApplePass " + auth})
        self.assertEqual((r.status, r.header("last-modified")), (200, body["lastModified"]))
        files = check_bundle(r.body, os.path.join(s.certs, "ca", "chain.pem"))[0]
        self.assertEqual(files["strip@2x.png"], strip)
        self.assertEqual(files["logo.png"], template_logo)

        # one of the template's files, replaced for this pass only
        r = s.admin("PUT", self.file_path("p-img", "logo.png"), logo)
        self.assertEqual(r.status, 201, r.body)
        files = self.download("p-img")
        self.assertEqual((files["logo.png"], files["strip@2x.png"]), (logo, strip))
        self.assertEqual(sorted(files), ["en.lproj/pass.strings", "icon.png", "logo.png", "manifest.json",
                                         "pass.json", "signature", "strip@2x.png"])
        self.assertEqual(s.admin("GET", "/passes/%s/p-img" % PASS_TYPE).json()["files"], ["logo.png", "strip@2x.png"])
        self.put_pass("p-img-other")
        self.assertEqual(self.download("p-img-other")["logo.png"], template_logo)

        # a localized image of a pass, its bytes replaced, then the same bytes again: nothing changes
        r = s.admin("PUT", self.file_path("p-img", "fr.lproj/strip.png"), strip)
        self.assertEqual(r.status, 201, r.body)
        r = s.admin("PUT", self.file_path("p-img", "fr.lproj/strip.png"), logo)
        self.assertEqual(r.status, 200, r.body)
        version, events = r.json()["lastUpdated"], s.redis_cli("XREVRANGE", "pk:events", "+", "-", "COUNT", "1")
        r = s.admin("PUT", self.file_path("p-img", "fr.lproj/strip.png"), logo)
        self.assertEqual((r.status, r.json()["lastUpdated"]), (200, version))
        self.assertEqual(s.redis_cli("XREVRANGE", "pk:events", "+", "-", "COUNT", "1"), events)
        self.assertEqual(self.download("p-img")["fr.lproj/strip.png"], logo)

        # DELETE takes the file out of the bundle, with a new version
        r = s.admin("DELETE", self.file_path("p-img", "strip@2x.png"))
        self.assertEqual(r.status, 200, r.body)
        self.assertGreater(int(r.json()["lastUpdated"]), int(version))
        self.assertNotIn("strip@2x.png", self.download("p-img"))
        r = s.admin("DELETE", self.file_path("p-img", "strip@2x.png"))
        self.assertEqual((r.status, r.json()), (404, {"error": "the pass has no file of its own by that name",
                                                      "file": "strip@2x.png"}))
        self.assertEqual(s.admin("DELETE", self.file_path("p-none", "logo.png")).status, 404)
        self.assertEqual(s.admin("PUT", self.file_path("p-none", "logo.png"), logo).status, 404)
        self.assertEqual(s.redis_cli("EXISTS", "pk:passfile:%s:p-none" % PASS_TYPE), "0")
        r = s.admin("GET", self.file_path("p-img", "logo.png"))
        self.assertEqual((r.status, r.header("allow")), (405, "PUT, DELETE"))

    def test_pass_image_refused(self):
        s = self.stack
        self.assertEqual(self.put_pass("p-img-bad").status, 201)
        self.assertEqual(s.admin("PUT", self.file_path("p-img-bad", "de.lproj/strip.png"), PNG_1X1).status, 201)
        before = self.state()
        cases = [
            ("thumbnail.png", b"GIF89a", [p("thumbnail.png", "not a PNG image")]),
            ("thumbnail.png", b"", [p("thumbnail.png", "not a PNG image")]),
            ("fr.lproj/logo.png", PNG_1X1, [p("fr.lproj/logo.png", "logo.png " + BOTH)]),
            ("strip.png", PNG_1X1, [p("strip.png", "is also in de.lproj/strip.png: an image goes either at the top "
                                                   "level or in .lproj folders, not both")]),
            ("pass.json", b"{}", [p("pass.json", "is not a PNG image name: a pass's own files are images (*.png) "
                                                 "at the top level or in a .lproj folder")]),
            ("fr.lproj/pass.strings", b'"a" = "b";',
             [p("fr.lproj/pass.strings", "is not a PNG image name: a pass's own files are images (*.png) at the "
                                         "top level or in a .lproj folder")]),
            ("french.lproj/strip.png", b"nope", [p("french.lproj", BAD_LPROJ), p("french.lproj/strip.png", "not a PNG image")]),
            ("img/strip.png", PNG_1X1,
             [p("img", "is not a localization folder: a pass holds only .lproj folders (like en.lproj)")]),
        ]
        for name, data, problems in cases:
            with self.subTest(name=name):
                self.assert_refused(s.admin("PUT", self.file_path("p-img-bad", name), data), problems, "file refused")
        for name in ["a%20b.png", "..", "a%7Fb.png"]:
            with self.subTest(name=name):
                r = s.admin("PUT", self.file_path("p-img-bad", name), PNG_1X1)
                self.assertEqual(r.status, 400, r.body)
                self.assertIn("file name not allowed", r.json()["error"])
        self.assertEqual(self.state(), before)

    def test_pass_file_limits(self):
        s = self.stack
        self.assertEqual(self.put_pass("p-limits").status, 201)
        for i in range(20):
            self.assertEqual(s.admin("PUT", self.file_path("p-limits", "img%02d.png" % i), PNG_1X1).status, 201)
        before = self.state()
        r = s.admin("PUT", self.file_path("p-limits", "img20.png"), PNG_1X1)
        self.assert_refused(r, [p("img20.png", "a pass has at most 20 files of its own: delete one first")],
                            "file refused")
        self.assertEqual(self.state(), before)
        # replacing one of the twenty is fine
        self.assertEqual(s.admin("PUT", self.file_path("p-limits", "img00.png"), png(2, 2)).status, 200)
        # bytes: 4 MiB for a pass's own files together
        self.assertEqual(self.put_pass("p-bytes").status, 201)
        big = PNG_1X1 + b"\0" * (1536 * 1024)
        self.assertEqual(s.admin("PUT", self.file_path("p-bytes", "a.png"), big).status, 201)
        self.assertEqual(s.admin("PUT", self.file_path("p-bytes", "b.png"), big).status, 201)
        before = self.state()
        r = s.admin("PUT", self.file_path("p-bytes", "c.png"), big)
        self.assert_refused(r, [p("c.png", "the pass's own files would be %d bytes, more than the 4194304 allowed"
                                  % (3 * len(big)))], "file refused")
        self.assertEqual(self.state(), before)
        self.assertEqual(s.admin("PUT", self.file_path("p-bytes", "b.png"), big).status, 200)  # same size again


@unittest.skipUnless(os.path.isdir(PASSES), "../shared/fixtures is absent")
class FixturesTest(StackTestCase):
    """Real models: Apple's five samples, the localization samples, and the pass.json of real passes."""

    def read_folder(self, folder):
        files = {}
        for root, _, names in os.walk(folder):
            for n in names:
                with open(os.path.join(root, n), "rb") as f:
                    files[os.path.relpath(os.path.join(root, n), folder)] = f.read()
        return files

    def test_apple_samples_upload(self):
        for style in ["BoardingPass", "Coupon", "Event", "Generic", "StoreCard"]:
            with self.subTest(style=style):
                files = self.read_folder(os.path.join(PASSES, style + ".pass"))
                if style == "BoardingPass":  # its trailing comma is refused as not JSON (test_apple_samples.py)
                    files["pass.json"] = files["pass.json"].replace(b'"value" :  "7/22",\n', b'"value" :  "7/22"\n')
                r = self.put_template("apple-" + style.lower(), files)
                self.assertEqual(r.status, 201, r.body)
                self.assertEqual(r.json()["ignored"], [])
                r = self.put_pass("s-" + style.lower(), template_id="apple-" + style.lower())
                self.assertEqual(r.status, 201, r.body)

    def test_lproj_samples(self):
        """pass-js's Generic localizations: UTF-16LE pass.strings with a BOM and /* comments */, localized
        logos, and a zh_CN.lproj folder (a locale name with an underscore) are taken. Apple's Generic model
        has its logos at the top level, so together the localized logos are refused, each named; without the
        top-level logos the model is stored and signed with them."""
        generic = self.read_folder(os.path.join(PASSES, "Generic.pass"))
        local = self.read_folder(os.path.join(PASSES, "lproj-samples", "pass-js-Generic"))
        self.assertEqual(sorted(local), ["ru.lproj/logo.png", "ru.lproj/logo@2x.png", "ru.lproj/pass.strings",
                                         "zh_CN.lproj/logo.png", "zh_CN.lproj/logo@2x.png", "zh_CN.lproj/pass.strings"])
        r = self.put_template("lproj-both", dict(generic, **local))
        problems = [p(n, n.split("/")[1] + " " + BOTH) for n in sorted(local) if n.endswith(".png")]
        self.assertEqual((r.status, sorted(r.json()["problems"], key=lambda x: x["file"])), (422, problems))
        self.assertEqual(self.stack.redis_cli("EXISTS", "pk:tpl:lproj-both"), "0")
        del generic["logo.png"], generic["logo@2x.png"]
        r = self.put_template("lproj", dict(generic, **local))
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(self.put_pass("s-lproj", template_id="lproj").status, 201)
        r = self.stack.admin("GET", "/passes/%s/s-lproj/pkpass" % PASS_TYPE)
        bundle, _ = check_bundle(r.body, os.path.join(self.stack.certs, "ca", "chain.pem"))
        for n, data in local.items():
            self.assertEqual(bundle[n], data, n)

    def test_real_passes_pass_json(self):
        """KDE's boarding pass (UTF-16BE pass.strings with a BOM, directory entries) and the scrubbed United
        boarding pass (the iOS 26 URL keys), given an icon; their signed copies' manifest.json and
        signature are refused by name."""
        archives = os.path.join(FIXTURES, "pkpass")
        for name in ["unsigned-kde-boardingpass-v1.pkpass", "unsigned-kde-united-semantic-boardingpass.pkpass"]:
            with self.subTest(archive=name):
                with open(os.path.join(archives, name), "rb") as f:
                    data = f.read()
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    files = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
                files["icon.png"] = PNG_1X1
                r = self.put_template("real-" + name.split(".")[0], files)
                self.assertEqual(r.status, 201, r.body)
        with open(os.path.join(archives, "apple-sample-Event.pkpass"), "rb") as f:
            r = self.stack.admin("PUT", "/templates/signed-event", f.read())
        self.assertEqual(r.status, 422, r.body)
        self.assertEqual(r.json()["problems"], [p("manifest.json", SIGNER_MADE), p("signature", SIGNER_MADE)])


if __name__ == "__main__":
    run()
