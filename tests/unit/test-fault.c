/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VIRTSNAP_FAULT's parser: the values the crash matrix uses, and what is refused; and how
 * recovery ends a journaled child that outlived its agent, and only that one. */
#include "vs-child.h"
#include "vs-error.h"
#include "vs-fault.h"

#include <signal.h>

static void
test_parse_good(void)
{
    VsFault f;
    g_autoptr(GError) error = NULL;

    g_assert_true(vs_fault_parse("live:wait-ready:kill", &f, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(f.method, ==, "live");
    g_assert_cmpint(f.phase, ==, VS_PHASE_WAIT_READY);
    g_assert_cmpint(f.action, ==, VS_FAULT_KILL);
    g_assert_cmpuint(f.delay_ms, ==, 0);
    g_assert_true(vs_fault_matches(&f, "live", VS_PHASE_WAIT_READY));
    g_assert_false(vs_fault_matches(&f, "cold", VS_PHASE_WAIT_READY));
    g_assert_false(vs_fault_matches(&f, "live", VS_PHASE_COPY));
    vs_fault_clear(&f);

    g_assert_true(vs_fault_parse("*:save:error:1500", &f, &error));
    g_assert_cmpint(f.phase, ==, VS_PHASE_SAVE);
    g_assert_cmpint(f.action, ==, VS_FAULT_ERROR);
    g_assert_cmpuint(f.delay_ms, ==, 1500);
    g_assert_true(vs_fault_matches(&f, "cold", VS_PHASE_SAVE));
    g_assert_true(vs_fault_matches(&f, "rbd", VS_PHASE_SAVE));
    vs_fault_clear(&f);

    g_assert_true(vs_fault_parse("cold:catalog:kill:0", &f, &error));
    g_assert_cmpint(f.phase, ==, VS_PHASE_CATALOG);
    vs_fault_clear(&f);

    g_assert_true(vs_fault_parse("live:flatten:kill:child", &f, &error));
    g_assert_true(f.on_child);
    g_assert_cmpint(f.action, ==, VS_FAULT_KILL);
    vs_fault_clear(&f);
}

static void
test_parse_bad(void)
{
    static const char *const bad[] = {
        "",                        /* nothing */
        "live",                    /* too few parts */
        "live:copy",               /* no action */
        ":copy:kill",              /* no method */
        "live:copy:kill:1:2",      /* too many */
        "live:nosuchstep:kill",    /* not a phase */
        "live:queued:kill",        /* the engine's own states are no steps */
        "live:cleanup:kill",       /* undo */
        "live:done:kill",          /* done */
        "live:copy:explode",       /* action */
        "live:copy:kill:-1",       /* delay */
        "live:copy:kill:ten",      /* delay */
        "live:copy:kill:",         /* empty delay */
        "live:copy:kill:99999999", /* over ten minutes */
        "live:copy:error:child",   /* only a kill waits for the child */
    };

    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        VsFault f;
        g_autoptr(GError) error = NULL;

        g_assert_false(vs_fault_parse(bad[i], &f, &error));
        g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
        g_assert_null(f.method);
    }
}

static void
test_end_leftover(void)
{
    /* Runs until killed, and names a file in the folder as qemu-img would. */
    const char *argv[] = {"tail", "-f", "/dev/null", "/snap/.x.partial/vda.qcow2.part", NULL};
    g_autoptr(GSubprocessLauncher) launcher = vs_child_launcher_new(
        G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    g_autoptr(GSubprocess) proc = NULL;
    g_autoptr(GError) error = NULL;
    GPid pid;
    guint64 start;

    proc = g_subprocess_launcher_spawnv(launcher, argv, &error);
    g_assert_no_error(error);
    pid = vs_child_pid(proc);
    g_assert_cmpint(pid, >, 1);
    start = vs_child_start_time(pid);
    g_assert_cmpuint(start, >, 0);
    g_assert_cmpuint(vs_child_start_time(pid), ==, start);

    /* Another start time: the pid was reused by someone else. Another folder: not ours. */
    g_assert_true(vs_child_end_leftover(pid, start + 1, "/snap/.x.partial"));
    g_assert_true(vs_child_end_leftover(pid, start, "/snap/.y.partial"));
    g_assert_cmpuint(vs_child_start_time(pid), ==, start); /* still running */

    g_assert_true(vs_child_end_leftover(pid, start, "/snap/.x.partial"));
    g_assert_true(g_subprocess_wait(proc, NULL, NULL));
    g_assert_true(g_subprocess_get_if_signaled(proc));
    g_assert_cmpint(g_subprocess_get_term_sig(proc), ==, SIGKILL);
}

/* A revert's write-back names the domain's disk, not the job's folder: any of the names. */
static void
test_end_leftover_names(void)
{
    const char *argv[] = {"tail", "-f", "/dev/null", "/var/lib/images/vda.qcow2", NULL};
    const char *others[] = {"/snap/.x.partial", "/var/lib/images/vdb.qcow2", NULL};
    const char *names[] = {"/snap/.x.partial", "/var/lib/images/vda.qcow2", NULL};
    g_autoptr(GSubprocessLauncher) launcher = vs_child_launcher_new(
        G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    g_autoptr(GSubprocess) proc = NULL;
    g_autoptr(GError) error = NULL;
    GPid pid;
    guint64 start;

    proc = g_subprocess_launcher_spawnv(launcher, argv, &error);
    g_assert_no_error(error);
    pid = vs_child_pid(proc);
    start = vs_child_start_time(pid);
    g_assert_cmpuint(start, >, 0);

    g_assert_true(vs_child_end_leftover_names(pid, start, others));
    g_assert_true(vs_child_end_leftover_names(pid, start, NULL));
    g_assert_true(vs_child_end_leftover(pid, start, NULL));
    g_assert_cmpuint(vs_child_start_time(pid), ==, start); /* still running */

    g_assert_true(vs_child_end_leftover_names(pid, start, names));
    g_assert_true(g_subprocess_wait(proc, NULL, NULL));
    g_assert_true(g_subprocess_get_if_signaled(proc));
    g_assert_cmpint(g_subprocess_get_term_sig(proc), ==, SIGKILL);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/fault/parse-good", test_parse_good);
    g_test_add_func("/fault/parse-bad", test_parse_bad);
    g_test_add_func("/fault/end-leftover", test_end_leftover);
    g_test_add_func("/fault/end-leftover-names", test_end_leftover_names);
    return g_test_run();
}
