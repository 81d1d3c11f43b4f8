/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The freeze window and its watchdog, one implementation for every method that takes
 * its cut while the guest runs (live, rbd). */
#include "vs-freeze.h"
#include "vs-job-private.h"
#include "vs-error.h"
#include "vs-util.h"
#include "vs-virt-util.h"

/* How long a thaw that does not get through is tried again in the background. A guest
 * agent that hangs while the guest is frozen keeps the freeze: libvirt's thaw then fails
 * at its guest-sync wait (5 s) and never reaches the guest. Given up after a while, the
 * guest would stay frozen for good once its agent runs again; tried again, it thaws then. */
#define THAW_KEEP_MS       (10 * 60 * 1000)
#define THAW_KEEP_PAUSE_MS 500

static void
dom_free(gpointer dom)
{
    virDomainFree(dom);
}

static void
keep_thawing_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    VsJob *job = source;
    virDomainPtr dom = data;
    gint64 t0 = vs_now_ms();

    for (int attempt = 1;; attempt++) {
        int code;

        /* Each try bounded, even when the window has put libvirt's default back. */
        virDomainAgentSetResponseTimeout(dom, job->config->agent_timeout_s, 0);
        if (virDomainFSThaw(dom, NULL, 0, 0) >= 0) {
            if (attempt > 1)
                JOB_LOG(job, G_LOG_LEVEL_MESSAGE,
                        "%s thawed at last, after %" G_GINT64_FORMAT " ms (attempt %d)",
                        job->domain, vs_now_ms() - t0, attempt);
            break;
        }
        /* Only an agent that does not answer (or whose last call holds libvirt's agent
         * job) is worth another try; any other answer means there is nothing to thaw. */
        code = virGetLastErrorCode();
        if (!vs_freeze_agent_hangs(code) || vs_now_ms() - t0 > THAW_KEEP_MS) {
            JOB_LOG(job, G_LOG_LEVEL_WARNING, "thawing %s failed: %s", job->domain,
                    virGetLastErrorMessage());
            break;
        }
        if (attempt == 1)
            JOB_LOG(job, G_LOG_LEVEL_WARNING,
                    "thawing %s: %s; trying again until its agent "
                    "answers",
                    job->domain, virGetLastErrorMessage());
        g_usleep(THAW_KEEP_PAUSE_MS * 1000);
    }
    virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
    g_task_return_boolean(task, TRUE);
}

void
vs_freeze_keep_thawing(VsJob *job, virDomainPtr dom)
{
    g_autoptr(GTask) task = g_task_new(job, NULL, NULL, NULL);

    virDomainRef(dom);
    g_task_set_task_data(task, dom, dom_free);
    g_task_run_in_thread(task, keep_thawing_thread);
}

