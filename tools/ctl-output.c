/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Everything virtsnapctl prints: error messages and exit codes, the tables, the JSON
 * documents and the progress bar. Commands fetch; this file decides how it looks. */
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <unistd.h>

#include "ctl.h"
#include "vs-error.h"
#include "vs-names.h"

/* ---- errors and exit codes ------------------------------------------------------------ */

int
ctl_exit_code(const GError *error)
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
    case VS_ERROR_RUNNING: /* revert: the domain must be shut off first */
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
    case VS_ERROR_CORRUPT:
        return EXIT_CORRUPT;
    default:
        return EXIT_FAILED;
    }
}

/* Prints "virtsnapctl: <message> (<D-Bus error name>)" and returns the exit code. */
int
ctl_fail(const GError *error)
{
    g_autofree char *remote = g_dbus_error_get_remote_error(error);
    g_autoptr(GError) copy = g_error_copy(error);

    g_dbus_error_strip_remote_error(copy);
    if (ctl_exit_code(error) == EXIT_NO_AGENT)
        g_printerr("virtsnapctl: the agent (%s) is not running or not reachable: %s\n", VS_BUS_NAME,
                   copy->message);
    else if (remote)
        g_printerr("virtsnapctl: %s (%s)\n", copy->message, remote);
    else
        g_printerr("virtsnapctl: %s\n", copy->message);
    return ctl_exit_code(error);
}

/* "virtsnapctl CMD: <message>" and where to find help; @command NULL: no command yet. */
int
ctl_usage_error(const char *command, const char *fmt, ...)
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

/* ---- helpers ----------------------------------------------------------------------------- */

/* Takes a floating @value, so that callers can pass g_variant_new_*() straight in. */
void
ctl_print_json(GVariant *value)
{
    g_autoptr(GVariant) owned = g_variant_ref_sink(value);
    g_autoptr(JsonNode) node = json_gvariant_serialize(owned);
    g_autofree char *text = json_to_string(node, FALSE);

    g_print("%s\n", text);
    fflush(stdout);
}

/* A string property as printed: "" when the agent did not send it. */
static const char *
str0(const char *s)
{
    return s ? s : "";
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

static char *
now_text(void)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();

    return g_date_time_format(now, "%Y-%m-%dT%H:%M:%S.%fZ");
}

/* A proxy's cached properties as one a{sv}, in the interface's order (GetAll's order). */
static GVariant *
proxy_properties(GDBusProxy *proxy)
{
    GDBusInterfaceInfo *info = g_dbus_proxy_get_interface_info(proxy);
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    for (guint i = 0; info->properties && info->properties[i]; i++) {
        const char *name = info->properties[i]->name;
        g_autoptr(GVariant) value = g_dbus_proxy_get_cached_property(proxy, name);

        if (value)
            g_variant_builder_add(&b, "{sv}", name, value);
    }
    return g_variant_builder_end(&b);
}

/* ---- status, domains, watch -------------------------------------------------------------- */

