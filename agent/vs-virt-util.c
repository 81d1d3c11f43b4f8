/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libvirt errors and enum words, shared by every part that calls libvirt. */
#include "vs-virt-util.h"
#include "vs-error.h"

#include <stdarg.h>

int
vs_error_code_from_libvirt(int vir_code)
{
    switch (vir_code) {
    case VIR_ERR_NO_DOMAIN:
        return VS_ERROR_NO_SUCH_DOMAIN;
    case VIR_ERR_INVALID_ARG:
    case VIR_ERR_XML_ERROR:
        return VS_ERROR_INVALID_ARGUMENT;
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_CONFIG_UNSUPPORTED:
    case VIR_ERR_ARGUMENT_UNSUPPORTED:
        return VS_ERROR_UNSUPPORTED;
    case VIR_ERR_OPERATION_INVALID:
        return VS_ERROR_NOT_RUNNING;
    case VIR_ERR_AGENT_UNRESPONSIVE:
    case VIR_ERR_AGENT_UNSYNCED:
        return VS_ERROR_QUIESCE_FAILED;
    case VIR_ERR_OPERATION_TIMEOUT:
        return VS_ERROR_TIMEOUT;
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
    case VIR_ERR_RPC:
        return VS_ERROR_NOT_CONNECTED;
    case VIR_ERR_OPERATION_DENIED:
    case VIR_ERR_ACCESS_DENIED:
    case VIR_ERR_AUTH_FAILED:
        return VS_ERROR_PERMISSION_DENIED;
    case VIR_ERR_BLOCK_COPY_ACTIVE:
    case VIR_ERR_RESOURCE_BUSY:
        return VS_ERROR_BUSY;
    default:
        return VS_ERROR_LIBVIRT;
    }
}

gboolean
vs_set_libvirt_error(GError **error, const char *what, ...)
{
    virErrorPtr err = virGetLastError();
    g_autofree char *prefix = NULL;
    va_list args;

    va_start(args, what);
    prefix = g_strdup_vprintf(what, args);
    va_end(args);

    if (!err) {
        g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT, "%s: unknown libvirt error", prefix);
        return FALSE;
    }
    g_set_error(error, VS_ERROR, vs_error_code_from_libvirt(err->code), "%s: %s", prefix,
                err->message ? err->message : "unknown libvirt error");
    return FALSE;
}

const char *
vs_domain_state_name(int state)
{
    switch (state) {
    case VIR_DOMAIN_RUNNING:
        return "running";
    case VIR_DOMAIN_BLOCKED:
        return "blocked";
    case VIR_DOMAIN_PAUSED:
        return "paused";
    case VIR_DOMAIN_SHUTDOWN:
        return "shutdown";
    case VIR_DOMAIN_SHUTOFF:
        return "shutoff";
    case VIR_DOMAIN_CRASHED:
        return "crashed";
    case VIR_DOMAIN_PMSUSPENDED:
        return "pmsuspended";
    default:
        return "nostate";
    }
}

static const char *const event_names[] = {
    [VIR_DOMAIN_EVENT_DEFINED] = "defined",   [VIR_DOMAIN_EVENT_UNDEFINED] = "undefined",
    [VIR_DOMAIN_EVENT_STARTED] = "started",   [VIR_DOMAIN_EVENT_SUSPENDED] = "suspended",
    [VIR_DOMAIN_EVENT_RESUMED] = "resumed",   [VIR_DOMAIN_EVENT_STOPPED] = "stopped",
    [VIR_DOMAIN_EVENT_SHUTDOWN] = "shutdown", [VIR_DOMAIN_EVENT_PMSUSPENDED] = "pmsuspended",
    [VIR_DOMAIN_EVENT_CRASHED] = "crashed",
};

const char *
vs_lifecycle_event_name(int event)
{
    if (event < 0 || event >= (int)G_N_ELEMENTS(event_names) || !event_names[event])
        return "unknown";
    return event_names[event];
}

/* Detail words as virsh event prints them. */
static const char *const defined_details[] = {"added", "updated", "renamed", "from-snapshot"};
static const char *const undefined_details[] = {"removed", "renamed"};
static const char *const started_details[] = {"booted", "migrated", "restored", "from-snapshot",
                                              "wakeup"};
static const char *const suspended_details[] = {"paused",    "migrated", "ioerror",
                                                "watchdog",  "restored", "from-snapshot",
                                                "api-error", "postcopy", "postcopy-failed"};
static const char *const resumed_details[] = {"unpaused", "migrated", "from-snapshot", "postcopy",
                                              "postcopy-failed"};
static const char *const stopped_details[] = {"shutdown", "destroyed", "crashed",      "migrated",
                                              "saved",    "failed",    "from-snapshot"};
static const char *const shutdown_details[] = {"finished", "guest", "host"};
static const char *const pmsuspended_details[] = {"memory", "disk"};
static const char *const crashed_details[] = {"panicked", "crashloaded"};

#define DETAIL(table, i) ((i) >= 0 && (i) < (int)G_N_ELEMENTS(table) ? (table)[(i)] : "unknown")

const char *
vs_lifecycle_detail_name(int event, int detail)
{
    switch (event) {
    case VIR_DOMAIN_EVENT_DEFINED:
        return DETAIL(defined_details, detail);
    case VIR_DOMAIN_EVENT_UNDEFINED:
        return DETAIL(undefined_details, detail);
    case VIR_DOMAIN_EVENT_STARTED:
        return DETAIL(started_details, detail);
    case VIR_DOMAIN_EVENT_SUSPENDED:
        return DETAIL(suspended_details, detail);
    case VIR_DOMAIN_EVENT_RESUMED:
        return DETAIL(resumed_details, detail);
    case VIR_DOMAIN_EVENT_STOPPED:
        return DETAIL(stopped_details, detail);
    case VIR_DOMAIN_EVENT_SHUTDOWN:
        return DETAIL(shutdown_details, detail);
    case VIR_DOMAIN_EVENT_PMSUSPENDED:
        return DETAIL(pmsuspended_details, detail);
    case VIR_DOMAIN_EVENT_CRASHED:
        return DETAIL(crashed_details, detail);
    default:
        return "unknown";
    }
}

virDomainPtr
vs_lookup_domain(virConnectPtr conn, const char *name_or_uuid, GError **error)
{
    virDomainPtr dom = NULL;

    if (!name_or_uuid || !*name_or_uuid) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "no domain given");
        return NULL;
    }
    if (g_uuid_string_is_valid(name_or_uuid))
        dom = virDomainLookupByUUIDString(conn, name_or_uuid);
    if (!dom)
        dom = virDomainLookupByName(conn, name_or_uuid);
    if (!dom) {
        virErrorPtr err = virGetLastError();

        if (err && err->code != VIR_ERR_NO_DOMAIN) {
            vs_set_libvirt_error(error, "looking up domain '%s'", name_or_uuid);
            return NULL;
        }
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_DOMAIN, "no domain named '%s'", name_or_uuid);
    }
    return dom;
}
