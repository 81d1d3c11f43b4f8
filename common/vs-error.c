/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The error domain and its table of D-Bus names. */
#include "vs-error.h"
#include "vs-names.h"

#include <gio/gio.h>
#include <string.h>

#define ENTRY(code, name) [code] = {code, VS_ERROR_NAME_PREFIX name}

static const GDBusErrorEntry dbus_entries[] = {
    ENTRY(VS_ERROR_FAILED, "Failed"),
    ENTRY(VS_ERROR_INVALID_ARGUMENT, "InvalidArgument"),
    ENTRY(VS_ERROR_NO_SUCH_DOMAIN, "NoSuchDomain"),
    ENTRY(VS_ERROR_NO_SUCH_DISK, "NoSuchDisk"),
    ENTRY(VS_ERROR_NO_SUCH_JOB, "NoSuchJob"),
    ENTRY(VS_ERROR_NO_SUCH_SNAPSHOT, "NoSuchSnapshot"),
    ENTRY(VS_ERROR_EXISTS, "Exists"),
    ENTRY(VS_ERROR_BUSY, "Busy"),
    ENTRY(VS_ERROR_UNSUPPORTED, "Unsupported"),
    ENTRY(VS_ERROR_NOT_RUNNING, "NotRunning"),
    ENTRY(VS_ERROR_QUIESCE_FAILED, "QuiesceFailed"),
    ENTRY(VS_ERROR_NOT_CONNECTED, "NotConnected"),
    ENTRY(VS_ERROR_LIBVIRT, "Libvirt"),
    ENTRY(VS_ERROR_NO_SPACE, "NoSpace"),
    ENTRY(VS_ERROR_IO, "IO"),
    ENTRY(VS_ERROR_TIMEOUT, "Timeout"),
    ENTRY(VS_ERROR_CANCELLED, "Cancelled"),
    ENTRY(VS_ERROR_PERMISSION_DENIED, "PermissionDenied"),
    ENTRY(VS_ERROR_CORRUPT, "Corrupt"),
    ENTRY(VS_ERROR_RUNNING, "Running"),
};

static const char *const nicks[] = {
    [VS_ERROR_FAILED] = "failed",
    [VS_ERROR_INVALID_ARGUMENT] = "invalid-argument",
    [VS_ERROR_NO_SUCH_DOMAIN] = "no-such-domain",
    [VS_ERROR_NO_SUCH_DISK] = "no-such-disk",
    [VS_ERROR_NO_SUCH_JOB] = "no-such-job",
    [VS_ERROR_NO_SUCH_SNAPSHOT] = "no-such-snapshot",
    [VS_ERROR_EXISTS] = "exists",
    [VS_ERROR_BUSY] = "busy",
    [VS_ERROR_UNSUPPORTED] = "unsupported",
    [VS_ERROR_NOT_RUNNING] = "not-running",
    [VS_ERROR_QUIESCE_FAILED] = "quiesce-failed",
    [VS_ERROR_NOT_CONNECTED] = "not-connected",
    [VS_ERROR_LIBVIRT] = "libvirt",
    [VS_ERROR_NO_SPACE] = "no-space",
    [VS_ERROR_IO] = "io",
    [VS_ERROR_TIMEOUT] = "timeout",
    [VS_ERROR_CANCELLED] = "cancelled",
    [VS_ERROR_PERMISSION_DENIED] = "permission-denied",
    [VS_ERROR_CORRUPT] = "corrupt",
    [VS_ERROR_RUNNING] = "running",
};

/* Every code has a D-Bus name and a nick. */
G_STATIC_ASSERT(G_N_ELEMENTS(dbus_entries) == VS_ERROR_LAST_CODE);
G_STATIC_ASSERT(G_N_ELEMENTS(nicks) == VS_ERROR_LAST_CODE);

GQuark
vs_error_quark(void)
{
    static gsize quark = 0;

    /* Registers the names once; it guards @quark with its own g_once. */
    g_dbus_error_register_error_domain("virtsnap-error-quark", &quark, dbus_entries,
                                       G_N_ELEMENTS(dbus_entries));
    return (GQuark)quark;
}

const char *
vs_error_dbus_name(VsError code)
{
    if ((int)code < 0 || code >= VS_ERROR_LAST_CODE)
        code = VS_ERROR_FAILED;
    return dbus_entries[code].dbus_error_name;
}

const char *
vs_error_nick(VsError code)
{
    if ((int)code < 0 || code >= VS_ERROR_LAST_CODE)
        code = VS_ERROR_FAILED;
    return nicks[code];
}

VsError
vs_error_from_dbus_name(const char *name)
{
    for (int i = 0; name && i < VS_ERROR_LAST_CODE; i++) {
        if (strcmp(dbus_entries[i].dbus_error_name, name) == 0)
            return i;
    }
    return VS_ERROR_FAILED;
}
