/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The domains of a connection as ListDomains reports them. */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>

G_BEGIN_DECLS

/* Blocking (libvirt RPCs): call from a worker thread. Returns aa{sv}, floating. */
GVariant *vs_inventory_list(virConnectPtr conn, GError **error);

/* One domain's entry; NULL with VS_ERROR_NO_SUCH_DOMAIN if it vanished meanwhile. */
GVariant *vs_inventory_describe(virDomainPtr dom, GError **error);

G_END_DECLS
