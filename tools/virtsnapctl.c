/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl: the command-line client of virtsnapd, over D-Bus.
 * Exit codes are part of its interface (see README.md, "Exit codes"). */
#include <gio/gio.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vs-build-config.h"
#include "vs-dbus-generated.h"
#include "vs-error.h"
#include "vs-bus.h"
#include "vs-names.h"

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_NO_AGENT = 3,
    EXIT_NOT_FOUND = 4,
    EXIT_BUSY = 5,
    EXIT_UNSUPPORTED = 6,
    EXIT_QUIESCE = 7,
    EXIT_NOT_CONNECTED = 8,
    EXIT_CANCELLED = 9,
    EXIT_DENIED = 10,
};

typedef struct {
    gboolean json;
    const char *command; /* its name, for usage errors */
    GDBusConnection *bus;
    VsDbusAgent1 *agent;
} Ctl;

/* ---- the command line: types (the tables and the parser are at the end) ----------------- */

typedef enum {
    OPT_FLAG,  /* --wait */
    OPT_VALUE, /* --method=METHOD or --method METHOD; the last one counts */
    OPT_LIST,  /* --disk=TARGET, repeatable */
} OptKind;

typedef struct {
    const char *name; /* long name, without "--" */
    char short_name;  /* 0: none */
    OptKind kind;
    const char *value_name;
    const char *help;
} CtlOption;

/* One parsed command line: global options, the command, its arguments and options. */
typedef struct {
    const struct _Command *command;
    GPtrArray *args;    /* positional arguments after the command (borrowed from argv) */
    GHashTable *values; /* option name -> GPtrArray of values ("" for a flag) */
} Invocation;

static gboolean
inv_flag(const Invocation *inv, const char *name)
{
    return g_hash_table_contains(inv->values, name);
}

/* The last value given for option @name, or NULL. */
static const char *
inv_value(const Invocation *inv, const char *name)
{
    GPtrArray *values = g_hash_table_lookup(inv->values, name);

    return values ? g_ptr_array_index(values, values->len - 1) : NULL;
}

/* Every value given for option @name, NULL-terminated, or NULL. */
static const char *const *
inv_list(const Invocation *inv, const char *name)
{
    GPtrArray *values = g_hash_table_lookup(inv->values, name);

    return values ? (const char *const *)values->pdata : NULL;
}

static guint
inv_n_args(const Invocation *inv)
{
    return inv->args->len;
}

static const char *
inv_arg(const Invocation *inv, guint i)
{
    return i < inv->args->len ? g_ptr_array_index(inv->args, i) : NULL;
}

/* ---- errors and exit codes ------------------------------------------------------------ */

static int
exit_code_for(const GError *error)
{
    if (g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
        g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER) ||
        g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_NO_REPLY) ||
        g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
        g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
        return EXIT_NO_AGENT;
    if (g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_ACCESS_DENIED))
        return EXIT_DENIED;
    if (error->domain != VS_ERROR)
        return EXIT_FAILED;
    switch (error->code) {
    case VS_ERROR_INVALID_ARGUMENT:
        return EXIT_USAGE;
    case VS_ERROR_NO_SUCH_DOMAIN:
    case VS_ERROR_NO_SUCH_DISK:
    case VS_ERROR_NO_SUCH_JOB:
    case VS_ERROR_NO_SUCH_SNAPSHOT:
        return EXIT_NOT_FOUND;
    case VS_ERROR_BUSY:
    case VS_ERROR_EXISTS:
        return EXIT_BUSY;
    case VS_ERROR_UNSUPPORTED:
    case VS_ERROR_NOT_RUNNING:
        return EXIT_UNSUPPORTED;
    case VS_ERROR_QUIESCE_FAILED:
        return EXIT_QUIESCE;
    case VS_ERROR_NOT_CONNECTED:
        return EXIT_NOT_CONNECTED;
    case VS_ERROR_CANCELLED:
        return EXIT_CANCELLED;
    case VS_ERROR_PERMISSION_DENIED:
        return EXIT_DENIED;
    default:
        return EXIT_FAILED;
    }
}

/* Prints "virtsnapctl: <message> (<D-Bus error name>)" and returns the exit code. */
static int
fail(const GError *error)
{
    g_autofree char *remote = g_dbus_error_get_remote_error(error);
    g_autoptr(GError) copy = g_error_copy(error);

    g_dbus_error_strip_remote_error(copy);
    if (exit_code_for(error) == EXIT_NO_AGENT)
        g_printerr("virtsnapctl: the agent (%s) is not running or not reachable: %s\n", VS_BUS_NAME,
                   copy->message);
    else if (remote)
        g_printerr("virtsnapctl: %s (%s)\n", copy->message, remote);
    else
        g_printerr("virtsnapctl: %s\n", copy->message);
    return exit_code_for(error);
}

static int usage_error(const char *command, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* "virtsnapctl CMD: <message>" and where to find help; @command NULL: no command yet. */
static int
usage_error(const char *command, const char *fmt, ...)
{
    va_list args;
    g_autofree char *msg = NULL;

    va_start(args, fmt);
    msg = g_strdup_vprintf(fmt, args);
    va_end(args);
    if (command)
        g_printerr("virtsnapctl %s: %s\nTry 'virtsnapctl %s --help'.\n", command, msg, command);
    else
        g_printerr("virtsnapctl: %s\nTry 'virtsnapctl --help'.\n", msg);
    return EXIT_USAGE;
}

/* ---- output helpers --------------------------------------------------------------------- */

static void
print_json_variant(GVariant *value)
{
    g_autoptr(JsonNode) node = json_gvariant_serialize(value);
    g_autofree char *text = json_to_string(node, FALSE);

    g_print("%s\n", text);
    fflush(stdout);
}

static const char *
dict_str(GVariant *dict, const char *key)
{
    const char *value = NULL;

    if (!g_variant_lookup(dict, key, "&s", &value))
        return "";
    return value;
}

static gboolean
dict_bool(GVariant *dict, const char *key)
{
    gboolean value = FALSE;

    g_variant_lookup(dict, key, "b", &value);
    return value;
}

/* ---- commands --------------------------------------------------------------------------- */

static int
cmd_status(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GVariant) props = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = g_dbus_connection_call_sync(
        ctl->bus, VS_BUS_NAME, VS_AGENT_PATH, "org.freedesktop.DBus.Properties", "GetAll",
        g_variant_new("(s)", VS_AGENT_INTERFACE), G_VARIANT_TYPE("(a{sv})"), G_DBUS_CALL_FLAGS_NONE,
        -1, NULL, &error);

    if (!reply)
        return fail(error);
    props = g_variant_get_child_value(reply, 0);
    if (ctl->json) {
        print_json_variant(props);
        return EXIT_OK;
    }
    {
        gboolean connected = FALSE;

        g_variant_lookup(props, "Connected", "b", &connected);
        g_print("version:   %s\n", dict_str(props, "Version"));
        g_print("libvirt:   %s (%s)\n", dict_str(props, "LibvirtUri"),
                connected ? "connected" : "not connected");
        g_print("snapshots: %s\n", dict_str(props, "SnapshotDirectory"));
        {
            g_autoptr(GVariant) hooks =
                g_variant_lookup_value(props, "HookCounts", G_VARIANT_TYPE("a{su}"));
            GVariantIter iter;
            const char *op;
            guint32 n;

            g_print("hook calls:");
            if (!hooks || g_variant_n_children(hooks) == 0)
                g_print(" none (is /etc/libvirt/hooks/qemu.d/virtsnap installed?)");
            else {
                g_variant_iter_init(&iter, hooks);
                while (g_variant_iter_next(&iter, "{&su}", &op, &n))
                    g_print(" %s=%u", op, n);
            }
            g_print("\n");
        }
    }
    return EXIT_OK;
}

