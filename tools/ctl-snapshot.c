/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl snapshot, jobs, job, wait and cancel: starting snapshot jobs and following
 * them through their org.virtsnap.Job1 objects. */
#include <glib-unix.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "vs-error.h"
#include "vs-names.h"

/* The object path of the job @arg names (its number or its path), or NULL. */
static char *
job_path_for(const char *arg)
{
    guint64 id;

    if (g_str_has_prefix(arg, VS_JOB_PATH_PREFIX) && g_variant_is_object_path(arg))
        return g_strdup(arg);
    if (g_ascii_string_to_unsigned(arg, 10, 1, G_MAXUINT32, &id, NULL))
        return g_strdup_printf(VS_JOB_PATH_PREFIX "%" G_GUINT64_FORMAT, id);
    return NULL;
}

static char *
job_path_or_usage(Ctl *ctl, const Invocation *inv, int *code)
{
    char *path = job_path_for(inv_arg(inv, 0));

    if (!path)
        *code = ctl_usage_error(ctl->command, "'%s' is not a job ID (a number or an object path)",
                                inv_arg(inv, 0));
    return path;
}

static gboolean
state_is_final(const char *state)
{
    return g_strcmp0(state, VS_STATE_SUCCEEDED) == 0 || g_strcmp0(state, VS_STATE_FAILED) == 0 ||
           g_strcmp0(state, VS_STATE_CANCELLED) == 0 || g_strcmp0(state, VS_STATE_INTERRUPTED) == 0;
}

/* The exit code of an ended job: its error name mapped as a call's error would be. */
static int
exit_code_for_job(VsDbusJob1 *job)
{
    const char *state = vs_dbus_job1_get_state(job);
    g_autoptr(GError) error = NULL;
    int code;

    if (g_strcmp0(state, VS_STATE_SUCCEEDED) == 0)
        return EXIT_OK;
    if (g_strcmp0(state, VS_STATE_CANCELLED) == 0)
        return EXIT_CANCELLED;
    error = g_error_new_literal(VS_ERROR, vs_error_from_dbus_name(vs_dbus_job1_get_error_name(job)),
                                "job");
    code = ctl_exit_code(error);
    return code == EXIT_OK ? EXIT_FAILED : code;
}

typedef struct {
    Ctl *ctl;
    GMainLoop *loop;
    VsDbusJob1 *job; /* its properties reloaded on every change */
    gboolean tty;
    gboolean cancel_sent;
    gboolean ended;
    GError *error;
} Waiter;

static void
waiter_refresh(Waiter *w)
{
    if (!ctl_job_load(w->job, &w->error)) {
        g_main_loop_quit(w->loop);
        return;
    }
    if (w->tty && !w->ctl->json)
        ctl_print_progress(w->job);
    if (state_is_final(vs_dbus_job1_get_state(w->job))) {
        w->ended = TRUE;
        g_main_loop_quit(w->loop);
    }
}

static void
on_job_changed(GDBusConnection *bus, const char *sender, const char *path, const char *iface,
               const char *signal, GVariant *params, gpointer data)
{
    waiter_refresh(data);
}

static gboolean
on_wait_interrupt(gpointer data)
{
    Waiter *w = data;

    if (w->cancel_sent) {
        g_main_loop_quit(w->loop);
        return G_SOURCE_REMOVE;
    }
    g_printerr("\nvirtsnapctl: cancelling %s (Ctrl-C again to stop waiting)\n",
               g_dbus_proxy_get_object_path(G_DBUS_PROXY(w->job)));
    w->cancel_sent = TRUE;
    vs_dbus_job1_call_cancel(w->job, NULL, NULL, NULL);
    return G_SOURCE_CONTINUE;
}

