/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The live method: a block copy (mirror) of every disk into a delta while the guest
 * runs, a short freeze window that stops every mirror at once, then qemu-img convert of
 * the deltas into the finished images. The wait for the mirrors is driven by BLOCK_JOB_2
 * events, never by polling. */
#include "vs-job-private.h"
#include "vs-convert.h"
#include "vs-domain-xml.h"
#include "vs-error.h"
#include "vs-freeze.h"
#include "vs-qemu-img.h"
#include "vs-util.h"
#include "vs-virt-util.h"

#include <errno.h>
#include <sys/statvfs.h>

/* A delta per disk: on the disk's backing file for a shallow copy, a whole image for a
 * direct one. */
static gboolean
live_prepare_thread(VsJob *job, GError **error)
{
    if (!vs_job_prepare_folder(job, error))
        return FALSE;
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);
        g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *out = NULL;
        gboolean direct = job->opts.copy == VS_COPY_DIRECT;

        if (job->cancel_requested)
            return TRUE; /* the engine turns this into the cancel */
        g_ptr_array_add(args, g_strdup("create"));
        g_ptr_array_add(args, g_strdup("-q"));
        g_ptr_array_add(args, g_strdup("-f"));
        g_ptr_array_add(args, g_strdup(direct ? vs_format_name(job->opts.format) : "qcow2"));
        if (d->plan->cluster_size && (!direct || job->opts.format == VS_FORMAT_QCOW2)) {
            g_ptr_array_add(args, g_strdup("-o"));
            g_ptr_array_add(args, g_strdup_printf("cluster_size=%u", d->plan->cluster_size));
        }
        /* A shallow copy holds only the top layer: the delta sits on the same backing
         * file as the disk. A disk without backing gets a delta without. */
        if (!direct && d->plan->backing) {
            g_ptr_array_add(args, g_strdup("-b"));
            g_ptr_array_add(args, g_strdup(d->plan->backing));
            g_ptr_array_add(args, g_strdup("-F"));
            g_ptr_array_add(args, g_strdup(d->plan->backing_format));
        }
        if (d->plan->secret) { /* the delta is encrypted like the disk */
            g_ptr_array_add(args, g_strdup("-o"));
            g_ptr_array_add(args, vs_secret_create_options(0));
        }
        g_ptr_array_add(args, g_strdup(d->delta));
        g_ptr_array_add(args, g_strdup_printf("%" G_GUINT64_FORMAT, d->plan->capacity));
        g_ptr_array_add(args, NULL);
        {
            VsSecret *secrets[] = {d->plan->secret, NULL};

            if (!(out = vs_qemu_img_run_sync_full((const char *const *)args->pdata, secrets,
                                                  vs_job_child_note, job, error)))
                return FALSE;
        }
    }
    return TRUE;
}

/* An encrypted disk's delta: QEMU opens it with the disk's own secret, which libvirt
 * hands it (the passphrase never passes through us here). */
static char *
encrypted_dest_xml(const char *path, const char *format, const char *uuid)
{
    g_autofree char *id = g_markup_escape_text(uuid, -1);

    return g_strdup_printf("<disk type='file'><source file='%s'><encryption format='luks'>"
                           "<secret type='passphrase' uuid='%s'/></encryption></source>"
                           "<driver type='%s'/></disk>",
                           path, id, format);
}

static char *
copy_dest_xml(VsJob *job, VsJobDisk *d)
{
    g_autofree char *path = g_markup_escape_text(d->delta, -1);
    const char *format =
        job->opts.copy == VS_COPY_DIRECT ? vs_format_name(job->opts.format) : "qcow2";

    if (d->plan->secret)
        return encrypted_dest_xml(path, format, vs_secret_uuid(d->plan->secret));
    return g_strdup_printf("<disk type='file'><source file='%s'/><driver type='%s'/></disk>", path,
                           format);
}

