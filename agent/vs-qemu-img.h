/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* qemu-img as an async subprocess: progress parsed from -p, cancel by killing it. */
#pragma once

#include "vs-child.h"
#include "vs-secret.h"

#include <gio/gio.h>

G_BEGIN_DECLS

/* @fraction: 0.0 .. 1.0, called on the main loop. */
typedef void (*VsProgressFunc)(double fraction, gpointer data);

/* Runs qemu-img with @args (not including the program). Output of both streams is
 * collected; "(NN.NN/100%)" updates go to @progress. Cancelling @cancellable kills the
 * process and the result is VS_ERROR_CANCELLED. A failure is VS_ERROR_IO (or
 * VS_ERROR_NO_SPACE) with qemu-img's own message. */
void vs_qemu_img_run_async(const char *const *args, VsProgressFunc progress, gpointer progress_data,
                           GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data);
/* The same with @secrets (NULL-terminated, may be NULL) passed to qemu-img as objects
 * vs_secret_id(0), (1): through pipes, never files or argv (vs-secret.h). */
void vs_qemu_img_run_async_secrets(const char *const *args, VsSecret *const *secrets,
                                   VsProgressFunc progress, gpointer progress_data,
                                   GCancellable *cancellable, GAsyncReadyCallback callback,
                                   gpointer user_data);
/* The same; @child is told of the qemu-img process (to journal it). Call it on the main
 * thread: the child dies with the thread that spawned it (vs-child.h). */
void vs_qemu_img_run_async_full(const char *const *args, VsSecret *const *secrets,
                                VsChildFunc child, gpointer child_data, VsProgressFunc progress,
                                gpointer progress_data, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data);
/* Returns qemu-img's output (stdout and stderr) on success. */
char *vs_qemu_img_run_finish(GAsyncResult *result, GError **error);

/* The same, blocking (for worker threads and recovery). */
char *vs_qemu_img_run_sync(const char *const *args, GError **error);
char *vs_qemu_img_run_sync_secrets(const char *const *args, VsSecret *const *secrets,
                                   GError **error);
char *vs_qemu_img_run_sync_full(const char *const *args, VsSecret *const *secrets,
                                VsChildFunc child, gpointer child_data, GError **error);

/* Parses the last "(NN.NN/100%)" in @text; -1 when none. */
double vs_qemu_img_parse_progress(const char *text, gsize len);

/* @line with every absolute path cut to its last part ("qemu-img: /srv/s/.x.partial/vda.qcow2:
 * ..." -> "qemu-img: vda.qcow2: ..."): qemu-img's message reaches D-Bus callers, who name
 * snapshots, never paths. */
char *vs_qemu_img_without_paths(const char *line);

G_END_DECLS
