/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The job engine's pure parts: every method's step table walked through the next-step
 * function (success, and failure and cancel at each step), and the two views of a
 * result derived from one set of facts. */
#include "vs-job-method.h"
#include "vs-names.h"
#include "vs-result.h"

#include <string.h>

typedef struct {
    const VsJobMethod *method;
    const char *const *phases; /* the Job1.Phase words of its steps, in order */
} MethodCase;

static const char *const live_phases[] = {"clear-jobs", "prepare",       "copy",
                                          "wait-ready", "freeze-window", "redefine",
                                          "flatten",    "catalog",       NULL};
static const char *const cold_phases[] = {"clear-jobs", "prepare", "save", "extract",
                                          "restore",    "catalog", NULL};
static const char *const offline_phases[] = {"clear-jobs", "prepare", "extract", "catalog", NULL};
static const char *const rbd_phases[] = {"clear-jobs", "prepare", "freeze-window",
                                         "clone",      "catalog", NULL};
static const char *const clone_phases[] = {"prepare", "overlay", "copy",    "flatten",
                                           "define",  "start",   "catalog", NULL};
static const char *const mixed_phases[] = {"clear-jobs",    "prepare",  "copy",  "wait-ready",
                                           "freeze-window", "redefine", "clone", "flatten",
                                           "catalog",       NULL};
static const char *const no_phases[] = {NULL};

static const MethodCase cases[] = {
    {&vs_job_method_live, live_phases},       {&vs_job_method_cold, cold_phases},
    {&vs_job_method_offline, offline_phases}, {&vs_job_method_rbd, rbd_phases},
    {&vs_job_method_recovery, no_phases},     {&vs_job_method_clone, clone_phases},
    {&vs_job_method_mixed, mixed_phases},
};

static gboolean
is_engine_phase(VsPhase phase)
{
    return phase == VS_PHASE_QUEUED || phase == VS_PHASE_DONE || phase == VS_PHASE_UNDO ||
           phase == VS_PHASE_ENDED;
}

/* Each step does its work one way (a thread or an asynchronous start), appears once,
 * and is not one of the engine's own states. */
static void
test_tables_well_formed(void)
{
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        const VsJobMethod *m = cases[c].method;

        g_assert_cmpuint(m->n_steps, ==, g_strv_length((char **)cases[c].phases));
        for (guint i = 0; i < m->n_steps; i++) {
            const VsJobStep *s = &m->steps[i];

            g_assert_false(is_engine_phase(s->phase));
            g_assert_true((s->thread != NULL) != (s->start != NULL));
            g_assert_true(vs_job_method_step(m, s->phase) == s);
            g_assert_cmpuint(s->undo & ~VS_UNDO_ALL, ==, 0);
        }
        for (VsPhase p = VS_PHASE_QUEUED; p <= VS_PHASE_ENDED; p++) {
            if (is_engine_phase(p))
                g_assert_null(vs_job_method_step(m, p));
        }
    }
}

/* Success walks the steps in the order clients see them, then DONE, then ENDED. */
static void
test_ok_walks_in_order(void)
{
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        const VsJobMethod *m = cases[c].method;
        VsPhase phase = VS_PHASE_QUEUED;

        if (m->n_steps == 0)
            continue;
        for (guint i = 0; cases[c].phases[i]; i++) {
            phase = vs_job_method_next_step(m, phase, VS_OUTCOME_OK);
            g_assert_cmpstr(vs_phase_name(phase), ==, cases[c].phases[i]);
        }
        g_assert_cmpint(vs_job_method_next_step(m, phase, VS_OUTCOME_OK), ==, VS_PHASE_DONE);
        g_assert_cmpint(vs_job_method_next_step(m, VS_PHASE_DONE, VS_OUTCOME_OK), ==,
                        VS_PHASE_ENDED);
        g_assert_cmpstr(vs_job_end_state(TRUE, FALSE, FALSE), ==, VS_STATE_SUCCEEDED);
    }
}

/* Whatever the step and however it fails, the walk goes through undo and ends, in a
 * bounded number of moves, with the state the cause calls for. */
