/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Our child processes (qemu-img) die with the agent, are journaled while they run for a
 * job, and a restarted agent ends one that lived on anyway before it repairs: a leftover
 * qemu-img holds the disks' locks, and the domain could not start again. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Told of a child: @running TRUE once it is spawned, FALSE once it has ended. Called on
 * the thread that runs it. */
typedef void (*VsChildFunc)(GPid pid, gboolean running, gpointer data);

/* A launcher whose children get SIGKILL when the agent dies (PR_SET_PDEATHSIG). The
 * signal follows the *thread* that forked, not the process: spawn only from a thread that
 * outlives the child -- the main thread, or a worker that waits for the child. */
GSubprocessLauncher *vs_child_launcher_new(GSubprocessFlags flags);

/* @proc's pid (0 once it has ended). */
GPid vs_child_pid(GSubprocess *proc);

/* /proc/PID/stat field 22, the start time in clock ticks since boot; 0: no such process. */
guint64 vs_child_start_time(GPid pid);

/* Ends the process @pid if it is still the one that started at @start and its command
 * line names @folder, and waits (a few seconds at most) until it is gone. TRUE when there
 * is no such process any more. */
gboolean vs_child_end_leftover(GPid pid, guint64 start, const char *folder);
/* The same; the command line must name one of @names (a folder, or a disk's image). */
gboolean vs_child_end_leftover_names(GPid pid, guint64 start, const char *const *names);

/* A VsChildFunc that journals a job's children (@data: the VsJob). */
void vs_job_child_note(GPid pid, gboolean running, gpointer data);

G_END_DECLS
