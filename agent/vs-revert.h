/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* RevertSnapshot: the checks made before any job starts, the revert job (its steps are in
 * vs-job-revert.c) and the part of undo that puts a disk's earlier content back. */
#pragma once

#include <gio/gio.h>
#include <libvirt/libvirt.h>

#include "vs-config.h"
#include "vs-job.h"
#include "vs-libvirt.h"

G_BEGIN_DECLS

typedef struct {
    gboolean stop;     /* shut a running domain down first */
    gboolean safety;   /* keep the current content as a snapshot first (default) */
    guint64 bandwidth; /* write-back limit, bytes/s (0: none) */
} VsRevertOptions;

/* RevertSnapshot's a{sv}: unknown keys and wrong types are VS_ERROR_INVALID_ARGUMENT. */
gboolean vs_revert_options_parse(VsRevertOptions *opts, GVariant *dict, GError **error);

/* What a revert found out before it starts: the snapshot, its domain, its disks. */
typedef struct _VsRevert VsRevert;

/* Checks that snapshot @id can be put back into its domain: the domain is still defined
 * (by UUID), shut off (or @opts->stop), has no managed save, and each of the snapshot's
 * disks is still a disk of it with the same virtual size (RBD: whose image still has the
 * snapshot's source snapshot). Nothing is changed. Blocking:
 * a worker thread. */
VsRevert *vs_revert_check(virConnectPtr conn, const VsConfig *config, const char *id,
                          const VsRevertOptions *opts, GError **error);
void vs_revert_free(VsRevert *revert);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsRevert, vs_revert_free)
const char *vs_revert_get_domain(VsRevert *revert);
const char *vs_revert_get_uuid(VsRevert *revert);

/* A queued revert job for @revert (taken). */
VsJob *vs_job_new_revert(guint id, const VsConfig *config, VsLibvirt *libvirt, VsRevert *revert);

/* Undo's part VS_UNDO_REVERT, from the journal: each disk that may be partly written gets
 * its safety copy back, then the safety snapshot goes. Worker thread. */
gboolean vs_revert_undo(VsJob *job, virDomainPtr dom, GError **error);

G_END_DECLS
