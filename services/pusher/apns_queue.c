/*
 * The waiting lines of pusher_apns_run(), threaded through the pushes' own link fields so that a
 * run allocates nothing per push: per-topic FIFOs of pushes ready to be sent, and one pairing heap
 * of pushes waiting for their retry time.
 *
 * A pairing heap rather than a binary heap because it needs no array: two links per node. Delete-min
 * uses the usual two-pass pairing, written iteratively (the children list can be as long as the
 * number of pushes, too deep for recursion). No I/O: tests/unit/test_pusher_apns_queue.c includes
 * this file alone.
 */
#include "apns_internal.h"

void pusher_apns_fifo_init(pusher_apns_fifo_t *q)
{
    q->head = q->tail = PUSHER_APNS_NIL;
    q->count = 0;
}

void pusher_apns_fifo_push_back(pusher_apns_fifo_t *q, pusher_push_t *pushes, size_t i)
{
    pushes[i].link.next = PUSHER_APNS_NIL;
    if (q->tail == PUSHER_APNS_NIL)
        q->head = i;
    else
        pushes[q->tail].link.next = i;
    q->tail = i;
    q->count++;
}

void pusher_apns_fifo_push_front(pusher_apns_fifo_t *q, pusher_push_t *pushes, size_t i)
{
    pushes[i].link.next = q->head;
    q->head = i;
    if (q->tail == PUSHER_APNS_NIL)
        q->tail = i;
    q->count++;
}

size_t pusher_apns_fifo_pop(pusher_apns_fifo_t *q, pusher_push_t *pushes)
{
    size_t i = q->head;
    if (i == PUSHER_APNS_NIL)
        return i;
    q->head = pushes[i].link.next;
    if (q->head == PUSHER_APNS_NIL)
        q->tail = PUSHER_APNS_NIL;
    pushes[i].link.next = PUSHER_APNS_NIL;
    q->count--;
    return i;
}

void pusher_apns_timers_init(pusher_apns_timers_t *t)
{
    t->root = PUSHER_APNS_NIL;
    t->count = 0;
}

/* Melds two heaps whose roots have no siblings; returns the new root. */
static size_t meld(pusher_push_t *p, size_t a, size_t b)
{
    if (a == PUSHER_APNS_NIL)
        return b;
    if (b == PUSHER_APNS_NIL)
        return a;
    if (p[b].link.due_ms < p[a].link.due_ms) {
        size_t x = a;
        a = b;
        b = x;
    }
    p[b].link.next = p[a].link.child;
    p[a].link.child = b;
    return a;
}

void pusher_apns_timers_add(pusher_apns_timers_t *t, pusher_push_t *pushes, size_t i, uint64_t due_ms)
{
    pushes[i].link.due_ms = due_ms;
    pushes[i].link.child = PUSHER_APNS_NIL;
    pushes[i].link.next = PUSHER_APNS_NIL;
    t->root = meld(pushes, t->root, i);
    t->count++;
}

uint64_t pusher_apns_timers_next(const pusher_apns_timers_t *t, const pusher_push_t *pushes)
{
    return t->root == PUSHER_APNS_NIL ? UINT64_MAX : pushes[t->root].link.due_ms;
}

/* Two-pass pairing of a list of sibling heaps: meld them pairwise left to right (kept on a stack
 * through .next), then meld the pairs right to left. */
static size_t merge_pairs(pusher_push_t *p, size_t first)
{
    size_t stack = PUSHER_APNS_NIL;
    while (first != PUSHER_APNS_NIL) {
        size_t a = first, b = p[a].link.next;
        if (b == PUSHER_APNS_NIL) {
            first = PUSHER_APNS_NIL;
        } else {
            first = p[b].link.next;
            p[b].link.next = PUSHER_APNS_NIL;
        }
        p[a].link.next = PUSHER_APNS_NIL;
        size_t m = meld(p, a, b);
        p[m].link.next = stack;
        stack = m;
    }
    size_t root = PUSHER_APNS_NIL;
    while (stack != PUSHER_APNS_NIL) {
        size_t next = p[stack].link.next;
        p[stack].link.next = PUSHER_APNS_NIL;
        root = meld(p, root, stack);
        stack = next;
    }
    return root;
}

size_t pusher_apns_timers_pop_due(pusher_apns_timers_t *t, pusher_push_t *pushes, uint64_t now)
{
    size_t r = t->root;
    if (r == PUSHER_APNS_NIL || pushes[r].link.due_ms > now)
        return PUSHER_APNS_NIL;
    t->root = merge_pairs(pushes, pushes[r].link.child);
    pushes[r].link.child = PUSHER_APNS_NIL;
    pushes[r].link.next = PUSHER_APNS_NIL;
    t->count--;
    return r;
}