void
ctl_print_status(VsDbusAgent1 *agent, gboolean json)
{
    GVariant *hooks = vs_dbus_agent1_get_hook_counts(agent);
    GVariantIter iter;
    const char *op;
    guint32 n;

    if (json) {
        ctl_print_json(proxy_properties(G_DBUS_PROXY(agent)));
        return;
    }
    g_print("version:   %s\n", str0(vs_dbus_agent1_get_version(agent)));
    g_print("libvirt:   %s (%s)\n", str0(vs_dbus_agent1_get_libvirt_uri(agent)),
            vs_dbus_agent1_get_connected(agent) ? "connected" : "not connected");
    g_print("snapshots: %s\n", str0(vs_dbus_agent1_get_snapshot_directory(agent)));
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

void
ctl_print_domains(GVariant *domains, gboolean names_only, gboolean json)
{
    GVariantIter iter;
    GVariant *dom;

    if (names_only) {
        g_variant_iter_init(&iter, domains);
        while ((dom = g_variant_iter_next_value(&iter))) {
            g_print("%s\n", dict_str(dom, "name"));
            g_variant_unref(dom);
        }
        return;
    }
    if (json) {
        ctl_print_json(domains);
        return;
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
}

void
ctl_print_domain_event(const char *domain, const char *uuid, const char *event, const char *detail,
                       gboolean json)
{
    g_autofree char *when = now_text();

    if (json) {
        ctl_print_json(g_variant_new_parsed(
            "{'time': <%s>, 'domain': <%s>, 'uuid': <%s>, 'event': <%s>, 'detail': <%s>}", when,
            domain, uuid, event, detail));
        return;
    }
    g_print("%s  %-24s %-12s %s\n", when, domain, event, detail);
    fflush(stdout);
}

void
ctl_print_connected(gboolean connected, gboolean json)
{
    g_autofree char *when = now_text();

    if (json)
        ctl_print_json(g_variant_new_parsed("{'time': <%s>, 'connected': <%b>}", when, connected));
    else
        g_print("%s  (agent %s libvirt)\n", when, connected ? "reconnected to" : "lost");
    fflush(stdout);
}

void
ctl_print_agent_running(gboolean running, gboolean json)
{
    g_autofree char *when = now_text();

    if (json)
        ctl_print_json(
            g_variant_new_parsed("{'time': <%s>, 'agent-running': <%b>}", when, running));
    else
        g_print("%s  (agent %s)\n", when, running ? "started" : "went away");
    fflush(stdout);
}

/* ---- jobs -------------------------------------------------------------------------------- */

/* A job as the JSON object virtsnapctl prints. */
GVariant *
ctl_job_summary(VsDbusJob1 *job)
{
    GVariantBuilder b;
    GVariant *result = vs_dbus_job1_get_result(job);

#define ADD(key, value) g_variant_builder_add(&b, "{sv}", key, value)
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    ADD("job", g_variant_new_string(g_dbus_proxy_get_object_path(G_DBUS_PROXY(job))));
    ADD("id", g_variant_new_uint32(vs_dbus_job1_get_id(job)));
    ADD("domain", g_variant_new_string(str0(vs_dbus_job1_get_domain(job))));
    ADD("state", g_variant_new_string(str0(vs_dbus_job1_get_state(job))));
    ADD("phase", g_variant_new_string(str0(vs_dbus_job1_get_phase(job))));
    ADD("method", g_variant_new_string(str0(vs_dbus_job1_get_method(job))));
    ADD("method_reason", g_variant_new_string(str0(vs_dbus_job1_get_method_reason(job))));
    ADD("freeze_ms", g_variant_new_uint64(vs_dbus_job1_get_freeze_ms(job)));
    ADD("downtime_ms", g_variant_new_uint64(vs_dbus_job1_get_downtime_ms(job)));
    ADD("error_name", g_variant_new_string(str0(vs_dbus_job1_get_error_name(job))));
    ADD("error", g_variant_new_string(str0(vs_dbus_job1_get_error(job))));
    if (result) {
        ADD("snapshot_id", g_variant_new_string(dict_str(result, "snapshot-id")));
        ADD("result", result);
    }
#undef ADD
    return g_variant_builder_end(&b);
}

/* A verify job's Result: what was checked and what was found. */
static void
print_verify_result(GVariant *result)
{
    static const char *const lists[] = {"file-systems", "notes", "problems"};

    g_print("  snapshot: %s (name %s) verified %s%s: %s\n", dict_str(result, "snapshot-id"),
            dict_str(result, "name"), dict_str(result, "verified"),
            dict_bool(result, "deep") ? " (deep)" : "", dict_bool(result, "ok") ? "ok" : "FAILED");
    for (guint l = 0; l < G_N_ELEMENTS(lists); l++) {
        g_autofree const char **items = NULL;

        if (!g_variant_lookup(result, lists[l], "^a&s", &items))
            continue;
        for (guint i = 0; items[i]; i++)
            g_print("  %s: %s\n", lists[l], items[i]);
    }
}

static void
print_result_human(GVariant *result)
{
    g_autoptr(GVariant) disks = g_variant_lookup_value(result, "disks", G_VARIANT_TYPE("aa{sv}"));
    g_autoptr(GVariant) cold = g_variant_lookup_value(result, "downtime-ms", NULL);
    const char *note = dict_str(result, "quiesce-note");

    if (*dict_str(result, "verified")) {
        print_verify_result(result);
        return;
    }
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
                dict_bool(result, "quiesced") ? "yes" : "no", *note ? " (" : "", note,
                *note ? ")" : "", dict_u64(result, "freeze-ms"), dict_u64(result, "copy-ms"),
                dict_u64(result, "flatten-ms"), dict_u64(result, "total-ms"));
    for (gsize i = 0; disks && i < g_variant_n_children(disks); i++) {
        g_autoptr(GVariant) d = g_variant_get_child_value(disks, i);

        g_print("  %-6s %s  %s  %.1f MiB (%.1f MiB on disk)\n", dict_str(d, "target"),
                dict_str(d, "image"), dict_str(d, "format"),
                dict_u64(d, "virtual-size") / 1048576.0, dict_u64(d, "bytes") / 1048576.0);
    }
}

void
ctl_print_job(VsDbusJob1 *job, gboolean json)
{
    const char *method = str0(vs_dbus_job1_get_method(job));
    const char *error = str0(vs_dbus_job1_get_error(job));
    GVariant *result = vs_dbus_job1_get_result(job);

    if (json) {
        ctl_print_json(ctl_job_summary(job));
        return;
    }
    g_print("job %s: %s (%s) of %s\n", g_dbus_proxy_get_object_path(G_DBUS_PROXY(job)),
            str0(vs_dbus_job1_get_state(job)), str0(vs_dbus_job1_get_phase(job)),
            str0(vs_dbus_job1_get_domain(job)));
    if (*method)
        g_print("  method: %s (%s)\n", method, str0(vs_dbus_job1_get_method_reason(job)));
    if (*error)
        g_print("  error:  %s (%s)\n", error, str0(vs_dbus_job1_get_error_name(job)));
    if (result && g_variant_n_children(result) > 0 && strcmp(method, "clone") == 0)
        ctl_print_clone_result(result); /* ctl-clone.c */
    else if (result && g_variant_n_children(result) > 0)
        print_result_human(result);
}

/* On stderr, after the job (or its JSON) when it did not succeed. */
void
ctl_print_job_error(VsDbusJob1 *job)
{
    g_printerr("virtsnapctl: job %s %s: %s\n", g_dbus_proxy_get_object_path(G_DBUS_PROXY(job)),
               str0(vs_dbus_job1_get_state(job)), str0(vs_dbus_job1_get_error(job)));
}

void
ctl_print_jobs_header(void)
{
    g_print("%-4s %-12s %-14s %-5s %-24s %s\n", "ID", "STATE", "PHASE", "DONE", "DOMAIN",
            "SNAPSHOT");
}

void
ctl_print_jobs_row(VsDbusJob1 *job)
{
    GVariant *result = vs_dbus_job1_get_result(job);

    g_print("%-4u %-12s %-14s %4d%% %-24s %s\n", vs_dbus_job1_get_id(job),
            str0(vs_dbus_job1_get_state(job)), str0(vs_dbus_job1_get_phase(job)),
            (int)(vs_dbus_job1_get_progress(job) * 100 + 0.5), str0(vs_dbus_job1_get_domain(job)),
            result ? dict_str(result, "snapshot-id") : "");
}

/* The progress bar of a waiting virtsnapctl, redrawn in place (only on a terminal). */
void
ctl_print_progress(VsDbusJob1 *job)
{
    double progress = vs_dbus_job1_get_progress(job);
    int width = 30, filled = (int)(progress * width + 0.5);

    g_print("\r[%.*s%*s] %3d%%  %-14s %8.1f / %.1f MiB ", filled, "##############################",
            width - filled, "", (int)(progress * 100 + 0.5), str0(vs_dbus_job1_get_phase(job)),
            vs_dbus_job1_get_bytes_done(job) / 1048576.0,
            vs_dbus_job1_get_bytes_total(job) / 1048576.0);
    fflush(stdout);
}

/* ---- snapshots, policy ------------------------------------------------------------------- */

void
ctl_print_snapshots(GVariant *list, gboolean ids_only, gboolean json)
{
    if (ids_only) {
        for (gsize i = 0; i < g_variant_n_children(list); i++) {
            g_autoptr(GVariant) s = g_variant_get_child_value(list, i);

            g_print("%s\n", dict_str(s, "id"));
        }
        return;
    }
    if (json) {
        ctl_print_json(list);
        return;
    }
    g_print("%-24s %-24s %-16s %-20s %-6s %-8s %-20s %-12s %s\n", "ID", "NAME", "DOMAIN", "CREATED",
            "METHOD", "QUIESCED", "VERIFIED", "DISKS", "USED-BY");
    for (gsize i = 0; i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) s = g_variant_get_child_value(list, i);
        g_autoptr(GVariant) disks = g_variant_lookup_value(s, "disks", G_VARIANT_TYPE("aa{sv}"));
        g_autoptr(GString) dt = g_string_new(NULL);
        g_autofree char *created = g_strndup(dict_str(s, "created"), 19);
        g_autofree char *verified = NULL;
        g_autofree const char **used_by = NULL;
        g_autofree char *users = NULL;

        for (gsize k = 0; disks && k < g_variant_n_children(disks); k++) {
            g_autoptr(GVariant) d = g_variant_get_child_value(disks, k);

            g_string_append_printf(dt, "%s%s", k ? "," : "", dict_str(d, "target"));
        }
        /* The time of the last verification, or FAILED when it found problems. */
        if (!*dict_str(s, "verified"))
            verified = g_strdup("-");
        else if (!dict_bool(s, "verified-ok"))
            verified = g_strdup("FAILED");
        else
            verified = g_strndup(dict_str(s, "verified"), 19);
        if (g_variant_lookup(s, "used-by", "^a&s", &used_by) && used_by[0])
            users = g_strjoinv(",", (char **)used_by);
        g_print("%-24s %-24s %-16s %-20s %-6s %-8s %-20s %-12s %s\n", dict_str(s, "id"),
                dict_str(s, "name"), dict_str(s, "domain"), created, dict_str(s, "method"),
                dict_bool(s, "quiesced") ? "yes" : "no", verified, dt->str, users ? users : "-");
    }
}

