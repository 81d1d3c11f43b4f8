/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The rbd method: the disks live in a Ceph cluster. A snapshot of every image is taken in
 * the freeze window, then protected and cloned (the Glance layout); nothing is copied
 * through this host unless the clone is flattened. */
#include "vs-job-private.h"
#include "vs-error.h"
#include "vs-freeze.h"
#include "vs-util.h"

/* The job's RBD disks: all of an rbd job's, the mixed method's own list (vs-job-mixed.c). */
static GPtrArray *
rbd_disks(VsJob *job)
{
    return job->rbd_disks ? job->rbd_disks : job->disks;
}

static VsJobDisk *
rbd_disk(VsJob *job, guint i)
{
    return g_ptr_array_index(rbd_disks(job), i);
}

/* Connect, open every source image, and make sure the clone's name is free, so that the
 * freeze window holds nothing but the snapshot calls. */
gboolean
vs_job_rbd_open_images(VsJob *job, GError **error)
{
    for (guint i = 0; i < rbd_disks(job)->len; i++) {
        VsJobDisk *d = rbd_disk(job, i);
        VsRbdSpec *spec = &d->plan->rbd_spec;
        g_autoptr(VsRbdCluster) cluster = vs_rbd_connect(&job->config->rbd, spec, error);
        g_autoptr(VsRbdImage) existing = NULL;
        VsJournalRbd *jr = d->jr;

        if (!cluster || !(d->src = vs_rbd_open(cluster, spec->pool, spec->ns, spec->image, error)))
            return FALSE;
        g_mutex_lock(&job->lock);
        g_free(jr->client); /* journaled below: a restarted agent blocklists it */
        jr->client = vs_rbd_cluster_client_addr(cluster);
        g_mutex_unlock(&job->lock);
        d->size = vs_rbd_size(d->src);
        if (!job->fsid)
            job->fsid = g_strdup(vs_rbd_cluster_fsid(cluster));
        existing = vs_rbd_open(cluster, jr->clone_pool, spec->ns, jr->clone, NULL);
        if (existing) {
            g_set_error(error, VS_ERROR, VS_ERROR_EXISTS,
                        "an RBD image named %s/%s already exists; nothing was overwritten",
                        jr->clone_pool, jr->clone);
            return FALSE;
        }
        /* The destination pool must exist before anything is made. */
        if (!vs_rbd_pool_check(cluster, jr->clone_pool, spec->ns, error))
            return FALSE;
    }
    return vs_job_journal_save(job, error);
}

static gboolean
rbd_prepare_thread(VsJob *job, GError **error)
{
    return vs_job_prepare_folder(job, error) && vs_job_rbd_open_images(job, error);
}

void
vs_job_rbd_journal_snaps(VsJob *job)
{
    g_mutex_lock(&job->lock);
    for (guint i = 0; i < rbd_disks(job)->len; i++)
        rbd_disk(job, i)->jr->snap_made = TRUE;
    g_mutex_unlock(&job->lock);
}

/* The cut of an rbd job: a snapshot of every image. */
gboolean
vs_job_rbd_cut(VsJob *job, GError **error)
{
    for (guint i = 0; i < rbd_disks(job)->len; i++) {
        VsJobDisk *d = rbd_disk(job, i);

        if (!vs_rbd_snap_create(d->src, d->jr->snap, error))
            return FALSE;
    }
    return TRUE;
}

static gboolean
rbd_freeze_thread(VsJob *job, GError **error)
{
    gboolean ok;
    gint64 t0 = 0;

    /* Journaled before they exist: a crash in the window leaves nothing unknown. */
    vs_job_rbd_journal_snaps(job);
    ok = vs_freeze_window(job, vs_job_rbd_cut, &t0, error);
    job->t_copy_start = t0; /* "copy" of an rbd job: the snapshot calls */
    return ok;
}

typedef struct {
    VsJob *job;
    guint index;
    int last_percent;
} FlattenState;

static gboolean
on_rbd_flatten_progress(guint64 done, guint64 total, gpointer data)
{
    FlattenState *fs = data;
    VsJob *job = fs->job;
    int percent = total ? (int)(100 * done / total) : 0;

    if (percent != fs->last_percent) {
        fs->last_percent = percent;
        vs_job_set_progress_later(
            job, (fs->index + (total ? (double)done / total : 0)) / rbd_disks(job)->len, done,
            total);
    }
    return !g_atomic_int_get(&job->cancel_requested);
}

/* The Glance layout. The snapshot is protected and cloned; a flattened clone no longer
 * needs it, so it goes; the result carries a protected "snap". */
