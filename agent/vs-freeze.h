/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The freeze window and its watchdog: the guest's whole pause around the instant a
 * method takes its point-in-time copy of every disk. */
#pragma once

#include "vs-job-method.h"

#include <libvirt/libvirt.h>

G_BEGIN_DECLS

/* Takes the cut of every disk (stops the mirrors, makes the snapshots); the first error
 * goes to @error. It runs with the guest frozen or paused. */
typedef gboolean (*VsFreezeCutFunc)(VsJob *job, GError **error);

/* Freeze (per quiesce), @cut, thaw, journaled; in one worker thread with no main-loop hop
 * inside. A watchdog thaws the guest if it stays frozen beyond the freeze limit. @t_start
 * gets the instant the window opened. */
gboolean vs_freeze_window(VsJob *job, VsFreezeCutFunc cut, gint64 *t_start, GError **error);

/* Thaws @dom in a thread of its own, again and again while its guest agent does not answer
 * (for up to 10 minutes): a thaw that does not get through must not leave the guest frozen.
 * Any thread. */
void vs_freeze_keep_thawing(VsJob *job, virDomainPtr dom);

/* Whether libvirt error @code means a guest agent that did not answer (worth trying again). */
gboolean vs_freeze_agent_hangs(int code);

G_END_DECLS
