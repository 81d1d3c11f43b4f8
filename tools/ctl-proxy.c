/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Loading a generated proxy's properties ourselves: GDBusProxy loads them at construction
 * but drops the error, and virtsnapctl must tell "no agent" (3) from "no such job" (4). */
#include "ctl.h"
#include "vs-error.h"
#include "vs-names.h"

/* Fills @proxy's property cache with one GetAll, so that the typed getters
 * (vs_dbus_job1_get_state() ...) read what the agent has now. */
gboolean
ctl_proxy_load(GDBusProxy *proxy, GError **error)
{
    g_autoptr(GVariant) props = NULL;
    g_autoptr(GVariant) reply = g_dbus_connection_call_sync(
        g_dbus_proxy_get_connection(proxy), g_dbus_proxy_get_name(proxy),
        g_dbus_proxy_get_object_path(proxy), "org.freedesktop.DBus.Properties", "GetAll",
        g_variant_new("(s)", g_dbus_proxy_get_interface_name(proxy)), G_VARIANT_TYPE("(a{sv})"),
        G_DBUS_CALL_FLAGS_NONE, -1, NULL, error);
    GVariantIter iter;
    const char *name;
    GVariant *value;

    if (!reply)
        return FALSE;
    props = g_variant_get_child_value(reply, 0);
    g_variant_iter_init(&iter, props);
    while (g_variant_iter_next(&iter, "{&sv}", &name, &value)) {
        g_dbus_proxy_set_cached_property(proxy, name, value);
        g_variant_unref(value);
    }
    return TRUE;
}

/* A proxy of the job at @path, its properties not loaded yet (ctl_job_load). */
VsDbusJob1 *
ctl_job_new(Ctl *ctl, const char *path, GError **error)
{
    return vs_dbus_job1_proxy_new_sync(ctl->bus,
                                       G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES |
                                           G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS |
                                           G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START,
                                       VS_BUS_NAME, path, NULL, error);
}

/* Loads @job's properties; a path with no job behind it is VS_ERROR_NO_SUCH_JOB. */
gboolean
ctl_job_load(VsDbusJob1 *job, GError **error)
{
    if (ctl_proxy_load(G_DBUS_PROXY(job), error))
        return TRUE;
    if (g_error_matches(*error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_METHOD) ||
        g_error_matches(*error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_OBJECT) ||
        g_error_matches(*error, G_DBUS_ERROR, G_DBUS_ERROR_UNKNOWN_INTERFACE)) {
        g_clear_error(error);
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_JOB, "no job %s",
                    g_dbus_proxy_get_object_path(G_DBUS_PROXY(job)));
    }
    return FALSE;
}

/* The job at @path with its properties loaded. */
VsDbusJob1 *
ctl_job_get(Ctl *ctl, const char *path, GError **error)
{
    g_autoptr(VsDbusJob1) job = ctl_job_new(ctl, path, error);

    if (!job || !ctl_job_load(job, error))
        return NULL;
    return g_steal_pointer(&job);
}