static int
cmd_domains(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GVariant) domains = NULL;
    g_autoptr(GError) error = NULL;
    GVariantIter iter;
    GVariant *dom;

    if (!vs_dbus_agent1_call_list_domains_sync(ctl->agent, &domains, NULL, &error))
        return fail(error);
    if (inv_flag(inv, "names")) {
        g_variant_iter_init(&iter, domains);
        while ((dom = g_variant_iter_next_value(&iter))) {
            g_print("%s\n", dict_str(dom, "name"));
            g_variant_unref(dom);
        }
        return EXIT_OK;
    }
    if (ctl->json) {
        print_json_variant(domains);
        return EXIT_OK;
    }
    g_print("%-24s %-10s %-10s %-6s %s\n", "NAME", "STATE", "PERSISTENT", "AGENT", "DISKS");
    g_variant_iter_init(&iter, domains);
    while ((dom = g_variant_iter_next_value(&iter))) {
        g_autoptr(GVariant) disks = g_variant_lookup_value(dom, "disks", G_VARIANT_TYPE("aa{sv}"));
        g_autoptr(GString) disk_text = g_string_new(NULL);
        const char *agent = !dict_bool(dom, "agent-channel")    ? "-"
                            : dict_bool(dom, "agent-connected") ? "yes"
                                                                : "no";

        for (gsize i = 0; disks && i < g_variant_n_children(disks); i++) {
            g_autoptr(GVariant) disk = g_variant_get_child_value(disks, i);
            const char *format = dict_str(disk, "format");
            const char *protocol = dict_str(disk, "protocol");

            g_string_append_printf(disk_text, "%s%s:%s", i ? " " : "", dict_str(disk, "target"),
                                   *protocol ? protocol
                                             : (*format ? format : dict_str(disk, "type")));
        }
        g_print("%-24s %-10s %-10s %-6s %s\n", dict_str(dom, "name"), dict_str(dom, "state"),
                dict_bool(dom, "persistent") ? "yes" : "no", agent, disk_text->str);
        g_variant_unref(dom);
    }
    return EXIT_OK;
}

typedef struct {
    Ctl *ctl;
    GMainLoop *loop;
} Watch;

static char *
now_text(void)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();

    return g_date_time_format(now, "%Y-%m-%dT%H:%M:%S.%fZ");
}

static void
on_watch_event(VsDbusAgent1 *agent, const char *domain, const char *uuid, const char *event,
               const char *detail, Watch *w)
{
    g_autofree char *when = now_text();

    if (w->ctl->json) {
        print_json_variant(g_variant_new_parsed(
            "{'time': <%s>, 'domain': <%s>, 'uuid': <%s>, 'event': <%s>, 'detail': <%s>}", when,
            domain, uuid, event, detail));
        return;
    }
    g_print("%s  %-24s %-12s %s\n", when, domain, event, detail);
    fflush(stdout);
}

static void
on_watch_props(GDBusProxy *proxy, GVariant *changed, GStrv invalidated, Watch *w)
{
    gboolean connected;
    g_autofree char *when = now_text();

    if (!g_variant_lookup(changed, "Connected", "b", &connected))
        return;
    if (w->ctl->json)
        print_json_variant(
            g_variant_new_parsed("{'time': <%s>, 'connected': <%b>}", when, connected));
    else
        g_print("%s  (agent %s libvirt)\n", when, connected ? "reconnected to" : "lost");
    fflush(stdout);
}

static void
on_watch_owner(GObject *proxy, GParamSpec *pspec, Watch *w)
{
    g_autofree char *owner = g_dbus_proxy_get_name_owner(G_DBUS_PROXY(proxy));
    g_autofree char *when = now_text();

    if (w->ctl->json)
        print_json_variant(
            g_variant_new_parsed("{'time': <%s>, 'agent-running': <%b>}", when, owner != NULL));
    else
        g_print("%s  (agent %s)\n", when, owner ? "started" : "went away");
    fflush(stdout);
}

static gboolean
on_watch_signal(gpointer data)
{
    g_main_loop_quit(((Watch *)data)->loop);
    return G_SOURCE_REMOVE;
}

static int
cmd_watch(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
    g_autofree char *owner = g_dbus_proxy_get_name_owner(G_DBUS_PROXY(ctl->agent));
    Watch w = {ctl, loop};

    if (!owner) {
        g_printerr("virtsnapctl: the agent (%s) is not running\n", VS_BUS_NAME);
        return EXIT_NO_AGENT;
    }
    g_signal_connect(ctl->agent, "domain-event", G_CALLBACK(on_watch_event), &w);
    g_signal_connect(ctl->agent, "g-properties-changed", G_CALLBACK(on_watch_props), &w);
    g_signal_connect(ctl->agent, "notify::g-name-owner", G_CALLBACK(on_watch_owner), &w);
    g_unix_signal_add(SIGINT, on_watch_signal, &w);
    g_unix_signal_add(SIGTERM, on_watch_signal, &w);
    if (!ctl->json) {
        g_print("watching domain events (Ctrl-C to stop)\n");
        fflush(stdout);
    }
    g_main_loop_run(loop);
    g_signal_handlers_disconnect_by_data(ctl->agent, &w);
    return EXIT_OK;
}

