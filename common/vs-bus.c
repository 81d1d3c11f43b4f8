/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Opening the bus the same way everywhere: a private address (tests) is a message bus
 * connection of its own; otherwise the shared system or session bus. */
#include "vs-bus.h"

GDBusConnection *
vs_bus_open(const char *address, gboolean session, GError **error)
{
    if (address)
        return g_dbus_connection_new_for_address_sync(
            address,
            G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
            NULL, NULL, error);
    return g_bus_get_sync(session ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM, NULL, error);
}
