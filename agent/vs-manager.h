/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.virtsnap.Agent1 on the bus: the methods, the properties, the events. */
#pragma once

#include <gio/gio.h>

#include "vs-config.h"
#include "vs-libvirt.h"

G_BEGIN_DECLS

#define VS_TYPE_MANAGER (vs_manager_get_type())
G_DECLARE_FINAL_TYPE(VsManager, vs_manager, VS, MANAGER, GObject)

VsManager *vs_manager_new(const VsConfig *config, VsLibvirt *libvirt);

/* Exports the agent and its object manager on @bus (before the name is owned). */
gboolean vs_manager_export(VsManager *self, GDBusConnection *bus, GError **error);
void vs_manager_unexport(VsManager *self);

/* Shutdown: ask every job to stop (each undoes its work), then wait for idle. */
void vs_manager_cancel_all(VsManager *self);
gboolean vs_manager_is_idle(VsManager *self);

G_END_DECLS