/* Waits for @path to end; prints its progress on a terminal and its outcome at the end. */
int
ctl_wait_for_job(Ctl *ctl, const char *path)
{
    g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
    g_autoptr(VsDbusJob1) job = NULL;
    g_autoptr(GError) error = NULL;
    Waiter w = {ctl, loop, NULL, isatty(STDOUT_FILENO), FALSE, FALSE, NULL};
    guint sub, sig_int, sig_term;
    int code;

    if (!(job = ctl_job_new(ctl, path, &error)))
        return ctl_fail(error);
    w.job = job;
    /* Every change reloads the whole job, so that the end is read with its result. */
    sub = g_dbus_connection_signal_subscribe(
        ctl->bus, VS_BUS_NAME, "org.freedesktop.DBus.Properties", "PropertiesChanged", path,
        VS_JOB_INTERFACE, G_DBUS_SIGNAL_FLAGS_NONE, on_job_changed, &w, NULL);
    sig_int = g_unix_signal_add(SIGINT, on_wait_interrupt, &w);
    sig_term = g_unix_signal_add(SIGTERM, on_wait_interrupt, &w);
    waiter_refresh(&w); /* it may have ended already */
    if (!w.ended && !w.error)
        g_main_loop_run(loop);
    g_dbus_connection_signal_unsubscribe(ctl->bus, sub);
    g_source_remove(sig_int);
    g_source_remove(sig_term);
    if (w.tty && !ctl->json)
        g_print("\n");
    if (w.error) {
        error = w.error;
        return ctl_fail(error);
    }
    if (!w.ended) {
        g_printerr("virtsnapctl: stopped waiting; the job goes on\n");
        return EXIT_FAILED;
    }
    ctl_print_job(job, ctl->json);
    code = exit_code_for_job(job);
    if (code != EXIT_OK && !ctl->json)
        ctl_print_job_error(job);
    return code;
}

/* "512", "64K", "50M", "1G" (binary units). */
gboolean
ctl_parse_size(const char *text, guint64 *out)
{
    char *end = NULL;
    guint64 value = g_ascii_strtoull(text, &end, 10);
    guint shift = 0;

    if (end == text)
        return FALSE;
    switch (g_ascii_toupper(*end)) {
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    case '\0':
        break;
    default:
        return FALSE;
    }
    if (*end && end[1])
        return FALSE;
    if (value > (G_MAXUINT64 >> shift))
        return FALSE;
    *out = value << shift;
    return TRUE;
}

/* Command-line options passed on to CreateSnapshot as they are, in the order sent. */
static const struct {
    const char *option;
    const char *key;
    gboolean flag; /* a TRUE boolean when given, else the string */
} passed_options[] = {
    {"method", VS_OPT_METHOD, FALSE}, {"quiesce", VS_OPT_QUIESCE, FALSE},
    {"format", VS_OPT_FORMAT, FALSE}, {"copy", VS_OPT_COPY, FALSE},
    {"name", VS_OPT_NAME, FALSE},     {"compress", VS_OPT_COMPRESS, TRUE},
    {"force", VS_OPT_FORCE, TRUE},    {"legacy-undefine", VS_OPT_LEGACY_UNDEFINE, TRUE},
};

int
ctl_snapshot(Ctl *ctl, const Invocation *inv)
{
    const char *const *disks = inv_list(inv, "disk");
    const char *bandwidth = inv_value(inv, "bandwidth");
    gboolean flatten = inv_flag(inv, "flatten"), no_flatten = inv_flag(inv, "no-flatten");
    guint64 bandwidth_bytes = 0;
    g_autoptr(GError) error = NULL;
    g_autofree char *path = NULL;
    GVariantBuilder b;

    if (bandwidth && !ctl_parse_size(bandwidth, &bandwidth_bytes))
        return ctl_usage_error(ctl->command, "--bandwidth: '%s' is not a rate like 50M", bandwidth);
    if (flatten && no_flatten)
        return ctl_usage_error(ctl->command, "--flatten and --no-flatten exclude each other");

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    if (disks)
        g_variant_builder_add(&b, "{sv}", VS_OPT_DISKS, g_variant_new_strv(disks, -1));
    for (guint i = 0; i < G_N_ELEMENTS(passed_options); i++) {
        const char *value = inv_value(inv, passed_options[i].option);

        if (value)
            g_variant_builder_add(&b, "{sv}", passed_options[i].key,
                                  passed_options[i].flag ? g_variant_new_boolean(TRUE)
                                                         : g_variant_new_string(value));
    }
    if (bandwidth_bytes)
        g_variant_builder_add(&b, "{sv}", VS_OPT_BANDWIDTH, g_variant_new_uint64(bandwidth_bytes));
    if (flatten || no_flatten)
        g_variant_builder_add(&b, "{sv}", VS_OPT_FLATTEN, g_variant_new_boolean(flatten));

    if (!vs_dbus_agent1_call_create_snapshot_sync(ctl->agent, inv_arg(inv, 0),
                                                  g_variant_builder_end(&b), &path, NULL, &error))
        return ctl_fail(error);
    return ctl_job_started(ctl, inv, path);
}

