/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Authorization: every method of both interfaces has a rule, the fallback rule from bus
 * credentials, the shipped polkit files name the table's actions, and a guarded skeleton
 * on a real bus still runs the methods its caller may call. */
#include <gio/gio.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "vs-bouncer.h"
#include "vs-dbus-generated.h"
#include "vs-error.h"
#include "vs-log.h"
#include "vs-names.h"

static void
check_interface_complete(GDBusInterfaceInfo *info)
{
    g_assert_nonnull(info->methods);
    g_assert_nonnull(info->methods[0]);
    for (guint i = 0; info->methods[i]; i++) {
        const VsAuthRule *rule = vs_bouncer_lookup(info->name, info->methods[i]->name);

        if (!rule)
            g_error("%s.%s has no authorization rule", info->name, info->methods[i]->name);
        if (rule->kind == VS_AUTH_POLKIT)
            g_assert_true(g_str_has_prefix(rule->action, VS_ACTION_PREFIX));
        else
            g_assert_null(rule->action);
    }
}

static gboolean
interface_has_method(GDBusInterfaceInfo *info, const char *method)
{
    return g_dbus_interface_info_lookup_method(info, method) != NULL;
}

static void
test_table_complete(void)
{
    GDBusInterfaceInfo *agent = vs_dbus_agent1_interface_info();
    GDBusInterfaceInfo *job = vs_dbus_job1_interface_info();
    GDBusInterfaceInfo *export = vs_dbus_export1_interface_info();
    gsize n = 0;
    const VsAuthRule *rules = vs_bouncer_get_rules(&n);

    g_assert_cmpstr(agent->name, ==, VS_AGENT_INTERFACE);
    g_assert_cmpstr(job->name, ==, VS_JOB_INTERFACE);
    g_assert_cmpstr(export->name, ==, VS_EXPORT_INTERFACE);
    check_interface_complete(agent);
    check_interface_complete(job);
    check_interface_complete(export);
    /* ... and nothing in the table that the interfaces do not have. */
    for (gsize i = 0; i < n; i++) {
        GDBusInterfaceInfo *info = g_str_equal(rules[i].interface, VS_AGENT_INTERFACE)    ? agent
                                   : g_str_equal(rules[i].interface, VS_EXPORT_INTERFACE) ? export
                                                                                          : job;

        g_assert_true(g_str_equal(rules[i].interface, info->name));
        g_assert_true(interface_has_method(info, rules[i].method));
    }
}

static void
test_table_rules(void)
{
    static const struct {
        const char *interface, *method;
        VsAuthKind kind;
        const char *action;
    } expected[] = {
        {VS_AGENT_INTERFACE, "ListDomains", VS_AUTH_READ, NULL},
        {VS_AGENT_INTERFACE, "GetPolicy", VS_AUTH_READ, NULL},
        {VS_AGENT_INTERFACE, "CreateSnapshot", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_CREATE},
        {VS_AGENT_INTERFACE, "DeleteSnapshot", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_DELETE},
        {VS_AGENT_INTERFACE, "SetPolicy", VS_AUTH_POLKIT, VS_ACTION_POLICY_SET},
        {VS_AGENT_INTERFACE, "ClearPolicy", VS_AUTH_POLKIT, VS_ACTION_POLICY_SET},
        {VS_AGENT_INTERFACE, "HookEvent", VS_AUTH_ROOT, NULL},
        {VS_JOB_INTERFACE, "Cancel", VS_AUTH_POLKIT, VS_ACTION_JOB_CANCEL},
        {VS_AGENT_INTERFACE, "ExportSnapshot", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_EXPORT},
        {VS_AGENT_INTERFACE, "ListExports", VS_AUTH_READ, NULL},
        {VS_EXPORT_INTERFACE, "Remove", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_EXPORT},
    };

    for (gsize i = 0; i < G_N_ELEMENTS(expected); i++) {
        const VsAuthRule *rule = vs_bouncer_lookup(expected[i].interface, expected[i].method);

        g_assert_nonnull(rule);
        g_assert_cmpint(rule->kind, ==, expected[i].kind);
        g_assert_cmpstr(rule->action, ==, expected[i].action);
    }
    /* Deny by default: what is not in the table has no rule. */
    g_assert_null(vs_bouncer_lookup(VS_AGENT_INTERFACE, "Cancel"));
    g_assert_null(vs_bouncer_lookup(VS_JOB_INTERFACE, "CreateSnapshot"));
    g_assert_null(vs_bouncer_lookup("org.example.Other", "ListDomains"));
    g_assert_null(vs_bouncer_lookup(VS_AGENT_INTERFACE, NULL));
}