void
ctl_print_policy(GVariant *settings, const char *problem, gboolean json)
{
    GVariantIter iter;
    const char *key, *value;

    if (json) {
        ctl_print_json(
            g_variant_new_parsed("{'settings': <%@a{ss}>, 'problem': <%s>}", settings, problem));
        return;
    }
    if (*problem)
        g_print("problem: %s (the stored policy is ignored)\n", problem);
    else if (g_variant_n_children(settings) == 0)
        g_print("no policy\n");
    g_variant_iter_init(&iter, settings);
    while (g_variant_iter_next(&iter, "{&s&s}", &key, &value))
        g_print("%s=%s\n", key, value);
}

/* ---- browse ------------------------------------------------------------------------------ */

void
ctl_print_exports(GVariant *list, gboolean json)
{
    g_autoptr(GVariant) owned = g_variant_ref_sink(list);

    if (json) {
        ctl_print_json(g_variant_ref(owned));
        return;
    }
    g_print("%-4s %-24s %-6s %-6s %s\n", "ID", "SNAPSHOT", "DISK", "OWNER", "URI");
    for (gsize i = 0; i < g_variant_n_children(owned); i++) {
        g_autoptr(GVariant) e = g_variant_get_child_value(owned, i);
        guint32 id = 0, owner = 0;

        g_variant_lookup(e, "id", "u", &id);
        g_variant_lookup(e, "owner", "u", &owner);
        g_print("%-4u %-24s %-6s %-6u %s\n", id, dict_str(e, "snapshot-id"), dict_str(e, "disk"),
                owner, dict_str(e, "uri"));
    }
}

void
ctl_print_mounted(const char *id, const char *disk, const char *dir, const char *export,
                  gboolean json)
{
    GVariantBuilder b;

    if (!json) {
        g_print("mounted snapshot %s disk %s read-only at %s (%s)\n", id, disk, dir, export);
        return;
    }
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "snapshot-id", g_variant_new_string(id));
    g_variant_builder_add(&b, "{sv}", "disk", g_variant_new_string(disk));
    g_variant_builder_add(&b, "{sv}", "dir", g_variant_new_string(dir));
    g_variant_builder_add(&b, "{sv}", "export", g_variant_new_string(export));
    ctl_print_json(g_variant_builder_end(&b));
}