/* ---- jobs -------------------------------------------------------------------------------- */

static char *
job_path_for(const char *arg)
{
    guint64 id;

    if (g_str_has_prefix(arg, VS_JOB_PATH_PREFIX))
        return g_strdup(arg);
    if (g_ascii_string_to_unsigned(arg, 10, 1, G_MAXUINT32, &id, NULL))
        return g_strdup_printf(VS_JOB_PATH_PREFIX "%" G_GUINT64_FORMAT, id);
    return NULL;
}

static GVariant *
job_properties(Ctl *ctl, const char *path, GError **error)
{
    g_autoptr(GVariant) reply = g_dbus_connection_call_sync(
        ctl->bus, VS_BUS_NAME, path, "org.freedesktop.DBus.Properties", "GetAll",
        g_variant_new("(s)", VS_JOB_INTERFACE), G_VARIANT_TYPE("(a{sv})"), G_DBUS_CALL_FLAGS_NONE,
        -1, NULL, error);

    if (!reply) {
        if (g_error_matches(*error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_METHOD) ||
            g_error_matches(*error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_OBJECT) ||
            g_error_matches(*error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_INTERFACE)) {
            g_clear_error(error);
            g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_JOB, "no job %s", path);
        }
        return NULL;
    }
    return g_variant_get_child_value(reply, 0);
}

static guint64
dict_u64(GVariant *dict, const char *key)
{
    g_autoptr(GVariant) v = g_variant_lookup_value(dict, key, NULL);

    if (!v)
        return 0;
    if (g_variant_is_of_type(v, G_VARIANT_TYPE_UINT64))
        return g_variant_get_uint64(v);
    if (g_variant_is_of_type(v, G_VARIANT_TYPE_INT64))
        return (guint64)MAX(g_variant_get_int64(v), 0);
    if (g_variant_is_of_type(v, G_VARIANT_TYPE_UINT32))
        return g_variant_get_uint32(v);
    return 0;
}

static gboolean
state_is_final(const char *state)
{
    return g_strcmp0(state, VS_STATE_SUCCEEDED) == 0 || g_strcmp0(state, VS_STATE_FAILED) == 0 ||
           g_strcmp0(state, VS_STATE_CANCELLED) == 0 || g_strcmp0(state, VS_STATE_INTERRUPTED) == 0;
}

/* A job's properties as the JSON object virtsnapctl prints. */
static GVariant *
job_summary(const char *path, GVariant *props)
{
    GVariantBuilder b;
    g_autoptr(GVariant) result = g_variant_lookup_value(props, "Result", G_VARIANT_TYPE_VARDICT);

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "job", g_variant_new_string(path));
    g_variant_builder_add(&b, "{sv}", "id", g_variant_new_uint32(dict_u64(props, "Id")));
    g_variant_builder_add(&b, "{sv}", "domain", g_variant_new_string(dict_str(props, "Domain")));
    g_variant_builder_add(&b, "{sv}", "state", g_variant_new_string(dict_str(props, "State")));
    g_variant_builder_add(&b, "{sv}", "phase", g_variant_new_string(dict_str(props, "Phase")));
    g_variant_builder_add(&b, "{sv}", "method", g_variant_new_string(dict_str(props, "Method")));
    g_variant_builder_add(&b, "{sv}", "method_reason",
                          g_variant_new_string(dict_str(props, "MethodReason")));
    g_variant_builder_add(&b, "{sv}", "freeze_ms",
                          g_variant_new_uint64(dict_u64(props, "FreezeMs")));
    g_variant_builder_add(&b, "{sv}", "downtime_ms",
                          g_variant_new_uint64(dict_u64(props, "DowntimeMs")));
    g_variant_builder_add(&b, "{sv}", "error_name",
                          g_variant_new_string(dict_str(props, "ErrorName")));
    g_variant_builder_add(&b, "{sv}", "error", g_variant_new_string(dict_str(props, "Error")));
    if (result) {
        g_variant_builder_add(&b, "{sv}", "snapshot_id",
                              g_variant_new_string(dict_str(result, "snapshot-id")));
        g_variant_builder_add(&b, "{sv}", "result", result);
    }
    return g_variant_builder_end(&b);
}

static int
exit_code_for_job(GVariant *props)
{
    const char *state = dict_str(props, "State");
    g_autoptr(GError) error = NULL;

    if (g_strcmp0(state, VS_STATE_SUCCEEDED) == 0)
        return EXIT_OK;
    if (g_strcmp0(state, VS_STATE_CANCELLED) == 0)
        return EXIT_CANCELLED;
    error =
        g_error_new_literal(VS_ERROR, vs_error_from_dbus_name(dict_str(props, "ErrorName")), "job");
    return exit_code_for(error) == EXIT_OK ? EXIT_FAILED : exit_code_for(error);
}

