/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Authorization: the table of every method's rule, the asynchronous polkit check
 * (org.freedesktop.PolicyKit1 over GDBus, no libpolkit) and the fallback from the
 * caller's bus credentials where polkitd is not running. */
#include "vs-bouncer.h"
#include "vs-error.h"
#include "vs-log.h"
#include "vs-names.h"

#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

/* Every method of org.virtsnap.Agent1, .Job1 and .Export1; one missing is denied
 * (and fails the unit test that walks the introspection data). */
static const VsAuthRule rules[] = {
    {VS_AGENT_INTERFACE, "ListDomains", VS_AUTH_READ, NULL},
    {VS_AGENT_INTERFACE, "ListJobs", VS_AUTH_READ, NULL},
    {VS_AGENT_INTERFACE, "ListSnapshots", VS_AUTH_READ, NULL},
    {VS_AGENT_INTERFACE, "GetPolicy", VS_AUTH_READ, NULL},
    {VS_AGENT_INTERFACE, "CreateSnapshot", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_CREATE},
    {VS_AGENT_INTERFACE, "DeleteSnapshot", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_DELETE},
    {VS_AGENT_INTERFACE, "SetPolicy", VS_AUTH_POLKIT, VS_ACTION_POLICY_SET},
    {VS_AGENT_INTERFACE, "ClearPolicy", VS_AUTH_POLKIT, VS_ACTION_POLICY_SET},
    {VS_AGENT_INTERFACE, "HookEvent", VS_AUTH_ROOT, NULL},
    /* getting data back */
    {VS_AGENT_INTERFACE, "CloneSnapshot", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_CLONE},
    {VS_JOB_INTERFACE, "Cancel", VS_AUTH_POLKIT, VS_ACTION_JOB_CANCEL},
    /* browse; Remove() also checks that the caller owns the export (vs-export.c) */
    {VS_AGENT_INTERFACE, "ExportSnapshot", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_EXPORT},
    {VS_AGENT_INTERFACE, "ListExports", VS_AUTH_READ, NULL},
    {VS_EXPORT_INTERFACE, "Remove", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_EXPORT},
    /* verify */
    {VS_AGENT_INTERFACE, "VerifySnapshot", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_VERIFY},
    /* revert */
    {VS_AGENT_INTERFACE, "RevertSnapshot", VS_AUTH_POLKIT, VS_ACTION_SNAPSHOT_REVERT},
};

#define POLKIT_NAME                   "org.freedesktop.PolicyKit1"
#define POLKIT_PATH                   "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_INTERFACE              "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_ALLOW_USER_INTERACTION 1u

struct _VsBouncer {
    GObject parent;
    GMainContext *context; /* where checks run and calls are answered */
};

G_DEFINE_TYPE(VsBouncer, vs_bouncer, G_TYPE_OBJECT)

const VsAuthRule *
vs_bouncer_get_rules(gsize *n_rules)
{
    *n_rules = G_N_ELEMENTS(rules);
    return rules;
}

const VsAuthRule *
vs_bouncer_lookup(const char *interface, const char *method)
{
    for (gsize i = 0; i < G_N_ELEMENTS(rules); i++) {
        if (g_strcmp0(rules[i].interface, interface) == 0 &&
            g_strcmp0(rules[i].method, method) == 0)
            return &rules[i];
    }
    return NULL;
}

static gboolean
gid_of_group(const char *group, gid_t *gid)
{
    g_autofree char *buf = NULL;
    long size = sysconf(_SC_GETGR_R_SIZE_MAX);
    struct group gr, *found = NULL;

    size = size > 0 ? size : 16384;
    buf = g_malloc(size);
    if (getgrnam_r(group, &gr, buf, size, &found) != 0 || !found)
        return FALSE;
    *gid = found->gr_gid;
    return TRUE;
}

/* The groups of @uid from the user database, for a bus that reports none. */
static gboolean
uid_in_group(uid_t uid, gid_t gid)
{
    g_autofree char *buf = NULL;
    g_autofree gid_t *groups = NULL;
    long size = sysconf(_SC_GETPW_R_SIZE_MAX);
    struct passwd pw, *found = NULL;
    int n = 32;

    size = size > 0 ? size : 16384;
    buf = g_malloc(size);
    if (getpwuid_r(uid, &pw, buf, size, &found) != 0 || !found)
        return FALSE;
    groups = g_new(gid_t, n);
    while (getgrouplist(found->pw_name, found->pw_gid, groups, &n) < 0) {
        g_free(groups);
        groups = g_new(gid_t, n);
    }
    for (int i = 0; i < n; i++) {
        if (groups[i] == gid)
            return TRUE;
    }
    return FALSE;
}

