/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Browse: snapshot disks served read-only over NBD (qemu-nbd on a UNIX socket), one
 * org.virtsnap.Export1 object and one record in <state_dir>/exports/ each (which
 * vs-holds.c reads: an exported snapshot cannot be deleted or pruned). */
#pragma once

#include <gio/gio.h>

#include "vs-bouncer.h"
#include "vs-config.h"

G_BEGIN_DECLS

#define VS_TYPE_EXPORTS (vs_exports_get_type())
G_DECLARE_FINAL_TYPE(VsExports, vs_exports, VS, EXPORTS, GObject)

/* Exports go on @object_manager, their Remove() under @bouncer. Servers a previous agent
 * left behind (records in <state_dir>/exports/) are stopped here: killed if
 * /proc/PID/cmdline shows they are ours, their sockets and records removed. */
VsExports *vs_exports_new(const VsConfig *config, GDBusObjectManagerServer *object_manager,
                          VsBouncer *bouncer);

/* ExportSnapshot: answers @invocation with the new export's path or an error. */
void vs_exports_handle_export(VsExports *self, GDBusMethodInvocation *invocation, const char *id,
                              GVariant *options);

/* The exports' object paths, NULL-terminated (the array is the caller's, the strings not). */
const char **vs_exports_list_paths(VsExports *self);

/* Stops every server and removes their sockets, records and objects (agent shutdown). */
void vs_exports_stop_all(VsExports *self);

/* Whether /proc/PID/cmdline @cmdline (NUL-separated, @len bytes) is a qemu-nbd serving
 * @socket: a record's pid is killed only then (pids are reused). */
gboolean vs_exports_cmdline_is_server(const char *cmdline, gsize len, const char *socket);

G_END_DECLS
