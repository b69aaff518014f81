/* HTTP-date formatting and lenient parsing (common/httpdate.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "common/httpdate.h"

static void formats_imf_fixdate(void **state)
{
    char buf[CM_HTTPDATE_SIZE];
    cm_httpdate_format(784111777, buf);
    assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    cm_httpdate_format(0, buf);
    assert_string_equal(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
}

static void parses_all_three_forms(void **state)
{
    time_t t = 0;
    assert_int_equal(cm_httpdate_parse("Sun, 06 Nov 1994 08:49:37 GMT", 29, &t), 0);
    assert_int_equal(t, 784111777);
    t = 0;
    const char *rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT";
    assert_int_equal(cm_httpdate_parse(rfc850, strlen(rfc850), &t), 0);
    assert_int_equal(t, 784111777);
    t = 0;
    const char *asc = "Sun Nov  6 08:49:37 1994";
    assert_int_equal(cm_httpdate_parse(asc, strlen(asc), &t), 0);
    assert_int_equal(t, 784111777);
}

static void round_trips(void **state)
{
    char buf[CM_HTTPDATE_SIZE];
    for (time_t t = 1700000000; t < 1700000000 + 86400 * 400; t += 86400 * 7 + 3601) {
        time_t back = 0;
        cm_httpdate_format(t, buf);
        assert_int_equal(cm_httpdate_parse(buf, strlen(buf), &back), 0);
        assert_int_equal(back, t);
    }
}

static void rejects_garbage(void **state)
{
    time_t t = 42;
    assert_int_equal(cm_httpdate_parse("", 0, &t), -1);
    assert_int_equal(cm_httpdate_parse("1351981923", 10, &t), -1);
    assert_int_equal(cm_httpdate_parse("yesterday", 9, &t), -1);
    assert_int_equal(cm_httpdate_parse("Xyz, 99 Foo 1994 99:99:99 GMT", 29, &t), -1);
    char longer[100];
    memset(longer, 'A', sizeof(longer));
    assert_int_equal(cm_httpdate_parse(longer, sizeof(longer), &t), -1);
    assert_int_equal(t, 42);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(formats_imf_fixdate),
        cmocka_unit_test(parses_all_three_forms),
        cmocka_unit_test(round_trips),
        cmocka_unit_test(rejects_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
