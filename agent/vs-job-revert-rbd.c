/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The revert of an RBD snapshot: each disk's image is rolled back (rbd_snap_rollback) to
 * the snapshot "virtsnap-<id>" the snapshot's clone hangs off; the image's other
 * snapshots stay. The safety snapshot is an RBD snapshot like any other (a source
 * snapshot, a protected clone of it, left thin so that undo can roll back to it). */
#include "vs-revert-private.h"
#include "vs-error.h"
#include "vs-util.h"

#include <string.h>

gboolean
vs_revert_rbd_check(VsRevert *r, VsPlan *plan, const VsRbdConfig *config, GError **error)
{
    for (guint i = 0; i < plan->disks->len; i++) {
        VsPlanDisk *pd = g_ptr_array_index(plan->disks, i);
        VsRevertDisk *d = vs_revert_find_disk(r, pd->target);
        VsRbdSpec *spec = &pd->rbd_spec;
        g_autofree char *pool = NULL, *ns = NULL, *image = NULL;
        g_autoptr(VsRbdCluster) cluster = NULL;
        g_autoptr(VsRbdImage) src = NULL;

        if (!d || !vs_rbd_parse_name(d->rbd_parent, &pool, &ns, &image) ||
            g_strcmp0(pool, spec->pool) != 0 ||
            g_strcmp0(ns ? ns : "", spec->ns ? spec->ns : "") != 0 ||
            g_strcmp0(image, spec->image) != 0) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "disk %s of '%s' is now RBD image %s, not %s of the snapshot; nothing was "
                        "changed",
                        pd->target, plan->name, pd->source, d ? d->rbd_parent : "?");
            return FALSE;
        }
        if (!(cluster = vs_rbd_connect(config, spec, error)) ||
            !(src = vs_rbd_open(cluster, spec->pool, spec->ns, spec->image, error)))
            return FALSE;
        if (!vs_rbd_snap_exists(src, d->rbd_snap)) {
            g_set_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                        "RBD image %s has no snapshot %s any more: disk %s cannot be rolled "
                        "back; nothing was changed",
                        pd->source, d->rbd_snap, pd->target);
            return FALSE;
        }
        if (vs_rbd_size(src) != d->size) {
            g_set_error(
                error, VS_ERROR, VS_ERROR_UNSUPPORTED,
                "disk %s of '%s' differs from the snapshot: its virtual size is %" G_GUINT64_FORMAT
                " bytes, the snapshot's %" G_GUINT64_FORMAT "; nothing was changed",
                pd->target, plan->name, vs_rbd_size(src), d->size);
            return FALSE;
        }
    }
    return TRUE;
}

/* As for a file revert, the domain is read again now that it is off; each disk's image
 * is opened and, with a safety snapshot, the names it will use are journaled. */