/* The seed's way, for libvirt without TRANSIENT_JOB (or when asked): a copy job used to
 * need a transient domain, so the persistent definition is journaled, then undefined. */
static gboolean
undefine_for_copy(VsJob *job, GError **error)
{
    g_mutex_lock(&job->lock);
    job->journal->undefined = TRUE;
    g_free(job->journal->saved_xml);
    job->journal->saved_xml = g_strdup(job->plan->inactive_xml);
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error))
        return FALSE;
    if (virDomainUndefineFlags(job->plan->dom,
                               VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | VIR_DOMAIN_UNDEFINE_KEEP_TPM) < 0)
        return vs_set_libvirt_error(error, "undefining '%s' for the copy", job->domain);
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "domain %s undefined for the copy (legacy path)",
            job->domain);
    return TRUE;
}

static gboolean
start_copy(VsJob *job, VsJobDisk *d, gboolean transient, GError **error)
{
    gboolean shallow = job->opts.copy == VS_COPY_SHALLOW;

    if (transient) {
        g_autofree char *xml = copy_dest_xml(job, d);
        unsigned int flags = VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB |
                             (shallow ? VIR_DOMAIN_BLOCK_COPY_SHALLOW : 0);
        virTypedParameter param = {
            VIR_DOMAIN_BLOCK_COPY_BANDWIDTH, VIR_TYPED_PARAM_ULLONG, {.ul = job->opts.bandwidth}};

        return virDomainBlockCopy(job->plan->dom, d->plan->target, xml, &param,
                                  job->opts.bandwidth ? 1 : 0, flags) == 0;
    } else {
        unsigned int flags =
            VIR_DOMAIN_BLOCK_REBASE_COPY | VIR_DOMAIN_BLOCK_REBASE_REUSE_EXT |
            VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES |
            (shallow ? VIR_DOMAIN_BLOCK_REBASE_SHALLOW : 0) |
            (!shallow && job->opts.format == VS_FORMAT_RAW ? VIR_DOMAIN_BLOCK_REBASE_COPY_RAW : 0);

        return virDomainBlockRebase(job->plan->dom, d->plan->target, d->delta, job->opts.bandwidth,
                                    flags) == 0;
    }
}

static gboolean
copy_thread(VsJob *job, GError **error)
{
    gboolean transient = job->plan->transient_copy;

    /* Once: a resumed copy finds the domain undefined already. */
    if (!transient && job->plan->persistent && virDomainIsPersistent(job->plan->dom) != 0 &&
        !undefine_for_copy(job, error))
        return FALSE;

    if (!job->t_copy_start)
        job->t_copy_start = vs_now_ms();
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);

        if (d->mirrored)
            continue; /* resume: it runs since before libvirtd went away */
        g_mutex_lock(&job->lock);
        if (!g_ptr_array_find_with_equal_func(job->journal->copies, d->plan->target, g_str_equal,
                                              NULL))
            g_ptr_array_add(job->journal->copies, g_strdup(d->plan->target));
        g_mutex_unlock(&job->lock);
        if (!vs_job_journal_save(job, error))
            return FALSE;
        if (start_copy(job, d, transient, NULL))
            continue;
        {
            virErrorPtr err = virGetLastError();

            /* Detect, don't assume: a libvirt that refuses the flag gets the seed's way. */
            if (transient && i == 0 && err && !d->plan->secret &&
                (err->code == VIR_ERR_NO_SUPPORT || err->code == VIR_ERR_ARGUMENT_UNSUPPORTED)) {
                JOB_LOG(job, G_LOG_LEVEL_MESSAGE,
                        "no transient block copy here (%s); using undefine/rebase", err->message);
                transient = FALSE;
                if (job->plan->persistent && !undefine_for_copy(job, error))
                    return FALSE;
                if (start_copy(job, d, FALSE, NULL))
                    continue;
            }
        }
        return vs_set_libvirt_error(error, "starting the copy of disk %s", d->plan->target);
    }
    return TRUE;
}