gboolean
vs_bouncer_credentials_allow(GVariant *credentials, uid_t self_uid, const char *group)
{
    g_autoptr(GVariant) gids = NULL;
    guint32 uid;
    gid_t gid;

    if (!g_variant_lookup(credentials, "UnixUserID", "u", &uid))
        return FALSE;
    if (uid == 0 || uid == self_uid)
        return TRUE;
    if (!gid_of_group(group, &gid))
        return FALSE;
    gids = g_variant_lookup_value(credentials, "UnixGroupIDs", G_VARIANT_TYPE("au"));
    if (!gids)
        return uid_in_group(uid, gid);
    for (gsize i = 0; i < g_variant_n_children(gids); i++) {
        guint32 g;

        g_variant_get_child(gids, i, "u", &g);
        if (g == gid)
            return TRUE;
    }
    return FALSE;
}

/* ---- one check ------------------------------------------------------------------------- */

typedef struct {
    VsBouncer *bouncer;
    GDBusInterfaceSkeleton *skeleton;
    GDBusMethodInvocation *invocation; /* answered by us or handed to the skeleton */
    const VsAuthRule *rule;            /* NULL: not in the table */
    GVariant *credentials;             /* a{sv}, once known */
} Check;

static void
check_free(Check *c)
{
    g_object_unref(c->bouncer);
    g_object_unref(c->skeleton);
    g_clear_pointer(&c->credentials, g_variant_unref);
    g_free(c);
}

static const char *
check_what(Check *c)
{
    if (!c->rule)
        return "a method with no authorization rule";
    return c->rule->kind == VS_AUTH_POLKIT ? c->rule->action : "uid 0 only";
}

/* The method runs as it would have without us: the skeleton's own dispatch. */
static void
check_allow(Check *c)
{
    GDBusMethodInvocation *inv = c->invocation;
    const GDBusInterfaceVTable *vtable = g_dbus_interface_skeleton_get_vtable(c->skeleton);

    /* A job forgotten (or the agent unexported) while the check ran. */
    if (!g_dbus_interface_skeleton_has_connection(c->skeleton,
                                                  g_dbus_method_invocation_get_connection(inv))) {
        g_dbus_method_invocation_return_error(inv, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_OBJECT,
                                              "%s is gone",
                                              g_dbus_method_invocation_get_object_path(inv));
        check_free(c);
        return;
    }
    vtable->method_call(
        g_dbus_method_invocation_get_connection(inv), g_dbus_method_invocation_get_sender(inv),
        g_dbus_method_invocation_get_object_path(inv),
        g_dbus_method_invocation_get_interface_name(inv),
        g_dbus_method_invocation_get_method_name(inv), g_dbus_method_invocation_get_parameters(inv),
        inv, g_dbus_method_invocation_get_user_data(inv));
    check_free(c);
}

static void
check_deny(Check *c, const char *why)
{
    const char *method = g_dbus_method_invocation_get_method_name(c->invocation);
    guint32 uid = G_MAXUINT32;
    g_autofree char *who = NULL;

    if (c->credentials)
        g_variant_lookup(c->credentials, "UnixUserID", "u", &uid);
    who = uid == G_MAXUINT32 ? g_strdup("unknown uid") : g_strdup_printf("uid %u", uid);
    /* Notice, not info: GLib's default writer drops info without --verbose. */
    vs_log_job(G_LOG_LEVEL_MESSAGE, VS_MSGID_AUTH_DENIED, 0, NULL,
               "authorization: %s denied to %s (%s): %s (%s)", method, who,
               g_dbus_method_invocation_get_sender(c->invocation), why, check_what(c));
    g_dbus_method_invocation_return_error(c->invocation, VS_ERROR, VS_ERROR_PERMISSION_DENIED,
                                          "%s: not authorized (%s)", method, check_what(c));
    check_free(c);
}

static void
fallback_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    Check *c = data;

    g_task_return_boolean(task,
                          vs_bouncer_credentials_allow(c->credentials, geteuid(), VS_ADMIN_GROUP));
}

static void
fallback_done(GObject *source, GAsyncResult *result, gpointer data)
{
    Check *c = data;

    if (g_task_propagate_boolean(G_TASK(result), NULL))
        check_allow(c);
    else
        check_deny(c, "not root and not in group " VS_ADMIN_GROUP " (polkitd not running)");
}

/* polkitd is not there: not running and not activatable, or its activation failed. */
static gboolean
polkit_missing(const GError *error)
{
    g_autofree char *name = g_dbus_error_get_remote_error(error);

    return g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
           g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER) ||
           (name && g_str_has_prefix(name, "org.freedesktop.DBus.Error.Spawn."));
}

static void
polkit_done(GObject *source, GAsyncResult *result, gpointer data)
{
    Check *c = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply =
        g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &error);
    gboolean authorized = FALSE, challenge = FALSE;

    if (!reply && polkit_missing(error)) {
        g_autoptr(GTask) task = g_task_new(NULL, NULL, fallback_done, c);

        g_task_set_task_data(task, c, NULL);
        g_task_run_in_thread(task, fallback_thread);
        return;
    }
    if (!reply) {
        g_warning("authorization: polkit check of %s failed: %s", c->rule->action, error->message);
        check_deny(c, "the polkit check failed");
        return;
    }
    g_variant_get(reply, "((bb@a{ss}))", &authorized, &challenge, NULL);
    if (authorized)
        check_allow(c);
    else
        check_deny(c, challenge ? "polkit: authentication required" : "polkit: not authorized");
}

