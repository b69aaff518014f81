/* RFC 7386 merge patch (common/merge.h), with the RFC's own appendix A examples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/merge.h"

static void check(const char *target, const char *patch, const char *expected)
{
    json_t *t = json_loads(target, JSON_DECODE_ANY, NULL);
    json_t *p = json_loads(patch, JSON_DECODE_ANY, NULL);
    json_t *e = json_loads(expected, JSON_DECODE_ANY, NULL);
    assert_non_null(t);
    assert_non_null(p);
    assert_non_null(e);
    char *t_before = json_dumps(t, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_t *r = cm_json_merge_patch(t, p);
    char *got = json_dumps(r, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char *want = json_dumps(e, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    assert_string_equal(got, want);
    char *t_after = json_dumps(t, JSON_SORT_KEYS | JSON_ENCODE_ANY);
    assert_string_equal(t_before, t_after); /* the target is not modified */
    free(t_before);
    free(t_after);
    free(got);
    free(want);
    json_decref(r);
    json_decref(t);
    json_decref(p);
    json_decref(e);
}

static void rfc7386_appendix_a(void **state)
{
    check("{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    check("{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}");
    check("{\"a\":\"b\"}", "{\"a\":null}", "{}");
    check("{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}");
    check("{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}");
    check("{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}");
    check("{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}");
    check("{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}");
    check("[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]");
    check("{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]");
    check("{\"a\":\"foo\"}", "null", "null");
    check("{\"a\":\"foo\"}", "\"bar\"", "\"bar\"");
    check("{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}");
    check("[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}");
    check("{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}");
}

static void deep_merges_a_pass_over_its_template(void **state)
{
    check("{\"formatVersion\":1,\"eventTicket\":{\"primaryFields\":[{\"key\":\"e\",\"value\":\"A\"}]},"
          "\"barcode\":{"
          "\"message\":\"1\",\"format\":\"PKBarcodeFormatQR\"}}",
          "{\"barcode\":{\"message\":\"2\"},\"eventTicket\":{\"primaryFields\":[{\"key\":\"e\",\"value\":"
          "\"B\"}]}}",
          "{\"formatVersion\":1,\"eventTicket\":{\"primaryFields\":[{\"key\":\"e\",\"value\":\"B\"}]},"
          "\"barcode\":{"
          "\"message\":\"2\",\"format\":\"PKBarcodeFormatQR\"}}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc7386_appendix_a),
        cmocka_unit_test(deep_merges_a_pass_over_its_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