static gboolean
watchdog_cb(gpointer data)
{
    VsJob *job = data;

    job->watchdog_source = 0;
    if (!g_atomic_int_compare_and_exchange(&job->thaw_claimed, 0, 1))
        return G_SOURCE_REMOVE;
    JOB_LOG(job, G_LOG_LEVEL_WARNING, "%s still frozen after %u ms: thawing now", job->domain,
            job->freeze_limit_ms);
    job->watchdog_fired = TRUE;
    vs_freeze_keep_thawing(job, job->plan->dom);
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
vs_freeze_agent_hangs(int code)
{
    return code == VIR_ERR_AGENT_UNRESPONSIVE || code == VIR_ERR_OPERATION_TIMEOUT;
}

gboolean
vs_freeze_window(VsJob *job, VsFreezeCutFunc cut, gint64 *t_start, GError **error)
{
    virDomainPtr dom = job->plan->dom;
    gboolean running = job->plan->state == VIR_DOMAIN_RUNNING;
    gboolean want_freeze =
        job->opts.quiesce != VS_QUIESCE_OFF && job->plan->agent_connected && running;
    gboolean multi = job->disks->len + (job->rbd_disks ? job->rbd_disks->len : 0) > 1;
    gboolean frozen = FALSE, suspended = FALSE, thawed = FALSE, alive;
    gboolean maybe_frozen = FALSE; /* a freeze call that timed out: qemu-ga may still do it */
    g_autoptr(GError) stop_error = NULL;
    gint64 t0, t_pause = 0;

    g_mutex_lock(&job->lock);
    job->journal->frozen = want_freeze;
    job->journal->suspended = multi && running;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error))
        return FALSE;

    t0 = vs_now_ms();
    /* libvirt waits for a guest agent's answer to a command without bound by default: a
     * qemu-ga that hangs after answering libvirt's guest-sync would hold the freeze (and the
     * thaw behind it) for good. agent_timeout_s bounds each agent command of the window;
     * the domain's own setting is put back to libvirt's default after it. */
    if (want_freeze && virDomainAgentSetResponseTimeout(dom, job->config->agent_timeout_s, 0) < 0)
        JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "cannot set the guest agent's timeout: %s",
                virGetLastErrorMessage());
    if (want_freeze) {
        if (virDomainFSFreeze(dom, NULL, 0, 0) < 0) {
            g_autoptr(GError) freeze_error = NULL;

            vs_set_libvirt_error(&freeze_error, "freezing the guest's file systems");
            if (virConnectIsAlive(job->plan->conn) != 1) {
                /* libvirtd went away: whether the guest froze is unknown, the journal
                 * keeps "frozen" for the resume (or undo) to thaw. Not a quiesce failure. */
                g_set_error(error, VS_ERROR, VS_ERROR_NOT_CONNECTED, "%s", freeze_error->message);
                return FALSE;
            }
            /* An agent that did not answer in time may still freeze the guest afterwards
             * (a slow flush): thawed in the background until it answers. */
            maybe_frozen = vs_freeze_agent_hangs(virGetLastErrorCode());
            if (job->opts.quiesce == VS_QUIESCE_REQUIRE) {
                if (maybe_frozen)
                    vs_freeze_keep_thawing(job, dom); /* it puts the timeout back */
                else
                    virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT,
                                                     0);
                g_set_error(error, VS_ERROR, VS_ERROR_QUIESCE_FAILED, "%s", freeze_error->message);
                return FALSE; /* undo stops the copies */
            }
            g_free(job->quiesce_note); /* a window taken again after a resume */
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
        g_free(job->quiesce_note);
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
        if (!thawed && virConnectIsAlive(job->plan->conn) == 1) {
            vs_freeze_keep_thawing(job, dom); /* the job goes on to fail; the thaw too */
            thawed = TRUE;                    /* in its hands now, not undo's */
        }
    }
    if (maybe_frozen)
        vs_freeze_keep_thawing(job, dom);
    /* A background thaw puts libvirt's default back itself, when it ends. */
    if (want_freeze && !maybe_frozen && !job->watchdog_fired && !(frozen && !thawed))
        virDomainAgentSetResponseTimeout(dom, VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_DEFAULT, 0);
    if (frozen)
        job->freeze_ms = vs_now_ms() - t0;
    /* A freeze call that waited on a hung agent: the guest may have been frozen for all
     * that time, past the limit, with no watchdog armed yet. */
    if (frozen && job->freeze_ms > job->freeze_limit_ms)
        job->watchdog_fired = TRUE;

    alive = virConnectIsAlive(job->plan->conn) == 1;
    g_mutex_lock(&job->lock);
    /* A cut that failed may have left mirrors running: undo (or a resume) looks at them. */
    if (!stop_error)
        g_ptr_array_set_size(job->journal->copies, 0);
    /* The watchdog's thaw went through a dead connection too when libvirtd went away. */
    job->journal->frozen = frozen && !thawed && (!job->watchdog_fired || !alive);
    job->journal->suspended = suspended;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error))
        return FALSE;

    *t_start = t0;
    if (job->watchdog_fired) {
        g_set_error(error, VS_ERROR, VS_ERROR_TIMEOUT,
                    "the guest was frozen longer than the freeze limit (%u ms): it was thawed "
                    "(or is, as soon as its agent answers) and the snapshot discarded",
                    job->freeze_limit_ms);
        return FALSE;
    }
    if (stop_error) {
        g_propagate_error(error, g_steal_pointer(&stop_error));
        return FALSE;
    }
    return TRUE;
}
