/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Ceph RBD through librados/librbd: cluster connections (cached per cluster) and the
 * image operations an RBD-native snapshot needs. Every call here blocks: worker
 * threads only. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
    char *ceph_conf;         /* default config file, when the disk names none */
    char *client_id;         /* "admin" */
    char *keyring;           /* NULL: from the config file */
    guint connect_timeout_s; /* monitors that do not answer within this fail the job */
    char *dest_pool;         /* NULL: the source image's pool */
    gboolean flatten;        /* flatten clones by default */
} VsRbdConfig;

/* Where one RBD disk lives, from its <source protocol='rbd'>. */
typedef struct {
    char *pool;
    char *ns; /* "" for the default namespace */
    char *image;
    char *conf;  /* <config file=...>, or the agent's ceph_conf */
    char *hosts; /* "h1:p1,h2:p2" from <host>, or NULL */
    char *user;  /* <auth username=...>, or the agent's client id */
} VsRbdSpec;

typedef struct _VsRbdCluster VsRbdCluster;
typedef struct _VsRbdImage VsRbdImage;

/* "pool/image" or "pool/namespace/image". */
gboolean vs_rbd_parse_name(const char *name, char **pool, char **ns, char **image);
void vs_rbd_spec_clear(VsRbdSpec *spec);

/* A connection to the spec's cluster, shared with other users of the same cluster. */
VsRbdCluster *vs_rbd_connect(const VsRbdConfig *config, const VsRbdSpec *spec, GError **error);
VsRbdCluster *vs_rbd_cluster_ref(VsRbdCluster *cluster);
void vs_rbd_cluster_unref(VsRbdCluster *cluster);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsRbdCluster, vs_rbd_cluster_unref)
const char *vs_rbd_cluster_fsid(VsRbdCluster *cluster);

VsRbdImage *vs_rbd_open(VsRbdCluster *cluster, const char *pool, const char *ns, const char *image,
                        GError **error);
void vs_rbd_close(VsRbdImage *image);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsRbdImage, vs_rbd_close)
guint64 vs_rbd_size(VsRbdImage *image);

gboolean vs_rbd_snap_create(VsRbdImage *image, const char *snap, GError **error);
gboolean vs_rbd_snap_protect(VsRbdImage *image, const char *snap, GError **error);
/* Unprotects (if protected) and removes @snap; a missing snap is fine. */
gboolean vs_rbd_snap_drop(VsRbdImage *image, const char *snap, GError **error);

/* Clones @parent@@snap into @pool/@ns/@name with the parent's features. */
gboolean vs_rbd_clone(VsRbdImage *parent, const char *snap, VsRbdCluster *cluster, const char *pool,
                      const char *ns, const char *name, GError **error);

/* Copies the parent's data into the clone. @progress returns FALSE to stop it
 * (VS_ERROR_CANCELLED). */
typedef gboolean (*VsRbdProgress)(guint64 done, guint64 total, gpointer data);
gboolean vs_rbd_flatten(VsRbdImage *image, VsRbdProgress progress, gpointer data, GError **error);

/* Whether a clone still depends on its parent. */
gboolean vs_rbd_has_parent(VsRbdImage *image);
/* How many clones hang off @snap. */
int vs_rbd_children(VsRbdImage *image, const char *snap, GError **error);

/* Whether @pool (and @ns) can be opened: VS_ERROR_NO_SUCH_DISK names a missing pool. */
gboolean vs_rbd_pool_check(VsRbdCluster *cluster, const char *pool, const char *ns, GError **error);

/* Removes image @name (its snaps must be gone); a missing image is fine. */
gboolean vs_rbd_remove(VsRbdCluster *cluster, const char *pool, const char *ns, const char *name,
                       GError **error);

/* Removes what an RBD snapshot left in the cluster, from its metadata's "rbd" object
 * (pool, namespace, image, snap, parent, conf, hosts, user): the clone's protected snap,
 * the clone, and the parent snapshot of an unflattened clone. A clone that has clones
 * of its own is VS_ERROR_BUSY and stays. */
gboolean vs_rbd_delete_snapshot_disk(const VsRbdConfig *config, GVariant *rbd, GError **error);

/* The same for every disk of a snapshot, from its catalog entry (ListSnapshots' a{sv}:
 * "disks", each with an "rbd" object or none). DeleteSnapshot and a policy's keep both
 * come here, so a pruned snapshot leaves nothing in the cluster either. */
gboolean vs_rbd_delete_snapshot_objects(const VsRbdConfig *config, GVariant *snapshot,
                                        GError **error);

/* Whether @snap of @image exists (else VS_ERROR_NO_SUCH_DISK) and is protected. */
gboolean vs_rbd_snap_is_protected(VsRbdImage *image, const char *snap, gboolean *is_protected,
                                  GError **error);

/* revert */
/* Whether @snap exists on @image. */
gboolean vs_rbd_snap_exists(VsRbdImage *image, const char *snap);
/* Puts @image's content back to its snapshot @snap (the other snapshots stay). @progress
 * returns FALSE to stop it (VS_ERROR_CANCELLED; the image is then partly rolled back). */
gboolean vs_rbd_snap_rollback(VsRbdImage *image, const char *snap, VsRbdProgress progress,
                              gpointer data, GError **error);

/* fault recovery (vs-job-undo.c) */
/* Our client's address in @cluster ("ip:port/nonce", unique to this client instance). */
char *vs_rbd_cluster_client_addr(VsRbdCluster *cluster);
/* Blocklists a dead agent's client @addr for @expire_s seconds: the watches and locks it
 * held on images go at once, instead of after the OSDs' watch timeout (30 s), during which
 * every snapshot and its removal waits for it. Needs "profile rbd" on the monitors. */
gboolean vs_rbd_blocklist(VsRbdCluster *cluster, const char *addr, guint expire_s, GError **error);

/* Closes cached connections nobody uses. */
void vs_rbd_close_idle(void);

G_END_DECLS