static GVariant *
credentials(gint64 uid, const guint32 *gids, gsize n_gids)
{
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    if (uid >= 0)
        g_variant_builder_add(&b, "{sv}", "UnixUserID", g_variant_new_uint32((guint32)uid));
    if (gids)
        g_variant_builder_add(
            &b, "{sv}", "UnixGroupIDs",
            g_variant_new_fixed_array(G_VARIANT_TYPE_UINT32, gids, n_gids, sizeof(guint32)));
    g_variant_builder_add(&b, "{sv}", "ProcessID", g_variant_new_uint32(1));
    return g_variant_ref_sink(g_variant_builder_end(&b));
}

/* Injected credentials; group "daemon" (gid 1 on Debian) stands in for libvirt. */
static void
test_fallback_from_credentials(void)
{
    struct group *gr = getgrnam("daemon");
    guint32 member[] = {100, 0, 0};
    guint32 outsider[] = {100, 65534};
    g_autoptr(GVariant) root = credentials(0, NULL, 0);
    g_autoptr(GVariant) self = credentials(4321, outsider, G_N_ELEMENTS(outsider));
    g_autoptr(GVariant) in_group = NULL;
    g_autoptr(GVariant) not_in_group = credentials(1234, outsider, G_N_ELEMENTS(outsider));
    g_autoptr(GVariant) no_groups_listed = credentials(1234, member, 0);
    g_autoptr(GVariant) no_uid = NULL;

    g_assert_nonnull(gr);
    member[2] = gr->gr_gid;
    in_group = credentials(1234, member, G_N_ELEMENTS(member));
    no_uid = credentials(-1, member, G_N_ELEMENTS(member));

    g_assert_true(vs_bouncer_credentials_allow(root, 4321, "daemon"));
    g_assert_true(vs_bouncer_credentials_allow(self, 4321, "daemon"));
    g_assert_false(vs_bouncer_credentials_allow(self, 0, "daemon"));
    g_assert_true(vs_bouncer_credentials_allow(in_group, 0, "daemon"));
    g_assert_false(vs_bouncer_credentials_allow(not_in_group, 0, "daemon"));
    /* An empty list the bus reported is believed: no lookup in the user database. */
    g_assert_false(vs_bouncer_credentials_allow(no_groups_listed, 0, "daemon"));
    g_assert_false(vs_bouncer_credentials_allow(no_uid, 0, "daemon"));
    /* A group that does not exist has no members. */
    g_assert_false(vs_bouncer_credentials_allow(in_group, 0, "vs-no-such-group"));
    g_assert_true(vs_bouncer_credentials_allow(root, 4321, "vs-no-such-group"));
}

