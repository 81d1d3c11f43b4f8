/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the revert job's two files share: vs-job-revert.c (the request, file disks, undo)
 * and vs-job-revert-rbd.c (disks in Ceph RBD). Only those two. */
#pragma once

#include "vs-job-private.h"
#include "vs-journal.h"
#include "vs-revert.h"

G_BEGIN_DECLS

/* One of the snapshot's disks, from its metadata. */
typedef struct {
    char *target;
    char *image;  /* a file: the snapshot's image of it, inside the snapshot's folder */
    char *format; /* qcow2|raw, or rbd */
    guint64 size; /* virtual size */
    gboolean rbd;
    char *rbd_parent; /* rbd: the disk's image, "pool/[namespace/]image" ... */
    char *rbd_snap;   /* ... and its snapshot "virtsnap-<id>" the snapshot's clone hangs off */
    char *secret;     /* luks: the UUID of the secret its image is encrypted with, or NULL */
} VsRevertDisk;

struct _VsRevert {
    VsRevertOptions opts;
    char *id, *name, *dir; /* the snapshot put back */
    VsPlan *plan;          /* the domain at the check; the job takes it */
    GPtrArray *disks;      /* VsRevertDisk*, the snapshot's */
    GStrv targets;
    gboolean rbd; /* its disks are in Ceph RBD */
    /* the job's */
    gboolean stopped;
    char *stop_note;
    guint index; /* write-back: the disk being written */
    gint64 t_write_start, t_write_end;
};

VsRevertDisk *vs_revert_find_disk(VsRevert *revert, const char *target);

/* The domain's disks as a plan of the safety snapshot (named @safety_name) sees them; each
 * of the snapshot's disks must still be there, of the same kind, and (files) of the same
 * size. Worker thread. */
VsPlan *vs_revert_plan_disks(VsRevert *revert, virConnectPtr conn, const char *domain,
                             const char *snapshot_dir, const char *safety_name, GError **error);

/* Steps both kinds share. */
gboolean vs_revert_stop_wanted(VsJob *job);
gboolean vs_revert_stop_thread(VsJob *job, GError **error);
gboolean vs_revert_publish_thread(VsJob *job, GError **error);
void vs_revert_job_disk_free(gpointer disk);

/* The facts of a finished revert (floating): job->facts, shown as the Result. */
GVariant *vs_revert_facts(VsJob *job);
extern const VsResultField vs_revert_result[];

/* vs-job-revert-rbd.c: the snapshot's source snapshots still exist on the disks' images,
 * whose sizes are the snapshot's. Worker thread. */
gboolean vs_revert_rbd_check(VsRevert *revert, VsPlan *plan, const VsRbdConfig *config,
                             GError **error);
/* Undo of one RBD disk: its image rolled back to the safety snapshot @jd->safety. */
gboolean vs_revert_rbd_undo_disk(VsJob *job, VsJournalRevertDisk *jd, GError **error);

G_END_DECLS
