/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* librados/librbd for RBD-native snapshots. Connections are cached per cluster (config
 * file, monitors, user): opening one costs a monitor round trip and a few threads.
 * Errors become VsError codes with Ceph's own reason in the text. */
#include "vs-rbd.h"
#include "vs-error.h"

#include <errno.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <string.h>

struct _VsRbdCluster {
    gint refs;
    rados_t rados;
    char *key;
    char fsid[64];
};

struct _VsRbdImage {
    VsRbdCluster *cluster;
    rados_ioctx_t io;
    rbd_image_t image;
    char *pool;
    char *ns;
    char *name;
};

static GMutex cache_lock;
static GHashTable *cache; /* key -> VsRbdCluster (one reference) */

static gboolean set_rbd_error(GError **error, int r, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static gboolean
set_rbd_error(GError **error, int r, const char *fmt, ...)
{
    g_autofree char *what = NULL;
    va_list args;
    int code;

    va_start(args, fmt);
    what = g_strdup_vprintf(fmt, args);
    va_end(args);
    switch (-r) {
    case ENOENT:
        code = VS_ERROR_NO_SUCH_DISK;
        break;
    case EEXIST:
        code = VS_ERROR_EXISTS;
        break;
    case EBUSY:
    case ENOTEMPTY:
        code = VS_ERROR_BUSY;
        break;
    case ETIMEDOUT:
        code = VS_ERROR_TIMEOUT;
        break;
    case ECANCELED:
        code = VS_ERROR_CANCELLED;
        break;
    case EACCES:
    case EPERM:
        code = VS_ERROR_PERMISSION_DENIED;
        break;
    case ENOSPC:
    case EDQUOT:
        code = VS_ERROR_NO_SPACE;
        break;
    default:
        code = VS_ERROR_IO;
    }
    g_set_error(error, VS_ERROR, code, "%s: %s", what, g_strerror(-r));
    return FALSE;
}

gboolean
vs_rbd_parse_name(const char *name, char **pool, char **ns, char **image)
{
    g_auto(GStrv) parts = name ? g_strsplit(name, "/", -1) : NULL;
    guint n = parts ? g_strv_length(parts) : 0;

    if (n < 2 || n > 3)
        return FALSE;
    for (guint i = 0; i < n; i++) {
        if (!*parts[i])
            return FALSE;
    }
    *pool = g_strdup(parts[0]);
    *ns = g_strdup(n == 3 ? parts[1] : "");
    *image = g_strdup(parts[n - 1]);
    return TRUE;
}

void
vs_rbd_spec_clear(VsRbdSpec *spec)
{
    g_clear_pointer(&spec->pool, g_free);
    g_clear_pointer(&spec->ns, g_free);
    g_clear_pointer(&spec->image, g_free);
    g_clear_pointer(&spec->conf, g_free);
    g_clear_pointer(&spec->hosts, g_free);
    g_clear_pointer(&spec->user, g_free);
}

VsRbdCluster *
vs_rbd_cluster_ref(VsRbdCluster *cluster)
{
    g_atomic_int_inc(&cluster->refs);
    return cluster;
}

void
vs_rbd_cluster_unref(VsRbdCluster *cluster)
{
    if (!cluster || !g_atomic_int_dec_and_test(&cluster->refs))
        return;
    rados_shutdown(cluster->rados);
    g_free(cluster->key);
    g_free(cluster);
}

const char *
vs_rbd_cluster_fsid(VsRbdCluster *cluster)
{
    return cluster->fsid;
}

static VsRbdCluster *
connect_new(const VsRbdConfig *config, const VsRbdSpec *spec, const char *key, GError **error)
{
    g_autofree char *timeout = g_strdup_printf("%u", config->connect_timeout_s);
    const char *user = spec->user && *spec->user ? spec->user : config->client_id;
    const char *conf = spec->conf && *spec->conf ? spec->conf : config->ceph_conf;
    rados_t rados;
    int r;

    if ((r = rados_create(&rados, user)) < 0)
        return set_rbd_error(error, r, "cannot set up a Ceph client for '%s'", user), NULL;
    /* The domain's own config file; the agent's default only if it is there. */
    if (conf && (spec->conf || g_file_test(conf, G_FILE_TEST_EXISTS)) &&
        (r = rados_conf_read_file(rados, conf)) < 0) {
        rados_shutdown(rados);
        return set_rbd_error(error, r, "cannot read Ceph config %s", conf), NULL;
    }
    if ((spec->hosts && rados_conf_set(rados, "mon_host", spec->hosts) < 0) ||
        (config->keyring && rados_conf_set(rados, "keyring", config->keyring) < 0) ||
        rados_conf_set(rados, "client_mount_timeout", timeout) < 0 ||
        rados_conf_set(rados, "rados_mon_op_timeout", timeout) < 0 ||
        rados_conf_set(rados, "rados_osd_op_timeout", timeout) < 0) {
        rados_shutdown(rados);
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT,
                    "cannot configure the Ceph client (monitors %s)",
                    spec->hosts ? spec->hosts : "from the config file");
        return NULL;
    }
    if ((r = rados_connect(rados)) < 0) {
        rados_shutdown(rados);
        if (r == -ETIMEDOUT)
            g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                        "no Ceph monitor (%s) answered within %u s",
                        spec->hosts ? spec->hosts
                        : conf      ? conf
                                    : "default config",
                        config->connect_timeout_s);
        else
            set_rbd_error(error, r, "cannot connect to the Ceph cluster (%s)",
                          spec->hosts ? spec->hosts
                          : conf      ? conf
                                      : "default config");
        return NULL;
    }
    {
        VsRbdCluster *cluster = g_new0(VsRbdCluster, 1);

        cluster->refs = 1;
        cluster->rados = rados;
        cluster->key = g_strdup(key);
        if (rados_cluster_fsid(rados, cluster->fsid, sizeof(cluster->fsid)) < 0)
            g_strlcpy(cluster->fsid, "unknown", sizeof(cluster->fsid));
        return cluster;
    }
}

