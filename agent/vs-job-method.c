/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure part of the job engine: phase words and the one function that decides what
 * follows a step. No I/O, so that a unit test walks every method through it. */
#include "vs-job-method.h"
#include "vs-names.h"

static const char *const phase_names[] = {
    [VS_PHASE_QUEUED] = VS_PHASE_NAME_QUEUED,
    [VS_PHASE_CLEAR_JOBS] = VS_PHASE_NAME_CLEAR_JOBS,
    [VS_PHASE_PREPARE] = VS_PHASE_NAME_PREPARE,
    [VS_PHASE_SAVE] = VS_PHASE_NAME_SAVE,
    [VS_PHASE_COPY] = VS_PHASE_NAME_COPY,
    [VS_PHASE_WAIT_READY] = VS_PHASE_NAME_WAIT_READY,
    [VS_PHASE_FREEZE_WINDOW] = VS_PHASE_NAME_FREEZE_WINDOW,
    [VS_PHASE_REDEFINE] = VS_PHASE_NAME_REDEFINE,
    [VS_PHASE_FLATTEN] = VS_PHASE_NAME_FLATTEN,
    [VS_PHASE_EXTRACT] = VS_PHASE_NAME_EXTRACT,
    [VS_PHASE_CLONE] = VS_PHASE_NAME_CLONE,
    [VS_PHASE_RESTORE] = VS_PHASE_NAME_RESTORE,
    [VS_PHASE_OVERLAY] = VS_PHASE_NAME_OVERLAY,
    [VS_PHASE_DEFINE] = VS_PHASE_NAME_DEFINE,
    [VS_PHASE_START] = VS_PHASE_NAME_START,
    [VS_PHASE_CHECK] = VS_PHASE_NAME_CHECK,
    [VS_PHASE_DEEP_CHECK] = VS_PHASE_NAME_DEEP_CHECK,
    [VS_PHASE_RECORD] = VS_PHASE_NAME_RECORD,
    [VS_PHASE_STOP] = VS_PHASE_NAME_STOP,
    [VS_PHASE_WRITE_BACK] = VS_PHASE_NAME_WRITE_BACK,
    [VS_PHASE_CATALOG] = VS_PHASE_NAME_CATALOG,
    [VS_PHASE_DONE] = VS_PHASE_NAME_DONE,
    [VS_PHASE_UNDO] = VS_PHASE_NAME_UNDO,
    [VS_PHASE_ENDED] = VS_PHASE_NAME_ENDED,
};
G_STATIC_ASSERT(G_N_ELEMENTS(phase_names) == VS_PHASE_ENDED + 1);

const char *
vs_phase_name(VsPhase phase)
{
    g_return_val_if_fail(phase <= VS_PHASE_ENDED, "");
    return phase_names[phase];
}

static gint
step_index(const VsJobMethod *method, VsPhase phase)
{
    for (guint i = 0; i < method->n_steps; i++) {
        if (method->steps[i].phase == phase)
            return (gint)i;
    }
    return -1;
}

const VsJobStep *
vs_job_method_step(const VsJobMethod *method, VsPhase phase)
{
    gint i = step_index(method, phase);

    return i < 0 ? NULL : &method->steps[i];
}

VsPhase
vs_job_method_next_step(const VsJobMethod *method, VsPhase phase, VsOutcome outcome)
{
    gint i;

    switch (phase) {
    case VS_PHASE_QUEUED:
        if (outcome != VS_OUTCOME_OK)
            return VS_PHASE_ENDED; /* nothing was done: nothing to undo */
        return method->n_steps ? method->steps[0].phase : VS_PHASE_UNDO;
    case VS_PHASE_DONE:
    case VS_PHASE_UNDO:
    case VS_PHASE_ENDED:
        return VS_PHASE_ENDED;
    default:
        break;
    }
    i = step_index(method, phase);
    g_return_val_if_fail(i >= 0, VS_PHASE_UNDO);
    if (outcome != VS_OUTCOME_OK)
        return VS_PHASE_UNDO;
    return (guint)i + 1 < method->n_steps ? method->steps[i + 1].phase : VS_PHASE_DONE;
}

const char *
vs_job_end_state(gboolean done, gboolean cancelled, gboolean recovery)
{
    if (recovery)
        return VS_STATE_INTERRUPTED;
    if (done)
        return VS_STATE_SUCCEEDED;
    return cancelled ? VS_STATE_CANCELLED : VS_STATE_FAILED;
}