static void
print_job_human(const char *path, GVariant *props)
{
    const char *state = dict_str(props, "State");
    g_autoptr(GVariant) result = g_variant_lookup_value(props, "Result", G_VARIANT_TYPE_VARDICT);

    g_print("job %s: %s (%s) of %s\n", path, state, dict_str(props, "Phase"),
            dict_str(props, "Domain"));
    if (*dict_str(props, "Method"))
        g_print("  method: %s (%s)\n", dict_str(props, "Method"), dict_str(props, "MethodReason"));
    if (*dict_str(props, "Error"))
        g_print("  error:  %s (%s)\n", dict_str(props, "Error"), dict_str(props, "ErrorName"));
    if (result && g_variant_n_children(result) > 0) {
        g_autoptr(GVariant) disks =
            g_variant_lookup_value(result, "disks", G_VARIANT_TYPE("aa{sv}"));
        gboolean quiesced = dict_bool(result, "quiesced");
        g_autoptr(GVariant) cold = g_variant_lookup_value(result, "downtime-ms", NULL);

        g_print("  snapshot: %s (name %s)\n", dict_str(result, "snapshot-id"),
                dict_str(result, "name"));
        if (cold)
            g_print("  %s: downtime %" G_GUINT64_FORMAT " ms, extract %" G_GUINT64_FORMAT
                    " ms, total %" G_GUINT64_FORMAT " ms\n",
                    dict_bool(result, "offline") ? "offline (domain was off)" : "cold",
                    dict_u64(result, "downtime-ms"), dict_u64(result, "extract-ms"),
                    dict_u64(result, "total-ms"));
        else
            g_print("  quiesced: %s%s%s%s, freeze %" G_GUINT64_FORMAT " ms, copy %" G_GUINT64_FORMAT
                    " ms, flatten %" G_GUINT64_FORMAT " ms, total %" G_GUINT64_FORMAT " ms\n",
                    quiesced ? "yes" : "no", *dict_str(result, "quiesce-note") ? " (" : "",
                    dict_str(result, "quiesce-note"), *dict_str(result, "quiesce-note") ? ")" : "",
                    dict_u64(result, "freeze-ms"), dict_u64(result, "copy-ms"),
                    dict_u64(result, "flatten-ms"), dict_u64(result, "total-ms"));
        for (gsize i = 0; disks && i < g_variant_n_children(disks); i++) {
            g_autoptr(GVariant) d = g_variant_get_child_value(disks, i);

            g_print("  %-6s %s  %s  %.1f MiB (%.1f MiB on disk)\n", dict_str(d, "target"),
                    dict_str(d, "image"), dict_str(d, "format"),
                    dict_u64(d, "virtual-size") / 1048576.0, dict_u64(d, "bytes") / 1048576.0);
        }
    }
}

typedef struct {
    Ctl *ctl;
    GMainLoop *loop;
    char *path;
    gboolean tty;
    gboolean cancel_sent;
    GVariant *final;
    GError *error;
} Waiter;

static void
draw_progress(Waiter *w, GVariant *props)
{
    double progress = 0;
    int width = 30, filled;
    g_autoptr(GVariant) p = g_variant_lookup_value(props, "Progress", G_VARIANT_TYPE_DOUBLE);

    if (!w->tty || w->ctl->json)
        return;
    if (p)
        progress = g_variant_get_double(p);
    filled = (int)(progress * width + 0.5);
    g_print("\r[%.*s%*s] %3d%%  %-14s %8.1f / %.1f MiB ", filled, "##############################",
            width - filled, "", (int)(progress * 100 + 0.5), dict_str(props, "Phase"),
            dict_u64(props, "BytesDone") / 1048576.0, dict_u64(props, "BytesTotal") / 1048576.0);
    fflush(stdout);
}

static void
waiter_refresh(Waiter *w)
{
    g_autoptr(GVariant) props = job_properties(w->ctl, w->path, &w->error);

    if (!props) {
        g_main_loop_quit(w->loop);
        return;
    }
    draw_progress(w, props);
    if (state_is_final(dict_str(props, "State"))) {
        w->final = g_steal_pointer(&props);
        g_main_loop_quit(w->loop);
    }
}

static void
on_job_signal(GDBusConnection *bus, const char *sender, const char *path, const char *iface,
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
    g_printerr("\nvirtsnapctl: cancelling %s (Ctrl-C again to stop waiting)\n", w->path);
    w->cancel_sent = TRUE;
    g_dbus_connection_call(w->ctl->bus, VS_BUS_NAME, w->path, VS_JOB_INTERFACE, "Cancel", NULL,
                           NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, NULL, NULL);
    return G_SOURCE_CONTINUE;
}

/* Waits for @path to end; prints its progress on a terminal and its outcome at the end. */
static int
wait_for_job(Ctl *ctl, const char *path)
{
    g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
    Waiter w = {ctl, loop, (char *)path, isatty(STDOUT_FILENO), FALSE, NULL, NULL};
    guint sub, sig_int, sig_term;
    int code;

    sub = g_dbus_connection_signal_subscribe(
        ctl->bus, VS_BUS_NAME, "org.freedesktop.DBus.Properties", "PropertiesChanged", path,
        VS_JOB_INTERFACE, G_DBUS_SIGNAL_FLAGS_NONE, on_job_signal, &w, NULL);
    sig_int = g_unix_signal_add(SIGINT, on_wait_interrupt, &w);
    sig_term = g_unix_signal_add(SIGTERM, on_wait_interrupt, &w);
    waiter_refresh(&w); /* it may have ended already */
    if (!w.final && !w.error)
        g_main_loop_run(loop);
    g_dbus_connection_signal_unsubscribe(ctl->bus, sub);
    g_source_remove(sig_int);
    g_source_remove(sig_term);
    if (w.tty && !ctl->json)
        g_print("\n");
    if (w.error) {
        code = fail(w.error);
        g_error_free(w.error);
        return code;
    }
    if (!w.final) {
        g_printerr("virtsnapctl: stopped waiting; the job goes on\n");
        return EXIT_FAILED;
    }
    if (ctl->json)
        print_json_variant(job_summary(path, w.final));
    else
        print_job_human(path, w.final);
    code = exit_code_for_job(w.final);
    if (code != EXIT_OK && !ctl->json)
        g_printerr("virtsnapctl: job %s %s: %s\n", path, dict_str(w.final, "State"),
                   dict_str(w.final, "Error"));
    g_variant_unref(w.final);
    return code;
}

/* "512", "64K", "50M", "1G" (binary units). */
static gboolean
parse_size(const char *text, guint64 *out)
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