VsRbdCluster *
vs_rbd_connect(const VsRbdConfig *config, const VsRbdSpec *spec, GError **error)
{
    g_autofree char *key = g_strdup_printf(
        "%s|%s|%s|%s", spec->conf ? spec->conf : "", spec->hosts ? spec->hosts : "",
        spec->user ? spec->user : config->client_id, config->keyring ? config->keyring : "");
    VsRbdCluster *cluster;

    g_mutex_lock(&cache_lock);
    if (!cache)
        cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify)vs_rbd_cluster_unref);
    cluster = g_hash_table_lookup(cache, key);
    if (cluster) {
        vs_rbd_cluster_ref(cluster);
        g_mutex_unlock(&cache_lock);
        return cluster;
    }
    g_mutex_unlock(&cache_lock);

    /* Connecting takes a while (up to the timeout): not under the lock. */
    cluster = connect_new(config, spec, key, error);
    if (!cluster)
        return NULL;
    g_mutex_lock(&cache_lock);
    if (!g_hash_table_contains(cache, key))
        g_hash_table_insert(cache, g_strdup(key), vs_rbd_cluster_ref(cluster));
    g_mutex_unlock(&cache_lock);
    return cluster;
}

gboolean
vs_rbd_delete_snapshot_disk(const VsRbdConfig *config, GVariant *rbd, GError **error)
{
    const char *pool = "", *ns = "", *name = "", *snap = "snap", *parent = "";
    const char *conf = "", *hosts = "", *user = "";
    VsRbdSpec spec = {0};
    g_autoptr(VsRbdCluster) cluster = NULL;
    g_autoptr(VsRbdImage) clone = NULL;
    int children;

    g_variant_lookup(rbd, "pool", "&s", &pool);
    g_variant_lookup(rbd, "namespace", "&s", &ns);
    g_variant_lookup(rbd, "image", "&s", &name);
    g_variant_lookup(rbd, "snap", "&s", &snap);
    g_variant_lookup(rbd, "parent", "&s", &parent);
    g_variant_lookup(rbd, "conf", "&s", &conf);
    g_variant_lookup(rbd, "hosts", "&s", &hosts);
    g_variant_lookup(rbd, "user", "&s", &user);
    spec.conf = *conf ? (char *)conf : NULL;
    spec.hosts = *hosts ? (char *)hosts : NULL;
    spec.user = *user ? (char *)user : NULL;
    if (!*pool || !*name) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "snapshot metadata names no RBD image");
        return FALSE;
    }
    if (!(cluster = vs_rbd_connect(config, &spec, error)))
        return FALSE;

    clone = vs_rbd_open(cluster, pool, ns, name, NULL);
    if (clone) {
        if ((children = vs_rbd_children(clone, snap, NULL)) > 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_BUSY,
                        "RBD image %s/%s has %d clone(s) of its snapshot '%s': not removed", pool,
                        name, children, snap);
            return FALSE;
        }
        if (!vs_rbd_snap_drop(clone, snap, error))
            return FALSE;
        g_clear_pointer(&clone, vs_rbd_close);
        if (!vs_rbd_remove(cluster, pool, ns, name, error))
            return FALSE;
    }
    if (*parent) {
        g_autofree char *spec_text = g_strdup(parent);
        char *at = strrchr(spec_text, '@');
        g_autofree char *ppool = NULL, *pns = NULL, *pimage = NULL;
        g_autoptr(VsRbdImage) pimg = NULL;

        if (!at)
            return TRUE;
        *at = '\0';
        if (!vs_rbd_parse_name(spec_text, &ppool, &pns, &pimage))
            return TRUE;
        pimg = vs_rbd_open(cluster, ppool, pns, pimage, NULL);
        /* Only ours, and only when nothing else hangs off it. */
        if (pimg && g_str_has_prefix(at + 1, "virtsnap-") &&
            vs_rbd_children(pimg, at + 1, NULL) == 0 && !vs_rbd_snap_drop(pimg, at + 1, error))
            return FALSE;
    }
    return TRUE;
}

