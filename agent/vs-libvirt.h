/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The agent's libvirt connection: opened off the main loop, events delivered into
 * it, reopened with backoff whenever libvirtd goes away. */
#pragma once

#include <glib-object.h>
#include <libvirt/libvirt.h>

G_BEGIN_DECLS

#define VS_TYPE_LIBVIRT (vs_libvirt_get_type())
G_DECLARE_FINAL_TYPE(VsLibvirt, vs_libvirt, VS, LIBVIRT, GObject)

/* Signals:
 *   "domain-event" (const char *name, const char *uuid, const char *event, const char *detail)
 *   "block-job"    (const char *uuid, const char *target, int type, int status)
 *   "agent-event"  (const char *uuid, int state, int reason)
 * Property "connected" (boolean) notifies on every change. */

VsLibvirt *vs_libvirt_new(const char *uri);
void vs_libvirt_start(VsLibvirt *self);
const char *vs_libvirt_get_uri(VsLibvirt *self);
gboolean vs_libvirt_is_connected(VsLibvirt *self);

/* A new reference to the live connection (release with virConnectClose), or NULL with
 * VS_ERROR_NOT_CONNECTED. Call from the main thread; the reference may then be used
 * from any thread. */
virConnectPtr vs_libvirt_get_connection(VsLibvirt *self, GError **error);

/* Call once, before any connection is opened: libvirt's events go through GLib. */
void vs_libvirt_init_event_loop(void);

G_END_DECLS
