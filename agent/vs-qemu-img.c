/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs qemu-img without blocking the main loop. Both output streams are merged so
 * that one async read sees progress and error text in order. */
#include "vs-qemu-img.h"
#include "vs-error.h"
#include "vs-build-config.h"
#include "vs-secret.h"

#include <string.h>

typedef struct {
    GSubprocess *proc;
    GString *out;
    char buf[4096];
    VsProgressFunc progress;
    gpointer progress_data;
    GCancellable *cancellable;
    gulong cancel_id;
    gboolean read_done;
    gboolean wait_done;
    GError *wait_error;
    char *command;
    VsChildFunc child;
    gpointer child_data;
    GPid pid;
} Run;

static void
run_free(gpointer p)
{
    Run *run = p;

    if (run->cancel_id)
        g_cancellable_disconnect(run->cancellable, run->cancel_id);
    g_clear_object(&run->cancellable);
    g_clear_object(&run->proc);
    g_string_free(run->out, TRUE);
    g_clear_error(&run->wait_error);
    g_free(run->command);
    g_free(run);
}

double
vs_qemu_img_parse_progress(const char *text, gsize len)
{
    double best = -1;

    for (gsize i = 0; i < len; i++) {
        char *end = NULL;
        double value;

        if (text[i] != '(')
            continue;
        value = g_ascii_strtod(text + i + 1, &end);
        if (end && end != text + i + 1 && (gsize)(end - text) + 6 <= len &&
            strncmp(end, "/100%)", 6) == 0 && value >= 0 && value <= 100)
            best = value / 100.0;
    }
    return best;
}

char *
vs_qemu_img_without_paths(const char *line)
{
    GString *s = g_string_new(NULL);

    for (const char *p = line; *p;) {
        const char *end, *base;

        if (*p != '/' || (p > line && !strchr(" '\"(", p[-1]))) {
            g_string_append_c(s, *p++);
            continue;
        }
        end = p + strcspn(p, " :'\")");
        base = p;
        for (const char *q = p; q < end; q++) {
            if (*q == '/' && q + 1 < end)
                base = q + 1;
        }
        g_string_append_len(s, base, end - base);
        p = end;
    }
    return g_string_free(s, FALSE);
}

/* The last meaningful line of qemu-img's output: its error message. */
static char *
last_message(const char *out)
{
    g_auto(GStrv) lines = g_strsplit_set(out, "\r\n", -1);
    const char *last = NULL;

    for (guint i = 0; lines[i]; i++) {
        g_strstrip(lines[i]);
        if (*lines[i] && vs_qemu_img_parse_progress(lines[i], strlen(lines[i])) < 0)
            last = lines[i];
    }
    return last ? vs_qemu_img_without_paths(last) : g_strdup("no message");
}

/* What a failed qemu-img says, as our code: a full (or over-quota) target is NoSpace, the
 * same for the async and the sync run; anything else is IO. */
static VsError
failure_code(const char *out)
{
    return out && (strstr(out, "No space left on device") || strstr(out, "Disk quota exceeded"))
               ? VS_ERROR_NO_SPACE
               : VS_ERROR_IO;
}

static void
maybe_complete(GTask *task)
{
    Run *run = g_task_get_task_data(task);
    g_autofree char *msg = NULL;

    if (!run->read_done || !run->wait_done)
        return;
    if (run->cancellable && g_cancellable_is_cancelled(run->cancellable)) {
        g_task_return_new_error(task, VS_ERROR, VS_ERROR_CANCELLED, "%s: cancelled", run->command);
    } else if (run->wait_error) {
        g_task_return_new_error(task, VS_ERROR, VS_ERROR_IO, "%s: %s", run->command,
                                run->wait_error->message);
    } else if (!g_subprocess_get_successful(run->proc)) {
        msg = last_message(run->out->str);
        g_task_return_new_error(task, VS_ERROR, failure_code(run->out->str), "%s failed: %s",
                                run->command, msg);
    } else {
        g_task_return_pointer(task, g_strdup(run->out->str), g_free);
    }
    g_object_unref(task);
}

static void
on_read(GObject *source, GAsyncResult *result, gpointer data)
{
    GTask *task = data;
    Run *run = g_task_get_task_data(task);
    gssize n = g_input_stream_read_finish(G_INPUT_STREAM(source), result, NULL);

    if (n <= 0) {
        run->read_done = TRUE;
        maybe_complete(task);
        return;
    }
    g_string_append_len(run->out, run->buf, n);
    if (run->progress) {
        double fraction = vs_qemu_img_parse_progress(run->buf, n);

        if (fraction >= 0)
            run->progress(fraction, run->progress_data);
    }
    g_input_stream_read_async(G_INPUT_STREAM(source), run->buf, sizeof(run->buf),
                              G_PRIORITY_DEFAULT, NULL, on_read, task);
}

static void
on_wait(GObject *source, GAsyncResult *result, gpointer data)
{
    GTask *task = data;
    Run *run = g_task_get_task_data(task);

    g_subprocess_wait_finish(G_SUBPROCESS(source), result, &run->wait_error);
    if (run->child && run->pid)
        run->child(run->pid, FALSE, run->child_data);
    run->wait_done = TRUE;
    maybe_complete(task);
}

static void
on_cancelled(GCancellable *cancellable, gpointer data)
{
    GSubprocess *proc = data;

    g_subprocess_force_exit(proc);
}

/* qemu-img, its subcommand, the secrets' --object options (their pipes go to @launcher),
 * the rest of @args. */