static void
test_failure_and_cancel_undo(void)
{
    static const VsOutcome bad[] = {VS_OUTCOME_FAILED, VS_OUTCOME_CANCELLED};

    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        const VsJobMethod *m = cases[c].method;

        for (guint i = 0; i < m->n_steps; i++) {
            for (guint b = 0; b < G_N_ELEMENTS(bad); b++) {
                VsPhase next = vs_job_method_next_step(m, m->steps[i].phase, bad[b]);
                gboolean cancelled = bad[b] == VS_OUTCOME_CANCELLED;

                g_assert_cmpint(next, ==, VS_PHASE_UNDO);
                /* undo ends the job whether or not it completed */
                g_assert_cmpint(vs_job_method_next_step(m, next, VS_OUTCOME_OK), ==,
                                VS_PHASE_ENDED);
                g_assert_cmpint(vs_job_method_next_step(m, next, VS_OUTCOME_FAILED), ==,
                                VS_PHASE_ENDED);
                g_assert_cmpstr(vs_job_end_state(FALSE, cancelled, FALSE), ==,
                                cancelled ? VS_STATE_CANCELLED : VS_STATE_FAILED);
            }
        }
        /* Failed or cancelled before it began: nothing to undo. */
        g_assert_cmpint(vs_job_method_next_step(m, VS_PHASE_QUEUED, VS_OUTCOME_CANCELLED), ==,
                        VS_PHASE_ENDED);
        g_assert_cmpint(vs_job_method_next_step(m, VS_PHASE_QUEUED, VS_OUTCOME_FAILED), ==,
                        VS_PHASE_ENDED);
    }
}

/* From any step, any mix of outcomes reaches ENDED within a few moves. */
static void
test_every_walk_ends(void)
{
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        const VsJobMethod *m = cases[c].method;

        /* fail at the k-th move (k > steps: never) */
        for (guint k = 0; k <= m->n_steps + 1; k++) {
            VsPhase phase = VS_PHASE_QUEUED;
            guint moves = 0;

            while (phase != VS_PHASE_ENDED) {
                phase = vs_job_method_next_step(m, phase,
                                                moves == k ? VS_OUTCOME_FAILED : VS_OUTCOME_OK);
                g_assert_cmpuint(++moves, <=, m->n_steps + 2);
            }
        }
    }
}

/* A recovery job has no steps: it goes straight to undo and ends "interrupted". */
static void
test_recovery_only_undoes(void)
{
    const VsJobMethod *m = &vs_job_method_recovery;

    g_assert_cmpint(vs_job_method_next_step(m, VS_PHASE_QUEUED, VS_OUTCOME_OK), ==, VS_PHASE_UNDO);
    g_assert_cmpint(vs_job_method_next_step(m, VS_PHASE_UNDO, VS_OUTCOME_OK), ==, VS_PHASE_ENDED);
    g_assert_cmpstr(vs_job_end_state(FALSE, FALSE, TRUE), ==, VS_STATE_INTERRUPTED);
}

static VsStepFlags
flags_of(const VsJobMethod *m, VsPhase phase)
{
    const VsJobStep *s = vs_job_method_step(m, phase);

    g_assert_nonnull(s);
    return s->flags;
}

/* The behaviour the engine reads from the flags: which steps a cancel or a lost
 * connection ends at once, which run to their end, and which hold the disks offline
 * (the libvirt hook refuses a start then). */
static void
test_step_flags(void)
{
    for (guint c = 0; c < G_N_ELEMENTS(cases); c++) {
        const VsJobMethod *m = cases[c].method;
        gboolean offline = m == &vs_job_method_cold || m == &vs_job_method_offline;

        for (guint i = 0; i < m->n_steps; i++) {
            const VsJobStep *s = &m->steps[i];
            gboolean before_restore = s->phase == VS_PHASE_CLEAR_JOBS ||
                                      s->phase == VS_PHASE_PREPARE || s->phase == VS_PHASE_SAVE ||
                                      s->phase == VS_PHASE_EXTRACT;

            g_assert_cmpint(!!(s->flags & VS_STEP_DISKS_OFFLINE), ==, offline && before_restore);
            g_assert_cmpint(!!(s->flags & VS_STEP_NOT_CANCELLABLE), ==,
                            s->phase == VS_PHASE_CATALOG);
            g_assert_cmpint(!!(s->flags & VS_STEP_RUNS_TO_END), ==,
                            s->phase == VS_PHASE_FREEZE_WINDOW);
            g_assert_cmpint(!!(s->flags & VS_STEP_WAITS_EVENTS), ==,
                            s->phase == VS_PHASE_WAIT_READY);
        }
    }
    g_assert_true(flags_of(&vs_job_method_live, VS_PHASE_WAIT_READY) & VS_STEP_WAITS_EVENTS);
    /* Only a method that mirrors listens to block-job events. */
    g_assert_nonnull(vs_job_method_live.block_job);
    g_assert_null(vs_job_method_cold.block_job);
    g_assert_null(vs_job_method_rbd.block_job);
}