static int
cmd_snapshot(Ctl *ctl, const Invocation *inv)
{
    const char *const *disks = inv_list(inv, "disk");
    const char *method = inv_value(inv, "method"), *quiesce = inv_value(inv, "quiesce");
    const char *format = inv_value(inv, "format"), *copy = inv_value(inv, "copy");
    const char *name = inv_value(inv, "name"), *bandwidth = inv_value(inv, "bandwidth");
    gboolean compress = inv_flag(inv, "compress"), force = inv_flag(inv, "force");
    gboolean legacy = inv_flag(inv, "legacy-undefine");
    gboolean flatten = inv_flag(inv, "flatten"), no_flatten = inv_flag(inv, "no-flatten");
    guint64 bandwidth_bytes = 0;
    g_autoptr(GError) error = NULL;
    g_autofree char *path = NULL;
    GVariantBuilder b;

    if (bandwidth && !parse_size(bandwidth, &bandwidth_bytes))
        return usage_error(ctl->command, "--bandwidth: '%s' is not a rate like 50M", bandwidth);
    if (flatten && no_flatten)
        return usage_error(ctl->command, "--flatten and --no-flatten exclude each other");

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    if (disks)
        g_variant_builder_add(&b, "{sv}", VS_OPT_DISKS, g_variant_new_strv(disks, -1));
    if (method)
        g_variant_builder_add(&b, "{sv}", VS_OPT_METHOD, g_variant_new_string(method));
    if (quiesce)
        g_variant_builder_add(&b, "{sv}", VS_OPT_QUIESCE, g_variant_new_string(quiesce));
    if (format)
        g_variant_builder_add(&b, "{sv}", VS_OPT_FORMAT, g_variant_new_string(format));
    if (copy)
        g_variant_builder_add(&b, "{sv}", VS_OPT_COPY, g_variant_new_string(copy));
    if (name)
        g_variant_builder_add(&b, "{sv}", VS_OPT_NAME, g_variant_new_string(name));
    if (compress)
        g_variant_builder_add(&b, "{sv}", VS_OPT_COMPRESS, g_variant_new_boolean(TRUE));
    if (force)
        g_variant_builder_add(&b, "{sv}", VS_OPT_FORCE, g_variant_new_boolean(TRUE));
    if (legacy)
        g_variant_builder_add(&b, "{sv}", VS_OPT_LEGACY_UNDEFINE, g_variant_new_boolean(TRUE));
    if (bandwidth_bytes)
        g_variant_builder_add(&b, "{sv}", VS_OPT_BANDWIDTH, g_variant_new_uint64(bandwidth_bytes));
    if (flatten || no_flatten)
        g_variant_builder_add(&b, "{sv}", VS_OPT_FLATTEN, g_variant_new_boolean(flatten));

    if (!vs_dbus_agent1_call_create_snapshot_sync(ctl->agent, inv_arg(inv, 0),
                                                  g_variant_builder_end(&b), &path, NULL, &error))
        return fail(error);
    if (inv_flag(inv, "wait"))
        return wait_for_job(ctl, path);
    if (ctl->json)
        print_json_variant(g_variant_new_parsed("{'job': <%o>}", path));
    else
        g_print("%s\n", path);
    return EXIT_OK;
}

static int
cmd_jobs(Ctl *ctl, const Invocation *inv)
{
    g_auto(GStrv) paths = NULL;
    g_autoptr(GError) error = NULL;
    GVariantBuilder all;

    if (!vs_dbus_agent1_call_list_jobs_sync(ctl->agent, &paths, NULL, &error))
        return fail(error);
    if (inv_flag(inv, "ids")) {
        for (guint i = 0; paths[i]; i++) {
            if (g_str_has_prefix(paths[i], VS_JOB_PATH_PREFIX))
                g_print("%s\n", paths[i] + strlen(VS_JOB_PATH_PREFIX));
        }
        return EXIT_OK;
    }
    g_variant_builder_init(&all, G_VARIANT_TYPE("aa{sv}"));
    if (!ctl->json)
        g_print("%-4s %-12s %-14s %-5s %-24s %s\n", "ID", "STATE", "PHASE", "DONE", "DOMAIN",
                "SNAPSHOT");
    for (guint i = 0; paths[i]; i++) {
        g_autoptr(GVariant) props = job_properties(ctl, paths[i], &error);
        g_autoptr(GVariant) result = NULL;
        g_autoptr(GVariant) progress = NULL;

        if (!props) {
            g_clear_error(&error); /* forgotten meanwhile */
            continue;
        }
        if (ctl->json) {
            g_variant_builder_add_value(&all, job_summary(paths[i], props));
            continue;
        }
        result = g_variant_lookup_value(props, "Result", G_VARIANT_TYPE_VARDICT);
        progress = g_variant_lookup_value(props, "Progress", G_VARIANT_TYPE_DOUBLE);
        g_print("%-4u %-12s %-14s %4d%% %-24s %s\n", (guint)dict_u64(props, "Id"),
                dict_str(props, "State"), dict_str(props, "Phase"),
                progress ? (int)(g_variant_get_double(progress) * 100 + 0.5) : 0,
                dict_str(props, "Domain"), result ? dict_str(result, "snapshot-id") : "");
    }
    if (ctl->json)
        print_json_variant(g_variant_builder_end(&all));
    else
        g_variant_builder_clear(&all);
    return EXIT_OK;
}

static int
cmd_job(Ctl *ctl, const Invocation *inv)
{
    g_autofree char *path = NULL;
    g_autoptr(GVariant) props = NULL;
    g_autoptr(GError) error = NULL;

    if (!(path = job_path_for(inv_arg(inv, 0))))
        return usage_error(ctl->command, "'%s' is not a job ID (a number or an object path)",
                           inv_arg(inv, 0));
    if (!(props = job_properties(ctl, path, &error)))
        return fail(error);
    if (ctl->json)
        print_json_variant(job_summary(path, props));
    else
        print_job_human(path, props);
    return EXIT_OK;
}

static int
cmd_wait(Ctl *ctl, const Invocation *inv)
{
    g_autofree char *path = NULL;

    if (!(path = job_path_for(inv_arg(inv, 0))))
        return usage_error(ctl->command, "'%s' is not a job ID (a number or an object path)",
                           inv_arg(inv, 0));
    return wait_for_job(ctl, path);
}

static int
cmd_cancel(Ctl *ctl, const Invocation *inv)
{
    g_autofree char *path = NULL;
    g_autoptr(GVariant) props = NULL;
    g_autoptr(GVariant) reply = NULL;
    g_autoptr(GError) error = NULL;

    if (!(path = job_path_for(inv_arg(inv, 0))))
        return usage_error(ctl->command, "'%s' is not a job ID (a number or an object path)",
                           inv_arg(inv, 0));
    if (!(props = job_properties(ctl, path, &error)))
        return fail(error);
    reply = g_dbus_connection_call_sync(ctl->bus, VS_BUS_NAME, path, VS_JOB_INTERFACE, "Cancel",
                                        NULL, NULL, G_DBUS_CALL_FLAGS_NONE, -1, NULL, &error);
    if (!reply)
        return fail(error);
    if (!ctl->json)
        g_print("cancel requested for %s (it undoes its work, then ends)\n", path);
    return EXIT_OK;
}

