/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fault injection (see vs-fault.h): the crash matrix of tests/integration/test_faults.py
 * kills the agent or fails a step at every step of every method, then checks that a
 * restarted agent puts everything back. */
#include "vs-fault.h"
#include "vs-error.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static gboolean
is_step_phase(VsPhase phase)
{
    return phase > VS_PHASE_QUEUED && phase < VS_PHASE_DONE;
}

gboolean
vs_fault_parse(const char *text, VsFault *fault, GError **error)
{
    g_auto(GStrv) parts = g_strsplit(text ? text : "", ":", -1);
    guint n = g_strv_length(parts);
    guint64 delay = 0;
    VsPhase phase;

    memset(fault, 0, sizeof(*fault));
    if (n < 3 || n > 4 || !*parts[0]) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "'%s': expected METHOD:PHASE:ACTION[:DELAY_MS]", text ? text : "");
        return FALSE;
    }
    for (phase = VS_PHASE_QUEUED; phase <= VS_PHASE_ENDED; phase++) {
        if (is_step_phase(phase) && strcmp(parts[1], vs_phase_name(phase)) == 0)
            break;
    }
    if (phase > VS_PHASE_ENDED) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "'%s': no step is called '%s'",
                    text, parts[1]);
        return FALSE;
    }
    if (strcmp(parts[2], "kill") != 0 && strcmp(parts[2], "error") != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "'%s': action '%s' is not kill or error", text, parts[2]);
        return FALSE;
    }
    if (n == 4 && strcmp(parts[3], "child") == 0 && strcmp(parts[2], "kill") == 0) {
        fault->on_child = TRUE;
    } else if (n == 4 &&
               (!g_ascii_string_to_unsigned(parts[3], 10, 0, 600000, &delay, NULL) || !*parts[3])) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "'%s': delay '%s' is not a number of milliseconds (0 to 600000)", text,
                    parts[3]);
        return FALSE;
    }
    fault->method = g_strdup(parts[0]);
    fault->phase = phase;
    fault->action = strcmp(parts[2], "kill") == 0 ? VS_FAULT_KILL : VS_FAULT_ERROR;
    fault->delay_ms = (guint)delay;
    return TRUE;
}

void
vs_fault_clear(VsFault *fault)
{
    g_clear_pointer(&fault->method, g_free);
}

gboolean
vs_fault_matches(const VsFault *fault, const char *method, VsPhase phase)
{
    return fault->method && fault->phase == phase &&
           (strcmp(fault->method, "*") == 0 || g_strcmp0(fault->method, method) == 0);
}

#ifdef VS_FAULT_INJECTION

static VsFault armed;
static gboolean fired;     /* once per agent: the job after it runs as it should */
static gboolean error_due; /* an error at the end of the step that fired */
static gboolean child_due; /* a kill when the step that fired starts its child */

gboolean
vs_fault_arm(GError **error)
{
    const char *text = g_getenv("VIRTSNAP_FAULT");

    if (!text || !*text)
        return TRUE;
    if (!vs_fault_parse(text, &armed, error)) {
        g_prefix_error(error, "VIRTSNAP_FAULT: ");
        return FALSE;
    }
    g_warning("fault injection armed: %s", text);
    return TRUE;
}

static void
kill_now(void)
{
    g_warning("fault injection: SIGKILL in phase %s", vs_phase_name(armed.phase));
    kill(getpid(), SIGKILL);
}

static gboolean
kill_later(gpointer data)
{
    kill_now();
    return G_SOURCE_REMOVE;
}

static GError *
injected(void)
{
    g_warning("fault injection: error in phase %s", vs_phase_name(armed.phase));
    return g_error_new(VS_ERROR, VS_ERROR_IO, "injected fault in phase %s",
                       vs_phase_name(armed.phase));
}

GError *
vs_fault_step_entered(const char *method, VsPhase phase)
{
    if (fired || !vs_fault_matches(&armed, method, phase))
        return NULL;
    fired = TRUE;
    if (armed.on_child) {
        child_due = TRUE;
        return NULL;
    }
    if (armed.action == VS_FAULT_KILL) {
        /* A delay lets the step's child process or libvirt job be in flight; the main
         * loop runs on while the step works in its thread. */
        if (armed.delay_ms == 0)
            kill_now();
        g_timeout_add(armed.delay_ms, kill_later, NULL);
        return NULL;
    }
    if (armed.delay_ms == 0)
        return injected();
    error_due = TRUE; /* after the step's work, so that its real undo has something to do */
    return NULL;
}

GError *
vs_fault_step_succeeded(const char *method, VsPhase phase)
{
    if (!error_due || !vs_fault_matches(&armed, method, phase))
        return NULL;
    error_due = FALSE;
    return injected();
}

void
vs_fault_child_started(const char *method, VsPhase phase, GPid pid)
{
    if (!child_due || !vs_fault_matches(&armed, method, phase))
        return;
    /* The pid in the log lets a test check that the child died with us. It is stopped
     * first, as if its work had far to go (a short one could end by itself before the
     * test looks): then only PR_SET_PDEATHSIG's SIGKILL ends it. */
    g_warning("fault injection: SIGKILL in phase %s with child %d running", vs_phase_name(phase),
              (int)pid);
    kill(pid, SIGSTOP);
    kill(getpid(), SIGKILL);
}

#endif