/* ---- resume: libvirtd went away and came back (vs-job.c resume_start) ---------------------
 * QEMU keeps mirroring while libvirtd is away; libvirt 9.0 reconnects to the monitor when it
 * starts again, reads the block jobs back, and shows a mirror that reached READY meanwhile as
 * <mirror ... ready='yes'> in the live XML, though its READY event went out to nobody. A
 * mirror that QEMU ended meanwhile (or a QEMU that died) shows no <mirror> at all. */

/* How long a resume keeps trying to thaw a guest whose agent does not answer. */
#define THAW_RETRY_MS 15000

/* Which of our mirrors libvirt shows now (d->mirrored) and which are in sync (d->ready). */
static gboolean
find_mirrors(VsJob *job, GError **error)
{
    g_autofree char *xml = virDomainGetXMLDesc(job->plan->dom, 0);
    g_autoptr(VsDomainXml) dx = NULL;

    if (!xml)
        return vs_set_libvirt_error(error, "reading the live definition of '%s'", job->domain);
    if (!(dx = vs_domain_xml_parse(xml, error)))
        return FALSE;
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);
        VsDisk *disk = vs_domain_xml_find_disk(dx, d->plan->target);

        d->mirrored = disk && disk->mirror && g_strcmp0(disk->mirror_source, d->delta) == 0;
        if (d->mirrored && disk->mirror_ready)
            d->ready = TRUE; /* an event may have said so already: never back to FALSE */
    }
    return TRUE;
}

static VsJobDisk *
first_unmirrored(VsJob *job)
{
    for (guint i = 0; i < job->disks->len; i++) {
        if (!vs_job_disk(job, i)->mirrored)
            return vs_job_disk(job, i);
    }
    return NULL;
}

/* The copy calls: those whose mirror libvirt shows ran; the others are made again (a call
 * that the dead libvirtd never carried out left nothing). */
static gboolean
copy_resume(VsJob *job, GError **error)
{
    return find_mirrors(job, error);
}

/* Waiting for READY: it may have come while we were away. */
static gboolean
wait_ready_resume(VsJob *job, GError **error)
{
    VsJobDisk *gone;

    if (!find_mirrors(job, error))
        return FALSE;
    if ((gone = first_unmirrored(job))) {
        g_set_error(error, VS_ERROR, VS_ERROR_LIBVIRT,
                    "the copy of disk %s ended while libvirtd was away (see libvirt's log)",
                    gone->plan->target);
        return FALSE;
    }
    return TRUE;
}

/* The freeze window lost its connection: the guest is thawed (and resumed) first, through
 * the new connection. Then the cut is taken again if every mirror is still there and in
 * sync: the delta follows the disk until the cut, so a second cut is as good as the first.
 * A mirror that is gone may have been stopped by our abort before libvirtd died, or ended
 * otherwise, and nothing tells whether it stopped inside the freeze: the job fails (undo
 * stops the other mirrors and removes the files) rather than keep a cut of unknown time. */