static void
ask_polkit(Check *c)
{
    GDBusMessage *message = g_dbus_method_invocation_get_message(c->invocation);
    gboolean interactive = (g_dbus_message_get_flags(message) &
                            G_DBUS_MESSAGE_FLAGS_ALLOW_INTERACTIVE_AUTHORIZATION) != 0;
    GVariantBuilder subject;

    g_variant_builder_init(&subject, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&subject, "{sv}", "name",
                          g_variant_new_string(g_dbus_method_invocation_get_sender(c->invocation)));
    g_dbus_connection_call(g_dbus_method_invocation_get_connection(c->invocation), POLKIT_NAME,
                           POLKIT_PATH, POLKIT_INTERFACE, "CheckAuthorization",
                           g_variant_new("((sa{sv})sa{ss}us)", "system-bus-name", &subject,
                                         c->rule->action, NULL,
                                         interactive ? POLKIT_ALLOW_USER_INTERACTION : 0u, ""),
                           G_VARIANT_TYPE("((bba{ss}))"), G_DBUS_CALL_FLAGS_NONE,
                           /* a person may be typing a password */
                           interactive ? G_MAXINT : -1, NULL, polkit_done, c);
}

static void
credentials_done(GObject *source, GAsyncResult *result, gpointer data)
{
    Check *c = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply =
        g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &error);
    guint32 uid;
    gboolean privileged;

    if (!reply) {
        check_deny(c, error->message);
        return;
    }
    g_variant_get(reply, "(@a{sv})", &c->credentials);
    if (!c->rule) {
        check_deny(c, "not in the authorization table");
        return;
    }
    /* Root (the agent's own user) needs nobody's permission, polkitd's included. */
    privileged =
        g_variant_lookup(c->credentials, "UnixUserID", "u", &uid) && (uid == 0 || uid == geteuid());
    switch (c->rule->kind) {
    case VS_AUTH_ROOT:
        if (privileged)
            check_allow(c);
        else
            check_deny(c, "not uid 0");
        break;
    case VS_AUTH_POLKIT:
        if (privileged)
            check_allow(c);
        else
            ask_polkit(c);
        break;
    case VS_AUTH_READ:
        g_assert_not_reached();
    }
}

/* On the bouncer's context: who is calling, as the bus daemon knows it. */
static gboolean
check_start(gpointer data)
{
    Check *c = data;
    const char *sender = g_dbus_method_invocation_get_sender(c->invocation);

    if (!sender) {
        check_deny(c, "no sender on a peer-to-peer connection");
        return G_SOURCE_REMOVE;
    }
    g_dbus_connection_call(g_dbus_method_invocation_get_connection(c->invocation),
                           "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                           "GetConnectionCredentials", g_variant_new("(s)", sender),
                           G_VARIANT_TYPE("(a{sv})"), G_DBUS_CALL_FLAGS_NONE, -1, NULL,
                           credentials_done, c);
    return G_SOURCE_REMOVE;
}

/* GDBus emits this in a worker thread of its own and runs the method only on TRUE.
 * Read-only methods go on at once; for the others the call is ours from here: the check
 * runs asynchronously on the main context, which then dispatches or refuses it. */
static gboolean
on_authorize_method(GDBusInterfaceSkeleton *skeleton, GDBusMethodInvocation *invocation,
                    VsBouncer *self)
{
    const VsAuthRule *rule =
        vs_bouncer_lookup(g_dbus_method_invocation_get_interface_name(invocation),
                          g_dbus_method_invocation_get_method_name(invocation));
    Check *c;

    if (rule && rule->kind == VS_AUTH_READ)
        return TRUE;
    c = g_new0(Check, 1);
    c->bouncer = g_object_ref(self);
    c->skeleton = g_object_ref(skeleton);
    c->invocation = invocation;
    c->rule = rule;
    g_main_context_invoke(self->context, check_start, c);
    return FALSE;
}

void
vs_bouncer_guard(VsBouncer *self, GDBusInterfaceSkeleton *skeleton)
{
    g_signal_connect_data(skeleton, "g-authorize-method", G_CALLBACK(on_authorize_method),
                          g_object_ref(self), (GClosureNotify)(void (*)(void))g_object_unref, 0);
}

static void
vs_bouncer_finalize(GObject *object)
{
    VsBouncer *self = VS_BOUNCER(object);

    g_main_context_unref(self->context);
    G_OBJECT_CLASS(vs_bouncer_parent_class)->finalize(object);
}

static void
vs_bouncer_init(VsBouncer *self)
{
    self->context = g_main_context_ref_thread_default();
}

static void
vs_bouncer_class_init(VsBouncerClass *klass)
{
    G_OBJECT_CLASS(klass)->finalize = vs_bouncer_finalize;
}

VsBouncer *
vs_bouncer_new(void)
{
    return g_object_new(VS_TYPE_BOUNCER, NULL);
}
