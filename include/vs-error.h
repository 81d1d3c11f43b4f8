/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnap's one error domain; every code has its own D-Bus error name. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
    VS_ERROR_FAILED,           /* org.virtsnap.Error.Failed */
    VS_ERROR_INVALID_ARGUMENT, /* .InvalidArgument: wrong option name, type or value */
    VS_ERROR_NO_SUCH_DOMAIN,   /* .NoSuchDomain */
    VS_ERROR_NO_SUCH_DISK,     /* .NoSuchDisk */
    VS_ERROR_NO_SUCH_JOB,      /* .NoSuchJob */
    VS_ERROR_NO_SUCH_SNAPSHOT, /* .NoSuchSnapshot */
    VS_ERROR_EXISTS,           /* .Exists: a snapshot of that name already exists */
    VS_ERROR_BUSY,             /* .Busy: another job or a foreign block job */
    VS_ERROR_UNSUPPORTED,      /* .Unsupported: the method cannot work for this domain */
    VS_ERROR_NOT_RUNNING,      /* .NotRunning: the domain is not in the state the method needs */
    VS_ERROR_QUIESCE_FAILED,   /* .QuiesceFailed: the guest could not be frozen (quiesce=require) */
    VS_ERROR_NOT_CONNECTED,    /* .NotConnected: no libvirt connection right now */
    VS_ERROR_LIBVIRT,          /* .Libvirt: libvirt failed; the text keeps libvirt's message */
    VS_ERROR_NO_SPACE,         /* .NoSpace: the snapshot directory is full */
    VS_ERROR_IO,               /* .IO: reading or writing an image or record failed */
    VS_ERROR_TIMEOUT,          /* .Timeout */
    VS_ERROR_CANCELLED,        /* .Cancelled */
    VS_ERROR_PERMISSION_DENIED, /* .PermissionDenied */
    VS_ERROR_CORRUPT,           /* .Corrupt: verification found a damaged or mismatched image */
    /* revert */
    VS_ERROR_RUNNING, /* .Running: the domain runs; the method needs it shut off */
    VS_ERROR_LAST_CODE,
} VsError;

#define VS_ERROR (vs_error_quark())
GQuark vs_error_quark(void);

/* "org.virtsnap.Error.Busy" for VS_ERROR_BUSY, ... */
const char *vs_error_dbus_name(VsError code);

/* The code whose D-Bus name is @name, or VS_ERROR_FAILED for names not ours. */
VsError vs_error_from_dbus_name(const char *name);

/* The short word used in job records and CLI output: "busy", "no-such-domain", ... */
const char *vs_error_nick(VsError code);

G_END_DECLS