static int
cmd_snapshots(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GVariant) list = NULL;
    g_autoptr(GError) error = NULL;

    if (!vs_dbus_agent1_call_list_snapshots_sync(ctl->agent, inv_n_args(inv) ? inv_arg(inv, 0) : "",
                                                 &list, NULL, &error))
        return fail(error);
    if (inv_flag(inv, "ids")) {
        for (gsize i = 0; i < g_variant_n_children(list); i++) {
            g_autoptr(GVariant) s = g_variant_get_child_value(list, i);

            g_print("%s\n", dict_str(s, "id"));
        }
        return EXIT_OK;
    }
    if (ctl->json) {
        print_json_variant(list);
        return EXIT_OK;
    }
    g_print("%-24s %-24s %-16s %-20s %-6s %-8s %s\n", "ID", "NAME", "DOMAIN", "CREATED", "METHOD",
            "QUIESCED", "DISKS");
    for (gsize i = 0; i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) s = g_variant_get_child_value(list, i);
        g_autoptr(GVariant) disks = g_variant_lookup_value(s, "disks", G_VARIANT_TYPE("aa{sv}"));
        g_autoptr(GString) dt = g_string_new(NULL);
        g_autofree char *created = g_strndup(dict_str(s, "created"), 19);

        for (gsize k = 0; disks && k < g_variant_n_children(disks); k++) {
            g_autoptr(GVariant) d = g_variant_get_child_value(disks, k);

            g_string_append_printf(dt, "%s%s", k ? "," : "", dict_str(d, "target"));
        }
        g_print("%-24s %-24s %-16s %-20s %-6s %-8s %s\n", dict_str(s, "id"), dict_str(s, "name"),
                dict_str(s, "domain"), created, dict_str(s, "method"),
                dict_bool(s, "quiesced") ? "yes" : "no", dt->str);
    }
    return EXIT_OK;
}

static int
cmd_delete(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GError) error = NULL;

    if (!vs_dbus_agent1_call_delete_snapshot_sync(ctl->agent, inv_arg(inv, 0), NULL, &error))
        return fail(error);
    if (!ctl->json)
        g_print("deleted %s\n", inv_arg(inv, 0));
    return EXIT_OK;
}

/* ---- policy ---------------------------------------------------------------------------- */

static int
cmd_policy(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GError) error = NULL;
    const char *verb = inv_arg(inv, 0), *domain = inv_arg(inv, 1);
    guint n_args = inv_n_args(inv);

    if (strcmp(verb, "show") == 0 && n_args == 2) {
        g_autoptr(GVariant) settings = NULL;
        g_autofree char *problem = NULL;
        GVariantIter iter;
        const char *key, *value;

        if (!vs_dbus_agent1_call_get_policy_sync(ctl->agent, domain, &settings, &problem, NULL,
                                                 &error))
            return fail(error);
        if (ctl->json) {
            print_json_variant(g_variant_new_parsed("{'settings': <%@a{ss}>, 'problem': <%s>}",
                                                    settings, problem));
            return EXIT_OK;
        }
        if (*problem)
            g_print("problem: %s (the stored policy is ignored)\n", problem);
        else if (g_variant_n_children(settings) == 0)
            g_print("no policy\n");
        g_variant_iter_init(&iter, settings);
        while (g_variant_iter_next(&iter, "{&s&s}", &key, &value))
            g_print("%s=%s\n", key, value);
        return EXIT_OK;
    }
    if (strcmp(verb, "set") == 0 && n_args > 2) {
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE("a{ss}"));
        for (guint i = 2; i < n_args; i++) {
            g_auto(GStrv) kv = g_strsplit(inv_arg(inv, i), "=", 2);

            if (!kv[0] || !kv[1]) {
                g_variant_builder_clear(&b);
                return usage_error(ctl->command, "set: '%s' is not KEY=VALUE", inv_arg(inv, i));
            }
            g_variant_builder_add(&b, "{ss}", kv[0], kv[1]);
        }
        if (!vs_dbus_agent1_call_set_policy_sync(ctl->agent, domain, g_variant_builder_end(&b),
                                                 NULL, &error))
            return fail(error);
        return EXIT_OK;
    }
    if (strcmp(verb, "clear") == 0 && n_args == 2) {
        if (!vs_dbus_agent1_call_clear_policy_sync(ctl->agent, domain, NULL, &error))
            return fail(error);
        return EXIT_OK;
    }
    if (strcmp(verb, "set") == 0)
        return usage_error(ctl->command, "set needs at least one KEY=VALUE");
    if (strcmp(verb, "show") == 0 || strcmp(verb, "clear") == 0)
        return usage_error(ctl->command, "%s takes one DOMAIN", verb);
    return usage_error(ctl->command, "'%s' is not show, set or clear", verb);
}

/* ---- the command line: every option of every command, and the one parser -------------- */

/* Global options may come before or after the command, as with git and systemctl. */
static const CtlOption global_options[] = {
    {"json", 'j', OPT_FLAG, NULL, "Print JSON: one document per command"},
    {"system", 0, OPT_FLAG, NULL, "Talk to the agent on the system bus (default)"},
    {"session", 0, OPT_FLAG, NULL, "Talk to the agent on the session bus"},
    {"address", 'a', OPT_VALUE, "ADDRESS", "Talk to the agent on the bus at ADDRESS"},
    {"version", 0, OPT_FLAG, NULL, "Print the version and exit"},
    {"help", 'h', OPT_FLAG, NULL, "Show this help and exit"},
    {NULL},
};

static const CtlOption no_options[] = {{NULL}};

static const CtlOption domains_options[] = {
    {"names", 0, OPT_FLAG, NULL, "Print only the domains' names, one a line"},
    {NULL},
};

static const CtlOption ids_options[] = {
    {"ids", 0, OPT_FLAG, NULL, "Print only the ids, one a line"},
    {NULL},
};