/* What undo may have to take back is named by the step that makes it. */
static void
test_undo_parts(void)
{
    struct {
        const VsJobMethod *m;
        VsUndoParts all;
    } expect[] = {
        {&vs_job_method_live, VS_UNDO_COPIES | VS_UNDO_RESUME | VS_UNDO_THAW | VS_UNDO_REDEFINE},
        {&vs_job_method_cold, VS_UNDO_RESTART},
        {&vs_job_method_offline, 0},
        {&vs_job_method_rbd, VS_UNDO_RESUME | VS_UNDO_THAW | VS_UNDO_RBD},
        {&vs_job_method_clone, VS_UNDO_RBD | VS_UNDO_CLONE},
    };

    for (guint e = 0; e < G_N_ELEMENTS(expect); e++) {
        VsUndoParts all = 0;

        for (guint i = 0; i < expect[e].m->n_steps; i++)
            all |= expect[e].m->steps[i].undo;
        g_assert_cmpuint(all, ==, expect[e].all);
    }
    g_assert_cmpuint(vs_job_method_step(&vs_job_method_cold, VS_PHASE_SAVE)->undo, ==,
                     VS_UNDO_RESTART);
    g_assert_cmpuint(vs_job_method_step(&vs_job_method_live, VS_PHASE_COPY)->undo, ==,
                     VS_UNDO_COPIES | VS_UNDO_REDEFINE);
    /* A clone's domain is undefined again from the step that defines it on. */
    g_assert_cmpuint(vs_job_method_step(&vs_job_method_clone, VS_PHASE_DEFINE)->undo, ==,
                     VS_UNDO_CLONE);
    g_assert_cmpuint(vs_job_method_step(&vs_job_method_clone, VS_PHASE_PREPARE)->undo, ==, 0);
}

static void
test_phase_words(void)
{
    g_assert_cmpstr(vs_phase_name(VS_PHASE_QUEUED), ==, "queued");
    g_assert_cmpstr(vs_phase_name(VS_PHASE_UNDO), ==, "cleanup");
    g_assert_cmpstr(vs_phase_name(VS_PHASE_DONE), ==, "done");
    g_assert_cmpstr(vs_phase_name(VS_PHASE_ENDED), ==, "ended");
}

static GVariant *
make_facts(gboolean with_note)
{
    GVariantBuilder b, disks;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "id", g_variant_new_string("20260101-000000-abcd"));
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string("nightly"));
    g_variant_builder_add(&b, "{sv}", "method", g_variant_new_string("rbd"));
    g_variant_builder_add(&b, "{sv}", "quiesced", g_variant_new_boolean(FALSE));
    if (with_note)
        g_variant_builder_add(&b, "{sv}", "quiesce-note", g_variant_new_string("no agent"));
    g_variant_builder_add(&b, "{sv}", "freeze-ms", g_variant_new_int64(12));
    g_variant_builder_add(&b, "{sv}", "copy-ms", g_variant_new_int64(34));
    g_variant_builder_add(&b, "{sv}", "flatten-ms", g_variant_new_int64(56));
    g_variant_builder_add(&b, "{sv}", "flattened", g_variant_new_boolean(TRUE));
    g_variant_builder_add(&b, "{sv}", "directory", g_variant_new_string("/snap/x"));
    g_variant_builder_init(&disks, G_VARIANT_TYPE("aa{sv}"));
    g_variant_builder_add_parsed(&disks, "{'target': <'vda'>, 'image': <'rbd://f/p/i/snap'>, "
                                         "'format': <'rbd'>, 'virtual-size': <uint64 1024>, "
                                         "'bytes': <uint64 0>, 'source': <'p/i'>, "
                                         "'rbd': <{'pool': <'p'>, 'flattened': <true>}>}");
    g_variant_builder_add(&b, "{sv}", "disks", g_variant_builder_end(&disks));
    return g_variant_ref_sink(g_variant_builder_end(&b));
}

/* metadata.json: the facts under their own names, in its order, without the facts that
 * only the Result shows. */
