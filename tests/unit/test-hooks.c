/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The hook guards: which operations a running job refuses, and with what words. */
#include "vs-hooks.h"

#include <string.h>

static void
test_no_job_allows_everything(void)
{
    static const char *const ops[] = {"prepare", "start",   "started", "stopped",
                                      "release", "migrate", "restore", "reconnect",
                                      "attach",  "",        "x"};

    for (guint i = 0; i < G_N_ELEMENTS(ops); i++) {
        g_autofree char *message = NULL;

        g_assert_true(vs_hook_allows(ops[i], 0, FALSE, &message));
        g_assert_cmpstr(message, ==, "");
    }
    g_assert_true(vs_hook_allows(NULL, 0, FALSE, NULL));
}

static void
test_offline_job_refuses_start(void)
{
    g_autofree char *message = NULL;

    g_assert_false(vs_hook_allows("prepare", 7, TRUE, &message));
    g_assert_cmpstr(message, ==,
                    "virtsnap: snapshot job 7 is reading this domain's disks; try again when it "
                    "ends");
    g_clear_pointer(&message, g_free);
    g_assert_false(vs_hook_allows("start", 7, TRUE, &message));
    g_clear_pointer(&message, g_free);
    /* A live job does not stand in the way of a start (the domain runs already). */
    g_assert_true(vs_hook_allows("start", 7, FALSE, &message));
    g_clear_pointer(&message, g_free);
    g_assert_true(vs_hook_allows("stopped", 7, TRUE, NULL));
    g_assert_true(vs_hook_allows("release", 7, TRUE, NULL));
}

static void
test_any_job_refuses_migrate_and_restore(void)
{
    for (int offline = 0; offline <= 1; offline++) {
        g_autofree char *m1 = NULL;
        g_autofree char *m2 = NULL;

        g_assert_false(vs_hook_allows("migrate", 3, offline, &m1));
        g_assert_nonnull(strstr(m1, "job 3 is running on this domain"));
        g_assert_false(vs_hook_allows("restore", 3, offline, &m2));
    }
}

/* HookCounts: exact counts, and a bounded table whatever libvirt (or a caller) sends. */
static void
test_counts_are_bounded(void)
{
    g_autoptr(GHashTable) counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_autoptr(GVariant) table = NULL;
    g_autofree char *long_name = g_strnfill(100, 'x');
    guint n = 0;

    g_variant_unref(vs_hook_count(counts, "start"));
    table = vs_hook_count(counts, "start");
    g_assert_true(g_variant_lookup(table, "start", "u", &n));
    g_assert_cmpuint(n, ==, 2);
    for (guint i = 0; i < 40; i++) {
        g_autofree char *op = g_strdup_printf("op%u", i);

        g_clear_pointer(&table, g_variant_unref);
        table = vs_hook_count(counts, op);
    }
    g_clear_pointer(&table, g_variant_unref);
    table = vs_hook_count(counts, long_name);
    g_assert_cmpuint(g_variant_n_children(table), ==, 32);
    g_assert_true(g_variant_lookup(table, "other", "u", &n));
    g_assert_cmpuint(n, ==, 11); /* op30..op39 and the long name: 31 named keys and "other" */
    g_assert_true(g_variant_lookup(table, "start", "u", &n));
    g_assert_cmpuint(n, ==, 2);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/hooks/no-job", test_no_job_allows_everything);
    g_test_add_func("/hooks/offline-job", test_offline_job_refuses_start);
    g_test_add_func("/hooks/migrate-restore", test_any_job_refuses_migrate_and_restore);
    g_test_add_func("/hooks/counts-bounded", test_counts_are_bounded);
    return g_test_run();
}
