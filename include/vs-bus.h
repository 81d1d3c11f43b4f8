/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How the agent, virtsnapctl and the hook reach their bus. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The bus at @address if given, else the session bus (@session) or the system bus. */
GDBusConnection *vs_bus_open(const char *address, gboolean session, GError **error);

G_END_DECLS
