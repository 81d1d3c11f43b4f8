/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The freeze window and its watchdog: the guest's whole pause around the instant a
 * method takes its point-in-time copy of every disk. */
#pragma once

#include "vs-job-method.h"

G_BEGIN_DECLS

/* Takes the cut of every disk (stops the mirrors, makes the snapshots); the first error
 * goes to @error. It runs with the guest frozen or paused. */
typedef gboolean (*VsFreezeCutFunc)(VsJob *job, GError **error);

/* Freeze (per quiesce), @cut, thaw, journaled; in one worker thread with no main-loop hop
 * inside. A watchdog thaws the guest if it stays frozen beyond the freeze limit. @t_start
 * gets the instant the window opened. */
gboolean vs_freeze_window(VsJob *job, VsFreezeCutFunc cut, gint64 *t_start, GError **error);

G_END_DECLS
