/*
 * The pusher's pure rules (services/pusher/outcome.c): what each APNs answer means for a token, how
 * the reason is read from an error body, the retry backoff, and what of a token may be logged.
 * The unit-test targets link only passkit_common, so the file under test is included directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../services/pusher/outcome.c"

static void test_classify_success_and_dead_tokens(void **state)
{
    (void)state;
    assert_int_equal(pusher_outcome_classify(200, ""), PUSHER_OUTCOME_OK);
    assert_int_equal(pusher_outcome_classify(410, "Unregistered"), PUSHER_OUTCOME_REMOVE);
    assert_int_equal(pusher_outcome_classify(410, "ExpiredToken"), PUSHER_OUTCOME_REMOVE);
    assert_int_equal(pusher_outcome_classify(410, ""), PUSHER_OUTCOME_REMOVE);
    assert_int_equal(pusher_outcome_classify(400, "BadDeviceToken"), PUSHER_OUTCOME_REMOVE);
    assert_int_equal(pusher_outcome_classify(400, "DeviceTokenNotForTopic"), PUSHER_OUTCOME_REMOVE);
}

static void test_classify_retryable(void **state)
{
    (void)state;
    assert_int_equal(pusher_outcome_classify(0, "Connection refused"), PUSHER_OUTCOME_RETRY);
    assert_int_equal(pusher_outcome_classify(429, "TooManyRequests"), PUSHER_OUTCOME_RETRY);
    assert_int_equal(pusher_outcome_classify(500, "InternalServerError"), PUSHER_OUTCOME_RETRY);
    assert_int_equal(pusher_outcome_classify(503, "ServiceUnavailable"), PUSHER_OUTCOME_RETRY);
    assert_int_equal(pusher_outcome_classify(503, "Shutdown"), PUSHER_OUTCOME_RETRY);
}

static void test_classify_not_retried(void **state)
{
    (void)state;
    assert_int_equal(pusher_outcome_classify(403, "BadCertificate"), PUSHER_OUTCOME_CERT);
    assert_int_equal(pusher_outcome_classify(403, "Forbidden"), PUSHER_OUTCOME_CERT);
    assert_int_equal(pusher_outcome_classify(400, "BadTopic"), PUSHER_OUTCOME_REJECTED);
    assert_int_equal(pusher_outcome_classify(400, "PayloadEmpty"), PUSHER_OUTCOME_REJECTED);
    assert_int_equal(pusher_outcome_classify(400, "unparseable"), PUSHER_OUTCOME_REJECTED);
    assert_int_equal(pusher_outcome_classify(404, "BadPath"), PUSHER_OUTCOME_REJECTED);
    assert_int_equal(pusher_outcome_classify(405, "MethodNotAllowed"), PUSHER_OUTCOME_REJECTED);
    assert_int_equal(pusher_outcome_classify(413, "PayloadTooLarge"), PUSHER_OUTCOME_REJECTED);
}

static void reason_of(const char *body, char *out, size_t size)
{
    pusher_outcome_reason(body, strlen(body), out, size);
}

static void test_reason(void **state)
{
    (void)state;
    char r[PUSHER_REASON_MAX];
    reason_of("{\"reason\":\"Unregistered\",\"timestamp\":1700000000000}", r, sizeof(r));
    assert_string_equal(r, "Unregistered");
    reason_of("{\"reason\":\"BadDeviceToken\"}", r, sizeof(r));
    assert_string_equal(r, "BadDeviceToken");
    reason_of("", r, sizeof(r));
    assert_string_equal(r, "");
    reason_of("not json", r, sizeof(r));
    assert_string_equal(r, "unparseable");
    reason_of("{\"reason\":42}", r, sizeof(r));
    assert_string_equal(r, "unparseable");
    reason_of("[\"reason\"]", r, sizeof(r));
    assert_string_equal(r, "unparseable");
    reason_of("{\"reason\":\"a b\\\"c\"}", r, sizeof(r)); /* would break a logfmt line */
    assert_string_equal(r, "invalid");
    reason_of("{\"reason\":\"\"}", r, sizeof(r));
    assert_string_equal(r, "invalid");
    char small[8];
    reason_of("{\"reason\":\"TooManyRequests\"}", small, sizeof(small));
    assert_string_equal(small, "invalid");
}

static void test_backoff(void **state)
{
    (void)state;
    /* [d/2, d] with d = 1 s, 2 s, 4 s ... capped at 60 s. */
    assert_int_equal(pusher_outcome_backoff_ms(1, 0), 500);
    assert_int_equal(pusher_outcome_backoff_ms(1, 500), 1000);
    assert_int_equal(pusher_outcome_backoff_ms(1, 501), 500);
    assert_int_equal(pusher_outcome_backoff_ms(2, 0), 1000);
    assert_int_equal(pusher_outcome_backoff_ms(2, 1000), 2000);
    assert_int_equal(pusher_outcome_backoff_ms(3, 0), 2000);
    assert_int_equal(pusher_outcome_backoff_ms(6, 16000), 32000);
    assert_int_equal(pusher_outcome_backoff_ms(7, 0), 30000);
    assert_int_equal(pusher_outcome_backoff_ms(7, 30000), 60000);
    assert_int_equal(pusher_outcome_backoff_ms(100, 30000), 60000);
    for (uint32_t rnd = 0; rnd < 100000; rnd += 7919) {
        for (int attempts = 1; attempts <= 10; attempts++) {
            uint64_t d = pusher_outcome_backoff_ms(attempts, rnd);
            assert_true(d >= PUSHER_BACKOFF_BASE_MS / 2 && d <= PUSHER_BACKOFF_CAP_MS);
        }
    }
}

static void test_token_prefix(void **state)
{
    (void)state;
    char p[9];
    pusher_outcome_token_prefix("0123456789abcdef0123456789abcdef", p);
    assert_string_equal(p, "01234567");
    pusher_outcome_token_prefix("abc", p);
    assert_string_equal(p, "abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_success_and_dead_tokens),
        cmocka_unit_test(test_classify_retryable),
        cmocka_unit_test(test_classify_not_retried),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_token_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