static gboolean
clone_thread(VsJob *job, GError **error)
{
    for (guint i = 0; i < rbd_disks(job)->len; i++) {
        VsJobDisk *d = rbd_disk(job, i);
        VsJournalRbd *jr = d->jr;
        g_autoptr(VsRbdCluster) cluster =
            vs_rbd_connect(&job->config->rbd, &d->plan->rbd_spec, error);
        g_autoptr(VsRbdImage) clone = NULL;

        if (!cluster || !vs_rbd_snap_protect(d->src, jr->snap, error))
            return FALSE;
        g_mutex_lock(&job->lock);
        jr->clone_made = TRUE;
        g_mutex_unlock(&job->lock);
        if (!vs_job_journal_save(job, error))
            return FALSE;
        if (!vs_rbd_clone(d->src, jr->snap, cluster, jr->clone_pool, jr->ns, jr->clone, error)) {
            /* The name was taken after prepare looked (a mixed job's mirrors take their
             * time): that image is somebody else's, never ours to remove. */
            if (g_error_matches(*error, VS_ERROR, VS_ERROR_EXISTS)) {
                g_mutex_lock(&job->lock);
                jr->clone_made = FALSE;
                g_mutex_unlock(&job->lock);
                vs_job_journal_save(job, NULL);
            }
            return FALSE;
        }
        if (!(clone = vs_rbd_open(cluster, jr->clone_pool, jr->ns, jr->clone, error)))
            return FALSE;
        if (job->flatten) {
            FlattenState fs = {job, i, -1};

            if (!vs_rbd_flatten(clone, on_rbd_flatten_progress, &fs, error))
                return FALSE;
            if (!vs_rbd_snap_drop(d->src, jr->snap, error))
                return FALSE;
            g_mutex_lock(&job->lock);
            jr->snap_made = FALSE;
            g_mutex_unlock(&job->lock);
            if (!vs_job_journal_save(job, error))
                return FALSE;
        }
        if (!vs_rbd_snap_create(clone, "snap", error) || !vs_rbd_snap_protect(clone, "snap", error))
            return FALSE;
    }
    job->t_flatten_end = vs_now_ms();
    return TRUE;
}

static void
add(GVariantBuilder *b, const char *key, const char *value)
{
    g_variant_builder_add(b, "{sv}", key, g_variant_new_string(value ? value : ""));
}

/* rbd://<fsid>/<pool>/[<namespace>/]<image>/snap, and what DeleteSnapshot needs to find
 * and remove it again. */
static void
rbd_disk_facts(VsJob *job, VsJobDisk *d, GVariantBuilder *b)
{
    VsJournalRbd *jr = d->jr;
    const char *sep = *jr->ns ? "/" : "";
    g_autofree char *location =
        g_strdup_printf("rbd://%s/%s/%s%s%s/snap", job->fsid ? job->fsid : "unknown",
                        jr->clone_pool, jr->ns, sep, jr->clone);
    g_autofree char *parent =
        job->flatten ? g_strdup("")
                     : g_strdup_printf("%s/%s%s%s@%s", jr->pool, jr->ns, sep, jr->image, jr->snap);
    const char *fields[][2] = {
        {"pool", jr->clone_pool}, {"namespace", jr->ns}, {"image", jr->clone}, {"snap", "snap"},
        {"parent", parent},       {"conf", jr->conf},    {"hosts", jr->hosts}, {"user", jr->user}};
    GVariantBuilder rbd;

    add(b, "image", location);
    add(b, "format", "rbd");
    g_variant_builder_add(b, "{sv}", "virtual-size", g_variant_new_uint64(d->size));
    g_variant_builder_add(b, "{sv}", "bytes", g_variant_new_uint64(0));
    add(b, "source", d->plan->source);
    g_variant_builder_init(&rbd, G_VARIANT_TYPE_VARDICT);
    for (guint f = 0; f < G_N_ELEMENTS(fields); f++)
        add(&rbd, fields[f][0], fields[f][1]);
    g_variant_builder_add(&rbd, "{sv}", "flattened", g_variant_new_boolean(job->flatten));
    g_variant_builder_add(b, "{sv}", "rbd", g_variant_builder_end(&rbd));
}

static const VsJobStep rbd_steps[] = {
    {VS_PHASE_CLEAR_JOBS, .wanted = vs_job_foreign_jobs_wanted, .thread = vs_job_clear_jobs_thread},
    {VS_PHASE_PREPARE, .thread = rbd_prepare_thread},
    {VS_PHASE_FREEZE_WINDOW, .thread = rbd_freeze_thread,
     .undo = VS_UNDO_RESUME | VS_UNDO_THAW | VS_UNDO_RBD, .flags = VS_STEP_RUNS_TO_END},
    {VS_PHASE_CLONE, .enter = vs_job_after_cut, .thread = clone_thread, .undo = VS_UNDO_RBD},
    {VS_PHASE_CATALOG, .thread = vs_job_catalog_thread, .flags = VS_STEP_NOT_CANCELLABLE},
};

static const VsResultField rbd_result[] = {
    {"freeze-ms", "freeze-ms"},
    {"snapshot-ms", "copy-ms"},
    {"flattened", "flattened"},
    {"clone-ms", "flatten-ms"},
    {NULL, NULL},
};

const VsJobMethod vs_job_method_rbd = {
    .name = "rbd",
    .steps = rbd_steps,
    .n_steps = G_N_ELEMENTS(rbd_steps),
    .result_fields = rbd_result,
    .disk_facts = rbd_disk_facts,
};
