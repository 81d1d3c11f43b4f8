/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The mixed method: a domain with disks in Ceph RBD and local file disks. The file disks
 * are mirrored as the live method does, the RBD disks snapshotted and cloned as the rbd
 * method does, and both are cut inside one freeze window: one snapshot, one instant.
 * Its steps are the live and rbd steps themselves; job->disks holds the file disks (what
 * the live steps see), job->rbd_disks the RBD ones, joined for the catalog. */
#include "vs-job-private.h"
#include "vs-error.h"
#include "vs-freeze.h"
#include "vs-result.h"
#include "vs-virt-util.h"

static const VsJobStep *
live_step(VsPhase phase)
{
    return vs_job_method_step(&vs_job_method_live, phase);
}

static const VsJobStep *
rbd_step(VsPhase phase)
{
    return vs_job_method_step(&vs_job_method_rbd, phase);
}

static gboolean
foreign_jobs_wanted(VsJob *job)
{
    return vs_job_foreign_jobs_wanted(job);
}

/* force: a foreign block job may sit on an RBD disk as well as on a file disk. */
static gboolean
clear_jobs_thread(VsJob *job, GError **error)
{
    if (!vs_job_clear_jobs_thread(job, error))
        return FALSE;
    for (guint i = 0; i < job->rbd_disks->len; i++) {
        VsJobDisk *d = g_ptr_array_index(job->rbd_disks, i);
        virDomainBlockJobInfo info;
        int r = virDomainGetBlockJobInfo(job->plan->dom, d->plan->target, &info, 0);

        if (r < 0)
            return vs_set_libvirt_error(error, "checking block jobs of %s", d->plan->target);
        if (r == 1 && virDomainBlockJobAbort(job->plan->dom, d->plan->target, 0) < 0)
            return vs_set_libvirt_error(error, "aborting the block job on %s", d->plan->target);
    }
    return TRUE;
}

/* live's prepare (journal, folder, a delta per file disk), then every RBD image open and
 * its clone's name free: a refusal from the cluster comes before any mirror starts. */
static gboolean
prepare_thread(VsJob *job, GError **error)
{
    return live_step(VS_PHASE_PREPARE)->thread(job, error) && vs_job_rbd_open_images(job, error);
}

static gboolean
copy_thread(VsJob *job, GError **error)
{
    return live_step(VS_PHASE_COPY)->thread(job, error);
}

static void
wait_ready_start(VsJob *job)
{
    live_step(VS_PHASE_WAIT_READY)->start(job);
}

static void
mixed_block_job(VsJob *job, const char *target, int status)
{
    vs_job_method_live.block_job(job, target, status);
}

typedef struct {
    VsJob *job;
    GError *error;
    gboolean ok;
} RbdCut;

static gpointer
rbd_cut_thread(gpointer data)
{
    RbdCut *c = data;

    c->ok = vs_job_rbd_cut(c->job, &c->error);
    return NULL;
}

/* The cut of both kinds. The RBD snapshots are made in a thread of their own while the
 * mirrors stop: the window lasts as long as the slower of the two, not their sum. */
static gboolean
mixed_cut(VsJob *job, GError **error)
{
    RbdCut c = {job, NULL, FALSE};
    GThread *thread = g_thread_new("vs-rbd-cut", rbd_cut_thread, &c);
    gboolean ok = vs_job_live_cut(job, error);

    g_thread_join(thread);
    if (!c.ok) {
        if (ok)
            g_propagate_error(error, c.error);
        else
            g_clear_error(&c.error);
    }
    return ok && c.ok;
}

static gboolean
freeze_thread(VsJob *job, GError **error)
{
    gint64 t0 = 0;

    /* Journaled before they exist: a crash in the window leaves nothing unknown. */
    vs_job_rbd_journal_snaps(job);
    return vs_freeze_window(job, mixed_cut, &t0, error);
}