static const CtlOption snapshot_options[] = {
    {"disk", 'd', OPT_LIST, "TARGET",
     "Snapshot this disk (repeatable; default: every writable file disk)"},
    {"method", 'm', OPT_VALUE, "METHOD", "auto|live|cold|rbd (default auto)"},
    {"quiesce", 'q', OPT_VALUE, "MODE", "off|try|require (default try)"},
    {"format", 'f', OPT_VALUE, "FORMAT", "qcow2|raw (default qcow2)"},
    {"compress", 'c', OPT_FLAG, NULL, "Compress the qcow2 image"},
    {"copy", 0, OPT_VALUE, "MODE", "direct|shallow (default direct; shallow with --compress)"},
    {"name", 'n', OPT_VALUE, "NAME", "Name of the snapshot (A-Z a-z 0-9 . _ -)"},
    {"bandwidth", 0, OPT_VALUE, "RATE", "Copy at most RATE bytes/s, e.g. 50M (suffix K, M, G)"},
    {"force", 0, OPT_FLAG, NULL, "Abort block jobs that are not ours"},
    {"legacy-undefine", 0, OPT_FLAG, NULL, "Use undefine/rebase instead of a transient copy job"},
    {"flatten", 0, OPT_FLAG, NULL, "rbd: flatten the clone (a full copy)"},
    {"no-flatten", 0, OPT_FLAG, NULL, "rbd: keep the clone thin"},
    {"wait", 'w', OPT_FLAG, NULL,
     "Wait for the job: progress on a terminal, the result at the end (first Ctrl-C cancels "
     "the job, a second stops waiting)"},
    {NULL},
};

typedef struct _Command {
    const char *name;
    const char *synopsis; /* the arguments, for "Usage:" */
    const char *summary;
    const char *details; /* more for its --help, or NULL */
    guint min_args, max_args;
    const CtlOption *options;
    int (*run)(Ctl *ctl, const Invocation *inv); /* NULL: help, which needs no agent */
} Command;

#define ANY_NUMBER G_MAXUINT

static const Command commands[] = {
    {"status", "", "Show the agent's version, libvirt connection and hook calls", NULL, 0, 0,
     no_options, cmd_status},
    {"domains", "", "List libvirt domains with their disks", NULL, 0, 0, domains_options,
     cmd_domains},
    {"watch", "", "Print domain lifecycle events as they happen (Ctrl-C stops)", NULL, 0, 0,
     no_options, cmd_watch},
    {"snapshot", "DOMAIN", "Take a snapshot of DOMAIN (a name or UUID)",
     "Starts a snapshot job and prints its object path; with --wait, waits for it and exits "
     "with its outcome.",
     1, 1, snapshot_options, cmd_snapshot},
    {"jobs", "", "List jobs, running and recently ended", NULL, 0, 0, ids_options, cmd_jobs},
    {"job", "ID", "Show one job (ID: its number or object path)", NULL, 1, 1, no_options, cmd_job},
    {"wait", "ID", "Wait for a job to end; exit with its outcome",
     "Shows progress on a terminal. The first Ctrl-C cancels the job, a second stops waiting.", 1,
     1, no_options, cmd_wait},
    {"cancel", "ID", "Cancel a job (it undoes its work, then ends)", NULL, 1, 1, no_options,
     cmd_cancel},
    {"snapshots", "[DOMAIN]", "List finished snapshots, of every domain or of DOMAIN", NULL, 0, 1,
     ids_options, cmd_snapshots},
    {"delete", "ID", "Delete a snapshot (its images and folder)", NULL, 1, 1, no_options,
     cmd_delete},
    {"policy", "show|set|clear DOMAIN [KEY=VALUE...]", "Show, set or clear a domain's policy",
     "Keys: every=30s|15m|6h|1d|none, on-stop=none|snapshot, keep=1..10000, "
     "quiesce=off|try|require, method=auto|live|cold|rbd, format=qcow2|raw. "
     "set changes only the keys given; KEY= or KEY=none clears one.",
     2, ANY_NUMBER, no_options, cmd_policy},
    {"help", "[COMMAND]", "Show the help of virtsnapctl or of COMMAND", NULL, 0, 1, no_options,
     NULL},
};

static const Command *
command_find(const char *name)
{
    for (guint i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    }
    return NULL;
}

/* The option called @name (long, @len bytes) or @short_name, of @command or global. */
static const CtlOption *
option_find(const Command *command, const char *name, gsize len, char short_name)
{
    const CtlOption *tables[] = {command ? command->options : no_options, global_options};

    for (guint t = 0; t < G_N_ELEMENTS(tables); t++) {
        for (const CtlOption *o = tables[t]; o->name; o++) {
            if (name && strlen(o->name) == len && strncmp(o->name, name, len) == 0)
                return o;
            if (!name && short_name && o->short_name == short_name)
                return o;
        }
    }
    return NULL;
}

static void
invocation_add(Invocation *inv, const CtlOption *option, const char *value)
{
    GPtrArray *values = g_hash_table_lookup(inv->values, option->name);

    if (!values) {
        values = g_ptr_array_new_null_terminated(1, NULL, TRUE);
        g_hash_table_insert(inv->values, (gpointer)option->name, values);
    }
    g_ptr_array_add(values, (gpointer)(value ? value : ""));
}

static void parse_error(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Keeps the first problem of a command line. */
static void
parse_error(GError **error, const char *fmt, ...)
{
    va_list args;

    if (*error)
        return;
    va_start(args, fmt);
    *error = g_error_new_valist(G_OPTION_ERROR, G_OPTION_ERROR_FAILED, fmt, args);
    va_end(args);
}

/* Parses @argv (the program's name left out) into @inv. The first word that is not an option
 * names the command; options may come before it (global ones only) or anywhere after it, and
 * "--" ends the options. Goes on after a bad option, so that a --help further on still counts;
 * the first problem is in @error (which must not be NULL). */
static gboolean
invocation_parse(Invocation *inv, int argc, char **argv, GError **error)
{
    gboolean options_done = FALSE;

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const CtlOption *option;

        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = TRUE;
        } else if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (inv->command) {
                g_ptr_array_add(inv->args, (gpointer)arg);
            } else if (!(inv->command = command_find(arg))) {
                g_clear_error(error);
                parse_error(error, "unknown command '%s'", arg);
                return FALSE;
            }
        } else if (arg[1] == '-') {
            const char *name = arg + 2, *eq = strchr(name, '=');
            gsize len = eq ? (gsize)(eq - name) : strlen(name);

            option = option_find(inv->command, name, len, 0);
            if (!option) {
                parse_error(error, "unknown option '--%.*s'%s", (int)len, name,
                            inv->command ? "" : " before the command");
            } else if (option->kind == OPT_FLAG) {
                if (eq)
                    parse_error(error, "option '--%s' takes no value", option->name);
                invocation_add(inv, option, NULL);
            } else if (eq || i + 1 < argc) {
                invocation_add(inv, option, eq ? eq + 1 : argv[++i]);
            } else {
                parse_error(error, "option '--%s' needs a value (%s)", option->name,
                            option->value_name);
            }
        } else {
            /* Short options may be grouped (-jw); a value follows at once or as the next word. */
            for (const char *p = arg + 1; *p; p++) {
                option = option_find(inv->command, NULL, 0, *p == '?' ? 'h' : *p);
                if (!option) {
                    parse_error(error, "unknown option '-%c'%s", *p,
                                inv->command ? "" : " before the command");
                    break;
                }
                if (option->kind == OPT_FLAG) {
                    invocation_add(inv, option, NULL);
                    continue;
                }
                if (p[1])
                    invocation_add(inv, option, p + 1);
                else if (i + 1 < argc)
                    invocation_add(inv, option, argv[++i]);
                else
                    parse_error(error, "option '-%c' needs a value (%s)", *p, option->value_name);
                break;
            }
        }
    }
    return *error == NULL;
}