static gboolean
rbd_prepare_thread(VsJob *job, GError **error)
{
    VsRevert *r = job->revert;
    g_autoptr(VsPlan) plan = NULL;

    if (virDomainIsActive(job->plan->dom) != 0) {
        g_set_error(error, VS_ERROR, VS_ERROR_RUNNING,
                    "domain '%s' is running: a revert needs it shut off; nothing was changed",
                    job->domain);
        return FALSE;
    }
    if (!(plan = vs_revert_plan_disks(r, job->plan->conn, job->uuid, job->snapshot_dir,
                                      r->opts.safety ? job->name : NULL, error)) ||
        !vs_revert_rbd_check(r, plan, &job->config->rbd, error))
        return FALSE;
    vs_plan_free(job->plan);
    job->plan = g_steal_pointer(&plan);

    job->disks = g_ptr_array_new_with_free_func(vs_revert_job_disk_free);
    g_mutex_lock(&job->lock);
    for (guint i = 0; i < job->plan->disks->len; i++) {
        VsJobDisk *d = g_new0(VsJobDisk, 1);
        VsRbdSpec *spec;
        VsJournalRevertDisk *jd = g_new0(VsJournalRevertDisk, 1);

        d->plan = g_ptr_array_index(job->plan->disks, i);
        spec = &d->plan->rbd_spec;
        g_ptr_array_add(job->disks, d);
        if (r->opts.safety) {
            VsJournalRbd *jr = g_new0(VsJournalRbd, 1);

            jr->conf = g_strdup(spec->conf);
            jr->hosts = g_strdup(spec->hosts);
            jr->user = g_strdup(spec->user);
            jr->pool = g_strdup(spec->pool);
            jr->ns = g_strdup(spec->ns);
            jr->image = g_strdup(spec->image);
            jr->snap = g_strdup_printf("virtsnap-%s", job->snapshot_id);
            jr->clone_pool =
                g_strdup(job->config->rbd.dest_pool ? job->config->rbd.dest_pool : spec->pool);
            jr->clone = g_strdup_printf("%s-%s", spec->image, job->name);
            g_ptr_array_add(job->journal->rbd, jr);
            d->jr = jr;
        }
        jd->target = g_strdup(d->plan->target);
        jd->image = g_strdup(d->plan->source);
        jd->format = g_strdup("rbd");
        jd->safety = g_strdup(d->jr ? d->jr->snap : "");
        g_ptr_array_add(job->journal->revert_disks, jd);
    }
    g_mutex_unlock(&job->lock);

    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);
        VsRbdSpec *spec = &d->plan->rbd_spec;
        g_autoptr(VsRbdCluster) cluster = vs_rbd_connect(&job->config->rbd, spec, error);
        g_autoptr(VsRbdImage) existing = NULL;

        if (!cluster || !(d->src = vs_rbd_open(cluster, spec->pool, spec->ns, spec->image, error)))
            return FALSE;
        d->size = vs_rbd_size(d->src);
        if (!job->fsid)
            job->fsid = g_strdup(vs_rbd_cluster_fsid(cluster));
        if (!d->jr)
            continue;
        if ((existing = vs_rbd_open(cluster, d->jr->clone_pool, spec->ns, d->jr->clone, NULL))) {
            g_set_error(error, VS_ERROR, VS_ERROR_EXISTS,
                        "an RBD image named %s/%s already exists; nothing was overwritten",
                        d->jr->clone_pool, d->jr->clone);
            return FALSE;
        }
        if (!vs_rbd_pool_check(cluster, d->jr->clone_pool, spec->ns, error))
            return FALSE;
    }
    return r->opts.safety ? vs_job_prepare_folder(job, error) : vs_job_journal_save(job, error);
}

/* The safety snapshot, as the rbd method makes one (the domain is off: no freeze), thin:
 * its source snapshot is what undo rolls back to. Each object is journaled first. */
static gboolean
rbd_safety_thread(VsJob *job, GError **error)
{
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);
        VsJournalRbd *jr = d->jr;
        g_autoptr(VsRbdCluster) cluster =
            vs_rbd_connect(&job->config->rbd, &d->plan->rbd_spec, error);
        g_autoptr(VsRbdImage) clone = NULL;

        if (!cluster)
            return FALSE;
        g_mutex_lock(&job->lock);
        jr->snap_made = TRUE;
        g_mutex_unlock(&job->lock);
        if (!vs_job_journal_save(job, error) || !vs_rbd_snap_create(d->src, jr->snap, error) ||
            !vs_rbd_snap_protect(d->src, jr->snap, error))
            return FALSE;
        g_mutex_lock(&job->lock);
        jr->clone_made = TRUE;
        g_mutex_unlock(&job->lock);
        if (!vs_job_journal_save(job, error) ||
            !vs_rbd_clone(d->src, jr->snap, cluster, jr->clone_pool, jr->ns, jr->clone, error) ||
            !(clone = vs_rbd_open(cluster, jr->clone_pool, jr->ns, jr->clone, error)) ||
            !vs_rbd_snap_create(clone, "snap", error) || !vs_rbd_snap_protect(clone, "snap", error))
            return FALSE;
    }
    job->t_flatten_end = vs_now_ms();
    return TRUE;
}

/* The safety snapshot's disks are described as the rbd method describes its own. */
static void
rbd_disk_facts(VsJob *job, VsJobDisk *d, GVariantBuilder *facts)
{
    vs_job_method_rbd.disk_facts(job, d, facts);
}

static gboolean
on_rollback_progress(guint64 done, guint64 total, gpointer data)
{
    VsJob *job = data;

    vs_job_set_progress_later(
        job, (job->revert->index + (total ? (double)done / total : 0)) / job->disks->len, done,
        total);
    return !g_atomic_int_get(&job->cancel_requested);
}