void
vs_rbd_close_idle(void)
{
    GHashTableIter iter;
    VsRbdCluster *cluster;

    g_mutex_lock(&cache_lock);
    if (cache) {
        g_hash_table_iter_init(&iter, cache);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&cluster)) {
            if (g_atomic_int_get(&cluster->refs) == 1)
                g_hash_table_iter_remove(&iter);
        }
    }
    g_mutex_unlock(&cache_lock);
}

static gboolean
open_ioctx(VsRbdCluster *cluster, const char *pool, const char *ns, rados_ioctx_t *io,
           GError **error)
{
    int r = rados_ioctx_create(cluster->rados, pool, io);

    if (r < 0) {
        if (r == -ENOENT) {
            g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_DISK, "Ceph pool '%s' does not exist",
                        pool);
            return FALSE;
        }
        return set_rbd_error(error, r, "cannot open Ceph pool '%s'", pool);
    }
    rados_ioctx_set_namespace(*io, ns && *ns ? ns : NULL);
    return TRUE;
}

VsRbdImage *
vs_rbd_open(VsRbdCluster *cluster, const char *pool, const char *ns, const char *name,
            GError **error)
{
    g_autofree VsRbdImage *img = g_new0(VsRbdImage, 1);
    int r;

    if (!open_ioctx(cluster, pool, ns, &img->io, error))
        return NULL;
    if ((r = rbd_open(img->io, name, &img->image, NULL)) < 0) {
        rados_ioctx_destroy(img->io);
        return set_rbd_error(error, r, "cannot open RBD image %s/%s", pool, name), NULL;
    }
    img->cluster = vs_rbd_cluster_ref(cluster);
    img->pool = g_strdup(pool);
    img->ns = g_strdup(ns ? ns : "");
    img->name = g_strdup(name);
    return g_steal_pointer(&img);
}

void
vs_rbd_close(VsRbdImage *img)
{
    if (!img)
        return;
    rbd_close(img->image);
    rados_ioctx_destroy(img->io);
    vs_rbd_cluster_unref(img->cluster);
    g_free(img->pool);
    g_free(img->ns);
    g_free(img->name);
    g_free(img);
}

guint64
vs_rbd_size(VsRbdImage *img)
{
    uint64_t size = 0;

    rbd_get_size(img->image, &size);
    return size;
}

gboolean
vs_rbd_snap_create(VsRbdImage *img, const char *snap, GError **error)
{
    int r = rbd_snap_create(img->image, snap);

    return r < 0 ? set_rbd_error(error, r, "cannot snapshot %s/%s@%s", img->pool, img->name, snap)
                 : TRUE;
}

gboolean
vs_rbd_snap_protect(VsRbdImage *img, const char *snap, GError **error)
{
    int r = rbd_snap_protect(img->image, snap);

    return r < 0 ? set_rbd_error(error, r, "cannot protect %s/%s@%s", img->pool, img->name, snap)
                 : TRUE;
}

