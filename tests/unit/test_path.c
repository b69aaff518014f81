/* Path splitting, percent-decoding and query parameters (common/path.h), identifiers (common/ids.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "common/ids.h"
#include "common/path.h"

static int split(const char *s, cm_path_t *p)
{
    return cm_path_split(s, strlen(s), p);
}

static void splits_and_collapses_slashes(void **state)
{
    cm_path_t p;
    assert_int_equal(split("//v1/devices/abc/registrations/pass.x.y/123?passesUpdatedSince=5", &p), 0);
    assert_int_equal(p.count, 6);
    assert_true(cm_path_is(&p, 0, "v1"));
    assert_true(cm_path_is(&p, 1, "devices"));
    assert_true(cm_path_is(&p, 5, "123"));
    assert_false(cm_path_is(&p, 6, "x"));
    assert_int_equal(split("/", &p), 0);
    assert_int_equal(p.count, 0);
}

static void decodes_each_segment(void **state)
{
    cm_path_t p;
    assert_int_equal(split("/v1/passes/pass.a%2Db/ser%20ial", &p), 0);
    assert_int_equal(p.count, 4);
    assert_string_equal(p.seg[2], "pass.a-b");
    assert_string_equal(p.seg[3], "ser ial");
    /* An encoded slash must not create a new segment: it is refused. */
    assert_int_equal(split("/v1/passes/a%2Fb", &p), -1);
    assert_int_equal(split("/v1/passes/a%00b", &p), -1);
    assert_int_equal(split("/v1/passes/a%zzb", &p), -1);
    assert_int_equal(split("/v1/passes/ab%4", &p), -1);
    assert_int_equal(split("/v1/passes/ab%", &p), -1);
}

static void refuses_too_many_or_too_long(void **state)
{
    cm_path_t p;
    assert_int_equal(split("/a/b/c/d/e/f/g/h/i/j/k/l", &p), 0);
    assert_int_equal(split("/a/b/c/d/e/f/g/h/i/j/k/l/m", &p), -1);
    char longer[CM_PATH_MAX + 10];
    memset(longer, 'a', sizeof(longer) - 1);
    longer[0] = '/';
    longer[sizeof(longer) - 1] = '\0';
    assert_int_equal(split(longer, &p), -1);
}

static void reads_query_parameters(void **state)
{
    char v[32];
    const char *path = "/v1/x?a=1&passesUpdatedSince=12%33&b";
    assert_int_equal(cm_path_query_param(path, strlen(path), "passesUpdatedSince", v, sizeof(v)), 0);
    assert_string_equal(v, "123");
    assert_int_equal(cm_path_query_param(path, strlen(path), "b", v, sizeof(v)), 0);
    assert_string_equal(v, "");
    assert_int_equal(cm_path_query_param(path, strlen(path), "missing", v, sizeof(v)), 1);
    assert_int_equal(cm_path_query_param("/v1/x", 5, "a", v, sizeof(v)), 1);
    /* An empty value at the very end of a buffer that is not NUL-terminated (found by fuzz_path). */
    char unterminated[] = {'/', '?', 'a', '='};
    char w[8] = "junk";
    assert_int_equal(cm_path_query_param(unterminated, sizeof(unterminated), "a", w, sizeof(w)), 0);
    assert_string_equal(w, "");
    char bare[] = {'?', 'a'};
    assert_int_equal(cm_path_query_param(bare, sizeof(bare), "a", w, sizeof(w)), 0);
    assert_string_equal(w, "");
    const char *bad = "/x?a=%G1";
    assert_int_equal(cm_path_query_param(bad, strlen(bad), "a", v, sizeof(v)), -1);
    const char *big = "/x?a=0123456789012345678901234567890123456789";
    assert_int_equal(cm_path_query_param(big, strlen(big), "a", v, sizeof(v)), -1);
}

static void reads_repeated_query_parameters(void **state)
{
    char v[64];
    const char *path = "/admin/v1/pkpasses?pass=pass.a/1&x=y&pass=pass.b%2F2&pass=";
    size_t n = strlen(path);
    assert_int_equal(cm_path_query_param_at(path, n, "pass", 0, v, sizeof(v)), 0);
    assert_string_equal(v, "pass.a/1");
    assert_int_equal(cm_path_query_param_at(path, n, "pass", 1, v, sizeof(v)), 0);
    assert_string_equal(v, "pass.b/2");
    assert_int_equal(cm_path_query_param_at(path, n, "pass", 2, v, sizeof(v)), 0);
    assert_string_equal(v, "");
    assert_int_equal(cm_path_query_param_at(path, n, "pass", 3, v, sizeof(v)), 1);
    assert_int_equal(cm_path_query_param_at(path, n, "x", 0, v, sizeof(v)), 0);
    assert_string_equal(v, "y");
    assert_int_equal(cm_path_query_param_at(path, n, "x", 1, v, sizeof(v)), 1);
}

static void validates_identifiers(void **state)
{
    assert_true(cm_id_is_pass_type("pass.com.example.x-y", 20));
    assert_false(cm_id_is_pass_type("pass.", 5));
    assert_false(cm_id_is_pass_type("com.example", 11));
    assert_false(cm_id_is_pass_type("pass.a:b", 8));
    assert_true(cm_id_is_plain("gT6zrHkaW", 9));
    assert_false(cm_id_is_plain("a b", 3));
    assert_false(cm_id_is_plain("a:b", 3));
    assert_false(cm_id_is_plain("", 0));
    assert_false(cm_id_is_plain(".", 1));
    assert_false(cm_id_is_plain("..", 2));
    assert_true(cm_id_is_plain("...", 3));
    assert_false(cm_id_is_push_token("abc", 3));
    assert_true(cm_id_is_push_token("0aF9", 4));
    assert_false(cm_id_is_push_token("0g", 2));
    assert_true(cm_id_is_auth_token("0123456789abcdef", 16));
    assert_false(cm_id_is_auth_token("0123456789abcde", 15));
    assert_false(cm_id_is_auth_token("0123456789abcde ", 16));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(splits_and_collapses_slashes),    cmocka_unit_test(decodes_each_segment),
        cmocka_unit_test(refuses_too_many_or_too_long),    cmocka_unit_test(reads_query_parameters),
        cmocka_unit_test(reads_repeated_query_parameters), cmocka_unit_test(validates_identifiers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
