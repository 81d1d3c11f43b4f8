/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Acts on domain policies: timed snapshots while a domain runs (`every`, counted on the
 * wall clock from the domain's last successful snapshot), an offline snapshot after it
 * stops (`on-stop`); answers what a domain's `keep` is. */
#pragma once

#include <glib-object.h>

#include "vs-libvirt.h"
#include "vs-policy.h"

G_BEGIN_DECLS

#define VS_TYPE_SCHEDULER (vs_scheduler_get_type())
G_DECLARE_FINAL_TYPE(VsScheduler, vs_scheduler, VS, SCHEDULER, GObject)

/* Asks the manager for a snapshot of @domain with @options (a{sv}, floating); @why
 * goes into the log. */
typedef void (*VsSnapshotRequestFunc)(const char *domain, GVariant *options, const char *why,
                                      gpointer data);

VsScheduler *vs_scheduler_new(VsLibvirt *libvirt, const char *snapshot_dir,
                              VsSnapshotRequestFunc request, gpointer data);

/* Re-reads the policy of one domain (name or UUID), or of all of them (NULL). */
void vs_scheduler_reload(VsScheduler *self, const char *domain);

/* Tells the scheduler that a snapshot of domain @uuid was made: its `every` counts from
 * that snapshot's creation time (read from the catalog). */
void vs_scheduler_snapshot_made(VsScheduler *self, const char *uuid);

/* When the next timed snapshot is due, on the wall clock (µs since the epoch): @every_us
 * after @last_us, the creation time of the last successful snapshot (0: none; then counted
 * from @now_us), moved by @jitter_us. A due time already past (the agent was down, the
 * host suspended) is caught up once: it is @now_us, however many slots were missed. */
gint64 vs_schedule_due(gint64 last_us, gint64 every_us, gint64 jitter_us, gint64 now_us);

/* The policy's `keep` for domain @uuid: how many of its snapshots to keep; 0: all. */
guint vs_scheduler_get_keep(VsScheduler *self, const char *uuid);

G_END_DECLS
