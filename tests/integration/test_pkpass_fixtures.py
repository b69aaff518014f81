#!/usr/bin/env python3
"""The bundle reader (build/bin/pkpass-inspect, common/pkpass_reader.c) on every real archive of
../shared/fixtures/pkpass, asserting exactly what that folder's README says of each: verdict, every
problem sentence, manifest digest and entry count, CMS digest, signer identifier, signingTime, the
embedded WWDR generations, the signer's UID and Team ID, ignored entries, pass.strings. Where the README
says `openssl cms -verify` succeeds or fails, openssl is run too and must agree. Skipped (77) when
../shared/fixtures is absent."""
import json
import os
import re
import subprocess
import tempfile
import time
import unittest
import zipfile

from harness import BIN, SHARED_DIR, run

ARCHIVES = os.path.join(SHARED_DIR, "fixtures", "pkpass")
CERTS = os.path.join(SHARED_DIR, "fixtures", "apple-certs")
CA_BUNDLE = os.path.join(CERTS, "apple-pass-ca-bundle.pem")  # root, G4, WWDR 2013, WWDR 2008
ROOT = os.path.join(CERTS, "AppleIncRootCertificate.pem")
G4 = os.path.join(CERTS, "AppleWWDRCAG4.pem")
INSPECT = os.path.join(BIN, "pkpass-inspect")

APPLE = ("pass.com.apple.devpubs.example", "A93A5CM278")
WRONG_INTERMEDIATE = ("wrong intermediate: the signer certificate was issued by Apple Worldwide Developer Relations "
                      "Certification Authority, OU=G4, which the signature does not embed; it embeds WWDR 2013")
PASS_JSON_MISMATCH = "pass.json does not match its manifest entry"

# name: verdict, problems, CMS digest, signer id, signingTime epoch (the README's -attime table),
#       embedded WWDR generations (CMS order), (UID, Team ID), manifest entries
SIGNED = {
    "apple-sample-BoardingPass": ("valid", [], "sha1", "issuerAndSerialNumber", 1437520574, ["2008"], APPLE, 5),
    "apple-sample-Coupon": ("valid", [], "sha1", "issuerAndSerialNumber", 1437520590, ["2008"], APPLE, 5),
    "apple-sample-Event": ("valid", [], "sha1", "issuerAndSerialNumber", 1437676482, ["2008"], APPLE, 9),
    "apple-sample-Generic": ("valid", [], "sha1", "issuerAndSerialNumber", 1437520612, ["2008"], APPLE, 7),
    "apple-sample-StoreCard": ("valid", [], "sha1", "issuerAndSerialNumber", 1437676534, ["2008"], APPLE, 6),
    "kinotickets-cinema": ("valid", [], "sha256", "subjectKeyIdentifier", 1719511613, ["G4"],
                           ("pass.express.kinotickets.pass.ticket", "ATN8PB95XQ"), 10),
    "kudit-coffee_club": ("wrong_intermediate", [WRONG_INTERMEDIATE], "sha256", "issuerAndSerialNumber", 1721556125,
                          ["2013"], ("pass.com.kudit.temp4", "3QPV894C33"), 7),
    "kudit-coupon": ("wrong_intermediate", [WRONG_INTERMEDIATE], "sha256", "issuerAndSerialNumber", 1693155570,
                     ["2013"], ("pass.com.kudit.generic", "3QPV894C33"), 5),
    "westbahn-ticket": ("tampered", ["%s is listed in the manifest but missing from the archive" % n
                                     for n in ("icon.png", "icon@2x.png", "logo.png", "logo@2x.png")],
                        "sha1", "issuerAndSerialNumber", 1403621289, ["2008"], ("pass.at.westbahn.ticket", "87SZ489599"),
                        5),
    "keefmoon-Pass-Example-Generic": ("valid", [], "sha1", "issuerAndSerialNumber", 1362524457, ["2008"],
                                      ("pass.keefmoon.example-generic", "YAXJZJ267E"), 3),
    "bad-generic_with_invalid_checksum": ("tampered", [PASS_JSON_MISMATCH], "sha1", "issuerAndSerialNumber",
                                          1437520612, ["2008"], APPLE, 7),
    "bad-generic_with_missing_checksum": ("tampered", [PASS_JSON_MISMATCH,
                                                       "thumbnail@2x.png is in the archive but not in the manifest",
                                                       "the signature does not match manifest.json (verification "
                                                       "failure; content verify error)"],
                                          "sha1", "issuerAndSerialNumber", 1437520612, ["2008"], APPLE, 6),
    "bad-BoardingPass_edited_after_signing": ("tampered", [PASS_JSON_MISMATCH], "sha1", "issuerAndSerialNumber",
                                              1437520574, ["2008"], APPLE, 5),
}
UNSIGNED = ["unsigned-kde-boardingpass-v1", "unsigned-kde-boardingpass-v2", "unsigned-kde-united-semantic-boardingpass"]
# The README's summary: openssl cms -verify -purpose any -no_check_time with the CA bundle fails only here.
OPENSSL_FAILS = {"bad-generic_with_missing_checksum"}
# ... and with the root alone only where the right intermediate is not embedded (and where it fails anyway).
ROOT_ONLY_FAILS = {"kudit-coffee_club", "kudit-coupon", "bad-generic_with_missing_checksum"}


