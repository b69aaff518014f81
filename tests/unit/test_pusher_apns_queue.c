/*
 * The APNs client's waiting lines (services/pusher/apns_queue.c): the FIFOs of ready pushes and
 * the retry heap, both threaded through the pushes' link fields. The unit-test targets link only
 * passkit_common, so the file under test is included directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../services/pusher/apns_queue.c"

#define NIL PUSHER_APNS_NIL

static pusher_push_t *new_pushes(size_t n)
{
    pusher_push_t *p = calloc(n, sizeof(*p));
    assert_non_null(p);
    return p;
}

static void test_fifo_order_and_front(void **state)
{
    (void)state;
    pusher_push_t *p = new_pushes(5);
    pusher_apns_fifo_t q;
    pusher_apns_fifo_init(&q);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), NIL);
    pusher_apns_fifo_push_back(&q, p, 2);
    pusher_apns_fifo_push_back(&q, p, 0);
    pusher_apns_fifo_push_back(&q, p, 4);
    pusher_apns_fifo_push_front(&q, p, 3); /* a refused push goes first */
    assert_int_equal(q.count, 4);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), 3);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), 2);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), 0);
    pusher_apns_fifo_push_back(&q, p, 1);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), 4);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), 1);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), NIL);
    assert_int_equal(q.count, 0);
    /* Empty again: both ends work. */
    pusher_apns_fifo_push_front(&q, p, 1);
    pusher_apns_fifo_push_back(&q, p, 2);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), 1);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), 2);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), NIL);
    free(p);
}

static void test_timers_only_due_ones_come_out(void **state)
{
    (void)state;
    pusher_push_t *p = new_pushes(4);
    pusher_apns_timers_t t;
    pusher_apns_timers_init(&t);
    assert_true(pusher_apns_timers_next(&t, p) == UINT64_MAX);
    assert_int_equal(pusher_apns_timers_pop_due(&t, p, UINT64_MAX), NIL);
    pusher_apns_timers_add(&t, p, 0, 5000);
    pusher_apns_timers_add(&t, p, 1, 1000);
    pusher_apns_timers_add(&t, p, 2, 3000);
    pusher_apns_timers_add(&t, p, 3, 1000);
    assert_int_equal(t.count, 4);
    assert_true(pusher_apns_timers_next(&t, p) == 1000);
    assert_int_equal(pusher_apns_timers_pop_due(&t, p, 999), NIL);
    size_t a = pusher_apns_timers_pop_due(&t, p, 1000), b = pusher_apns_timers_pop_due(&t, p, 1000);
    assert_true((a == 1 && b == 3) || (a == 3 && b == 1));
    assert_int_equal(pusher_apns_timers_pop_due(&t, p, 2999), NIL);
    assert_true(pusher_apns_timers_next(&t, p) == 3000);
    assert_int_equal(pusher_apns_timers_pop_due(&t, p, 10000), 2);
    assert_int_equal(pusher_apns_timers_pop_due(&t, p, 10000), 0);
    assert_int_equal(pusher_apns_timers_pop_due(&t, p, 10000), NIL);
    assert_int_equal(t.count, 0);
    free(p);
}

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* Many pushes, interleaved adds and removals, ties and a long sibling list: every push comes out
 * exactly once, never before it is due, in due order. */
static void test_timers_ordering_at_scale(void **state)
{
    (void)state;
    enum { N = 200000 };
    pusher_push_t *p = new_pushes(N);
    unsigned char *seen = calloc(N, 1);
    assert_non_null(seen);
    pusher_apns_timers_t t;
    pusher_apns_timers_init(&t);
    uint32_t rng = 12345;
    size_t added = 0, popped = 0;
    uint64_t now = 0, last;
    while (popped < N) {
        /* Add a burst, all due at least 'now' (as retries are), many with the same due time. */
        for (int k = 0; k < 7 && added < N; k++, added++)
            pusher_apns_timers_add(&t, p, added, now + (xorshift(&rng) % 64) * 10);
        now += xorshift(&rng) % 40;
        size_t i;
        while ((i = pusher_apns_timers_pop_due(&t, p, now)) != NIL) {
            assert_true(p[i].link.due_ms <= now);
            assert_int_equal(seen[i], 0);
            seen[i] = 1;
            popped++;
        }
        uint64_t next = pusher_apns_timers_next(&t, p);
        assert_true(t.count == 0 ? next == UINT64_MAX : next > now);
        if (added == N)
            now += 1000;
    }
    assert_int_equal(t.count, 0);
    /* A drain at one 'now' returns non-decreasing due times. */
    for (size_t i = 0; i < N; i++)
        pusher_apns_timers_add(&t, p, i, xorshift(&rng) % 1000000);
    last = 0;
    for (size_t k = 0; k < N; k++) {
        size_t i = pusher_apns_timers_pop_due(&t, p, UINT64_MAX);
        assert_true(i != NIL);
        assert_true(p[i].link.due_ms >= last);
        last = p[i].link.due_ms;
    }
    assert_int_equal(pusher_apns_timers_pop_due(&t, p, UINT64_MAX), NIL);
    free(seen);
    free(p);
}

/* A push goes from the heap to a FIFO and back (its links are reused). */
static void test_push_moves_between_heap_and_fifo(void **state)
{
    (void)state;
    pusher_push_t *p = new_pushes(3);
    pusher_apns_timers_t t;
    pusher_apns_fifo_t q;
    pusher_apns_timers_init(&t);
    pusher_apns_fifo_init(&q);
    for (size_t i = 0; i < 3; i++)
        pusher_apns_fifo_push_back(&q, p, i);
    pusher_apns_timers_add(&t, p, pusher_apns_fifo_pop(&q, p), 20);
    pusher_apns_timers_add(&t, p, pusher_apns_fifo_pop(&q, p), 10);
    assert_int_equal(q.count, 1);
    assert_int_equal(pusher_apns_timers_pop_due(&t, p, 15), 1);
    pusher_apns_fifo_push_back(&q, p, 1);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), 2);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), 1);
    assert_int_equal(pusher_apns_fifo_pop(&q, p), NIL);
    assert_int_equal(pusher_apns_timers_pop_due(&t, p, 20), 0);
    assert_int_equal(pusher_apns_timers_pop_due(&t, p, 20), NIL);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_order_and_front),
        cmocka_unit_test(test_timers_only_due_ones_come_out),
        cmocka_unit_test(test_timers_ordering_at_scale),
        cmocka_unit_test(test_push_moves_between_heap_and_fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