gboolean
vs_rbd_snap_drop(VsRbdImage *img, const char *snap, GError **error)
{
    int is_protected = 0;
    int r = rbd_snap_is_protected(img->image, snap, &is_protected);

    if (r == -ENOENT)
        return TRUE;
    if (r < 0)
        return set_rbd_error(error, r, "cannot read %s/%s@%s", img->pool, img->name, snap);
    if (is_protected && (r = rbd_snap_unprotect(img->image, snap)) < 0)
        return set_rbd_error(error, r, "cannot unprotect %s/%s@%s", img->pool, img->name, snap);
    if ((r = rbd_snap_remove(img->image, snap)) < 0 && r != -ENOENT)
        return set_rbd_error(error, r, "cannot remove %s/%s@%s", img->pool, img->name, snap);
    return TRUE;
}

gboolean
vs_rbd_clone(VsRbdImage *parent, const char *snap, VsRbdCluster *cluster, const char *pool,
             const char *ns, const char *name, GError **error)
{
    rados_ioctx_t io;
    rbd_image_options_t opts;
    uint64_t features = 0;
    int r;

    if ((r = rbd_get_features(parent->image, &features)) < 0)
        return set_rbd_error(error, r, "cannot read features of %s/%s", parent->pool, parent->name);
    if (!open_ioctx(cluster, pool, ns, &io, error))
        return FALSE;
    rbd_image_options_create(&opts);
    rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_FEATURES, features);
    r = rbd_clone3(parent->io, parent->name, snap, io, name, opts);
    rbd_image_options_destroy(opts);
    rados_ioctx_destroy(io);
    if (r == -EEXIST) {
        g_set_error(error, VS_ERROR, VS_ERROR_EXISTS,
                    "an RBD image named %s/%s already exists; nothing was overwritten", pool, name);
        return FALSE;
    }
    return r < 0 ? set_rbd_error(error, r, "cannot clone %s/%s@%s into %s/%s", parent->pool,
                                 parent->name, snap, pool, name)
                 : TRUE;
}

typedef struct {
    VsRbdProgress progress;
    gpointer data;
    gboolean stopped;
} FlattenCtx;

static int
on_flatten_progress(uint64_t done, uint64_t total, void *p)
{
    FlattenCtx *ctx = p;

    if (ctx->progress && !ctx->progress(done, total, ctx->data)) {
        ctx->stopped = TRUE;
        return -ECANCELED; /* librbd stops the flatten on a negative answer */
    }
    return 0;
}

gboolean
vs_rbd_flatten(VsRbdImage *img, VsRbdProgress progress, gpointer data, GError **error)
{
    FlattenCtx ctx = {progress, data, FALSE};
    int r = rbd_flatten_with_progress(img->image, on_flatten_progress, &ctx);

    if (r < 0 && ctx.stopped) {
        g_set_error(error, VS_ERROR, VS_ERROR_CANCELLED, "flatten of %s/%s cancelled", img->pool,
                    img->name);
        return FALSE;
    }
    return r < 0 ? set_rbd_error(error, r, "cannot flatten %s/%s", img->pool, img->name) : TRUE;
}

gboolean
vs_rbd_has_parent(VsRbdImage *img)
{
    rbd_linked_image_spec_t parent;
    rbd_snap_spec_t snap;

    if (rbd_get_parent(img->image, &parent, &snap) < 0)
        return FALSE; /* -ENOENT: no parent */
    rbd_linked_image_spec_cleanup(&parent);
    rbd_snap_spec_cleanup(&snap);
    return TRUE;
}

int
vs_rbd_children(VsRbdImage *img, const char *snap, GError **error)
{
    rbd_linked_image_spec_t specs[64];
    size_t n = G_N_ELEMENTS(specs);
    int r;

    if ((r = rbd_snap_set(img->image, snap)) < 0)
        return set_rbd_error(error, r, "cannot read %s/%s@%s", img->pool, img->name, snap), -1;
    r = rbd_list_children3(img->image, specs, &n);
    rbd_snap_set(img->image, NULL);
    if (r == -ERANGE)
        return (int)n; /* more than we asked for: at least that many */
    if (r < 0)
        return set_rbd_error(error, r, "cannot list clones of %s/%s@%s", img->pool, img->name,
                             snap),
               -1;
    rbd_linked_image_spec_list_cleanup(specs, n);
    return (int)n;
}

