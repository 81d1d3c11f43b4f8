/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The freeze window and its watchdog, one implementation for every method that takes
 * its cut while the guest runs (live, rbd). */
#include "vs-freeze.h"
#include "vs-job-private.h"
#include "vs-error.h"
#include "vs-util.h"
#include "vs-virt-util.h"

static void
emergency_thaw_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    VsJob *job = source;

    if (virDomainFSThaw(job->plan->dom, NULL, 0, 0) < 0)
        JOB_LOG(job, G_LOG_LEVEL_WARNING, "emergency thaw of %s failed: %s", job->domain,
                virGetLastErrorMessage());
    g_task_return_boolean(task, TRUE);
}

static gboolean
watchdog_cb(gpointer data)
{
    VsJob *job = data;
    g_autoptr(GTask) task = NULL;

    job->watchdog_source = 0;
    if (!g_atomic_int_compare_and_exchange(&job->thaw_claimed, 0, 1))
        return G_SOURCE_REMOVE;
    JOB_LOG(job, G_LOG_LEVEL_WARNING, "%s still frozen after %u ms: thawing now", job->domain,
            job->freeze_limit_ms);
    job->watchdog_fired = TRUE;
    task = g_task_new(job, NULL, NULL, NULL);
    g_task_run_in_thread(task, emergency_thaw_thread);
    return G_SOURCE_REMOVE;
}

static gboolean
arm_watchdog(gpointer data)
{
    VsJob *job = data;

    if (job->phase == VS_PHASE_FREEZE_WINDOW && !g_atomic_int_get(&job->thaw_claimed) &&
        !job->watchdog_source)
        job->watchdog_source = g_timeout_add(job->freeze_limit_ms, watchdog_cb, job);
    return G_SOURCE_REMOVE;
}

/* Without a freeze, a guest with several disks is paused instead so that the cut is
 * taken at the same instant on every disk. */
gboolean
vs_freeze_window(VsJob *job, VsFreezeCutFunc cut, gint64 *t_start, GError **error)
{
    virDomainPtr dom = job->plan->dom;
    gboolean running = job->plan->state == VIR_DOMAIN_RUNNING;
    gboolean want_freeze =
        job->opts.quiesce != VS_QUIESCE_OFF && job->plan->agent_connected && running;
    gboolean multi = job->disks->len + (job->rbd_disks ? job->rbd_disks->len : 0) > 1;
    gboolean frozen = FALSE, suspended = FALSE, thawed = FALSE;
    g_autoptr(GError) stop_error = NULL;
    gint64 t0, t_pause = 0;

    g_mutex_lock(&job->lock);
    job->journal->frozen = want_freeze;
    job->journal->suspended = multi && running;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error))
        return FALSE;

    t0 = vs_now_ms();
    if (want_freeze) {
        if (virDomainFSFreeze(dom, NULL, 0, 0) < 0) {
            g_autoptr(GError) freeze_error = NULL;

            vs_set_libvirt_error(&freeze_error, "freezing the guest's file systems");
            if (job->opts.quiesce == VS_QUIESCE_REQUIRE) {
                g_set_error(error, VS_ERROR, VS_ERROR_QUIESCE_FAILED, "%s", freeze_error->message);
                return FALSE; /* undo stops the copies */
            }
            job->quiesce_note = g_strdup(freeze_error->message);
            JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "%s; going on unquiesced (quiesce=try)",
                    freeze_error->message);
        } else {
            frozen = TRUE;
            job->quiesced = TRUE;
            g_main_context_invoke_full(NULL, G_PRIORITY_HIGH, arm_watchdog, g_object_ref(job),
                                       g_object_unref);
        }
    } else if (job->opts.quiesce != VS_QUIESCE_OFF) {
        job->quiesce_note = g_strdup(running ? "no guest agent connected" : "domain is paused");
    }
    if (!frozen && multi && running) {
        if (virDomainSuspend(dom) == 0) {
            suspended = TRUE;
            t_pause = vs_now_ms();
        } else {
            JOB_LOG(job, G_LOG_LEVEL_WARNING,
                    "cannot pause %s for a consistent multi-disk copy: %s", job->domain,
                    virGetLastErrorMessage());
        }
    }

    /* The cut: the instant every disk's point-in-time copy is taken. */
    cut(job, &stop_error);
    job->t_copy_end = vs_now_ms();

    if (suspended) {
        if (virDomainResume(dom) < 0 && !stop_error)
            vs_set_libvirt_error(&stop_error, "resuming the guest");
        else
            suspended = FALSE;
        job->pause_ms = vs_now_ms() - t_pause;
    }
    if (frozen && g_atomic_int_compare_and_exchange(&job->thaw_claimed, 0, 1)) {
        thawed = virDomainFSThaw(dom, NULL, 0, 0) >= 0 || virDomainFSThaw(dom, NULL, 0, 0) >= 0;
        if (!thawed && !stop_error)
            vs_set_libvirt_error(&stop_error, "thawing the guest");
    }
    if (frozen)
        job->freeze_ms = vs_now_ms() - t0;

    g_mutex_lock(&job->lock);
    g_ptr_array_set_size(job->journal->copies, 0);
    job->journal->frozen = frozen && !thawed && !job->watchdog_fired;
    job->journal->suspended = suspended;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error))
        return FALSE;

    *t_start = t0;
    if (job->watchdog_fired) {
        g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                    "stopping the copies took longer than the freeze limit (%u ms): the guest "
                    "was thawed and the snapshot discarded",
                    job->freeze_limit_ms);
        return FALSE;
    }
    if (stop_error) {
        g_propagate_error(error, g_steal_pointer(&stop_error));
        return FALSE;
    }
    return TRUE;
}