int
ctl_job_started(Ctl *ctl, const Invocation *inv, const char *path)
{
    if (inv_flag(inv, "wait"))
        return ctl_wait_for_job(ctl, path);
    if (ctl->json)
        ctl_print_json(g_variant_new_parsed("{'job': <%o>}", path));
    else
        g_print("%s\n", path);
    return EXIT_OK;
}

int
ctl_jobs(Ctl *ctl, const Invocation *inv)
{
    g_auto(GStrv) paths = NULL;
    g_autoptr(GError) error = NULL;
    GVariantBuilder all;

    if (!vs_dbus_agent1_call_list_jobs_sync(ctl->agent, &paths, NULL, &error))
        return ctl_fail(error);
    if (inv_flag(inv, "ids")) {
        for (guint i = 0; paths[i]; i++) {
            if (g_str_has_prefix(paths[i], VS_JOB_PATH_PREFIX))
                g_print("%s\n", paths[i] + strlen(VS_JOB_PATH_PREFIX));
        }
        return EXIT_OK;
    }
    g_variant_builder_init(&all, G_VARIANT_TYPE("aa{sv}"));
    if (!ctl->json)
        ctl_print_jobs_header();
    for (guint i = 0; paths[i]; i++) {
        g_autoptr(VsDbusJob1) job = ctl_job_get(ctl, paths[i], &error);

        if (!job) {
            g_clear_error(&error); /* forgotten meanwhile */
            continue;
        }
        if (ctl->json)
            g_variant_builder_add_value(&all, ctl_job_summary(job));
        else
            ctl_print_jobs_row(job);
    }
    if (ctl->json)
        ctl_print_json(g_variant_builder_end(&all));
    else
        g_variant_builder_clear(&all);
    return EXIT_OK;
}

/* The job the first argument names, its properties loaded; NULL when there is none (*code:
 * the exit code, the message printed). */
static VsDbusJob1 *
job_from_arg(Ctl *ctl, const Invocation *inv, int *code)
{
    g_autofree char *path = job_path_or_usage(ctl, inv, code);
    g_autoptr(GError) error = NULL;
    VsDbusJob1 *job;

    if (!path)
        return NULL;
    if (!(job = ctl_job_get(ctl, path, &error)))
        *code = ctl_fail(error);
    return job;
}

int
ctl_job(Ctl *ctl, const Invocation *inv)
{
    int code = EXIT_OK;
    g_autoptr(VsDbusJob1) job = job_from_arg(ctl, inv, &code);

    if (!job)
        return code;
    ctl_print_job(job, ctl->json);
    return EXIT_OK;
}

int
ctl_wait(Ctl *ctl, const Invocation *inv)
{
    int code = EXIT_OK;
    g_autofree char *path = job_path_or_usage(ctl, inv, &code);

    if (!path)
        return code;
    return ctl_wait_for_job(ctl, path);
}

int
ctl_cancel(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GError) error = NULL;
    int code = EXIT_OK;
    /* Loaded first so that a wrong ID is "no job", not an unknown object. */
    g_autoptr(VsDbusJob1) job = job_from_arg(ctl, inv, &code);

    if (!job)
        return code;
    if (!vs_dbus_job1_call_cancel_sync(job, NULL, &error))
        return ctl_fail(error);
    if (!ctl->json)
        g_print("cancel requested for %s (it undoes its work, then ends)\n",
                g_dbus_proxy_get_object_path(G_DBUS_PROXY(job)));
    return EXIT_OK;
}