static GStrv
secret_argv(const char *const *args, VsSecret *const *secrets, GSubprocessLauncher *launcher,
            GError **error)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);

    g_ptr_array_add(argv, g_strdup(VS_QEMU_IMG));
    g_ptr_array_add(argv, g_strdup(args[0]));
    if (!vs_secret_pass(secrets, argv, launcher, error))
        return NULL;
    for (guint i = 1; args[i]; i++)
        g_ptr_array_add(argv, g_strdup(args[i]));
    g_ptr_array_add(argv, NULL);
    return (GStrv)g_ptr_array_free(g_steal_pointer(&argv), FALSE);
}

void
vs_qemu_img_run_async(const char *const *args, VsProgressFunc progress, gpointer progress_data,
                      GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
    vs_qemu_img_run_async_full(args, NULL, NULL, NULL, progress, progress_data, cancellable,
                               callback, user_data);
}

void
vs_qemu_img_run_async_secrets(const char *const *args, VsSecret *const *secrets,
                              VsProgressFunc progress, gpointer progress_data,
                              GCancellable *cancellable, GAsyncReadyCallback callback,
                              gpointer user_data)
{
    vs_qemu_img_run_async_full(args, secrets, NULL, NULL, progress, progress_data, cancellable,
                               callback, user_data);
}

void
vs_qemu_img_run_async_full(const char *const *args, VsSecret *const *secrets, VsChildFunc child,
                           gpointer child_data, VsProgressFunc progress, gpointer progress_data,
                           GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data)
{
    GTask *task = g_task_new(NULL, NULL, callback, user_data);
    g_autoptr(GSubprocessLauncher) launcher =
        vs_child_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE |
                              G_SUBPROCESS_FLAGS_STDIN_INHERIT);
    g_auto(GStrv) argv = NULL;
    GError *error = NULL;
    Run *run = g_new0(Run, 1);

    run->out = g_string_new(NULL);
    run->progress = progress;
    run->progress_data = progress_data;
    run->command = g_strdup_printf("qemu-img %s", args[0]);
    g_task_set_task_data(task, run, run_free);
    if (!(argv = secret_argv(args, secrets, launcher, &error))) {
        g_task_return_error(task, error);
        g_object_unref(task);
        return;
    }

    if (g_log_get_debug_enabled()) {
        g_autofree char *line = g_strjoinv(" ", argv);

        g_debug("running %s", line);
    }
    run->proc = g_subprocess_launcher_spawnv(launcher, (const char *const *)argv, &error);
    if (!run->proc) {
        g_task_return_new_error(task, VS_ERROR, VS_ERROR_IO, "cannot run %s: %s", VS_QEMU_IMG,
                                error->message);
        g_error_free(error);
        g_object_unref(task);
        return;
    }
    run->pid = vs_child_pid(run->proc);
    run->child = child;
    run->child_data = child_data;
    if (child && run->pid)
        child(run->pid, TRUE, child_data);
    if (cancellable) {
        run->cancellable = g_object_ref(cancellable);
        run->cancel_id =
            g_cancellable_connect(cancellable, G_CALLBACK(on_cancelled), run->proc, NULL);
    }
    /* Two callbacks share the task; the last one to finish completes it. */
    g_object_ref(task);
    g_input_stream_read_async(g_subprocess_get_stdout_pipe(run->proc), run->buf, sizeof(run->buf),
                              G_PRIORITY_DEFAULT, NULL, on_read, task);
    g_subprocess_wait_async(run->proc, NULL, on_wait, task);
}

char *
vs_qemu_img_run_finish(GAsyncResult *result, GError **error)
{
    return g_task_propagate_pointer(G_TASK(result), error);
}

char *
vs_qemu_img_run_sync(const char *const *args, GError **error)
{
    return vs_qemu_img_run_sync_full(args, NULL, NULL, NULL, error);
}

char *
vs_qemu_img_run_sync_secrets(const char *const *args, VsSecret *const *secrets, GError **error)
{
    return vs_qemu_img_run_sync_full(args, secrets, NULL, NULL, error);
}

/* The calling (worker) thread waits for the child: it outlives it, as PDEATHSIG needs. */
char *
vs_qemu_img_run_sync_full(const char *const *args, VsSecret *const *secrets, VsChildFunc child,
                          gpointer child_data, GError **error)
{
    g_autoptr(GSubprocessLauncher) launcher =
        vs_child_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE);
    g_auto(GStrv) argv = NULL;
    g_autoptr(GSubprocess) proc = NULL;
    g_autofree char *out = NULL;
    g_autofree char *msg = NULL;
    g_autoptr(GError) local = NULL;
    GPid pid = 0;
    gboolean ok;

    if (!(argv = secret_argv(args, secrets, launcher, error)))
        return NULL;
    proc = g_subprocess_launcher_spawnv(launcher, (const char *const *)argv, &local);
    if (proc && child && (pid = vs_child_pid(proc)))
        child(pid, TRUE, child_data);
    ok = proc && g_subprocess_communicate_utf8(proc, NULL, NULL, &out, NULL, &local);
    if (pid)
        child(pid, FALSE, child_data);
    if (!ok) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "cannot run %s: %s", VS_QEMU_IMG, local->message);
        return NULL;
    }
    if (!g_subprocess_get_successful(proc)) {
        msg = last_message(out ? out : "");
        g_set_error(error, VS_ERROR, failure_code(out), "qemu-img %s failed: %s", args[0], msg);
        return NULL;
    }
    return g_steal_pointer(&out);
}
