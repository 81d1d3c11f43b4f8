/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CloneSnapshot: a new persistent domain from a snapshot. The request (options, the
 * snapshot's metadata, the clone's XML: errors go back to the caller) is here; the job
 * that makes it is vs-job-clone.c. */
#pragma once

#include <gio/gio.h>
#include <libvirt/libvirt.h>

#include "vs-config.h"
#include "vs-job.h"
#include "vs-libvirt.h"
#include "vs-queue.h"

G_BEGIN_DECLS

/* One disk of the clone. */
typedef struct {
    char *target;
    char *image;  /* the snapshot's image: a file, or an rbd:// location */
    char *format; /* its format (qcow2|raw), or "rbd" */
    char *dest;   /* the clone's image in its final folder, or its RBD image "pool/[ns/]name" */
    guint64 size;
    /* RBD: where the snapshot's image lives (its protected "snap" is the parent) */
    char *pool, *ns, *parent, *conf, *hosts, *user, *rbd_image;
} VsCloneDisk;

typedef struct _VsClonePlan VsClonePlan;
struct _VsClonePlan {
    char *snapshot_id;
    char *name; /* the clone's domain name, and its folder's */
    char *uuid; /* the clone domain's, chosen here */
    char *source_domain;
    gboolean full, start, rbd;
    char *partial_dir, *final_dir;
    char *xml;        /* the clone's domain XML */
    GPtrArray *notes; /* char*: what was left out or changed */
    GPtrArray *disks; /* VsCloneDisk* */
    virConnectPtr conn;
    gint64 requested_ms;
};

void vs_clone_plan_free(VsClonePlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsClonePlan, vs_clone_plan_free)

/* "<snapshot_dir>/clones/.<name>.partial" while the clone is made, then "<...>/clones/<name>". */
char *vs_clone_partial_dir(const char *snapshot_dir, const char *name);
char *vs_clone_final_dir(const char *snapshot_dir, const char *name);

/* Whether @name may name a clone: a valid snapshot name without "..". */
gboolean vs_clone_name_is_valid(const char *name);

/* Blocking (a worker thread): everything checked before anything changes. NoSuchSnapshot,
 * Exists (a domain or a clone folder of that name), InvalidArgument. Takes its own
 * reference to @conn. */
VsClonePlan *vs_clone_plan_make(virConnectPtr conn, const char *snapshot_dir, const char *id,
                                const char *name, gboolean full, gboolean start, GError **error);

/* The job that makes the clone of @plan (taken); queued. */
VsJob *vs_job_new_clone(guint id, const VsConfig *config, VsLibvirt *libvirt, VsClonePlan *plan);

/* Agent1.CloneSnapshot(s id, a{sv} options) -> o job: answers @invocation. */
void vs_clone_handle(VsQueue *queue, const VsConfig *config, VsLibvirt *libvirt,
                     GDBusMethodInvocation *invocation, const char *id, GVariant *options);

G_END_DECLS