/* Without UnixGroupIDs the groups come from the user database (getgrouplist). */
static void
test_fallback_from_user_database(void)
{
    struct passwd *pw = getpwnam("daemon");
    guint32 daemon_uid, nobody_uid;
    g_autoptr(GVariant) daemon_user = NULL;
    g_autoptr(GVariant) nobody_user = NULL;

    g_assert_nonnull(pw);
    daemon_uid = pw->pw_uid;
    pw = getpwnam("nobody");
    g_assert_nonnull(pw);
    nobody_uid = pw->pw_uid;
    daemon_user = credentials(daemon_uid, NULL, 0);
    nobody_user = credentials(nobody_uid, NULL, 0);

    g_assert_true(vs_bouncer_credentials_allow(daemon_user, 0, "daemon"));
    g_assert_false(vs_bouncer_credentials_allow(nobody_user, 0, "daemon"));
    g_assert_false(vs_bouncer_credentials_allow(daemon_user, 0, "vs-no-such-group"));
}

/* The shipped polkit files know every action of the table and the group of the rule. */
static void
test_policy_files(void)
{
    g_autofree char *policy_path =
        g_test_build_filename(G_TEST_DIST, "..", "packaging", "org.virtsnap.policy", NULL);
    g_autofree char *rules_path =
        g_test_build_filename(G_TEST_DIST, "..", "packaging", "org.virtsnap.rules", NULL);
    g_autofree char *policy = NULL;
    g_autofree char *rules_js = NULL;
    g_autoptr(GError) error = NULL;
    gsize n = 0;
    const VsAuthRule *rules = vs_bouncer_get_rules(&n);

    g_assert_true(g_file_get_contents(policy_path, &policy, NULL, &error));
    g_assert_no_error(error);
    g_assert_true(g_file_get_contents(rules_path, &rules_js, NULL, &error));
    g_assert_no_error(error);
    for (gsize i = 0; i < n; i++) {
        g_autofree char *tag = NULL;

        if (rules[i].kind != VS_AUTH_POLKIT)
            continue;
        tag = g_strdup_printf("<action id=\"%s\">", rules[i].action);
        if (!strstr(policy, tag))
            g_error("%s does not declare %s", policy_path, rules[i].action);
    }
    g_assert_nonnull(strstr(rules_js, "\"" VS_ACTION_PREFIX "\""));
    g_assert_nonnull(strstr(rules_js, "isInGroup(\"" VS_ADMIN_GROUP "\")"));
}

/* ---- a guarded skeleton on a real bus ---------------------------------------------------- */

typedef struct {
    guint list_jobs;
    guint delete_snapshot;
    guint hook_event;
} Calls;

