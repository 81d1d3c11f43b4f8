/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers every method's steps use (journal, progress, threads), and the steps all
 * methods share: clear foreign block jobs, make the folder, write the catalog entry. */
#include "vs-job-private.h"
#include "vs-catalog.h"
#include "vs-error.h"
#include "vs-result.h"
#include "vs-util.h"
#include "vs-virt-util.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>

VsJobDisk *
vs_job_disk(VsJob *job, guint i)
{
    return g_ptr_array_index(job->disks, i);
}

VsJobDisk *
vs_job_find_disk(VsJob *job, const char *target)
{
    for (guint i = 0; job->disks && i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);

        if (strcmp(d->plan->target, target) == 0)
            return d;
    }
    return NULL;
}

gboolean
vs_job_journal_save(VsJob *job, GError **error)
{
    gboolean ok;

    g_mutex_lock(&job->lock);
    /* A repair keeps the phase the interrupted job was in: it is what the repair reports
     * (a revert's undo saves the record mid-way; its phase would read "cleanup"). */
    if (!job->recovery || !job->journal->phase) {
        g_free(job->journal->phase);
        job->journal->phase = g_strdup(vs_phase_name(job->phase));
    }
    ok = vs_journal_write(job->state_dir, job->journal, error);
    g_mutex_unlock(&job->lock);
    return ok;
}

void
vs_job_set_progress(VsJob *job, double fraction, guint64 done, guint64 total)
{
    vs_dbus_job1_set_progress(job->iface, CLAMP(fraction, 0.0, 1.0));
    vs_dbus_job1_set_bytes_done(job->iface, done);
    vs_dbus_job1_set_bytes_total(job->iface, total);
}

typedef struct {
    VsJob *job;
    double fraction;
    guint64 done, total;
} LaterProgress;

static gboolean
apply_later_progress(gpointer data)
{
    LaterProgress *p = data;

    vs_job_set_progress(p->job, p->fraction, p->done, p->total);
    return G_SOURCE_REMOVE;
}

static void
later_progress_free(gpointer data)
{
    LaterProgress *p = data;

    g_object_unref(p->job);
    g_free(p);
}

void
vs_job_set_progress_later(VsJob *job, double fraction, guint64 done, guint64 total)
{
    LaterProgress *p = g_new0(LaterProgress, 1);

    p->job = g_object_ref(job);
    p->fraction = fraction;
    p->done = done;
    p->total = total;
    g_main_context_invoke_full(NULL, G_PRIORITY_DEFAULT, apply_later_progress, p,
                               later_progress_free);
}

static void
job_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    VsStepThreadFunc func = data;
    GError *error = NULL;

    if (func(VS_JOB(source), &error))
        g_task_return_boolean(task, TRUE);
    else
        g_task_return_error(task, error);
}

void
vs_job_run_in_thread(VsJob *job, VsStepThreadFunc func, GAsyncReadyCallback done)
{
    g_autoptr(GTask) task = g_task_new(job, NULL, done, NULL);

    g_task_set_task_data(task, func, NULL);
    g_task_run_in_thread(task, job_thread);
}

static gboolean
step_done_idle(gpointer data)
{
    VsJob *job = data;

    job->step_done(job, NULL);
    return G_SOURCE_REMOVE;
}

void
vs_job_step_done_later(VsJob *job)
{
    g_idle_add_full(G_PRIORITY_HIGH, step_done_idle, g_object_ref(job), g_object_unref);
}

gboolean
vs_job_foreign_jobs_wanted(VsJob *job)
{
    return job->plan->foreign_jobs;
}

gboolean
vs_job_clear_jobs_thread(VsJob *job, GError **error)
{
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);
        virDomainBlockJobInfo info;
        int r = virDomainGetBlockJobInfo(job->plan->dom, d->plan->target, &info, 0);

        if (r < 0)
            return vs_set_libvirt_error(error, "checking block jobs of %s", d->plan->target);
        if (r == 0)
            continue;
        JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "aborting foreign block job on %s (force)",
                d->plan->target);
        if (virDomainBlockJobAbort(job->plan->dom, d->plan->target, 0) < 0)
            return vs_set_libvirt_error(error, "aborting the block job on %s", d->plan->target);
    }
    return TRUE;
}

/* Why the job's folder cannot be made, in words a caller can act on and without the host's
 * paths (callers name snapshots, never paths; the log has the path). A snapshot directory
 * that vanished while the agent runs is not made again: it is most often a file system
 * that was unmounted, and a new directory would fill the one it was mounted on. The
 * agent's start makes a missing snapshot directory, as always. */
static gboolean
folder_error(VsJob *job, int errsv, GError **error)
{
    JOB_LOG(job, G_LOG_LEVEL_WARNING, "cannot create %s: %s", job->folder, g_strerror(errsv));
    if (errsv == ENOENT || errsv == ENOTDIR)
        g_set_error(error, VS_ERROR, VS_ERROR_IO,
                    "the snapshot directory is gone (removed, renamed or unmounted while the "
                    "agent runs); it is not made again: put it back, or restart the agent");
    else if (errsv == ENOSPC || errsv == EDQUOT)
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SPACE, "the snapshot directory is full: %s",
                    g_strerror(errsv));
    else
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "cannot write in the snapshot directory: %s",
                    g_strerror(errsv));
    return FALSE;
}

gboolean
vs_job_prepare_folder(VsJob *job, GError **error)
{
    /* The journal names the folder before it exists: a crash after mkdir is cleaned up. */
    if (!vs_job_journal_save(job, error))
        return FALSE;
    /* 0711: QEMU (a different user on the system instance) must reach the delta by
     * path; nobody but root can list the folder. */
    if (g_mkdir(job->folder, 0711) < 0 || g_chmod(job->folder, 0711) < 0)
        return folder_error(job, errno, error);
    return TRUE;
}

void
vs_job_after_cut(VsJob *job)
{
    g_clear_handle_id(&job->watchdog_source, g_source_remove);
    vs_dbus_job1_set_freeze_ms(job->iface, job->freeze_ms);
    job->t_flatten_start = vs_now_ms();
}

gboolean
vs_job_catalog_thread(VsJob *job, GError **error)
{
    g_autoptr(JsonNode) meta = NULL;

    job->facts = g_variant_ref_sink(vs_result_facts(job));
    meta = vs_result_metadata(job->facts);
    if (!vs_catalog_write_metadata(job->folder, meta, error) ||
        !vs_catalog_publish(job->snapshot_dir, job->snapshot_id, error))
        return FALSE;
    vs_journal_remove(job->state_dir, job->snapshot_id);
    return TRUE;
}
