/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A snapshot plan: what CreateSnapshot found out about the domain before any
 * change is made. Building one is the "validate" step; its errors go straight
 * back to the caller. */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>

#include "vs-domain-xml.h"
#include "vs-options.h"
#include "vs-rbd.h"
#include "vs-secret.h"

G_BEGIN_DECLS

typedef struct {
    char *target;
    char *source;
    char *format;  /* qcow2|raw */
    char *backing; /* the nearest backing file, or NULL */
    char *backing_format;
    guint64 capacity;   /* virtual size in bytes */
    guint cluster_size; /* of a qcow2 source; 0: qemu-img's default */
    gboolean rbd;       /* lives in Ceph RBD: see rbd_spec */
    VsRbdSpec rbd_spec;
    /* a LUKS-encrypted qcow2: its passphrase, which every image written of it is
     * encrypted with too; NULL: not encrypted */
    VsSecret *secret;
} VsPlanDisk;

typedef struct {
    virConnectPtr conn;
    virDomainPtr dom;
    char *name;
    char *uuid;
    int state;       /* virDomainState at validation */
    gboolean active; /* running or paused */
    gboolean persistent;
    char *inactive_xml; /* persistent definition (secure), when persistent */
    char *live_xml;
    gboolean agent_connected;
    gboolean transient_copy; /* block copy with TRANSIENT_JOB: no undefine needed */
    gboolean foreign_jobs;   /* some chosen disk has a block job that is not ours (force given) */
    VsMethod method;
    char *method_reason;
    char *skipped;         /* disks left out by default (CD-ROMs, read-only, shareable) */
    GString *rbd_targets;  /* chosen disks in Ceph RBD, "vda, vdb" */
    GString *file_targets; /* chosen local disks */
    GPtrArray *disks;      /* VsPlanDisk* */
} VsPlan;

void vs_plan_free(VsPlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsPlan, vs_plan_free)

/* Blocking: call from a worker thread. Takes its own reference to @conn. */
VsPlan *vs_plan_make(virConnectPtr conn, const char *domain, const VsSnapshotOptions *opts,
                     const char *snapshot_dir, GError **error);

/* Whether the hypervisor does block jobs on disk @target; asked only when the answer
 * decides the method. */
typedef gboolean (*VsBlockJobsProbe)(gpointer data, const char *target);

/* The decision part of vs_plan_make, from facts alone (no libvirt call but @probe): the
 * disks of @dx to snapshot (their VsDisk* into @chosen) and the method. Needs plan->name
 * and plan->state; sets method, method_reason, skipped, rbd_targets and file_targets. */
gboolean vs_plan_choose(VsPlan *plan, VsDomainXml *dx, const VsSnapshotOptions *opts,
                        VsBlockJobsProbe probe, gpointer probe_data, GPtrArray *chosen,
                        GError **error);

G_END_DECLS