static gboolean
freeze_window_resume(VsJob *job, GError **error)
{
    virDomainPtr dom = job->plan->dom;
    int state = 0, reason = 0;
    VsJobDisk *gone;

    /* A guest agent that does not answer yet (a try waits libvirt's guest-sync time), or
     * that libvirt has not connected again yet, gets tries for a while: the guest may be
     * frozen, and only a thaw that gets through helps. */
    for (gint64 until = vs_now_ms() + THAW_RETRY_MS; job->journal->frozen;) {
        if (virDomainFSThaw(dom, NULL, 0, 0) == 0) {
            JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "guest thawed after libvirtd came back");
            break;
        }
        if (vs_now_ms() > until || virGetLastErrorCode() != VIR_ERR_AGENT_UNRESPONSIVE)
            return vs_set_libvirt_error(error, "thawing the guest after libvirtd came back");
        JOB_LOG(job, G_LOG_LEVEL_DEBUG, "thaw after libvirtd came back: %s; trying again",
                virGetLastErrorMessage());
        g_usleep(250 * 1000);
    }
    if (job->journal->suspended && virDomainGetState(dom, &state, &reason, 0) == 0 &&
        state == VIR_DOMAIN_PAUSED && virDomainResume(dom) < 0)
        return vs_set_libvirt_error(error, "resuming the guest after libvirtd came back");
    g_mutex_lock(&job->lock);
    job->journal->frozen = FALSE;
    job->journal->suspended = FALSE;
    g_mutex_unlock(&job->lock);
    if (!vs_job_journal_save(job, error) || !find_mirrors(job, error))
        return FALSE;
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);

        if (d->mirrored && !d->ready) {
            d->mirrored = FALSE; /* not in sync: no cut from it */
            break;
        }
    }
    if ((gone = first_unmirrored(job))) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_CONNECTED,
                    "libvirtd went away during the freeze window and the copy of disk %s did "
                    "not outlive it: the guest is thawed and the snapshot discarded",
                    gone->plan->target);
        return FALSE;
    }
    for (guint i = 0; i < job->disks->len; i++)
        vs_job_disk(job, i)->stopped = FALSE;
    g_atomic_int_set(&job->thaw_claimed, 0);
    job->watchdog_fired = FALSE;
    return TRUE;
}

/* Defining the saved XML again is the same whether or not the lost call did it. */
static gboolean
redefine_resume(VsJob *job, GError **error)
{
    return TRUE;
}

static gboolean
all_ready(VsJob *job)
{
    for (guint i = 0; i < job->disks->len; i++) {
        if (!vs_job_disk(job, i)->ready)
            return FALSE;
    }
    return TRUE;
}

static VsJobDisk *
first_failed(VsJob *job)
{
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);

        if (d->failed)
            return d;
    }
    return NULL;
}

/* Free space under which a mirror that failed is taken to have run out of it: QEMU's
 * mirror writes at most a few MiB at a time (1 MiB requests, 16 MiB in flight), so the
 * write that failed for want of space leaves less than this behind. */
#define COPY_NO_SPACE_MARGIN (32 * 1024 * 1024)

/* Why a mirror into the snapshot directory failed, when it is the directory's fault:
 * NoSpace or IO, else NULL. libvirt 9.0 does not say why a copy ended (the BLOCK_JOB_2
 * event carries no reason and virDomainGetBlockJobInfo knows the job no more), and QEMU
 * runs libvirt's mirror with on-target-error=report: a write that fails on the target
 * (ENOSPC, EIO, EROFS) ends the job, the guest keeps running. So look at the target's
 * file system: left (nearly) full, read-only, or gone. */
static GError *
copy_target_error(VsJob *job, VsJobDisk *d)
{
    struct statvfs st;
    guint64 avail;
    g_autofree char *free_text = NULL;

    if (statvfs(job->folder, &st) < 0) {
        int errsv = errno;

        JOB_LOG(job, G_LOG_LEVEL_WARNING, "%s: %s", job->folder, g_strerror(errsv));
        return g_error_new(VS_ERROR, VS_ERROR_IO,
                           "the copy of disk %s failed: its folder in the snapshot directory "
                           "cannot be reached (%s)",
                           d->plan->target, g_strerror(errsv));
    }
    if (st.f_flag & ST_RDONLY)
        return g_error_new(VS_ERROR, VS_ERROR_IO,
                           "the copy of disk %s failed: the snapshot directory is read-only",
                           d->plan->target);
    avail = (guint64)st.f_bavail * st.f_frsize;
    /* Not "less than what was left to copy": a copy aborted by somebody else with room to
     * spare is not NoSpace. */
    if (avail >= COPY_NO_SPACE_MARGIN)
        return NULL;
    free_text = g_format_size_full(avail, G_FORMAT_SIZE_IEC_UNITS);
    return g_error_new(VS_ERROR, VS_ERROR_NO_SPACE,
                       "the copy of disk %s ran out of space: the snapshot directory has %s "
                       "free",
                       d->plan->target, free_text);
}