static gboolean
on_list_jobs(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, Calls *calls)
{
    const char *const none[] = {NULL};

    calls->list_jobs++;
    vs_dbus_agent1_complete_list_jobs(skeleton, invocation, none);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
on_delete_snapshot(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *id,
                   Calls *calls)
{
    calls->delete_snapshot++;
    g_assert_cmpstr(id, ==, "20260101T000000Z-abcdef");
    vs_dbus_agent1_complete_delete_snapshot(skeleton, invocation);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
on_hook_event(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *domain,
              const char *operation, const char *sub, const char *extra, Calls *calls)
{
    calls->hook_event++;
    vs_dbus_agent1_complete_hook_event(skeleton, invocation, TRUE, operation);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

typedef struct {
    GVariant *reply;
    GError *error;
    gboolean done;
} Reply;

static void
on_reply(GObject *source, GAsyncResult *result, gpointer data)
{
    Reply *r = data;

    r->reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &r->error);
    r->done = TRUE;
}

/* Service and client share this thread's main context: the call is async. */
static GVariant *
call(GDBusConnection *client, const char *method, GVariant *params, GError **error)
{
    Reply r = {0};

    g_dbus_connection_call(client, g_dbus_connection_get_unique_name(client), VS_AGENT_PATH,
                           VS_AGENT_INTERFACE, method, params, NULL, G_DBUS_CALL_FLAGS_NONE, 5000,
                           NULL, on_reply, &r);
    while (!r.done)
        g_main_context_iteration(NULL, TRUE);
    if (r.error)
        g_propagate_error(error, r.error);
    return r.reply;
}

static GDBusConnection *
connect_to(GTestDBus *bus)
{
    g_autoptr(GError) error = NULL;
    GDBusConnection *c =
        g_dbus_connection_new_for_address_sync(g_test_dbus_get_bus_address(bus),
                                               G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                                   G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                               NULL, NULL, &error);

    g_assert_no_error(error);
    return c;
}

/* The caller has the agent's own uid: allowed without polkit. Each call reaches its
 * handler exactly once, with its parameters, after the asynchronous check (the bus's
 * credentials) re-dispatches it. */
static void
test_guarded_skeleton(void)
{
    g_autoptr(GTestDBus) bus = g_test_dbus_new(G_TEST_DBUS_NONE);
    g_autoptr(GDBusConnection) connection = NULL;
    g_autoptr(VsDbusAgent1) skeleton = vs_dbus_agent1_skeleton_new();
    g_autoptr(VsBouncer) bouncer = vs_bouncer_new();
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) jobs = NULL;
    g_autoptr(GVariant) deleted = NULL;
    g_autoptr(GVariant) hook = NULL;
    Calls calls = {0};
    const char *message = NULL;
    gboolean allow = FALSE;

    g_test_dbus_up(bus);
    connection = connect_to(bus);
    g_signal_connect(skeleton, "handle-list-jobs", G_CALLBACK(on_list_jobs), &calls);
    g_signal_connect(skeleton, "handle-delete-snapshot", G_CALLBACK(on_delete_snapshot), &calls);
    g_signal_connect(skeleton, "handle-hook-event", G_CALLBACK(on_hook_event), &calls);
    vs_bouncer_guard(bouncer, G_DBUS_INTERFACE_SKELETON(skeleton));
    g_assert_true(g_dbus_interface_skeleton_export(G_DBUS_INTERFACE_SKELETON(skeleton), connection,
                                                   VS_AGENT_PATH, &error));
    g_assert_no_error(error);

    jobs = call(connection, "ListJobs", NULL, &error); /* read-only: no check */
    g_assert_no_error(error);
    g_assert_cmpstr(g_variant_get_type_string(jobs), ==, "(ao)");
    deleted = call(connection, "DeleteSnapshot", g_variant_new("(s)", "20260101T000000Z-abcdef"),
                   &error); /* polkit action: polkitd is not on this bus */
    g_assert_no_error(error);
    hook = call(connection, "HookEvent", g_variant_new("(ssss)", "web", "prepare", "begin", "-"),
                &error); /* uid 0 only */
    g_assert_no_error(error);
    g_variant_get(hook, "(b&s)", &allow, &message);
    g_assert_true(allow);
    g_assert_cmpstr(message, ==, "prepare");
    g_assert_cmpuint(calls.list_jobs, ==, 1);
    g_assert_cmpuint(calls.delete_snapshot, ==, 1);
    g_assert_cmpuint(calls.hook_event, ==, 1);

    g_dbus_interface_skeleton_unexport(G_DBUS_INTERFACE_SKELETON(skeleton));
    g_dbus_connection_close_sync(connection, NULL, NULL);
    g_test_dbus_down(bus);
}

/* ---- log lines ---------------------------------------------------------------------- */

static GPtrArray *captured; /* GHashTable* field -> value, one per log line */

static GLogWriterOutput
capture_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
    GHashTable *line = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);

    for (gsize i = 0; i < n_fields; i++) {
        if (fields[i].length < 0)
            g_hash_table_insert(line, g_strdup(fields[i].key), g_strdup(fields[i].value));
    }
    g_ptr_array_add(captured, line);
    return G_LOG_WRITER_HANDLED;
}

static GHashTable *
last_line(void)
{
    g_assert_cmpuint(captured->len, >, 0);
    return g_ptr_array_index(captured, captured->len - 1);
}

