/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libvirt glue: cleanup functions for libvirt types, libvirt errors as VsError,
 * and libvirt's enums as the words our API uses. */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

G_BEGIN_DECLS

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(virConnect, virConnectClose)

/* Sets @error from the calling thread's last libvirt error, prefixed by @what.
 * Always returns FALSE, so that callers can "return vs_set_libvirt_error(...)". */
gboolean vs_set_libvirt_error(GError **error, const char *what, ...) G_GNUC_PRINTF(2, 3);

/* The VsError code for a libvirt error code (exposed for tests). */
int vs_error_code_from_libvirt(int vir_code);

const char *vs_domain_state_name(int state);
const char *vs_lifecycle_event_name(int event);
const char *vs_lifecycle_detail_name(int event, int detail);

/* Looks @name_or_uuid up as a UUID first (when it has that form), then as a name.
 * Sets VS_ERROR_NO_SUCH_DOMAIN when neither matches. */
virDomainPtr vs_lookup_domain(virConnectPtr conn, const char *name_or_uuid, GError **error);

G_END_DECLS