static void
check_ready(VsJob *job)
{
    VsJobDisk *failed;

    if (job->phase != VS_PHASE_WAIT_READY || job->resume_conn)
        return; /* a resume takes stock first, then looks again */
    if ((failed = first_failed(job))) {
        GError *why = copy_target_error(job, failed);

        job->step_done(job, why ? why
                                : g_error_new(VS_ERROR, VS_ERROR_LIBVIRT,
                                              "the copy of disk %s ended before it was ready "
                                              "(see libvirt's log)",
                                              failed->plan->target));
        return;
    }
    if (all_ready(job)) {
        g_clear_handle_id(&job->progress_source, g_source_remove);
        vs_job_step_done_later(job);
    }
}

static void
live_block_job(VsJob *job, const char *target, int status)
{
    VsJobDisk *d = vs_job_find_disk(job, target);

    if (!d)
        return;
    if (status == VIR_DOMAIN_BLOCK_JOB_READY) {
        d->ready = TRUE;
    } else if (!d->stopped && (job->phase == VS_PHASE_COPY || job->phase == VS_PHASE_WAIT_READY)) {
        d->failed = TRUE; /* it ended (failed, cancelled, pivoted) and it was not us */
    }
    check_ready(job);
}

/* Progress while the mirrors catch up: a slow tick reads the block jobs' cursors in a
 * worker. The wait for READY itself is event-driven. */
static void
progress_query_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    VsJob *job = source;
    guint64 *sums = g_new0(guint64, 2 * job->disks->len);

    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);
        virDomainBlockJobInfo info;

        if (virDomainGetBlockJobInfo(job->plan->dom, d->plan->target, &info, 0) == 1) {
            sums[2 * i] = info.cur;
            sums[2 * i + 1] = info.end;
        } else {
            sums[2 * i] = d->done;
            sums[2 * i + 1] = d->total;
        }
    }
    g_task_return_pointer(task, sums, g_free);
}

static void
progress_query_done(GObject *source, GAsyncResult *result, gpointer data)
{
    VsJob *job = VS_JOB(source);
    g_autofree guint64 *sums = g_task_propagate_pointer(G_TASK(result), NULL);
    guint64 done = 0, total = 0;

    job->progress_query_running = FALSE;
    if (!sums || job->phase != VS_PHASE_WAIT_READY)
        return;
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);

        d->done = sums[2 * i];
        d->total = sums[2 * i + 1];
        done += d->done;
        total += d->total;
    }
    vs_job_set_progress(job, total ? COPY_SHARE * done / total : 0, done, total);
}

static gboolean
progress_tick(gpointer data)
{
    VsJob *job = data;
    g_autoptr(GTask) task = NULL;

    if (job->progress_query_running)
        return G_SOURCE_CONTINUE;
    job->progress_query_running = TRUE;
    task = g_task_new(job, NULL, progress_query_done, NULL);
    g_task_run_in_thread(task, progress_query_thread);
    return G_SOURCE_CONTINUE;
}

static void
wait_ready_start(VsJob *job)
{
    /* READY may already have arrived while the copy calls were still returning. */
    if (!first_failed(job) && !all_ready(job))
        job->progress_source = g_timeout_add_seconds(1, progress_tick, job);
    check_ready(job);
}

/* The cut of a live job: every mirror stops, its delta holds the disk as of now. */
static gboolean
stop_mirrors(VsJob *job, GError **error)
{
    for (guint i = 0; i < job->disks->len; i++) {
        VsJobDisk *d = vs_job_disk(job, i);

        d->stopped = TRUE; /* the CANCELED event that follows is ours */
        if (virDomainBlockJobAbort(job->plan->dom, d->plan->target, 0) < 0 && !*error) {
            /* A mirror that failed after READY (the guest's writes went on) is gone. */
            GError *why = copy_target_error(job, d);

            if (why)
                g_propagate_error(error, why);
            else
                vs_set_libvirt_error(error, "stopping the copy of disk %s", d->plan->target);
        }
    }
    return *error == NULL;
}

