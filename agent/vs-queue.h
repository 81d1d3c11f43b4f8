/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The agent's jobs: queued until one of max_jobs slots is free, exported on the bus,
 * kept a while after they end, the repair of what an earlier agent left unfinished, and
 * pruning a domain's snapshots to its policy's keep. */
#pragma once

#include <gio/gio.h>

#include "vs-bouncer.h"
#include "vs-config.h"
#include "vs-job.h"
#include "vs-libvirt.h"
#include "vs-plan.h"

G_BEGIN_DECLS

#define VS_TYPE_QUEUE (vs_queue_get_type())
G_DECLARE_FINAL_TYPE(VsQueue, vs_queue, VS, QUEUE, GObject)

/* Signal "job-finished" (VsJob *): a job ended; emitted before the next queued one starts. */

/* Jobs are exported on @object_manager, their Job1 calls guarded by @bouncer. */
VsQueue *vs_queue_new(const VsConfig *config, VsLibvirt *libvirt,
                      GDBusObjectManagerServer *object_manager, VsBouncer *bouncer);

/* A queued snapshot job for @plan (taken), exported; vs_queue_schedule() starts it. */
VsJob *vs_queue_add_snapshot(VsQueue *self, VsPlan *plan, VsSnapshotOptions *opts,
                             gint64 requested_ms);

/* Starts queued jobs while there is room, and forgets the oldest ended ones. */
void vs_queue_schedule(VsQueue *self);

/* For jobs of other kinds (clone, revert, verify): the number the next job gets, and
 * adding a job made with it (taken; queued and exported like a snapshot job). */
guint vs_queue_take_id(VsQueue *self);
VsJob *vs_queue_add(VsQueue *self, VsJob *job);

/* Jobs an earlier agent left unfinished (the journal in state_dir): repaired first, once
 * per agent run; later calls do nothing. */
void vs_queue_recover(VsQueue *self);

/* The unfinished job of a domain (name or UUID), or NULL. */
VsJob *vs_queue_find_active(VsQueue *self, const char *name_or_uuid);
/* FALSE with VS_ERROR_BUSY (naming the domain @shown and the job) when the domain
 * @name_or_uuid has an unfinished job. */
gboolean vs_queue_check_free(VsQueue *self, const char *name_or_uuid, const char *shown,
                             GError **error);
/* An unfinished job that makes, clones or reverts to snapshot @id, or NULL:
 * deleting it now is Busy. */
VsJob *vs_queue_find_using(VsQueue *self, const char *id);

/* Every job the agent shows, oldest first (VsJob *). */
GPtrArray *vs_queue_get_jobs(VsQueue *self);

/* Removes the oldest snapshots of domain @uuid beyond the newest @keep (0: none removed),
 * in a worker thread. */
void vs_queue_prune(VsQueue *self, const char *uuid, guint keep);

void vs_queue_cancel_all(VsQueue *self);
gboolean vs_queue_is_idle(VsQueue *self);

G_END_DECLS
