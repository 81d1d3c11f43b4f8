/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One snapshot job: an org.virtsnap.Job1 object and the state machine behind it. */
#pragma once

#include <gio/gio.h>

#include "vs-config.h"
#include "vs-journal.h"
#include "vs-libvirt.h"
#include "vs-options.h"
#include "vs-plan.h"

G_BEGIN_DECLS

#define VS_TYPE_JOB (vs_job_get_type())
G_DECLARE_FINAL_TYPE(VsJob, vs_job, VS, JOB, GObject)

/* Signal "finished": the job reached a final state (succeeded, failed, cancelled,
 * interrupted) and holds nothing of the domain any more. */

/* A job for @plan (taken). It stays "queued" until vs_job_start(). */
VsJob *vs_job_new(guint id, const VsConfig *config, VsLibvirt *libvirt, VsPlan *plan,
                  VsSnapshotOptions *opts, gint64 requested_ms);

/* A job that repairs what an interrupted job of an earlier agent left behind,
 * from its journal @entry (taken); it ends "interrupted". */
VsJob *vs_job_new_recovery(guint id, const VsConfig *config, VsLibvirt *libvirt,
                           VsJournalEntry *entry);

void vs_job_start(VsJob *self);
void vs_job_cancel(VsJob *self);

GDBusObjectSkeleton *vs_job_get_object(VsJob *self);
const char *vs_job_get_path(VsJob *self);
const char *vs_job_get_uuid(VsJob *self);
const char *vs_job_get_snapshot_id(VsJob *self);
gboolean vs_job_is_finished(VsJob *self);
gboolean vs_job_succeeded(VsJob *self);
guint vs_job_get_id(VsJob *self);
const char *vs_job_get_domain(VsJob *self);

/* Whether the job reads the domain's disks with the domain not running (an offline or
 * cold extraction): a start now would race it. Its own restart is not counted. */
gboolean vs_job_holds_disks_offline(VsJob *self);
gboolean vs_job_is_queued(VsJob *self);

/* What the job does, as Job1.Method shows it ("live", "clone", "revert", ...). */
const char *vs_job_get_method(VsJob *self);
/* Whether the job reads or writes snapshot @id: makes, clones or reverts to it (a
 * verification does not count). */
gboolean vs_job_uses_snapshot(VsJob *self, const char *id);

/* Whether the job made a new snapshot (a snapshot job that succeeded). */
gboolean vs_job_made_snapshot(VsJob *self);
/* FALSE for a job that only reads a finished snapshot (verify): other jobs and hooks of
 * its domain go on. */
gboolean vs_job_touches_domain(VsJob *self);

G_END_DECLS