static gboolean
live_freeze_thread(VsJob *job, GError **error)
{
    gint64 t0 = 0;

    return vs_freeze_window(job, stop_mirrors, &t0, error);
}

static gboolean
redefine_wanted(VsJob *job)
{
    return job->journal->undefined;
}

static gboolean
redefine_thread(VsJob *job, GError **error)
{
    virDomainPtr dom = virDomainDefineXML(job->plan->conn, job->journal->saved_xml);

    if (!dom)
        return vs_set_libvirt_error(error, "defining '%s' again", job->domain);
    virDomainFree(dom);
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "domain %s defined again", job->domain);
    g_mutex_lock(&job->lock);
    job->journal->undefined = FALSE;
    g_mutex_unlock(&job->lock);
    return vs_job_journal_save(job, error);
}

/* The mirror already wrote a finished image when it copied the whole chain, or when a
 * disk without backing was mirrored into a plain qcow2 that needs no conversion. */
static gboolean
delta_input(VsJob *job, VsJobDisk *d, const char **path, const char **format)
{
    if (job->opts.copy == VS_COPY_DIRECT ||
        (!d->plan->backing && job->opts.format == VS_FORMAT_QCOW2 && !job->opts.compress))
        return FALSE;
    *path = d->delta;
    *format = "qcow2";
    return TRUE;
}

static const VsConvertInput flatten_input = {COPY_SHARE, delta_input};

static void
flatten_start(VsJob *job)
{
    vs_convert_start(job, &flatten_input);
}

static const VsJobStep live_steps[] = {
    {VS_PHASE_CLEAR_JOBS, .wanted = vs_job_foreign_jobs_wanted, .thread = vs_job_clear_jobs_thread},
    {VS_PHASE_PREPARE, .thread = live_prepare_thread},
    {VS_PHASE_COPY, .thread = copy_thread, .undo = VS_UNDO_COPIES | VS_UNDO_REDEFINE,
     .resume = copy_resume},
    {VS_PHASE_WAIT_READY, .start = wait_ready_start, .undo = VS_UNDO_COPIES,
     .flags = VS_STEP_WAITS_EVENTS, .resume = wait_ready_resume},
    {VS_PHASE_FREEZE_WINDOW, .thread = live_freeze_thread,
     .undo = VS_UNDO_COPIES | VS_UNDO_RESUME | VS_UNDO_THAW, .flags = VS_STEP_RUNS_TO_END,
     .resume = freeze_window_resume},
    {VS_PHASE_REDEFINE, .wanted = redefine_wanted, .thread = redefine_thread,
     .undo = VS_UNDO_REDEFINE, .resume = redefine_resume},
    {VS_PHASE_FLATTEN, .enter = vs_job_after_cut, .start = flatten_start},
    {VS_PHASE_CATALOG, .thread = vs_job_catalog_thread, .flags = VS_STEP_NOT_CANCELLABLE},
};

static const VsResultField live_result[] = {
    {"copy", "copy"},       {"freeze-ms", "freeze-ms"},   {"pause-ms", "pause-ms"},
    {"copy-ms", "copy-ms"}, {"flatten-ms", "flatten-ms"}, {NULL, NULL},
};

const VsJobMethod vs_job_method_live = {
    .name = "live",
    .steps = live_steps,
    .n_steps = G_N_ELEMENTS(live_steps),
    .result_fields = live_result,
    .block_job = live_block_job,
};

gboolean
vs_job_live_cut(VsJob *job, GError **error)
{
    return stop_mirrors(job, error);
}
