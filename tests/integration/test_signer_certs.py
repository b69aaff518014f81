#!/usr/bin/env python3
"""The signer's certificates (refused at start with exact reasons, reloaded on SIGHUP under load), its
single flight per pass version, and its /healthz, /readyz and /metrics."""
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from harness import (BIN, OTHER_PASS_TYPE, PASS_TYPE, TEAM_ID, Service, StackTestCase, free_port, make_zip,
                     request, run, sample_template, wait_until)
from pkpass_check import check_bundle, check_listing, check_manifest, open_bundle

V1 = "/passes/v1"
G4_TEST = "CN=Test Worldwide Developer Relations Certification Authority,OU=G4,O=PassKit Backend Test,C=US"
G1_TEST = ("CN=Test Worldwide Developer Relations Certification Authority,"
           "OU=PassKit Backend Test Worldwide Developer Relations,O=PassKit Backend Test,C=US")
APPLE_G4 = "C=US,O=Apple Inc.,OU=G4,CN=Apple Worldwide Developer Relations Certification Authority"


def fingerprint(pem_path):
    out = subprocess.run(["openssl", "x509", "-in", pem_path, "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


def signer_fingerprint(bundle):
    """SHA-256 fingerprint of the certificate that signed the bundle, as openssl reports it."""
    files = open_bundle(bundle)
    check_listing(bundle, check_manifest(files))
    with tempfile.TemporaryDirectory() as d:
        for n in ("manifest.json", "signature"):
            with open(os.path.join(d, n), "wb") as f:
                f.write(files[n])
        subprocess.run(["openssl", "cms", "-verify", "-noverify", "-binary", "-inform", "DER", "-in",
                        os.path.join(d, "signature"), "-content", os.path.join(d, "manifest.json"), "-signer",
                        os.path.join(d, "signer.pem"), "-out", os.devnull], capture_output=True, check=True)
        return fingerprint(os.path.join(d, "signer.pem"))


class SignerTestCase(StackTestCase):
    stack_kwargs = {"start_pusher": False}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = cls.stack.admin("PUT", "/templates/tpl", make_zip(sample_template()))
        assert r.status == 201, r.body

    def create(self, serial, pass_type=PASS_TYPE, fields=None):
        r = self.put_pass(serial, pass_type=pass_type, pass_fields=fields)
        self.assertIn(r.status, (200, 201), r.body)
        return r.json()["authenticationToken"]

    def get_pass(self, serial, token, pass_type=PASS_TYPE):
        return self.stack.api("GET", "%s/passes/%s/%s" % (V1, pass_type, serial),
                              headers={"Authorization": "ApplePass " + token})

    def cert_path(self, pass_type=PASS_TYPE):
        return os.path.join(self.stack.certs, pass_type, "certificate.pem")

    def signer_log(self):
        return self.stack.services["signer"].output()

    def sighup_and_wait(self, event):
        """SIGHUP, then waits for one more log line with event (certs_reloaded / certs_reload_failed)."""
        before = self.signer_log().count("event=" + event)
        self.stack.services["signer"].proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.signer_log().count("event=" + event) > before, what=event)


class StartRefusalTest(SignerTestCase):
    """A certificate the signer must not use stops it at start, with the exact reason."""

    def broken_dir(self, *options, pass_type=PASS_TYPE):
        d = os.path.join(self.stack.tmp, "refused-%d" % time.monotonic_ns())
        shutil.copytree(self.stack.certs, d)
        if options:
            self.stack.make_certs("--replace", *options, pass_types=[pass_type], out=d)
        return d

    def run_signer(self, certs, extra=None):
        env = dict(os.environ, REDIS_URL=self.stack.redis_url, SIGNER_LISTEN="127.0.0.1:%d" % free_port(),
                   CERTS_DIR=certs, **(extra or {}))
        p = subprocess.run([os.path.join(BIN, "passkit-signer")], env=env, capture_output=True, text=True, timeout=20)
        out = p.stdout + p.stderr
        self.assertNotIn("Sanitizer", out)
        self.assertNotIn("runtime error:", out)
        self.assertNotIn("event=listening", out)
        return p.returncode, out

    def assert_refused(self, certs, reason, extra=None, pass_type=PASS_TYPE):
        code, out = self.run_signer(certs, extra)
        self.assertEqual(code, 1, out)
        line = 'event=cert_refused ptid=%s reason="%s"' % (pass_type, reason)
        self.assertIn(line, out)

    def test_expired(self):
        d = self.broken_dir("--expired")
        self.assert_refused(d, "%s/%s/certificate.pem: expired (notBefore 2020-01-01T00:00:00Z, "
                               "notAfter 2021-01-01T00:00:00Z)" % (d, PASS_TYPE))

    def test_not_valid_yet(self):
        d = self.broken_dir("--not-before", "20990101000000Z", "--not-after", "21000101000000Z")
        self.assert_refused(d, "%s/%s/certificate.pem: not valid yet (notBefore 2099-01-01T00:00:00Z, "
                               "notAfter 2100-01-01T00:00:00Z)" % (d, PASS_TYPE))

    def test_other_intermediate(self):
        """Issued by a G1-like WWDR while the G4-like one is configured: both issuers named."""
        d = self.broken_dir("--issuer", "g1")
        self.assert_refused(d, "%s/%s/certificate.pem: issued by '%s', not by the configured WWDR '%s' (%s/wwdr.pem)"
                            % (d, PASS_TYPE, G1_TEST, G4_TEST, d))

    def test_wwdr_cert_names_the_intermediate(self):
        """WWDR_CERT wins over CERTS_DIR/wwdr.pem."""
        d = self.broken_dir()
        g1 = os.path.join(d, "ca", "wwdr-g1.pem")
        self.stack.make_certs("--issuer", "g1", pass_types=["pass.com.example.g1"], out=d)
        self.assert_refused(d, "%s/%s/certificate.pem: issued by '%s', not by the configured WWDR '%s' (%s)"
                            % (d, PASS_TYPE, G4_TEST, G1_TEST, g1), extra={"WWDR_CERT": g1})

    def test_uid_differs_from_folder(self):
        d = self.broken_dir("--uid", "pass.com.example.someone-else")
        self.assert_refused(d, "%s/%s/certificate.pem: the subject UID 'pass.com.example.someone-else' differs "
                               "from the folder name '%s'" % (d, PASS_TYPE, PASS_TYPE))

    def test_default_wwdr_is_apple_g4(self):
        """Without WWDR_CERT and CERTS_DIR/wwdr.pem the signer checks against Apple's WWDR G4 (built in), which
        did not issue the test certificates."""
        d = self.broken_dir()
        os.remove(os.path.join(d, "wwdr.pem"))
        for pt in (PASS_TYPE, OTHER_PASS_TYPE):
            self.assert_refused(d, "%s/%s/certificate.pem: issued by '%s', not by the configured WWDR '%s' "
                                   "(built-in Apple WWDR G4)" % (d, pt, G4_TEST, APPLE_G4), pass_type=pt)

    def test_missing_wwdr_cert(self):
        d = self.broken_dir()
        code, out = self.run_signer(d, {"WWDR_CERT": os.path.join(d, "nope.pem")})
        self.assertEqual(code, 1)
        self.assertIn('event=certs_invalid dir="%s" problems="%s/nope.pem: cannot open: No such file or directory"'
                      % (d, d), out)

    def test_expiring_soon_is_a_warning_and_a_gauge(self):
        d = self.broken_dir("--days", "10")
        port = free_port()
        env = {"REDIS_URL": self.stack.redis_url, "SIGNER_LISTEN": "127.0.0.1:%d" % port, "CERTS_DIR": d,
               "SIGNER_WORKERS": "3"}
        svc = Service("signer-soon", [os.path.join(BIN, "passkit-signer")], env, self.stack.tmp)
        try:
            wait_until(lambda: "event=listening" in svc.output(), what="signer to listen")
            out = svc.output()
            self.assertIn("level=warn svc=signer event=cert_expires_soon ptid=%s file=%s/%s/certificate.pem"
                          % (PASS_TYPE, d, PASS_TYPE), out)
            self.assertNotIn("event=cert_expires_soon ptid=%s" % OTHER_PASS_TYPE, out)
            self.assertIn("event=thread_pool size=3 source=SIGNER_WORKERS", out)
            from harness import metric_value
            text = request(port, "GET", "/metrics").body.decode()
            days = metric_value(text, "signer_certificate_expiry_days", pass_type=PASS_TYPE)
            self.assertTrue(9.9 < days <= 10.0, days)
            self.assertTrue(364 < metric_value(text, "signer_certificate_expiry_days", pass_type=OTHER_PASS_TYPE) <= 365)
            self.assertEqual(metric_value(text, "signer_workers"), 3)
        finally:
            self.assertEqual(svc.stop(), 0, svc.output())


class ReloadTest(SignerTestCase):
    """SIGHUP re-reads CERTS_DIR; requests never fail meanwhile."""

    def test_1_replaced_certificate_under_load(self):
        """Two clients keep updating passes and fetching each new version (a signing each) through the api
        while the certificate is replaced and the signer gets SIGHUP: no request fails, versions fetched
        before the reload carry the old certificate, versions asked for after it the new one."""
        serials = ["load-%d" % i for i in range(10)]
        tokens = {s: self.create(s) for s in serials}
        old_fp = fingerprint(self.cert_path())
        # the new certificate, from the same WWDR, made beforehand so the swap on disk is quick
        staged = os.path.join(self.stack.tmp, "staged-certs")
        shutil.copytree(self.stack.certs, staged)
        self.stack.make_certs("--replace", pass_types=[PASS_TYPE], out=staged)
        new_fp = fingerprint(os.path.join(staged, PASS_TYPE, "certificate.pem"))
        self.assertNotEqual(old_fp, new_fp)
        results, failures, reloaded, stop = [], [], threading.Event(), threading.Event()

        def load(worker):
            n = 0
            while not stop.is_set():
                s = serials[(worker + 2 * n) % len(serials)]
                n += 1
                r = self.put_pass(s, pass_fields={"logoText": "w%d n%d" % (worker, n)})
                if r.status != 200:
                    failures.append(("PUT", s, r.status, r.body))
                    continue
                after = reloaded.is_set()
                r = self.get_pass(s, tokens[s])
                if r.status != 200:
                    failures.append(("GET", s, r.status, r.body))
                results.append((s, r.body, after))

        threads = [threading.Thread(target=load, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(results) >= 30 or failures, what="requests before the reload")
            for name in ("private-key.pem", "certificate.pem"):
                shutil.copy(os.path.join(staged, PASS_TYPE, name), os.path.join(self.stack.certs, PASS_TYPE, name))
            self.sighup_and_wait("certs_reloaded")
            reloaded.set()
            wait_until(lambda: sum(1 for r in results if r[2]) >= 30 or failures, what="requests after the reload")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertEqual(failures, [])
        ca = os.path.join(self.stack.certs, "ca", "chain.pem")
        fps = [signer_fingerprint(body) for _, body, _ in results]
        self.assertEqual(fps[0], old_fp)
        self.assertEqual(fps[-1], new_fp)
        for (s, body, after), fp in zip(results, fps):
            check_bundle(body, ca)
            self.assertIn(fp, (old_fp, new_fp))
            if after:
                self.assertEqual(fp, new_fp, s)
        self.assertIn("event=cert_loaded ptid=%s team=%s" % (PASS_TYPE, TEAM_ID), self.signer_log())
        self.assertIn("how=replaced", self.signer_log())
        self.assertEqual(self.stack.signer_metric("signer_certificate_reloads_total", result="ok"), 1)
        self.assertEqual(self.stack.signer_metric("signer_requests_total", status="500"), 0)
        self.assertEqual(self.stack.signer_metric("signer_requests_total", status="503"), 0)

    def check_refused_on_reload(self, options, reason_fmt):
        # a good certificate on disk and in use first (an earlier test may have left a refused one)
        self.stack.make_certs("--replace", pass_types=[OTHER_PASS_TYPE])
        self.sighup_and_wait("certs_reloaded")
        token = self.create("keep-other", pass_type=OTHER_PASS_TYPE)
        good_fp = fingerprint(self.cert_path(OTHER_PASS_TYPE))
        self.stack.make_certs("--replace", *options, pass_types=[OTHER_PASS_TYPE])
        partial = self.stack.signer_metric("signer_certificate_reloads_total", result="partial")
        self.sighup_and_wait("certs_reloaded")
        line = 'event=cert_refused ptid=%s reason="%s" kept=previous' % (
            OTHER_PASS_TYPE, reason_fmt % {"file": self.cert_path(OTHER_PASS_TYPE)})
        self.assertIn(line, self.signer_log())
        self.assertEqual(self.stack.signer_metric("signer_certificate_reloads_total", result="partial"), partial + 1)
        # the previous certificate still signs, the api keeps working
        self.create("keep-other", pass_type=OTHER_PASS_TYPE, fields={"logoText": " ".join(options)})
        r = self.get_pass("keep-other", token, pass_type=OTHER_PASS_TYPE)
        self.assertEqual(r.status, 200)
        self.assertEqual(signer_fingerprint(r.body), good_fp)
        self.assertEqual(self.stack.signer_metric("signer_certificates_loaded"), 2)

    def test_2_expired_on_reload_keeps_previous(self):
        self.check_refused_on_reload(["--expired"], "%(file)s: expired (notBefore 2020-01-01T00:00:00Z, "
                                                    "notAfter 2021-01-01T00:00:00Z)")

    def test_3_other_intermediate_on_reload_keeps_previous(self):
        self.check_refused_on_reload(["--issuer", "g1"], "%%(file)s: issued by '%s', not by the configured WWDR "
                                     "'%s' (%s/wwdr.pem)" % (G1_TEST, G4_TEST, self.stack.certs))

    def test_4_uid_mismatch_on_reload_keeps_previous(self):
        self.check_refused_on_reload(["--uid", "pass.com.example.nobody"],
                                     "%%(file)s: the subject UID 'pass.com.example.nobody' differs from the folder "
                                     "name '%s'" % OTHER_PASS_TYPE)

    def test_5_lost_wwdr_keeps_everything(self):
        """wwdr.pem gone: the default is Apple's G4, which issued none of them: nothing usable, nothing changes."""
        token = self.create("lost-wwdr")
        fp = fingerprint(self.cert_path())
        wwdr = os.path.join(self.stack.certs, "wwdr.pem")
        os.rename(wwdr, wwdr + ".away")
        failed = self.stack.signer_metric("signer_certificate_reloads_total", result="failed")
        try:
            self.sighup_and_wait("certs_reload_failed")
        finally:
            os.rename(wwdr + ".away", wwdr)
        self.assertIn('event=certs_reload_failed dir="%s" reason="no usable pass type" kept=previous'
                      % self.stack.certs, self.signer_log())
        self.assertEqual(self.stack.signer_metric("signer_certificate_reloads_total", result="failed"), failed + 1)
        r = self.get_pass("lost-wwdr", token)
        self.assertEqual(r.status, 200)
        self.assertEqual(signer_fingerprint(r.body), fp)
        self.assertEqual(request(self.stack.signer_port, "GET", "/readyz").status, 200)


class SingleFlightTest(SignerTestCase):
    def test_concurrent_requests_for_a_new_version_sign_once(self):
        token = self.create("sf-1")
        for round_ in range(3):
            self.create("sf-1", fields={"logoText": "round %d" % round_})  # a version nobody fetched yet
            signings = self.stack.signer_metric("signer_signings_total", result="ok")
            served = self.stack.signer_metric("signer_requests_total", status="200")
            barrier = threading.Barrier(20)
            results = [None] * 20

            def get(i):
                barrier.wait()
                results[i] = self.get_pass("sf-1", token)

            threads = [threading.Thread(target=get, args=(i,)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual([r.status for r in results], [200] * 20)
            self.assertEqual(len({r.body for r in results}), 1, "every request gets the same bytes")
            self.assertEqual(self.stack.signer_metric("signer_signings_total", result="ok"), signings + 1)
            self.assertEqual(self.stack.signer_metric("signer_requests_total", status="200"), served + 20)
        self.assertGreater(self.stack.signer_metric("signer_singleflight_waiters_total"), 0)

    def test_status_routes(self):
        port = self.stack.signer_port
        self.assertEqual(request(port, "GET", "/healthz").body, b'{"status":"ok"}')
        self.assertEqual(request(port, "GET", "/readyz").body, b'{"status":"ready"}')
        r = request(port, "GET", "/metrics")
        self.assertEqual(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8")
        text = r.body.decode()
        for family in ("signer_requests_total", "signer_signings_total", "signer_signing_seconds",
                       "signer_cache_hits_total", "signer_cache_misses_total", "signer_singleflight_waiters_total",
                       "signer_certificate_expiry_days", "signer_certificate_reloads_total", "signer_workers"):
            self.assertIn("# TYPE %s " % family, text)
        self.assertEqual(self.stack.signer_metric("signer_workers"), os.cpu_count())
        self.assertEqual(self.stack.signer_metric("signer_certificates_loaded"), 2)
        # a hit is a hit
        token = self.create("st-1")
        hits = self.stack.signer_metric("signer_cache_hits_total")
        self.assertEqual(self.get_pass("st-1", token).status, 200)
        self.assertEqual(self.get_pass("st-1", token).status, 200)
        self.assertEqual(self.stack.signer_metric("signer_cache_hits_total"), hits + 1)
        self.assertEqual(self.stack.signer_metric("signer_signing_seconds_count"),
                         self.stack.signer_metric("signer_signings_total", result="ok"))

    def test_z_readyz_follows_redis(self):
        s = self.stack
        s.redis_cli("SAVE")
        s.redis.stop()
        try:
            wait_until(lambda: request(s.signer_port, "GET", "/readyz").status == 503, what="signer not ready")
            body = request(s.signer_port, "GET", "/readyz").json()
            self.assertEqual(body["status"], "not ready")
            self.assertTrue(body["reason"].startswith("redis unreachable: "), body)
            self.assertEqual(request(s.signer_port, "GET", "/healthz").status, 200)
        finally:
            s.restart_redis()
        wait_until(lambda: request(s.signer_port, "GET", "/readyz").status == 200, what="signer ready again")


if __name__ == "__main__":
    run()