gboolean
vs_rbd_pool_check(VsRbdCluster *cluster, const char *pool, const char *ns, GError **error)
{
    rados_ioctx_t io;

    if (!open_ioctx(cluster, pool, ns, &io, error))
        return FALSE;
    rados_ioctx_destroy(io);
    return TRUE;
}

gboolean
vs_rbd_remove(VsRbdCluster *cluster, const char *pool, const char *ns, const char *name,
              GError **error)
{
    rados_ioctx_t io;
    int r;

    if (!open_ioctx(cluster, pool, ns, &io, error))
        return FALSE;
    r = rbd_remove(io, name);
    rados_ioctx_destroy(io);
    if (r == -ENOENT)
        return TRUE;
    return r < 0 ? set_rbd_error(error, r, "cannot remove RBD image %s/%s", pool, name) : TRUE;
}

/* ---- verify (vs-job-verify.c) ------------------------------------------------------------ */

gboolean
vs_rbd_snap_is_protected(VsRbdImage *img, const char *snap, gboolean *is_protected, GError **error)
{
    int prot = 0;
    int r = rbd_snap_is_protected(img->image, snap, &prot);

    if (r < 0)
        return set_rbd_error(error, r, "RBD snapshot %s@%s", img->name, snap);
    *is_protected = prot != 0;
    return TRUE;
}
/* ---- revert ------------------------------------------------------------------------------ */

gboolean
vs_rbd_snap_exists(VsRbdImage *img, const char *snap)
{
    int is_protected = 0;

    return rbd_snap_is_protected(img->image, snap, &is_protected) == 0;
}

gboolean
vs_rbd_snap_rollback(VsRbdImage *img, const char *snap, VsRbdProgress progress, gpointer data,
                     GError **error)
{
    FlattenCtx ctx = {progress, data, FALSE};
    int r = rbd_snap_rollback_with_progress(img->image, snap, on_flatten_progress, &ctx);

    if (r < 0 && ctx.stopped) {
        g_set_error(error, VS_ERROR, VS_ERROR_CANCELLED, "rollback of %s/%s to %s cancelled",
                    img->pool, img->name, snap);
        return FALSE;
    }
    return r < 0
               ? set_rbd_error(error, r, "cannot roll %s/%s back to %s", img->pool, img->name, snap)
               : TRUE;
}

/* ---- fault recovery ---------------------------------------------------------------- */

char *
vs_rbd_cluster_client_addr(VsRbdCluster *cluster)
{
    char *addrs = NULL;
    g_autofree char *first = NULL;

    if (rados_getaddrs(cluster->rados, &addrs) < 0 || !addrs)
        return NULL;
    /* "[v2:ip:port/nonce,v1:...]" or one address: blocklist takes one. */
    first = g_strdup(addrs + (*addrs == '['));
    rados_buffer_free(addrs);
    first[strcspn(first, ",]")] = '\0';
    return *first ? g_steal_pointer(&first) : NULL;
}

gboolean
vs_rbd_blocklist(VsRbdCluster *cluster, const char *addr, guint expire_s, GError **error)
{
    g_autofree char *copy = g_strdup(addr);
    int r = rados_blocklist_add(cluster->rados, copy, expire_s);

    if (r < 0)
        return set_rbd_error(error, r, "cannot blocklist the dead client %s", addr);
    return TRUE;
}

gboolean
vs_rbd_delete_snapshot_objects(const VsRbdConfig *config, GVariant *snapshot, GError **error)
{
    g_autoptr(GVariant) disks = g_variant_lookup_value(snapshot, "disks", G_VARIANT_TYPE("aa{sv}"));

    for (gsize k = 0; disks && k < g_variant_n_children(disks); k++) {
        g_autoptr(GVariant) disk = g_variant_get_child_value(disks, k);
        g_autoptr(GVariant) rbd = g_variant_lookup_value(disk, "rbd", G_VARIANT_TYPE_VARDICT);

        if (rbd && !vs_rbd_delete_snapshot_disk(config, rbd, error))
            return FALSE;
    }
    return TRUE;
}
