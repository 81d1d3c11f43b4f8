/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The cold and offline methods: the disks are read while nothing writes them. Cold saves
 * a running or paused guest's RAM first (managed save) and starts it again afterwards;
 * offline reads the disks of a domain that is off. */
#include "vs-job-private.h"
#include "vs-convert.h"
#include "vs-util.h"
#include "vs-virt-util.h"

static gboolean
cold_prepare_thread(VsJob *job, GError **error)
{
    return vs_job_prepare_folder(job, error);
}

/* The guest's RAM goes to its managed-save image, so its disks hold still and are
 * consistent with it; the state it had (running or paused) comes back on restore. */
static gboolean
save_thread(VsJob *job, GError **error)
{
    unsigned int flags =
        job->plan->state == VIR_DOMAIN_PAUSED ? VIR_DOMAIN_SAVE_PAUSED : VIR_DOMAIN_SAVE_RUNNING;

    g_mutex_lock(&job->lock);
    job->journal->saved = TRUE;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error))
        return FALSE;
    job->t_down_start = vs_now_ms();
    if (virDomainManagedSave(job->plan->dom, flags) < 0)
        return vs_set_libvirt_error(error, "saving '%s' (managed save)", job->domain);
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "%s saved in %" G_GINT64_FORMAT " ms", job->domain,
            vs_now_ms() - job->t_down_start);
    return TRUE;
}

/* Cold reads the disk's own chain: nothing writes it while the domain is saved or off
 * (and QEMU's image locks keep it so). */
static gboolean
chain_input(VsJob *job, VsJobDisk *d, const char **path, const char **format)
{
    *path = d->plan->source;
    *format = d->plan->format;
    return TRUE;
}

static const VsConvertInput extract_input = {0.0, chain_input};

static void
extract_start(VsJob *job)
{
    vs_convert_start(job, &extract_input);
}

static gboolean
restore_thread(VsJob *job, GError **error)
{
    if (virDomainCreate(job->plan->dom) < 0)
        return vs_set_libvirt_error(error, "starting '%s' again from its managed save",
                                    job->domain);
    job->downtime_ms = vs_now_ms() - job->t_down_start;
    g_mutex_lock(&job->lock);
    job->journal->saved = FALSE;
    g_mutex_unlock(&job->lock);
    return vs_job_journal_save(job, error);
}

static const VsJobStep cold_steps[] = {
    {VS_PHASE_CLEAR_JOBS, .wanted = vs_job_foreign_jobs_wanted, .thread = vs_job_clear_jobs_thread,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_PREPARE, .thread = cold_prepare_thread, .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_SAVE, .thread = save_thread, .undo = VS_UNDO_RESTART, .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_EXTRACT, .enter = vs_job_after_cut, .start = extract_start,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_RESTORE, .thread = restore_thread, .undo = VS_UNDO_RESTART},
    {VS_PHASE_CATALOG, .thread = vs_job_catalog_thread, .flags = VS_STEP_NOT_CANCELLABLE},
};

static const VsJobStep offline_steps[] = {
    {VS_PHASE_CLEAR_JOBS, .wanted = vs_job_foreign_jobs_wanted, .thread = vs_job_clear_jobs_thread,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_PREPARE, .thread = cold_prepare_thread, .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_EXTRACT, .enter = vs_job_after_cut, .start = extract_start,
     .flags = VS_STEP_DISKS_OFFLINE},
    {VS_PHASE_CATALOG, .thread = vs_job_catalog_thread, .flags = VS_STEP_NOT_CANCELLABLE},
};

static const VsResultField cold_result[] = {
    {"offline", "offline"},
    {"downtime-ms", "downtime-ms"},
    {"extract-ms", "flatten-ms"},
    {NULL, NULL},
};

const VsJobMethod vs_job_method_cold = {
    .name = "cold",
    .steps = cold_steps,
    .n_steps = G_N_ELEMENTS(cold_steps),
    .result_fields = cold_result,
};

const VsJobMethod vs_job_method_offline = {
    .name = "offline",
    .steps = offline_steps,
    .n_steps = G_N_ELEMENTS(offline_steps),
    .result_fields = cold_result,
};