/* journalctl VIRTSNAP_DOMAIN=web and MESSAGE_ID=... find job lines. */
static void
test_log_job_fields(void)
{
    GHashTable *line;
    const char *ids[] = {VS_MSGID_JOB_STARTED,     VS_MSGID_JOB_SUCCEEDED,
                         VS_MSGID_JOB_FAILED,      VS_MSGID_JOB_CANCELLED,
                         VS_MSGID_JOB_INTERRUPTED, VS_MSGID_POLICY_TRIGGERED,
                         VS_MSGID_AUTH_DENIED};
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);

    for (gsize i = 0; i < G_N_ELEMENTS(ids); i++) {
        g_assert_cmpuint(strlen(ids[i]), ==, 32);
        for (const char *p = ids[i]; *p; p++)
            g_assert_true(g_ascii_isxdigit(*p) && !g_ascii_isupper(*p));
        g_assert_false(g_hash_table_contains(seen, ids[i]));
        g_hash_table_add(seen, (gpointer)ids[i]);
    }

    vs_log_job(G_LOG_LEVEL_MESSAGE, VS_MSGID_JOB_FAILED, 7, "web", "failed: %s", "boom");
    line = last_line();
    g_assert_cmpstr(g_hash_table_lookup(line, "MESSAGE"), ==, "job 7 (web): failed: boom");
    g_assert_cmpstr(g_hash_table_lookup(line, "MESSAGE_ID"), ==, VS_MSGID_JOB_FAILED);
    g_assert_cmpstr(g_hash_table_lookup(line, "VIRTSNAP_JOB"), ==, "7");
    g_assert_cmpstr(g_hash_table_lookup(line, "VIRTSNAP_DOMAIN"), ==, "web");
    g_assert_cmpstr(g_hash_table_lookup(line, "PRIORITY"), ==, "5");
    g_assert_cmpstr(g_hash_table_lookup(line, "GLIB_DOMAIN"), ==, G_LOG_DOMAIN);

    vs_log_job(G_LOG_LEVEL_INFO, NULL, 0, "db", "hook: refused %s", "start");
    line = last_line();
    g_assert_cmpstr(g_hash_table_lookup(line, "MESSAGE"), ==, "hook: refused start");
    g_assert_cmpstr(g_hash_table_lookup(line, "VIRTSNAP_DOMAIN"), ==, "db");
    g_assert_false(g_hash_table_contains(line, "VIRTSNAP_JOB"));
    g_assert_false(g_hash_table_contains(line, "MESSAGE_ID"));
    g_assert_cmpstr(g_hash_table_lookup(line, "PRIORITY"), ==, "6");

    vs_log_job(G_LOG_LEVEL_DEBUG, VS_MSGID_AUTH_DENIED, 0, NULL, "denied");
    line = last_line();
    g_assert_cmpstr(g_hash_table_lookup(line, "MESSAGE"), ==, "denied");
    g_assert_false(g_hash_table_contains(line, "VIRTSNAP_DOMAIN"));
    g_assert_cmpstr(g_hash_table_lookup(line, "MESSAGE_ID"), ==, VS_MSGID_AUTH_DENIED);
    g_assert_cmpstr(g_hash_table_lookup(line, "PRIORITY"), ==, "7");
}

int
main(int argc, char **argv)
{
    captured = g_ptr_array_new_with_free_func((GDestroyNotify)g_hash_table_unref);
    g_log_set_writer_func(capture_writer, NULL, NULL);
    g_test_init(&argc, &argv, NULL);
    (void)vs_error_quark();
    g_test_add_func("/bouncer/table-complete", test_table_complete);
    g_test_add_func("/bouncer/table-rules", test_table_rules);
    g_test_add_func("/bouncer/fallback-credentials", test_fallback_from_credentials);
    g_test_add_func("/bouncer/fallback-user-database", test_fallback_from_user_database);
    g_test_add_func("/bouncer/policy-files", test_policy_files);
    g_test_add_func("/bouncer/guarded-skeleton", test_guarded_skeleton);
    g_test_add_func("/bouncer/log-fields", test_log_job_fields);
    return g_test_run();
}