static void
test_metadata_view(void)
{
    g_autoptr(GVariant) facts = make_facts(FALSE);
    g_autoptr(JsonNode) node = vs_result_metadata(facts);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autofree char *text = NULL;

    json_generator_set_root(gen, node);
    text = json_generator_to_data(gen, NULL);
    g_assert_cmpstr(
        text, ==,
        "{\"id\":\"20260101-000000-abcd\",\"name\":\"nightly\",\"method\":\"rbd\","
        "\"quiesced\":false,\"freeze-ms\":12,\"disks\":[{\"target\":\"vda\","
        "\"image\":\"rbd://f/p/i/snap\",\"format\":\"rbd\",\"virtual-size\":1024,"
        "\"bytes\":0,\"source\":\"p/i\",\"rbd\":{\"pool\":\"p\",\"flattened\":true}}]}");
}

/* The Result: the same facts, some under the method's own names (rbd: snapshot-ms is
 * the copy, clone-ms the flatten), disks with their five fields. */
static void
test_dbus_view(void)
{
    g_autoptr(GVariant) facts = make_facts(TRUE);
    g_autoptr(GVariant) result =
        g_variant_ref_sink(vs_result_dbus(facts, vs_job_method_rbd.result_fields, 99));
    g_autoptr(GVariant) disks = NULL;
    g_autoptr(GVariant) disk = NULL;
    const char *s = NULL;
    gint64 x = 0;
    gboolean b = FALSE;

    g_assert_true(g_variant_lookup(result, "snapshot-id", "&s", &s));
    g_assert_cmpstr(s, ==, "20260101-000000-abcd");
    g_assert_false(g_variant_lookup(result, "id", "&s", &s));
    g_assert_true(g_variant_lookup(result, "directory", "&s", &s));
    g_assert_cmpstr(s, ==, "/snap/x");
    g_assert_true(g_variant_lookup(result, "quiesce-note", "&s", &s));
    g_assert_true(g_variant_lookup(result, "snapshot-ms", "x", &x));
    g_assert_cmpint(x, ==, 34);
    g_assert_true(g_variant_lookup(result, "clone-ms", "x", &x));
    g_assert_cmpint(x, ==, 56);
    g_assert_true(g_variant_lookup(result, "flattened", "b", &b));
    g_assert_true(b);
    g_assert_true(g_variant_lookup(result, "total-ms", "x", &x));
    g_assert_cmpint(x, ==, 99);
    g_assert_false(g_variant_lookup(result, "copy-ms", "x", &x));
    g_assert_false(g_variant_lookup(result, "pause-ms", "x", &x));
    disks = g_variant_lookup_value(result, "disks", G_VARIANT_TYPE("aa{sv}"));
    g_assert_nonnull(disks);
    g_assert_cmpuint(g_variant_n_children(disks), ==, 1);
    disk = g_variant_get_child_value(disks, 0);
    g_assert_cmpuint(g_variant_n_children(disk), ==, 5);
    g_assert_true(g_variant_lookup(disk, "format", "&s", &s));
    g_assert_cmpstr(s, ==, "rbd");
    g_assert_false(g_variant_lookup(disk, "source", "&s", &s));

    /* The cold view names the same flatten time extract-ms. */
    g_clear_pointer(&result, g_variant_unref);
    result = g_variant_ref_sink(vs_result_dbus(facts, vs_job_method_cold.result_fields, 1));
    g_assert_true(g_variant_lookup(result, "extract-ms", "x", &x));
    g_assert_cmpint(x, ==, 56);
    g_assert_false(g_variant_lookup(result, "flattened", "b", &b));
}

/* verify: check, deep-check (only with deep), record; it changes no domain, so no step
 * has anything of one to undo, and the record is never cut short. Failure and cancel at
 * each step go through undo (its scratch folder). */
static void
test_verify_steps(void)
{
    static const char *const phases[] = {"check", "deep-check", "record", NULL};
    const VsJobMethod *m = &vs_job_method_verify;
    VsPhase phase = VS_PHASE_QUEUED;

    g_assert_cmpstr(m->name, ==, "verify");
    g_assert_cmpuint(m->n_steps, ==, 3);
    for (guint i = 0; phases[i]; i++) {
        const VsJobStep *s;

        phase = vs_job_method_next_step(m, phase, VS_OUTCOME_OK);
        g_assert_cmpstr(vs_phase_name(phase), ==, phases[i]);
        s = vs_job_method_step(m, phase);
        g_assert_nonnull(s);
        g_assert_nonnull(s->thread);
        g_assert_cmpuint(s->undo, ==, 0);
        g_assert_cmpint(!!(s->flags & VS_STEP_NOT_CANCELLABLE), ==, phase == VS_PHASE_RECORD);
        g_assert_cmpint(s->flags & (VS_STEP_DISKS_OFFLINE | VS_STEP_WAITS_EVENTS), ==, 0);
        g_assert_cmpint(s->wanted != NULL, ==, phase == VS_PHASE_DEEP_CHECK);
        g_assert_cmpint(vs_job_method_next_step(m, phase, VS_OUTCOME_FAILED), ==, VS_PHASE_UNDO);
        g_assert_cmpint(vs_job_method_next_step(m, phase, VS_OUTCOME_CANCELLED), ==, VS_PHASE_UNDO);
    }
    g_assert_cmpint(vs_job_method_next_step(m, phase, VS_OUTCOME_OK), ==, VS_PHASE_DONE);
    g_assert_null(m->block_job);
}