#define HELP_WIDTH 79

/* Prints @text word-wrapped, starting at column @col, continuing lines at column @indent. */
static void
print_wrapped(const char *text, int col, int indent)
{
    g_auto(GStrv) words = g_strsplit(text, " ", -1);
    int start = col;

    for (guint i = 0; words[i]; i++) {
        int len = (int)g_utf8_strlen(words[i], -1);

        if (col > start && col + 1 + len > HELP_WIDTH) {
            g_print("\n%*s", indent, "");
            col = start = indent;
        }
        g_print("%s%s", col > start ? " " : "", words[i]);
        col += (col > start ? 1 : 0) + len;
    }
    g_print("\n");
}

static void
print_options(const char *title, const CtlOption *options)
{
    if (!options->name)
        return;
    g_print("\n%s:\n", title);
    for (const CtlOption *o = options; o->name; o++) {
        g_autofree char *left =
            g_strdup_printf("  %c%c%s --%s%s%s", o->short_name ? '-' : ' ',
                            o->short_name ? o->short_name : ' ', o->short_name ? "," : " ", o->name,
                            o->value_name ? "=" : "", o->value_name ? o->value_name : "");

        if (strlen(left) > 29)
            g_print("%s\n%-30s", left, "");
        else
            g_print("%-30s", left);
        print_wrapped(o->help, 30, 30);
    }
}

static void
print_help(const Command *command)
{
    if (!command) {
        g_print("Usage: virtsnapctl [OPTIONS] COMMAND [ARGS...]\n\n"
                "Take and manage live snapshots of libvirt domains, through the virtsnapd "
                "agent.\n\nCommands:\n");
        for (guint i = 0; i < G_N_ELEMENTS(commands); i++)
            g_print("  %-10s %s\n", commands[i].name, commands[i].summary);
        print_options("Options (before or after the command)", global_options);
        g_print("\n");
        print_wrapped("'virtsnapctl COMMAND --help' or 'virtsnapctl help COMMAND' shows a "
                      "command's options. See virtsnapctl(1).",
                      0, 0);
        return;
    }
    g_print("Usage: virtsnapctl %s [OPTIONS]%s%s\n\n%s.\n", command->name,
            *command->synopsis ? " " : "", command->synopsis, command->summary);
    if (command->details) {
        g_print("\n");
        print_wrapped(command->details, 0, 0);
    }
    print_options("Options", command->options);
    print_options("Global options", global_options);
}

static void
invocation_clear(Invocation *inv)
{
    g_clear_pointer(&inv->args, g_ptr_array_unref);
    g_clear_pointer(&inv->values, g_hash_table_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Invocation, invocation_clear)

/* ---- main ------------------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
    g_auto(Invocation) inv = {
        NULL, g_ptr_array_new(),
        g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_ptr_array_unref)};
    g_autoptr(GError) error = NULL;
    g_autoptr(GDBusConnection) bus = NULL;
    g_autoptr(VsDbusAgent1) agent = NULL;
    const char *name;
    Ctl ctl = {0};

    setlocale(LC_ALL, "");
    invocation_parse(&inv, argc - 1, argv + 1, &error);
    name = inv.command ? inv.command->name : NULL;
    /* A command's --help and help need no agent, and win over the rest of the line. */
    if (inv_flag(&inv, "help")) {
        print_help(inv.command);
        return EXIT_OK;
    }
    if (inv_flag(&inv, "version")) {
        g_print("virtsnapctl %s\n", VS_VERSION);
        return EXIT_OK;
    }
    if (error)
        return usage_error(name, "%s", error->message);
    if (!inv.command)
        return usage_error(NULL, "no command given");
    if (inv_n_args(&inv) < inv.command->min_args)
        return usage_error(name, "missing argument; usage: virtsnapctl %s [OPTIONS] %s", name,
                           inv.command->synopsis);
    if (inv_n_args(&inv) > inv.command->max_args)
        return usage_error(name, "unexpected argument '%s'", inv_arg(&inv, inv.command->max_args));
    if (!inv.command->run) {
        const Command *topic = inv_n_args(&inv) ? command_find(inv_arg(&inv, 0)) : NULL;

        if (inv_n_args(&inv) && !topic)
            return usage_error(NULL, "unknown command '%s'", inv_arg(&inv, 0));
        print_help(topic);
        return EXIT_OK;
    }
    if (inv_flag(&inv, "system") + inv_flag(&inv, "session") + inv_flag(&inv, "address") > 1)
        return usage_error(name, "--system, --session and --address exclude each other");

    (void)vs_error_quark(); /* so remote errors come back as VsError */
    bus = vs_bus_open(inv_value(&inv, "address"), inv_flag(&inv, "session"), &error);
    if (!bus) {
        g_printerr("virtsnapctl: cannot connect to the bus: %s\n", error->message);
        return EXIT_NO_AGENT;
    }
    agent = vs_dbus_agent1_proxy_new_sync(bus, G_DBUS_PROXY_FLAGS_NONE, VS_BUS_NAME, VS_AGENT_PATH,
                                          NULL, &error);
    if (!agent)
        return fail(error);
    ctl.json = inv_flag(&inv, "json");
    ctl.command = name;
    ctl.bus = bus;
    ctl.agent = agent;
    return inv.command->run(&ctl, &inv);
}