def path_of(name):
    return os.path.join(ARCHIVES, name + ".pkpass")


def inspect(name, *args):
    p = subprocess.run([INSPECT, "--compact", *args, path_of(name)], capture_output=True, text=True)
    assert p.returncode in (0, 1), (p.returncode, p.stderr)
    report = json.loads(p.stdout)
    assert (p.returncode == 0) == (report["verdict"] == "valid"), (p.returncode, report["verdict"])
    return report


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def openssl_verify(name, ca_file, *extra):
    with tempfile.TemporaryDirectory() as d, zipfile.ZipFile(path_of(name)) as z:
        for n in ("manifest.json", "signature"):
            with open(os.path.join(d, n), "wb") as f:
                f.write(z.read(n))
        p = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", os.path.join(d, "signature"),
                            "-content", os.path.join(d, "manifest.json"), "-CAfile", ca_file, "-purpose", "any",
                            *extra, "-out", os.devnull], capture_output=True, text=True)
        return p.returncode, p.stderr


@unittest.skipUnless(os.path.isdir(ARCHIVES), "../shared/fixtures/pkpass is absent")
class FixtureArchivesTest(unittest.TestCase):
    def test_every_archive_is_covered(self):
        names = sorted(n[:-len(".pkpass")] for n in os.listdir(ARCHIVES) if n.endswith(".pkpass"))
        self.assertEqual(names, sorted(list(SIGNED) + UNSIGNED))

    def test_signed_archives(self):
        for name, (verdict, problems, digest, sid, epoch, wwdr, (uid, team), entries) in SIGNED.items():
            with self.subTest(name=name):
                r = inspect(name, "--ca", CA_BUNDLE, "--no-check-time")
                self.assertEqual(r["verdict"], verdict)
                self.assertEqual(r["problems"], problems)
                self.assertEqual(r["manifest"]["digest"], "sha1")  # "Every manifest here is SHA-1."
                self.assertEqual(r["manifest"]["entries"], entries)
                sig = r["signature"]
                self.assertEqual(sig["digest"], digest)
                self.assertEqual(sig["signerIdentifier"], sid)
                self.assertEqual(sig["signingTime"], iso(epoch))
                self.assertEqual([c["wwdr"] for c in sig["certificates"] if c["wwdr"]], wwdr)
                self.assertEqual([c["signer"] for c in sig["certificates"]].count(True), 1)
                self.assertEqual((sig["signer"]["uid"], sig["signer"]["teamIdentifier"]), (uid, team))
                self.assertEqual(sig["signer"]["commonName"], "Pass Type ID: " + uid)
                self.assertEqual(sig["contentVerified"], name not in OPENSSL_FAILS)
                self.assertEqual(sig["issuerEmbedded"], verdict != "wrong_intermediate")
                # Every signing certificate has expired: the warning says so, and without the flag the
                # chain fails on the dates (the verdict names the first failure in its order).
                self.assertIn("the signer certificate expired on %s (expiry ignored)" % sig["signer"]["notAfter"],
                              r["warnings"])
                self.assertIs(sig["chain"]["verified"], True)
                now = inspect(name, "--ca", CA_BUNDLE)
                self.assertIs(now["signature"]["chain"]["verified"], False)
                self.assertEqual(now["signature"]["chain"]["error"], "certificate has expired")
                if verdict == "valid":
                    self.assertEqual(now["verdict"], "untrusted_chain")
                # At the signing time, as the README's -attime column, the chain verifies.
                then = inspect(name, "--ca", CA_BUNDLE, "--attime", str(epoch))
                self.assertIs(then["signature"]["chain"]["verified"], True)
                self.assertEqual(then["verdict"], verdict)

    def test_chain_paths_name_the_intermediate(self):
        self.assertEqual(inspect("kinotickets-cinema", "--ca", CA_BUNDLE, "--no-check-time")["signature"]["chain"]["path"],
                         ["Pass Type ID: pass.express.kinotickets.pass.ticket", "WWDR G4", "Apple Root CA"])
        # kudit: G4 comes from the trust store, never from the signature, which carries WWDR 2013.
        r = inspect("kudit-coupon", "--ca", ROOT, "--ca", G4, "--no-check-time")
        self.assertEqual(r["signature"]["chain"]["path"],
                         ["Pass Type ID: pass.com.kudit.generic", "WWDR G4", "Apple Root CA"])
        self.assertEqual(r["verdict"], "wrong_intermediate")

    def test_root_only_trust_store(self):
        """The README's last column: with the root alone the embedded intermediate must do."""
        for name in SIGNED:
            with self.subTest(name=name):
                r = inspect(name, "--ca", ROOT, "--no-check-time")
                self.assertEqual(r["signature"]["chain"]["verified"], name not in {"kudit-coffee_club", "kudit-coupon"})
                if name in {"kudit-coffee_club", "kudit-coupon"}:
                    self.assertEqual(r["signature"]["chain"]["error"], "unable to get local issuer certificate")
                    self.assertEqual(r["verdict"], "wrong_intermediate")
                else:
                    self.assertEqual(r["verdict"], SIGNED[name][0])

    def test_openssl_agrees(self):
        for name in SIGNED:
            with self.subTest(name=name):
                rc, err = openssl_verify(name, CA_BUNDLE, "-no_check_time")
                if name in OPENSSL_FAILS:
                    self.assertEqual(rc, 4, err)
                    self.assertIn("content verify error", err)
                else:
                    self.assertEqual(rc, 0, err)
                    self.assertIn("Verification successful", err)
                rc, err = openssl_verify(name, CA_BUNDLE, "-attime", str(SIGNED[name][4]))
                self.assertEqual(rc, 4 if name in OPENSSL_FAILS else 0, err)
                rc, err = openssl_verify(name, ROOT, "-no_check_time")
                self.assertEqual(rc, 4 if name in ROOT_ONLY_FAILS else 0, err)
                if name in ROOT_ONLY_FAILS - OPENSSL_FAILS:
                    self.assertIn("unable to get local issuer certificate", err)
                rc, err = openssl_verify(name, CA_BUNDLE)
                self.assertEqual(rc, 4, err)  # the current clock: every certificate has expired

    def test_details_the_readme_names(self):
        r = inspect("keefmoon-Pass-Example-Generic", "--ca", CA_BUNDLE, "--no-check-time")
        self.assertEqual(r["ignored"], ["__MACOSX/._icon.png", "__MACOSX/._icon@2x.png", "__MACOSX/._manifest.json",
                                        "__MACOSX/._pass.json"])
        self.assertEqual([e["name"] for e in r["entries"] if e["kind"] == "folder"], ["__MACOSX/"])
        r = inspect("westbahn-ticket", "--ca", CA_BUNDLE, "--no-check-time")
        self.assertEqual(r["manifest"]["missing"], ["icon.png", "icon@2x.png", "logo.png", "logo@2x.png"])
        self.assertIn("no icon.png (nor @2x, @3x), at the top or in a .lproj folder: Wallet refuses a pass without one",
                      r["warnings"])
        r = inspect("bad-generic_with_missing_checksum", "--ca", CA_BUNDLE, "--no-check-time")
        self.assertEqual(r["manifest"]["mismatched"], ["pass.json"])
        self.assertEqual(r["manifest"]["unlisted"], ["thumbnail@2x.png"])
        # Apple's BoardingPass sample has a trailing comma: not strict JSON, yet Wallet took it.
        r = inspect("apple-sample-BoardingPass", "--ca", CA_BUNDLE, "--no-check-time")
        self.assertEqual((r["passJson"]["valid"], r["passJson"]["line"], r["passJson"]["column"]), (False, 76, 7))
        self.assertEqual(r["verdict"], "valid")
        for name in ("apple-sample-Coupon", "bad-BoardingPass_edited_after_signing"):
            self.assertIs(inspect(name, "--ca", CA_BUNDLE, "--no-check-time")["passJson"]["valid"], True)

    def test_unsigned_archives_and_utf16_strings(self):
        for name in UNSIGNED:
            with self.subTest(name=name):
                r = inspect(name, "--ca", CA_BUNDLE)
                self.assertEqual(r["verdict"], "unsigned")
                self.assertEqual(r["problems"], [])
                self.assertIsNone(r["signature"])
                self.assertIsNone(r["manifest"])
                self.assertIs(r["passJson"]["valid"], True)
                with zipfile.ZipFile(path_of(name)) as z:
                    names = [n for n in z.namelist() if n.endswith("pass.strings")]
                    self.assertEqual(sorted(r["strings"]), sorted(names))
                    for n in names:
                        raw = z.read(n)
                        self.assertEqual(raw[:2], b"\xfe\xff")  # UTF-16BE with a BOM, as the README says
                        text = raw.decode("utf-16")
                        keys = re.findall(r'^"([^"]+)"\s*=', text, re.M)
                        self.assertEqual(r["strings"][n]["encoding"], "utf-16be")
                        self.assertEqual(sorted(r["strings"][n]["entries"]), sorted(keys))
        r = inspect("unsigned-kde-boardingpass-v1")
        de = r["strings"]["de.lproj/pass.strings"]["entries"]
        self.assertEqual(de["seatchangeMessage"], "Sitzplatznummer geändert in %@")
        self.assertEqual(de["corporatePad"], "KDE Air wünscht Ihnen einen angenehmen Flug.")
        self.assertTrue(de["corporatePadvalue"].startswith("Bitte informieren Sie sich vor Ihrem Abflug über die "
                                                           "detaillierten Gepäckbestimmungen.\r\rGefahrengüter"))
        self.assertEqual([e["name"] for e in r["entries"] if e["kind"] == "folder"], ["de.lproj/", "en.lproj/"])
        self.assertEqual(r["passJson"]["passTypeIdentifier"], "pass.booking.kde.org")
        united = inspect("unsigned-kde-united-semantic-boardingpass")
        self.assertEqual([e["name"] for e in united["entries"]], ["pass.json"])
        self.assertEqual(united["passJson"]["passTypeIdentifier"], "pass.united.UnitedMobileBoardingPass")


if __name__ == "__main__":
    run()
