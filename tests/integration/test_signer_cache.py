#!/usr/bin/env python3
"""The signer's caches: the pk:bundle entry per pass version and the templates it keeps in memory
(per template revision and data-set epoch), observed through the bundles it serves."""
from harness import PASS_TYPE, PNG_1X1, StackTestCase, make_zip, run, sample_template
from pkpass_check import check_bundle

V1 = "/passes/v1"
PNG_2X2 = bytes.fromhex(
    "89504e470d0a1a0a0000000d494844520000000200000002080600000072b60d240000001149444154789c63f8cfc0f01f8419600c"
    "0047ca07f967596eb70000000049454e44ae426082")


class TemplateCacheTest(StackTestCase):
    stack_kwargs = {"start_pusher": False}

    def put_tpl(self, logo):
        files = sample_template()
        files["logo.png"] = logo
        r = self.stack.admin("PUT", "/templates/tc", make_zip(files))
        self.assertIn(r.status, (200, 201), r.body)

    def bundle(self, serial):
        r = self.stack.signer_bundle(PASS_TYPE, serial)
        self.assertEqual(r.status, 200, r.body)
        files, _ = check_bundle(r.body, self.stack.certs + "/ca/chain.pem")
        return files

    def test_new_template_revision_is_read(self):
        self.put_tpl(PNG_1X1)
        self.assertEqual(self.put_pass("tc-1", template_id="tc").status, 201)
        self.assertEqual(self.bundle("tc-1")["logo.png"], PNG_1X1)
        self.assertEqual(self.bundle("tc-1")["logo.png"], PNG_1X1)  # cached bundle
        self.put_tpl(PNG_2X2)
        # same pass version, new template revision: a new bundle from the new files
        self.assertEqual(self.bundle("tc-1")["logo.png"], PNG_2X2)
        # another pass of the template: built from the cached template, the new one
        self.assertEqual(self.put_pass("tc-2", template_id="tc").status, 201)
        self.assertEqual(self.bundle("tc-2")["logo.png"], PNG_2X2)

    def test_new_data_set_drops_kept_templates(self):
        """A data set where pk:seq started again (FLUSHALL, restore) can give another template the same
        @rev: a new pk:signer:epoch makes the signer read it again."""
        s = self.stack
        self.put_tpl(PNG_1X1)
        self.assertIn(self.put_pass("ep-1", template_id="tc").status, (200, 201))
        self.assertEqual(self.bundle("ep-1")["logo.png"], PNG_1X1)
        old_epoch = s.redis_cli("GET", "pk:signer:epoch")
        self.assertRegex(old_epoch, "^[0-9a-f]{32}$")
        rev = int(s.redis_cli("HGET", "pk:tpl:tc", "@rev"))
        # the data set is replaced: the same template id comes back with the same @rev, other bytes
        s.redis_cli("DEL", "pk:signer:epoch", "pk:tpl:tc", "pk:bundle:%s:ep-1" % PASS_TYPE)
        s.redis_cli("SET", "pk:seq", str(rev - 1))
        self.put_tpl(PNG_2X2)
        self.assertEqual(s.redis_cli("HGET", "pk:tpl:tc", "@rev"), str(rev))
        self.assertEqual(self.bundle("ep-1")["logo.png"], PNG_2X2)
        self.assertNotEqual(s.redis_cli("GET", "pk:signer:epoch"), old_epoch)

    def test_stale_bundle_is_replaced(self):
        self.put_tpl(PNG_1X1)
        self.assertIn(self.put_pass("st-1", template_id="tc").status, (200, 201))
        first = self.stack.signer_bundle(PASS_TYPE, "st-1")
        self.assertEqual(first.header("x-pass-version"), self.stack.redis_cli("HGET", "pk:pass:%s:st-1" % PASS_TYPE,
                                                                              "version"))
        misses = self.stack.signer_metric("signer_cache_misses_total")
        self.assertIn(self.put_pass("st-1", template_id="tc", pass_fields={"logoText": "v2"}).status, (200, 201))
        second = self.stack.signer_bundle(PASS_TYPE, "st-1")
        self.assertEqual(self.stack.signer_metric("signer_cache_misses_total"), misses + 1)
        self.assertNotEqual(first.header("x-pass-version"), second.header("x-pass-version"))
        self.assertEqual(self.stack.redis_cli("HGET", "pk:bundle:%s:st-1" % PASS_TYPE, "id").split(":")[0],
                         second.header("x-pass-version"))
        third = self.stack.signer_bundle(PASS_TYPE, "st-1")
        self.assertEqual(third.body, second.body)
        self.assertGreater(int(self.stack.redis_cli("TTL", "pk:bundle:%s:st-1" % PASS_TYPE)), 86000)


if __name__ == "__main__":
    run()
