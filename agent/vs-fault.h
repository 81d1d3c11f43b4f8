/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fault injection for the crash and failure tests (meson -Dfault_injection=true only):
 * VIRTSNAP_FAULT=METHOD:PHASE:ACTION[:DELAY_MS] kills the agent, or fails the step, when a
 * job enters that step. The parser is always built, so that a unit test reads it. */
#pragma once

#include "vs-build-config.h"
#include "vs-job-method.h"

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
    VS_FAULT_KILL,  /* SIGKILL the agent DELAY_MS after the step begins */
    VS_FAULT_ERROR, /* the step fails: at once (DELAY_MS 0), or when its work ends */
} VsFaultAction;

typedef struct {
    char *method; /* a Job1.Method word, or "*" for any */
    VsPhase phase;
    VsFaultAction action;
    guint delay_ms;
    gboolean on_child; /* DELAY_MS "child": kill as the step's child process starts */
} VsFault;

/* Parses METHOD:PHASE:ACTION[:DELAY_MS]; PHASE is a step's Job1.Phase word. DELAY_MS may
 * be "child" for kill: the agent dies as soon as the step has started its qemu-img. */
gboolean vs_fault_parse(const char *text, VsFault *fault, GError **error);
void vs_fault_clear(VsFault *fault);

/* TRUE when @fault is meant for a job of @method in @phase. */
gboolean vs_fault_matches(const VsFault *fault, const char *method, VsPhase phase);

#ifdef VS_FAULT_INJECTION
/* Reads VIRTSNAP_FAULT once, at start; FALSE (the agent refuses to start) when malformed. */
gboolean vs_fault_arm(GError **error);

/* A step of a job of @method begins: a kill happens here (or is timed), an error at entry
 * is returned (the step must not run). Fires once per agent. */
GError *vs_fault_step_entered(const char *method, VsPhase phase);

/* That step's work ended well: the error to end it with instead, or NULL. */
GError *vs_fault_step_succeeded(const char *method, VsPhase phase);

/* A step's child process @pid has started (and is journaled). */
void vs_fault_child_started(const char *method, VsPhase phase, GPid pid);
#endif

G_END_DECLS