static gboolean
redefine_wanted(VsJob *job)
{
    return live_step(VS_PHASE_REDEFINE)->wanted(job);
}

static gboolean
redefine_thread(VsJob *job, GError **error)
{
    return live_step(VS_PHASE_REDEFINE)->thread(job, error);
}

static gboolean
clone_thread(VsJob *job, GError **error)
{
    return rbd_step(VS_PHASE_CLONE)->thread(job, error);
}

static void
flatten_start(VsJob *job)
{
    live_step(VS_PHASE_FLATTEN)->start(job);
}

static gint
plan_order(gconstpointer a, gconstpointer b, gpointer data)
{
    GPtrArray *plan_disks = data;
    guint ia = 0, ib = 0;

    g_ptr_array_find(plan_disks, (*(VsJobDisk *const *)a)->plan, &ia);
    g_ptr_array_find(plan_disks, (*(VsJobDisk *const *)b)->plan, &ib);
    return ia < ib ? -1 : ia > ib;
}

/* Every disk in job->disks, in the domain's order, for the metadata and the Result. On the
 * main loop, where the block-job events read job->disks. */
static void
join_disks(VsJob *job)
{
    while (job->rbd_disks->len > 0)
        g_ptr_array_add(job->disks, g_ptr_array_steal_index(job->rbd_disks, 0));
    g_ptr_array_sort_with_data(job->disks, plan_order, job->plan->disks);
}

/* Each disk as its own method writes it: an image file, or an RBD clone. */
static void
mixed_disk_facts(VsJob *job, VsJobDisk *d, GVariantBuilder *facts)
{
    if (d->plan->rbd)
        vs_job_method_rbd.disk_facts(job, d, facts);
    else
        vs_result_file_disk_facts(job, d, facts);
}

static const VsJobStep mixed_steps[] = {
    {VS_PHASE_CLEAR_JOBS, .wanted = foreign_jobs_wanted, .thread = clear_jobs_thread},
    {VS_PHASE_PREPARE, .thread = prepare_thread},
    {VS_PHASE_COPY, .thread = copy_thread, .undo = VS_UNDO_COPIES | VS_UNDO_REDEFINE},
    {VS_PHASE_WAIT_READY, .start = wait_ready_start, .undo = VS_UNDO_COPIES,
     .flags = VS_STEP_WAITS_EVENTS},
    {VS_PHASE_FREEZE_WINDOW, .thread = freeze_thread,
     .undo = VS_UNDO_COPIES | VS_UNDO_RESUME | VS_UNDO_THAW | VS_UNDO_RBD,
     .flags = VS_STEP_RUNS_TO_END},
    {VS_PHASE_REDEFINE, .wanted = redefine_wanted, .thread = redefine_thread,
     .undo = VS_UNDO_REDEFINE},
    /* The clone first: without flatten it is a few cluster calls, the file side's
     * conversion is the long part. */
    {VS_PHASE_CLONE, .enter = vs_job_after_cut, .thread = clone_thread, .undo = VS_UNDO_RBD},
    {VS_PHASE_FLATTEN, .start = flatten_start},
    {VS_PHASE_CATALOG, .enter = join_disks, .thread = vs_job_catalog_thread,
     .flags = VS_STEP_NOT_CANCELLABLE},
};

static const VsResultField mixed_result[] = {
    {"copy", "copy"},       {"freeze-ms", "freeze-ms"}, {"pause-ms", "pause-ms"},
    {"copy-ms", "copy-ms"}, {"flattened", "flattened"}, {"flatten-ms", "flatten-ms"},
    {NULL, NULL},
};

const VsJobMethod vs_job_method_mixed = {
    .name = "mixed",
    .steps = mixed_steps,
    .n_steps = G_N_ELEMENTS(mixed_steps),
    .result_fields = mixed_result,
    .block_job = mixed_block_job,
    .disk_facts = mixed_disk_facts,
};
