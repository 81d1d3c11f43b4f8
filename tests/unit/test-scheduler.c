/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* When a timed snapshot is due: `every` counts on the wall clock from the last success, a
 * missed slot is caught up once. The clock here is a number we move by hand. */
#include "vs-scheduler.h"

#define S ((gint64)G_USEC_PER_SEC)

/* An arbitrary wall-clock time: 2026-11-23 12:00:00 UTC. */
static const gint64 T0 = G_GINT64_CONSTANT(1795435200) * S;

static void
test_counts_from_last_success(void)
{
    /* Last snapshot at T0, every 10 min: due at T0 + 10 min, whenever we ask (an agent
     * (re)started, a domain started or libvirt reconnected at T0 + 1 s or + 9 min). */
    g_assert_cmpint(vs_schedule_due(T0, 600 * S, 0, T0 + 1 * S), ==, T0 + 600 * S);
    g_assert_cmpint(vs_schedule_due(T0, 600 * S, 0, T0 + 540 * S), ==, T0 + 600 * S);
    /* Exactly at the due time: now. */
    g_assert_cmpint(vs_schedule_due(T0, 600 * S, 0, T0 + 600 * S), ==, T0 + 600 * S);
}

static void
test_missed_slots_caught_up_once(void)
{
    gint64 now = T0 + 3 * 3600 * S + 17 * S; /* down for 18 slots */
    gint64 due = vs_schedule_due(T0, 600 * S, 0, now);

    /* One catch-up, at once... */
    g_assert_cmpint(due, ==, now);
    /* ...and once it has succeeded (its snapshot made 4 s later), the next is a full
     * interval after it, not the 17 other missed slots. */
    g_assert_cmpint(vs_schedule_due(now + 4 * S, 600 * S, 0, now + 5 * S), ==, now + 604 * S);
}

static void
test_no_snapshot_yet(void)
{
    /* No snapshot of the domain: counted from now. */
    g_assert_cmpint(vs_schedule_due(0, 600 * S, 0, T0), ==, T0 + 600 * S);
}

static void
test_failure_retries_a_slot_later(void)
{
    /* The slot at T0 + 600 s fired and its snapshot failed: the scheduler counts the next
     * try from the firing (its last success stays T0, which would be due at once: a loop). */
    gint64 fired = T0 + 600 * S;

    g_assert_cmpint(vs_schedule_due(T0, 600 * S, 0, fired + S), ==, fired + S);
    g_assert_cmpint(vs_schedule_due(fired, 600 * S, 0, fired), ==, fired + 600 * S);
}

static void
test_clock_set_back_and_jitter(void)
{
    /* The clock set back by an hour (last success "in the future"): due a full interval
     * after it, never before now. */
    g_assert_cmpint(vs_schedule_due(T0, 600 * S, 0, T0 - 3600 * S), ==, T0 + 600 * S);
    /* Jitter moves the due time both ways, but never before now. */
    g_assert_cmpint(vs_schedule_due(T0, 600 * S, -30 * S, T0), ==, T0 + 570 * S);
    g_assert_cmpint(vs_schedule_due(T0, 600 * S, 30 * S, T0), ==, T0 + 630 * S);
    g_assert_cmpint(vs_schedule_due(T0, 600 * S, -30 * S, T0 + 580 * S), ==, T0 + 580 * S);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/scheduler/from-last-success", test_counts_from_last_success);
    g_test_add_func("/scheduler/catch-up-once", test_missed_slots_caught_up_once);
    g_test_add_func("/scheduler/no-snapshot-yet", test_no_snapshot_yet);
    g_test_add_func("/scheduler/failure-next-slot", test_failure_retries_a_slot_later);
    g_test_add_func("/scheduler/clock-set-back-jitter", test_clock_set_back_and_jitter);
    return g_test_run();
}