/* revert: its phases in order; every step holds the disks (the hook refuses a start);
 * without a safety snapshot the write-back cannot be cancelled, with one it can (undo
 * writes the safety copy back); failure at any step goes to undo. */
static void
test_revert_steps(void)
{
    static const char *const with_safety[] = {"stop",    "prepare",    "extract",
                                              "catalog", "write-back", NULL};
    static const char *const without[] = {"stop", "prepare", "write-back", NULL};
    static const char *const rbd_with_safety[] = {"stop",    "prepare",    "clone",
                                                  "catalog", "write-back", NULL};
    const struct {
        const VsJobMethod *m;
        const char *const *phases;
    } revert_cases[] = {{&vs_job_method_revert, with_safety},
                        {&vs_job_method_revert_unsafe, without},
                        {&vs_job_method_revert_rbd, rbd_with_safety},
                        {&vs_job_method_revert_rbd_unsafe, without}};

    for (guint c = 0; c < G_N_ELEMENTS(revert_cases); c++) {
        const VsJobMethod *m = revert_cases[c].m;
        gboolean unsafe =
            m == &vs_job_method_revert_unsafe || m == &vs_job_method_revert_rbd_unsafe;

        g_assert_cmpstr(m->name, ==, "revert");
        g_assert_cmpuint(m->n_steps, ==, g_strv_length((char **)revert_cases[c].phases));
        for (guint i = 0; i < m->n_steps; i++) {
            const VsJobStep *s = &m->steps[i];

            g_assert_cmpstr(vs_phase_name(s->phase), ==, revert_cases[c].phases[i]);
            g_assert_true(s->flags & VS_STEP_DISKS_OFFLINE);
            g_assert_cmpint(!!(s->flags & VS_STEP_NOT_CANCELLABLE), ==,
                            unsafe && s->phase == VS_PHASE_WRITE_BACK);
            g_assert_cmpint(vs_job_method_next_step(m, s->phase, VS_OUTCOME_FAILED), ==,
                            VS_PHASE_UNDO);
            g_assert_cmpint(vs_job_method_next_step(m, s->phase, VS_OUTCOME_CANCELLED), ==,
                            VS_PHASE_UNDO);
        }
        g_assert_true(vs_job_method_step(m, VS_PHASE_WRITE_BACK)->undo & VS_UNDO_REVERT);
        g_assert_cmpint(vs_job_method_next_step(m, VS_PHASE_WRITE_BACK, VS_OUTCOME_OK), ==,
                        VS_PHASE_DONE);
    }
    g_assert_true(VS_UNDO_ALL & VS_UNDO_REVERT);
    /* An RBD safety snapshot is made and removed like an rbd snapshot. */
    g_assert_true(vs_job_method_step(&vs_job_method_revert_rbd, VS_PHASE_CLONE)->undo &
                  VS_UNDO_RBD);
    g_assert_nonnull(vs_job_method_revert_rbd.disk_facts);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/job-steps/tables-well-formed", test_tables_well_formed);
    g_test_add_func("/job-steps/ok-walks-in-order", test_ok_walks_in_order);
    g_test_add_func("/job-steps/failure-and-cancel-undo", test_failure_and_cancel_undo);
    g_test_add_func("/job-steps/every-walk-ends", test_every_walk_ends);
    g_test_add_func("/job-steps/recovery-only-undoes", test_recovery_only_undoes);
    g_test_add_func("/job-steps/step-flags", test_step_flags);
    g_test_add_func("/job-steps/undo-parts", test_undo_parts);
    g_test_add_func("/job-steps/phase-words", test_phase_words);
    g_test_add_func("/job-steps/verify", test_verify_steps);
    g_test_add_func("/job-steps/revert", test_revert_steps);
    g_test_add_func("/result/metadata-view", test_metadata_view);
    g_test_add_func("/result/dbus-view", test_dbus_view);
    return g_test_run();
}