/* Journaled first: from here on, undo rolls each image back to the safety snapshot. */
static gboolean
rbd_write_back_thread(VsJob *job, GError **error)
{
    VsRevert *r = job->revert;

    g_mutex_lock(&job->lock);
    job->journal->revert_writing = TRUE;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error))
        return FALSE;
    r->t_write_start = vs_now_ms();
    for (r->index = 0; r->index < job->disks->len; r->index++) {
        VsJobDisk *d = vs_job_disk(job, r->index);
        VsRevertDisk *sd = vs_revert_find_disk(r, d->plan->target);

        if (!sd || !vs_rbd_snap_rollback(d->src, sd->rbd_snap, on_rollback_progress, job, error))
            return FALSE;
        JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "disk %s rolled back to %s@%s", d->plan->target,
                d->plan->source, sd->rbd_snap);
    }
    r->t_write_end = vs_now_ms();
    g_clear_pointer(&job->facts, g_variant_unref);
    job->facts = g_variant_ref_sink(vs_revert_facts(job));
    vs_journal_remove(job->state_dir, job->snapshot_id);
    return TRUE;
}

gboolean
vs_revert_rbd_undo_disk(VsJob *job, VsJournalRevertDisk *jd, GError **error)
{
    VsJournalEntry *j = job->journal;

    for (guint i = 0; i < j->rbd->len; i++) {
        VsJournalRbd *jr = g_ptr_array_index(j->rbd, i);
        /* A record read back from disk has "" where a live job has NULL. */
        VsRbdSpec spec = {jr->pool,
                          jr->ns,
                          jr->image,
                          jr->conf && *jr->conf ? jr->conf : NULL,
                          jr->hosts && *jr->hosts ? jr->hosts : NULL,
                          jr->user && *jr->user ? jr->user : NULL};
        g_autoptr(VsRbdCluster) cluster = NULL;
        g_autoptr(VsRbdImage) src = NULL;

        if (g_strcmp0(jr->snap, jd->safety) != 0)
            continue;
        if (!(cluster = vs_rbd_connect(&job->config->rbd, &spec, error)) ||
            !(src = vs_rbd_open(cluster, jr->pool, jr->ns, jr->image, error)) ||
            !vs_rbd_snap_rollback(src, jr->snap, NULL, NULL, error))
            return FALSE;
        return TRUE;
    }
    g_set_error(error, VS_ERROR, VS_ERROR_FAILED, "the journal names no safety snapshot %s",
                jd->safety);
    return FALSE;
}

static const VsJobStep revert_rbd_steps[] = {
    {VS_PHASE_STOP, .wanted = vs_revert_stop_wanted, .thread = vs_revert_stop_thread,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_PREPARE, .thread = rbd_prepare_thread, .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_CLONE, .enter = vs_job_after_cut, .thread = rbd_safety_thread, .undo = VS_UNDO_RBD,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_CATALOG, .thread = vs_revert_publish_thread, .undo = VS_UNDO_REVERT | VS_UNDO_RBD,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_WRITE_BACK, .thread = rbd_write_back_thread, .undo = VS_UNDO_REVERT | VS_UNDO_RBD,
     .flags = VS_STEP_DISKS_OFFLINE},
};

static const VsJobStep revert_rbd_unsafe_steps[] = {
    {VS_PHASE_STOP, .wanted = vs_revert_stop_wanted, .thread = vs_revert_stop_thread,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_PREPARE, .thread = rbd_prepare_thread, .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_WRITE_BACK, .thread = rbd_write_back_thread, .undo = VS_UNDO_REVERT,
     .flags = VS_STEP_DISKS_OFFLINE | VS_STEP_NOT_CANCELLABLE},
};

const VsJobMethod vs_job_method_revert_rbd = {
    .name = "revert",
    .steps = revert_rbd_steps,
    .n_steps = G_N_ELEMENTS(revert_rbd_steps),
    .result_fields = vs_revert_result,
    .disk_facts = rbd_disk_facts,
};

const VsJobMethod vs_job_method_revert_rbd_unsafe = {
    .name = "revert",
    .steps = revert_rbd_unsafe_steps,
    .n_steps = G_N_ELEMENTS(revert_rbd_unsafe_steps),
    .result_fields = vs_revert_result,
};
