/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The snapshot job. Its state machine is data: an enum of phases, one function per
 * phase, next_phase() the one place that decides what follows, and undo_thread() the
 * one place that takes back what was done. Blocking libvirt calls run in GTask
 * threads; qemu-img runs as an async subprocess; the wait for the mirrors is driven
 * by BLOCK_JOB_2 events, never by polling. */
#include "vs-job.h"
#include "vs-catalog.h"
#include "vs-dbus-generated.h"
#include "vs-domain-xml.h"
#include "vs-error.h"
#include "vs-names.h"
#include "vs-log.h"
#include "vs-qemu-img.h"
#include "vs-rbd.h"
#include "vs-util.h"
#include "vs-virt-util.h"
#include "vs-build-config.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum {
    PHASE_QUEUED,
    PHASE_CLEAR_JOBS,    /* abort foreign block jobs (only with force) */
    PHASE_PREPARE,       /* journal, folder; live: qemu-img create a delta per disk */
    PHASE_SAVE,          /* cold: managed save of the running or paused domain */
    PHASE_COPY,          /* start a block copy per disk (undefine first on the legacy path) */
    PHASE_WAIT_READY,    /* until every mirror reports READY */
    PHASE_FREEZE_WINDOW, /* freeze, stop every copy, thaw */
    PHASE_REDEFINE,      /* legacy path: define the domain again */
    PHASE_FLATTEN,       /* qemu-img convert the deltas into the images */
    PHASE_EXTRACT,       /* cold: qemu-img convert each disk's chain into an image */
    PHASE_CLONE,         /* rbd: protect, clone, (flatten), protected "snap" on the clone */
    PHASE_RESTORE,       /* cold: start the domain again from its managed save */
    PHASE_CATALOG,       /* metadata, publish the folder */
    PHASE_DONE,
    PHASE_UNDO, /* the one way back, on failure, cancel or recovery */
    PHASE_ENDED,
} Phase;

static const char *const phase_names[] = {
    [PHASE_QUEUED] = VS_PHASE_NAME_QUEUED,
    [PHASE_CLEAR_JOBS] = VS_PHASE_NAME_CLEAR_JOBS,
    [PHASE_PREPARE] = VS_PHASE_NAME_PREPARE,
    [PHASE_SAVE] = VS_PHASE_NAME_SAVE,
    [PHASE_COPY] = VS_PHASE_NAME_COPY,
    [PHASE_WAIT_READY] = VS_PHASE_NAME_WAIT_READY,
    [PHASE_FREEZE_WINDOW] = VS_PHASE_NAME_FREEZE_WINDOW,
    [PHASE_REDEFINE] = VS_PHASE_NAME_REDEFINE,
    [PHASE_FLATTEN] = VS_PHASE_NAME_FLATTEN,
    [PHASE_EXTRACT] = VS_PHASE_NAME_EXTRACT,
    [PHASE_CLONE] = VS_PHASE_NAME_CLONE,
    [PHASE_RESTORE] = VS_PHASE_NAME_RESTORE,
    [PHASE_CATALOG] = VS_PHASE_NAME_CATALOG,
    [PHASE_DONE] = VS_PHASE_NAME_DONE,
    [PHASE_UNDO] = VS_PHASE_NAME_UNDO,
    [PHASE_ENDED] = VS_PHASE_NAME_ENDED,
};
G_STATIC_ASSERT(G_N_ELEMENTS(phase_names) == PHASE_ENDED + 1);

/* Every line about a job carries its number and domain as journal fields. */
#define JOB_LOG(job, level, ...) vs_log_job((level), NULL, (job)->id, (job)->domain, __VA_ARGS__)

/* Share of Progress that the mirror phase stands for; the rest is flattening. */
#define COPY_SHARE 0.5

typedef struct {
    VsPlanDisk *plan; /* borrowed from job->plan */
    char *delta;      /* what the mirror writes */
    char *image;      /* the finished image, inside the job's folder */
    char *part;       /* qemu-img convert's output until it is complete */
    gboolean ready;
    gboolean failed;  /* the mirror ended by itself before we stopped it */
    gboolean stopped; /* we stopped the mirror */
    guint64 done, total;
    VsRbdImage *src;  /* rbd: the disk's image, open from prepare to clone */
    VsJournalRbd *jr; /* rbd: its journal record (owned by the journal) */
    guint64 rbd_size;
} JobDisk;

struct _VsJob {
    GObject parent;
    guint id;
    char *path;
    char *snapshot_dir;
    char *state_dir;
    guint freeze_limit_ms;
    VsLibvirt *libvirt;
    VsDbusObjectSkeleton *object;
    VsDbusJob1 *iface;

    VsPlan *plan; /* NULL for a recovery job */
    VsSnapshotOptions opts;
    gboolean recovery;
    char *domain;
    char *uuid;
    char *snapshot_id;
    char *name;
    char *folder;
    GPtrArray *disks; /* JobDisk* */

    GMutex lock; /* guards journal between the main loop and worker threads */
    VsJournalEntry *journal;

    Phase phase;
    gboolean cancel_requested;
    GCancellable *cancellable;
    GError *error;
    gulong block_job_handler;
    gulong connected_handler;
    guint progress_source;
    gboolean progress_query_running;
    guint watchdog_source;
    gint thaw_claimed; /* atomic: whoever sets it thaws (window or watchdog) */
    gboolean watchdog_fired;
    guint flatten_index;
    virConnectPtr undo_conn;
    GString *undo_notes;

    /* results */
    gboolean quiesced;
    char *quiesce_note;
    gint64 freeze_ms;
    gint64 pause_ms;
    gint64 t_start, t_copy_start, t_copy_end, t_flatten_start, t_flatten_end;
    gint64 t_down_start, downtime_ms;
    gint64 t_requested; /* CreateSnapshot's arrival: total-ms counts validation too */
    gboolean cold;      /* method cold (a running domain is saved first) or offline */
    gboolean rbd;       /* method rbd: snapshots and clones in the cluster */
    gboolean flatten;
    VsConfig *config;
    char *fsid;
};

G_DEFINE_TYPE(VsJob, vs_job, G_TYPE_OBJECT)

enum { SIGNAL_FINISHED, N_SIGNALS };
static guint signals[N_SIGNALS];

typedef gboolean (*JobThreadFunc)(VsJob *job, GError **error);

static void enter_phase(VsJob *job, Phase phase);
static void fail(VsJob *job, GError *error);

/* ---- small pieces ------------------------------------------------------------------- */

static void
job_disk_free(gpointer p)
{
    JobDisk *d = p;

    g_clear_pointer(&d->src, vs_rbd_close);
    g_free(d->delta);
    g_free(d->image);
    g_free(d->part);
    g_free(d);
}

static JobDisk *
find_disk(VsJob *job, const char *target)
{
    for (guint i = 0; job->disks && i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);

        if (strcmp(d->plan->target, target) == 0)
            return d;
    }
    return NULL;
}

static gboolean
journal_save(VsJob *job, GError **error)
{
    gboolean ok;

    g_mutex_lock(&job->lock);
    g_free(job->journal->phase);
    job->journal->phase = g_strdup(phase_names[job->phase]);
    ok = vs_journal_write(job->state_dir, job->journal, error);
    g_mutex_unlock(&job->lock);
    return ok;
}

static void
set_progress(VsJob *job, double fraction, guint64 done, guint64 total)
{
    vs_dbus_job1_set_progress(job->iface, CLAMP(fraction, 0.0, 1.0));
    vs_dbus_job1_set_bytes_done(job->iface, done);
    vs_dbus_job1_set_bytes_total(job->iface, total);
}

static void
job_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    JobThreadFunc func = data;
    GError *error = NULL;

    if (func(VS_JOB(source), &error))
        g_task_return_boolean(task, TRUE);
    else
        g_task_return_error(task, error);
}

static void
phase_thread_done(GObject *source, GAsyncResult *result, gpointer data)
{
    VsJob *job = VS_JOB(source);
    GError *error = NULL;
    Phase next;

    g_task_propagate_boolean(G_TASK(result), &error);
    if (job->phase == PHASE_UNDO)
        return; /* undo has its own completion */
    if (error) {
        fail(job, error);
        return;
    }
    if (job->cancel_requested) {
        fail(job, g_error_new(VS_ERROR, VS_ERROR_CANCELLED, "cancelled"));
        return;
    }
    /* The one place that decides what follows. */
    switch (job->phase) {
    case PHASE_CLEAR_JOBS:
        next = PHASE_PREPARE;
        break;
    case PHASE_PREPARE:
        next = job->rbd            ? PHASE_FREEZE_WINDOW
               : !job->cold        ? PHASE_COPY
               : job->plan->active ? PHASE_SAVE
                                   : PHASE_EXTRACT;
        break;
    case PHASE_CLONE:
        next = PHASE_CATALOG;
        break;
    case PHASE_SAVE:
        next = PHASE_EXTRACT;
        break;
    case PHASE_EXTRACT:
        next = job->journal->saved ? PHASE_RESTORE : PHASE_CATALOG;
        break;
    case PHASE_RESTORE:
        next = PHASE_CATALOG;
        break;
    case PHASE_COPY:
        next = PHASE_WAIT_READY;
        break;
    case PHASE_WAIT_READY:
        next = PHASE_FREEZE_WINDOW;
        break;
    case PHASE_FREEZE_WINDOW:
        next = job->rbd ? PHASE_CLONE : job->journal->undefined ? PHASE_REDEFINE : PHASE_FLATTEN;
        break;
    case PHASE_REDEFINE:
        next = PHASE_FLATTEN;
        break;
    case PHASE_FLATTEN:
        next = PHASE_CATALOG;
        break;
    case PHASE_CATALOG:
        next = PHASE_DONE;
        break;
    default:
        g_assert_not_reached();
    }
    enter_phase(job, next);
}

static void
run_thread(VsJob *job, JobThreadFunc func)
{
    g_autoptr(GTask) task = g_task_new(job, NULL, phase_thread_done, NULL);

    g_task_set_task_data(task, func, NULL);
    g_task_run_in_thread(task, job_thread);
}

/* Completes a phase that had nothing to wait for, from a fresh main-loop iteration. */
static gboolean
phase_done_idle(gpointer data)
{
    g_autoptr(GTask) task = g_task_new(data, NULL, phase_thread_done, NULL);

    g_task_return_boolean(task, TRUE);
    return G_SOURCE_REMOVE;
}

/* ---- phases ------------------------------------------------------------------------- */

static gboolean
clear_jobs_thread(VsJob *job, GError **error)
{
    for (guint i = 0; i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);
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

/* rbd: connect, open every source image, and make sure the clone's name is free, so that
 * the freeze window holds nothing but the snapshot calls. */
static gboolean
rbd_prepare(VsJob *job, GError **error)
{
    for (guint i = 0; i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);
        VsRbdSpec *spec = &d->plan->rbd_spec;
        g_autoptr(VsRbdCluster) cluster = vs_rbd_connect(&job->config->rbd, spec, error);
        g_autoptr(VsRbdImage) existing = NULL;
        VsJournalRbd *jr = d->jr;

        if (!cluster || !(d->src = vs_rbd_open(cluster, spec->pool, spec->ns, spec->image, error)))
            return FALSE;
        d->rbd_size = vs_rbd_size(d->src);
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
    return TRUE;
}

static gboolean
prepare_thread(VsJob *job, GError **error)
{
    /* The journal names the folder before it exists: a crash after mkdir is cleaned up. */
    if (!journal_save(job, error))
        return FALSE;
    /* 0711: QEMU (a different user on the system instance) must reach the delta by
     * path; nobody but root can list the folder. */
    if (g_mkdir(job->folder, 0711) < 0 || g_chmod(job->folder, 0711) < 0)
        return vs_set_errno_error(error, errno, "cannot create %s", job->folder);

    if (job->rbd)
        return rbd_prepare(job, error);
    for (guint i = 0; !job->cold && i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);
        g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
        g_autofree char *out = NULL;
        gboolean direct = job->opts.copy == VS_COPY_DIRECT;

        if (job->cancel_requested)
            return TRUE; /* phase_thread_done turns this into the cancel */
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
        g_ptr_array_add(args, g_strdup(d->delta));
        g_ptr_array_add(args, g_strdup_printf("%" G_GUINT64_FORMAT, d->plan->capacity));
        g_ptr_array_add(args, NULL);
        if (!(out = vs_qemu_img_run_sync((const char *const *)args->pdata, error)))
            return FALSE;
    }
    return TRUE;
}

static char *
copy_dest_xml(VsJob *job, JobDisk *d)
{
    g_autofree char *path = g_markup_escape_text(d->delta, -1);
    const char *format =
        job->opts.copy == VS_COPY_DIRECT ? vs_format_name(job->opts.format) : "qcow2";

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
    if (!journal_save(job, error))
        return FALSE;
    if (virDomainUndefineFlags(job->plan->dom,
                               VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | VIR_DOMAIN_UNDEFINE_KEEP_TPM) < 0)
        return vs_set_libvirt_error(error, "undefining '%s' for the copy", job->domain);
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "domain %s undefined for the copy (legacy path)",
            job->domain);
    return TRUE;
}

static gboolean
start_copy(VsJob *job, JobDisk *d, gboolean transient, GError **error)
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

    if (!transient && job->plan->persistent && !undefine_for_copy(job, error))
        return FALSE;

    job->t_copy_start = vs_now_ms();
    for (guint i = 0; i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);

        g_mutex_lock(&job->lock);
        g_ptr_array_add(job->journal->copies, g_strdup(d->plan->target));
        g_mutex_unlock(&job->lock);
        if (!journal_save(job, error))
            return FALSE;
        if (start_copy(job, d, transient, NULL))
            continue;
        {
            virErrorPtr err = virGetLastError();

            /* Detect, don't assume: a libvirt that refuses the flag gets the seed's way. */
            if (transient && i == 0 && err &&
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

static gboolean
all_ready(VsJob *job)
{
    for (guint i = 0; i < job->disks->len; i++) {
        if (!((JobDisk *)g_ptr_array_index(job->disks, i))->ready)
            return FALSE;
    }
    return TRUE;
}

static JobDisk *
first_failed(VsJob *job)
{
    for (guint i = 0; i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);

        if (d->failed)
            return d;
    }
    return NULL;
}

static void
check_ready(VsJob *job)
{
    JobDisk *failed;

    if (job->phase != PHASE_WAIT_READY)
        return;
    if ((failed = first_failed(job))) {
        fail(job, g_error_new(VS_ERROR, VS_ERROR_LIBVIRT,
                              "the copy of disk %s ended before it was ready (see libvirt's log)",
                              failed->plan->target));
        return;
    }
    if (all_ready(job)) {
        g_clear_handle_id(&job->progress_source, g_source_remove);
        g_idle_add_full(G_PRIORITY_HIGH, phase_done_idle, g_object_ref(job), g_object_unref);
    }
}

static void
on_block_job(VsLibvirt *libvirt, const char *uuid, const char *target, int type, int status,
             VsJob *job)
{
    JobDisk *d;

    if (!job->plan || g_strcmp0(uuid, job->uuid) != 0 || !(d = find_disk(job, target)))
        return;
    if (status == VIR_DOMAIN_BLOCK_JOB_READY) {
        d->ready = TRUE;
    } else if (!d->stopped && (job->phase == PHASE_COPY || job->phase == PHASE_WAIT_READY)) {
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
        JobDisk *d = g_ptr_array_index(job->disks, i);
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
    if (!sums || job->phase != PHASE_WAIT_READY)
        return;
    for (guint i = 0; i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);

        d->done = sums[2 * i];
        d->total = sums[2 * i + 1];
        done += d->done;
        total += d->total;
    }
    set_progress(job, total ? COPY_SHARE * done / total : 0, done, total);
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
enter_wait_ready(VsJob *job)
{
    /* READY may already have arrived while the copy calls were still returning. */
    if (!first_failed(job) && !all_ready(job))
        job->progress_source = g_timeout_add_seconds(1, progress_tick, job);
    check_ready(job);
}

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

    if (job->phase == PHASE_FREEZE_WINDOW && !g_atomic_int_get(&job->thaw_claimed) &&
        !job->watchdog_source)
        job->watchdog_source = g_timeout_add(job->freeze_limit_ms, watchdog_cb, job);
    return G_SOURCE_REMOVE;
}

/* Freeze (per quiesce), stop every mirror, thaw: the guest's whole pause, in one
 * thread with no main-loop hop inside, so it lasts a few libvirt round trips.
 * Without a freeze, a guest with several disks is paused instead so that the copies
 * stop at the same instant. */
static gboolean
freeze_window_thread(VsJob *job, GError **error)
{
    virDomainPtr dom = job->plan->dom;
    gboolean running = job->plan->state == VIR_DOMAIN_RUNNING;
    gboolean want_freeze =
        job->opts.quiesce != VS_QUIESCE_OFF && job->plan->agent_connected && running;
    gboolean multi = job->disks->len > 1;
    gboolean frozen = FALSE, suspended = FALSE, thawed = FALSE;
    g_autoptr(GError) stop_error = NULL;
    gint64 t0, t_pause = 0;

    g_mutex_lock(&job->lock);
    job->journal->frozen = want_freeze;
    job->journal->suspended = multi && running;
    for (guint i = 0; job->rbd && i < job->disks->len; i++)
        ((JobDisk *)g_ptr_array_index(job->disks, i))->jr->snap_made = TRUE;
    g_mutex_unlock(&job->lock);
    if (!journal_save(job, error))
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
    for (guint i = 0; i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);

        if (job->rbd) {
            if (!vs_rbd_snap_create(d->src, d->jr->snap, stop_error ? NULL : &stop_error))
                break;
            continue;
        }
        d->stopped = TRUE; /* the CANCELED event that follows is ours */
        if (virDomainBlockJobAbort(dom, d->plan->target, 0) < 0 && !stop_error)
            vs_set_libvirt_error(&stop_error, "stopping the copy of disk %s", d->plan->target);
    }
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
    if (!journal_save(job, error))
        return FALSE;

    if (job->rbd)
        job->t_copy_start = t0; /* "copy" of an rbd job: the snapshot calls */
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
    return journal_save(job, error);
}

typedef struct {
    VsJob *job;
    double fraction;
    guint64 done, total;
} RbdProgress;

static gboolean
apply_rbd_progress(gpointer data)
{
    RbdProgress *p = data;

    set_progress(p->job, p->fraction, p->done, p->total);
    return G_SOURCE_REMOVE;
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
        RbdProgress *p = g_new0(RbdProgress, 1);

        fs->last_percent = percent;
        p->job = job;
        p->fraction = (fs->index + (total ? (double)done / total : 0)) / job->disks->len;
        p->done = done;
        p->total = total;
        g_main_context_invoke_full(NULL, G_PRIORITY_DEFAULT, apply_rbd_progress, p, g_free);
    }
    return !g_atomic_int_get(&job->cancel_requested);
}

/* rbd: the Glance layout. The snapshot is protected and cloned; a flattened clone no
 * longer needs it, so it goes; the result carries a protected "snap". */
static gboolean
clone_thread(VsJob *job, GError **error)
{
    for (guint i = 0; i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);
        VsJournalRbd *jr = d->jr;
        g_autoptr(VsRbdCluster) cluster =
            vs_rbd_connect(&job->config->rbd, &d->plan->rbd_spec, error);
        g_autoptr(VsRbdImage) clone = NULL;

        if (!cluster || !vs_rbd_snap_protect(d->src, jr->snap, error))
            return FALSE;
        g_mutex_lock(&job->lock);
        jr->clone_made = TRUE;
        g_mutex_unlock(&job->lock);
        if (!journal_save(job, error) ||
            !vs_rbd_clone(d->src, jr->snap, cluster, jr->clone_pool, jr->ns, jr->clone, error) ||
            !(clone = vs_rbd_open(cluster, jr->clone_pool, jr->ns, jr->clone, error)))
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
            if (!journal_save(job, error))
                return FALSE;
        }
        if (!vs_rbd_snap_create(clone, "snap", error) || !vs_rbd_snap_protect(clone, "snap", error))
            return FALSE;
    }
    job->t_flatten_end = vs_now_ms();
    return TRUE;
}

/* Cold: the guest's RAM goes to its managed-save image, so its disks hold still and
 * are consistent with it; the state it had (running or paused) comes back on restore. */
static gboolean
save_thread(VsJob *job, GError **error)
{
    unsigned int flags =
        job->plan->state == VIR_DOMAIN_PAUSED ? VIR_DOMAIN_SAVE_PAUSED : VIR_DOMAIN_SAVE_RUNNING;

    g_mutex_lock(&job->lock);
    job->journal->saved = TRUE;
    g_mutex_unlock(&job->lock);
    if (!journal_save(job, error))
        return FALSE;
    job->t_down_start = vs_now_ms();
    if (virDomainManagedSave(job->plan->dom, flags) < 0)
        return vs_set_libvirt_error(error, "saving '%s' (managed save)", job->domain);
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "%s saved in %" G_GINT64_FORMAT " ms", job->domain,
            vs_now_ms() - job->t_down_start);
    return TRUE;
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
    return journal_save(job, error);
}

static void flatten_next(VsJob *job);

static void
on_flatten_progress(double fraction, gpointer data)
{
    VsJob *job = data;
    guint n = job->disks->len;
    JobDisk *d = g_ptr_array_index(job->disks, job->flatten_index);
    double overall = (job->flatten_index + fraction) / n;

    double base = job->cold ? 0.0 : COPY_SHARE;

    set_progress(job, base + (1 - base) * overall, (guint64)(fraction * d->plan->capacity),
                 d->plan->capacity);
}

static void
flatten_done(GObject *source, GAsyncResult *result, gpointer data)
{
    g_autoptr(VsJob) job = data;
    JobDisk *d = g_ptr_array_index(job->disks, job->flatten_index);
    g_autofree char *out = NULL;
    GError *error = NULL;

    if (!(out = vs_qemu_img_run_finish(result, &error))) {
        fail(job, error);
        return;
    }
    if (g_rename(d->part, d->image) < 0) {
        vs_set_errno_error(&error, errno, "cannot rename %s", d->part);
        fail(job, error);
        return;
    }
    if (d->delta) /* live: the delta; cold reads the disk itself, which stays */
        g_unlink(d->delta);
    job->flatten_index++;
    flatten_next(job);
}

/* qemu-img convert, one disk after the other, each as a cancellable subprocess. */
static void
flatten_next(VsJob *job)
{
    JobDisk *d;
    GError *error = NULL;

    if (job->cancel_requested) {
        fail(job, g_error_new(VS_ERROR, VS_ERROR_CANCELLED, "cancelled"));
        return;
    }
    if (job->flatten_index >= job->disks->len) {
        job->t_flatten_end = vs_now_ms();
        g_idle_add_full(G_PRIORITY_HIGH, phase_done_idle, g_object_ref(job), g_object_unref);
        return;
    }
    d = g_ptr_array_index(job->disks, job->flatten_index);

    /* The mirror already wrote a finished image when it copied the whole chain, or when
     * a disk without backing was mirrored into a plain qcow2 that needs no conversion. */
    if (!job->cold &&
        (job->opts.copy == VS_COPY_DIRECT ||
         (!d->plan->backing && job->opts.format == VS_FORMAT_QCOW2 && !job->opts.compress))) {
        if (g_rename(d->delta, d->image) < 0) {
            vs_set_errno_error(&error, errno, "cannot rename %s", d->delta);
            fail(job, error);
            return;
        }
        job->flatten_index++;
        flatten_next(job);
        return;
    }
    {
        const char *args[16];
        int n = 0;

        args[n++] = "convert";
        args[n++] = "-p";
        args[n++] = "-f";
        args[n++] = job->cold ? d->plan->format : "qcow2";
        args[n++] = "-O";
        args[n++] = vs_format_name(job->opts.format);
        if (job->opts.compress)
            args[n++] = "-c";
        /* Cold reads the disk's own chain: nothing writes it while the domain is saved
         * or off (and QEMU's image locks keep it so). */
        args[n++] = job->cold ? d->plan->source : d->delta;
        args[n++] = d->part;
        args[n] = NULL;
        vs_qemu_img_run_async(args, on_flatten_progress, job, job->cancellable, flatten_done,
                              g_object_ref(job));
    }
}

/* Where a disk's snapshot is: the image file in the published folder, or for rbd
 * rbd://<fsid>/<pool>/<image>/snap. */
static char *
disk_location(VsJob *job, JobDisk *d)
{
    g_autofree char *base = NULL;

    if (job->rbd)
        return g_strdup_printf("rbd://%s/%s/%s%s%s/snap", job->fsid ? job->fsid : "unknown",
                               d->jr->clone_pool, *d->jr->ns ? d->jr->ns : "",
                               *d->jr->ns ? "/" : "", d->jr->clone);
    base = g_path_get_basename(d->image);
    return g_build_filename(job->snapshot_dir, job->snapshot_id, base, NULL);
}

static guint64
disk_size(VsJob *job, JobDisk *d)
{
    return job->rbd ? d->rbd_size : d->plan->capacity;
}

static JsonNode *
build_metadata(VsJob *job)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *created = g_date_time_format_iso8601(now);

    json_builder_begin_object(b);
    vs_json_add_string(b, "id", job->snapshot_id);
    vs_json_add_string(b, "name", job->name);
    vs_json_add_string(b, "domain", job->domain);
    vs_json_add_string(b, "uuid", job->uuid);
    vs_json_add_string(b, "created", created);
    vs_json_add_int(b, "created-us",
                    g_date_time_to_unix(now) * G_USEC_PER_SEC + g_date_time_get_microsecond(now));
    vs_json_add_string(b, "method", vs_method_name(job->plan->method));
    vs_json_add_string(b, "method-reason", job->plan->method_reason);
    vs_json_add_string(b, "copy", job->cold ? "" : vs_copy_name(job->opts.copy));
    vs_json_add_int(b, "downtime-ms", job->downtime_ms);
    vs_json_add_bool(b, "offline", job->cold && !job->plan->active);
    vs_json_add_bool(b, "quiesced", job->quiesced);
    if (job->quiesce_note) {
        vs_json_add_string(b, "quiesce-note", job->quiesce_note);
    }
    vs_json_add_int(b, "freeze-ms", job->freeze_ms);
    vs_json_add_int(b, "pause-ms", job->pause_ms);
    json_builder_set_member_name(b, "disks");
    json_builder_begin_array(b);
    for (guint i = 0; i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);
        g_autofree char *location = disk_location(job, d);
        GStatBuf st = {0};

        if (!job->rbd)
            g_stat(d->image, &st);
        json_builder_begin_object(b);
        vs_json_add_string(b, "target", d->plan->target);
        vs_json_add_string(b, "image", location);
        vs_json_add_string(b, "format", job->rbd ? "rbd" : vs_format_name(job->opts.format));
        vs_json_add_int(b, "virtual-size", disk_size(job, d));
        vs_json_add_int(b, "bytes", (gint64)st.st_blocks * 512);
        vs_json_add_string(b, "source", d->plan->source);
        if (job->rbd) {
            /* What DeleteSnapshot needs to find and remove it again. */
            g_autofree char *parent =
                job->flatten ? g_strdup("")
                             : g_strdup_printf("%s/%s%s%s@%s", d->jr->pool, d->jr->ns,
                                               *d->jr->ns ? "/" : "", d->jr->image, d->jr->snap);
            const char *fields[][2] = {{"pool", d->jr->clone_pool}, {"namespace", d->jr->ns},
                                       {"image", d->jr->clone},     {"snap", "snap"},
                                       {"parent", parent},          {"conf", d->jr->conf},
                                       {"hosts", d->jr->hosts},     {"user", d->jr->user}};

            json_builder_set_member_name(b, "rbd");
            json_builder_begin_object(b);
            for (guint f = 0; f < G_N_ELEMENTS(fields); f++)
                vs_json_add_string(b, fields[f][0], fields[f][1]);
            vs_json_add_bool(b, "flattened", job->flatten);
            json_builder_end_object(b);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    vs_json_add_string(b, "domain-xml",
                       job->plan->inactive_xml ? job->plan->inactive_xml : job->plan->live_xml);
    vs_json_add_string(b, "agent-version", VS_VERSION);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

static gboolean
catalog_thread(VsJob *job, GError **error)
{
    g_autoptr(JsonNode) meta = build_metadata(job);

    if (!vs_catalog_write_metadata(job->folder, meta, error) ||
        !vs_catalog_publish(job->snapshot_dir, job->snapshot_id, error))
        return FALSE;
    vs_journal_remove(job->state_dir, job->snapshot_id);
    return TRUE;
}

/* ---- ending --------------------------------------------------------------------------- */

static GVariant *
build_result(VsJob *job)
{
    GVariantBuilder b, disks;
    g_autofree char *dir = vs_catalog_final_dir(job->snapshot_dir, job->snapshot_id);

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "snapshot-id", g_variant_new_string(job->snapshot_id));
    g_variant_builder_add(&b, "{sv}", "name", g_variant_new_string(job->name));
    g_variant_builder_add(&b, "{sv}", "directory", g_variant_new_string(dir));
    g_variant_builder_add(&b, "{sv}", "quiesced", g_variant_new_boolean(job->quiesced));
    if (job->quiesce_note)
        g_variant_builder_add(&b, "{sv}", "quiesce-note", g_variant_new_string(job->quiesce_note));
    g_variant_builder_add(&b, "{sv}", "method",
                          g_variant_new_string(vs_method_name(job->plan->method)));
    g_variant_builder_add(&b, "{sv}", "method-reason",
                          g_variant_new_string(job->plan->method_reason));
    if (job->rbd) {
        g_variant_builder_add(&b, "{sv}", "freeze-ms", g_variant_new_int64(job->freeze_ms));
        g_variant_builder_add(&b, "{sv}", "snapshot-ms",
                              g_variant_new_int64(job->t_copy_end - job->t_copy_start));
        g_variant_builder_add(&b, "{sv}", "flattened", g_variant_new_boolean(job->flatten));
        g_variant_builder_add(&b, "{sv}", "clone-ms",
                              g_variant_new_int64(job->t_flatten_end - job->t_flatten_start));
    } else if (job->cold) {
        g_variant_builder_add(&b, "{sv}", "offline", g_variant_new_boolean(!job->plan->active));
        g_variant_builder_add(&b, "{sv}", "downtime-ms", g_variant_new_int64(job->downtime_ms));
        g_variant_builder_add(&b, "{sv}", "extract-ms",
                              g_variant_new_int64(job->t_flatten_end - job->t_flatten_start));
    } else {
        g_variant_builder_add(&b, "{sv}", "copy",
                              g_variant_new_string(vs_copy_name(job->opts.copy)));
        g_variant_builder_add(&b, "{sv}", "freeze-ms", g_variant_new_int64(job->freeze_ms));
        g_variant_builder_add(&b, "{sv}", "pause-ms", g_variant_new_int64(job->pause_ms));
        g_variant_builder_add(&b, "{sv}", "copy-ms",
                              g_variant_new_int64(job->t_copy_end - job->t_copy_start));
        g_variant_builder_add(&b, "{sv}", "flatten-ms",
                              g_variant_new_int64(job->t_flatten_end - job->t_flatten_start));
    }
    g_variant_builder_add(
        &b, "{sv}", "total-ms",
        g_variant_new_int64(vs_now_ms() - (job->t_requested ? job->t_requested : job->t_start)));
    g_variant_builder_init(&disks, G_VARIANT_TYPE("aa{sv}"));
    for (guint i = 0; i < job->disks->len; i++) {
        JobDisk *d = g_ptr_array_index(job->disks, i);
        g_autofree char *image = disk_location(job, d);
        GStatBuf st = {0};

        if (!job->rbd)
            g_stat(image, &st);
        g_variant_builder_add_parsed(&disks,
                                     "{'target': <%s>, 'image': <%s>, 'format': <%s>, "
                                     "'virtual-size': <%t>, 'bytes': <%t>}",
                                     d->plan->target, image,
                                     job->rbd ? "rbd" : vs_format_name(job->opts.format),
                                     disk_size(job, d), (guint64)st.st_blocks * 512);
    }
    g_variant_builder_add(&b, "{sv}", "disks", g_variant_builder_end(&disks));
    return g_variant_builder_end(&b);
}

/* The line an admin watches for: a failed or interrupted job is a warning. */
static void
log_outcome(VsJob *job, const char *state)
{
    static const struct {
        const char *state;
        GLogLevelFlags level;
        const char *message_id;
    } outcomes[] = {
        {VS_STATE_SUCCEEDED, G_LOG_LEVEL_MESSAGE, VS_MSGID_JOB_SUCCEEDED},
        {VS_STATE_FAILED, G_LOG_LEVEL_WARNING, VS_MSGID_JOB_FAILED},
        {VS_STATE_CANCELLED, G_LOG_LEVEL_MESSAGE, VS_MSGID_JOB_CANCELLED},
        {VS_STATE_INTERRUPTED, G_LOG_LEVEL_WARNING, VS_MSGID_JOB_INTERRUPTED},
    };

    for (gsize i = 0; i < G_N_ELEMENTS(outcomes); i++) {
        if (strcmp(state, outcomes[i].state) == 0) {
            vs_log_job(outcomes[i].level, outcomes[i].message_id, job->id, job->domain, "%s%s%s",
                       state, job->error ? ": " : "", job->error ? job->error->message : "");
            return;
        }
    }
    g_assert_not_reached();
}

static void
finish(VsJob *job, const char *state)
{
    job->phase = PHASE_ENDED;
    g_clear_handle_id(&job->progress_source, g_source_remove);
    g_clear_handle_id(&job->watchdog_source, g_source_remove);
    if (job->block_job_handler)
        g_clear_signal_handler(&job->block_job_handler, job->libvirt);
    if (job->connected_handler)
        g_clear_signal_handler(&job->connected_handler, job->libvirt);
    if (strcmp(state, VS_STATE_SUCCEEDED) == 0) {
        vs_dbus_job1_set_result(job->iface, build_result(job));
        set_progress(job, 1.0, vs_dbus_job1_get_bytes_total(job->iface),
                     vs_dbus_job1_get_bytes_total(job->iface));
    }
    if (job->error) {
        vs_dbus_job1_set_error_name(job->iface, job->error->domain == VS_ERROR
                                                    ? vs_error_dbus_name(job->error->code)
                                                    : vs_error_dbus_name(VS_ERROR_FAILED));
        vs_dbus_job1_set_error(job->iface, job->error->message);
    }
    vs_dbus_job1_set_freeze_ms(job->iface, job->freeze_ms);
    vs_dbus_job1_set_downtime_ms(job->iface, job->downtime_ms);
    vs_dbus_job1_set_phase(job->iface, phase_names[PHASE_DONE]);
    vs_dbus_job1_set_finished(job->iface, g_get_real_time());
    vs_dbus_job1_set_state(job->iface, state);
    log_outcome(job, state);
    /* The domain connection and the cluster's images are not needed any more. */
    g_clear_pointer(&job->undo_conn, virConnectClose);
    for (guint i = 0; job->disks && i < job->disks->len; i++)
        g_clear_pointer(&((JobDisk *)g_ptr_array_index(job->disks, i))->src, vs_rbd_close);
    g_signal_emit(job, signals[SIGNAL_FINISHED], 0);
}

/* rbd: the half-made clone goes (its "snap" first), then the snapshot on the source. */
static gboolean
undo_rbd(VsJob *job, VsJournalRbd *r, GError **error)
{
    /* A record read back from disk has "" where a live job has NULL. */
    VsRbdSpec spec = {r->pool,
                      r->ns,
                      r->image,
                      r->conf && *r->conf ? r->conf : NULL,
                      r->hosts && *r->hosts ? r->hosts : NULL,
                      r->user && *r->user ? r->user : NULL};
    g_autoptr(VsRbdCluster) cluster = vs_rbd_connect(&job->config->rbd, &spec, error);

    if (!cluster)
        return FALSE;
    if (r->clone_made) {
        g_autoptr(VsRbdImage) clone = vs_rbd_open(cluster, r->clone_pool, r->ns, r->clone, NULL);

        if (clone && !vs_rbd_snap_drop(clone, "snap", error))
            return FALSE;
        g_clear_pointer(&clone, vs_rbd_close);
        if (!vs_rbd_remove(cluster, r->clone_pool, r->ns, r->clone, error))
            return FALSE;
        g_string_append_printf(job->undo_notes, "removed clone %s/%s; ", r->clone_pool, r->clone);
        r->clone_made = FALSE;
    }
    if (r->snap_made) {
        g_autoptr(VsRbdImage) src = vs_rbd_open(cluster, r->pool, r->ns, r->image, error);

        if (!src || !vs_rbd_snap_drop(src, r->snap, error))
            return FALSE;
        r->snap_made = FALSE;
    }
    return TRUE;
}

/* The one way back: stop our copies, resume, thaw, define again, remove our files. Each
 * step is read from the journal, so the same code repairs a crashed agent's job. */
static gboolean
undo_thread(VsJob *job, GError **error)
{
    VsJournalEntry *j = job->journal;
    g_autoptr(virDomain) dom = NULL;
    g_autoptr(VsDomainXml) dx = NULL;
    g_autoptr(GError) local = NULL;
    g_autofree char *xml = NULL;

    dom = vs_lookup_domain(job->undo_conn, j->uuid && *j->uuid ? j->uuid : j->domain, &local);
    if (!dom && local && local->code == VS_ERROR_NOT_CONNECTED) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    g_clear_error(&local);
    if (dom && (xml = virDomainGetXMLDesc(dom, 0)))
        dx = vs_domain_xml_parse(xml, NULL);

    for (guint i = 0; dom && i < j->copies->len; i++) {
        const char *target = g_ptr_array_index(j->copies, i);
        VsDisk *disk = dx ? vs_domain_xml_find_disk(dx, target) : NULL;

        /* Only a mirror that writes into our folder is ours to stop. */
        if (!disk || !disk->mirror || !disk->mirror_source || !j->folder ||
            !g_str_has_prefix(disk->mirror_source, j->folder))
            continue;
        if (virDomainBlockJobAbort(dom, target, 0) < 0) {
            vs_set_libvirt_error(&local, "stopping the copy of %s", target);
            g_string_append_printf(job->undo_notes, "%s; ", local->message);
            if (local->code == VS_ERROR_NOT_CONNECTED)
                return g_propagate_error(error, g_steal_pointer(&local)), FALSE;
            g_clear_error(&local);
        }
    }
    g_mutex_lock(&job->lock);
    g_ptr_array_set_size(j->copies, 0);
    g_mutex_unlock(&job->lock);

    if (dom && j->suspended) {
        int state = 0, reason = 0;

        if (virDomainGetState(dom, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED &&
            virDomainResume(dom) < 0)
            g_string_append_printf(job->undo_notes, "resume failed: %s; ",
                                   virGetLastErrorMessage());
        j->suspended = FALSE;
    }
    if (dom && j->saved) {
        /* Our managed save is never orphaned: the guest starts again from it. The killed
         * qemu-img may hold its read lock on the disks a moment longer: retry briefly. */
        int active = virDomainIsActive(dom);

        for (int attempt = 0; active == 0 && attempt < 10; attempt++) {
            if (virDomainCreate(dom) == 0) {
                g_string_append_printf(job->undo_notes, "domain started again from its managed "
                                                        "save; ");
                active = 1;
                break;
            }
            g_usleep(200 * 1000);
        }
        if (active != 1) {
            vs_set_libvirt_error(error, "starting '%s' again from its managed save", j->domain);
            return FALSE; /* the journal keeps "saved"; the next start tries again */
        }
        if (job->t_down_start)
            job->downtime_ms = vs_now_ms() - job->t_down_start;
        j->saved = FALSE;
    }
    if (dom && j->frozen) {
        /* A thaw of a guest that is not frozen is harmless; a missed one is not. */
        if (virDomainFSThaw(dom, NULL, 0, 0) < 0)
            JOB_LOG(job, G_LOG_LEVEL_DEBUG, "thaw during cleanup: %s", virGetLastErrorMessage());
        j->frozen = FALSE;
    }
    if (j->undefined) {
        if (!dom || virDomainIsPersistent(dom) != 1) {
            virDomainPtr defined = virDomainDefineXML(job->undo_conn, j->saved_xml);

            if (!defined) {
                vs_set_libvirt_error(error, "defining '%s' again", j->domain);
                return FALSE; /* the journal keeps the XML; the next start tries again */
            }
            virDomainFree(defined);
            g_string_append_printf(job->undo_notes, "domain defined again; ");
        }
        j->undefined = FALSE;
    }
    for (guint i = j->rbd->len; i > 0; i--) {
        VsJournalRbd *r = g_ptr_array_index(j->rbd, i - 1);

        if ((r->clone_made || r->snap_made) && !undo_rbd(job, r, error))
            return FALSE; /* the journal keeps it; the next start tries again */
    }
    if (j->folder && !vs_remove_flat_dir(j->folder, error))
        return FALSE;
    vs_journal_remove(job->state_dir, j->snapshot_id);
    return TRUE;
}

static void undo_start(VsJob *job);

static void
undo_done(GObject *source, GAsyncResult *result, gpointer data)
{
    VsJob *job = VS_JOB(source);
    g_autoptr(GError) error = NULL;

    if (!g_task_propagate_boolean(G_TASK(result), &error)) {
        g_clear_pointer(&job->undo_conn, virConnectClose);
        if (error->domain == VS_ERROR && error->code == VS_ERROR_NOT_CONNECTED) {
            JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "cleanup waits for libvirt to come back");
            return; /* on_connected_changed starts it again */
        }
        JOB_LOG(job, G_LOG_LEVEL_WARNING, "cleanup incomplete: %s", error->message);
        g_string_append_printf(job->undo_notes, "cleanup incomplete: %s; ", error->message);
        vs_journal_write(job->state_dir, job->journal, NULL);
    }
    if (job->recovery) {
        g_autoptr(GError) note = g_error_new(
            VS_ERROR, VS_ERROR_FAILED, "interrupted by an agent restart in phase %s; repaired: %s",
            job->journal->phase,
            job->undo_notes->len ? job->undo_notes->str : "leftover files removed");

        job->error = g_steal_pointer(&note);
        finish(job, VS_STATE_INTERRUPTED);
        return;
    }
    if (job->undo_notes->len && job->error) {
        GError *e = job->error;

        job->error =
            g_error_new(e->domain, e->code, "%s (cleanup: %s)", e->message, job->undo_notes->str);
        g_error_free(e);
    }
    finish(job, job->cancel_requested ? VS_STATE_CANCELLED : VS_STATE_FAILED);
}

static void
undo_start(VsJob *job)
{
    g_autoptr(GTask) task = NULL;

    if (job->undo_conn)
        return; /* already under way */
    job->undo_conn = vs_libvirt_get_connection(job->libvirt, NULL);
    if (!job->undo_conn) {
        JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "cleanup waits for libvirt to come back");
        return;
    }
    task = g_task_new(job, NULL, undo_done, NULL);
    g_task_set_task_data(task, undo_thread, NULL);
    g_task_run_in_thread(task, job_thread);
}

static void
on_connected_changed(VsLibvirt *libvirt, GParamSpec *pspec, VsJob *job)
{
    if (!vs_libvirt_is_connected(libvirt))
        return;
    if (job->phase == PHASE_UNDO) {
        undo_start(job);
    } else if (job->phase == PHASE_WAIT_READY) {
        /* Events sent while we were away are lost: libvirt's events resume now, but a
         * READY that came in between would be missed. Start over from a clean state. */
        fail(job, g_error_new(VS_ERROR, VS_ERROR_NOT_CONNECTED,
                              "the libvirt connection was lost while the copy ran"));
    }
}

static void
fail(VsJob *job, GError *error)
{
    if (!job->error)
        job->error = error;
    else
        g_error_free(error);
    if (job->phase == PHASE_UNDO || job->phase == PHASE_ENDED)
        return;
    g_clear_handle_id(&job->progress_source, g_source_remove);
    if (job->phase == PHASE_QUEUED) {
        finish(job, job->cancel_requested ? VS_STATE_CANCELLED : VS_STATE_FAILED);
        return;
    }
    g_cancellable_cancel(job->cancellable);
    enter_phase(job, PHASE_UNDO);
}

static void
enter_phase(VsJob *job, Phase phase)
{
    job->phase = phase;
    vs_dbus_job1_set_phase(job->iface, phase_names[phase]);
    JOB_LOG(job, G_LOG_LEVEL_DEBUG, "phase %s", phase_names[phase]);

    switch (phase) {
    case PHASE_CLEAR_JOBS:
        run_thread(job, clear_jobs_thread);
        break;
    case PHASE_PREPARE:
        run_thread(job, prepare_thread);
        break;
    case PHASE_SAVE:
        run_thread(job, save_thread);
        break;
    case PHASE_RESTORE:
        run_thread(job, restore_thread);
        break;
    case PHASE_CLONE:
        g_clear_handle_id(&job->watchdog_source, g_source_remove);
        vs_dbus_job1_set_freeze_ms(job->iface, job->freeze_ms);
        job->t_flatten_start = vs_now_ms();
        run_thread(job, clone_thread);
        break;
    case PHASE_COPY:
        run_thread(job, copy_thread);
        break;
    case PHASE_WAIT_READY:
        enter_wait_ready(job);
        break;
    case PHASE_FREEZE_WINDOW:
        run_thread(job, freeze_window_thread);
        break;
    case PHASE_REDEFINE:
        run_thread(job, redefine_thread);
        break;
    case PHASE_FLATTEN:
    case PHASE_EXTRACT:
        g_clear_handle_id(&job->watchdog_source, g_source_remove);
        vs_dbus_job1_set_freeze_ms(job->iface, job->freeze_ms);
        job->t_flatten_start = vs_now_ms();
        job->flatten_index = 0;
        flatten_next(job);
        break;
    case PHASE_CATALOG:
        run_thread(job, catalog_thread);
        break;
    case PHASE_DONE:
        finish(job, VS_STATE_SUCCEEDED);
        break;
    case PHASE_UNDO:
        g_clear_handle_id(&job->watchdog_source, g_source_remove);
        undo_start(job);
        break;
    case PHASE_QUEUED:
    case PHASE_ENDED:
        g_assert_not_reached();
    }
}

/* ---- public ----------------------------------------------------------------------------- */

void
vs_job_start(VsJob *self)
{
    g_return_if_fail(self->phase == PHASE_QUEUED);

    self->t_start = vs_now_ms();
    vs_dbus_job1_set_state(self->iface, VS_STATE_RUNNING);
    if (!self->recovery)
        vs_log_job(G_LOG_LEVEL_MESSAGE, VS_MSGID_JOB_STARTED, self->id, self->domain,
                   "started (%s)", vs_dbus_job1_get_method(self->iface));
    self->connected_handler = g_signal_connect(self->libvirt, "notify::connected",
                                               G_CALLBACK(on_connected_changed), self);
    if (self->recovery) {
        enter_phase(self, PHASE_UNDO);
        return;
    }
    self->block_job_handler =
        g_signal_connect(self->libvirt, "block-job", G_CALLBACK(on_block_job), self);
    enter_phase(self, self->plan->foreign_jobs ? PHASE_CLEAR_JOBS : PHASE_PREPARE);
}

void
vs_job_cancel(VsJob *self)
{
    if (self->phase == PHASE_ENDED || self->phase == PHASE_UNDO || self->phase == PHASE_CATALOG ||
        self->phase == PHASE_DONE)
        return;
    JOB_LOG(self, G_LOG_LEVEL_MESSAGE, "cancel requested in phase %s", phase_names[self->phase]);
    self->cancel_requested = TRUE;
    /* Kills a running qemu-img; a libvirt call in a thread finishes first, and the
     * freeze window always runs to its thaw. */
    if (self->phase != PHASE_FREEZE_WINDOW)
        g_cancellable_cancel(self->cancellable);
    if (self->phase == PHASE_QUEUED || self->phase == PHASE_WAIT_READY)
        fail(self, g_error_new(VS_ERROR, VS_ERROR_CANCELLED, "cancelled"));
}

static gboolean
handle_cancel(VsDbusJob1 *iface, GDBusMethodInvocation *invocation, VsJob *self)
{
    vs_job_cancel(self);
    vs_dbus_job1_complete_cancel(iface, invocation);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

GDBusObjectSkeleton *
vs_job_get_object(VsJob *self)
{
    return G_DBUS_OBJECT_SKELETON(self->object);
}

const char *
vs_job_get_path(VsJob *self)
{
    return self->path;
}

const char *
vs_job_get_uuid(VsJob *self)
{
    return self->uuid;
}

const char *
vs_job_get_snapshot_id(VsJob *self)
{
    return self->snapshot_id;
}

gboolean
vs_job_is_finished(VsJob *self)
{
    return self->phase == PHASE_ENDED;
}

gboolean
vs_job_succeeded(VsJob *self)
{
    return self->phase == PHASE_ENDED &&
           g_strcmp0(vs_dbus_job1_get_state(self->iface), VS_STATE_SUCCEEDED) == 0;
}

guint
vs_job_get_id(VsJob *self)
{
    return self->id;
}

const char *
vs_job_get_domain(VsJob *self)
{
    return self->domain;
}

gboolean
vs_job_holds_disks_offline(VsJob *self)
{
    if (!self->cold || self->phase == PHASE_ENDED || self->phase == PHASE_QUEUED)
        return FALSE;
    /* Our own virDomainCreate (restore, or undo's restart) must pass the hook. */
    return self->phase != PHASE_RESTORE && self->phase != PHASE_UNDO &&
           self->phase != PHASE_CATALOG && self->phase != PHASE_DONE;
}

gboolean
vs_job_is_queued(VsJob *self)
{
    return self->phase == PHASE_QUEUED;
}

static void
vs_job_dispose(GObject *object)
{
    VsJob *self = VS_JOB(object);

    g_clear_handle_id(&self->progress_source, g_source_remove);
    g_clear_handle_id(&self->watchdog_source, g_source_remove);
    if (self->block_job_handler)
        g_clear_signal_handler(&self->block_job_handler, self->libvirt);
    if (self->connected_handler)
        g_clear_signal_handler(&self->connected_handler, self->libvirt);
    g_clear_object(&self->libvirt);
    g_clear_object(&self->iface);
    g_clear_object(&self->object);
    g_clear_object(&self->cancellable);
    G_OBJECT_CLASS(vs_job_parent_class)->dispose(object);
}

static void
vs_job_finalize(GObject *object)
{
    VsJob *self = VS_JOB(object);

    g_clear_pointer(&self->undo_conn, virConnectClose);
    g_clear_pointer(&self->disks, g_ptr_array_unref);
    g_clear_pointer(&self->plan, vs_plan_free);
    vs_snapshot_options_clear(&self->opts);
    vs_journal_entry_free(self->journal);
    g_mutex_clear(&self->lock);
    g_clear_error(&self->error);
    g_string_free(self->undo_notes, TRUE);
    g_free(self->path);
    g_free(self->snapshot_dir);
    g_free(self->state_dir);
    g_free(self->domain);
    g_free(self->uuid);
    g_free(self->snapshot_id);
    g_free(self->name);
    g_free(self->folder);
    g_free(self->quiesce_note);
    g_free(self->fsid);
    vs_config_free(self->config);
    G_OBJECT_CLASS(vs_job_parent_class)->finalize(object);
}

static void
vs_job_init(VsJob *self)
{
    g_mutex_init(&self->lock);
    self->cancellable = g_cancellable_new();
    self->undo_notes = g_string_new(NULL);
}

static void
vs_job_class_init(VsJobClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);

    object_class->dispose = vs_job_dispose;
    object_class->finalize = vs_job_finalize;
    signals[SIGNAL_FINISHED] = g_signal_new("finished", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST,
                                            0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static VsJob *
job_new_common(guint id, const VsConfig *config, VsLibvirt *libvirt, const char *domain,
               const char *uuid)
{
    VsJob *self = g_object_new(VS_TYPE_JOB, NULL);

    self->id = id;
    self->path = g_strdup_printf(VS_JOB_PATH_PREFIX "%u", id);
    self->snapshot_dir = g_strdup(config->snapshot_dir);
    self->config = vs_config_copy(config);
    self->state_dir = g_strdup(config->state_dir);
    self->freeze_limit_ms = config->freeze_limit_ms;
    self->libvirt = g_object_ref(libvirt);
    self->domain = g_strdup(domain);
    self->uuid = g_strdup(uuid);
    self->object = vs_dbus_object_skeleton_new(self->path);
    self->iface = vs_dbus_job1_skeleton_new();
    vs_dbus_object_skeleton_set_job1(self->object, self->iface);

    vs_dbus_job1_set_id(self->iface, id);
    vs_dbus_job1_set_domain(self->iface, domain);
    vs_dbus_job1_set_domain_uuid(self->iface, uuid);
    vs_dbus_job1_set_state(self->iface, VS_STATE_QUEUED);
    vs_dbus_job1_set_phase(self->iface, phase_names[PHASE_QUEUED]);
    vs_dbus_job1_set_error(self->iface, "");
    vs_dbus_job1_set_error_name(self->iface, "");
    vs_dbus_job1_set_method(self->iface, "");
    vs_dbus_job1_set_method_reason(self->iface, "");
    vs_dbus_job1_set_result(self->iface, g_variant_new("a{sv}", NULL));
    vs_dbus_job1_set_created(self->iface, g_get_real_time());
    /* Authorized calls reach the handler after an asynchronous check: never a freed job. */
    g_signal_connect_object(self->iface, "handle-cancel", G_CALLBACK(handle_cancel), self, 0);
    return self;
}

VsJob *
vs_job_new(guint id, const VsConfig *config, VsLibvirt *libvirt, VsPlan *plan,
           VsSnapshotOptions *opts, gint64 requested_ms)
{
    VsJob *self = job_new_common(id, config, libvirt, plan->name, plan->uuid);

    self->plan = plan;
    self->t_requested = requested_ms;
    self->opts = *opts;
    memset(opts, 0, sizeof(*opts)); /* taken */
    self->snapshot_id = vs_make_snapshot_id();
    self->name = g_strdup(self->opts.name ? self->opts.name : self->snapshot_id);
    self->folder = vs_catalog_partial_dir(self->snapshot_dir, self->snapshot_id);

    self->journal = vs_journal_entry_new();
    self->journal->snapshot_id = g_strdup(self->snapshot_id);
    self->journal->domain = g_strdup(plan->name);
    self->journal->uuid = g_strdup(plan->uuid);
    self->journal->folder = g_strdup(self->folder);

    self->cold = plan->method == VS_METHOD_COLD;
    self->rbd = plan->method == VS_METHOD_RBD;
    self->flatten = self->opts.flatten < 0 ? config->rbd.flatten : self->opts.flatten;
    self->disks = g_ptr_array_new_with_free_func(job_disk_free);
    for (guint i = 0; i < plan->disks->len; i++) {
        JobDisk *d = g_new0(JobDisk, 1);
        const char *ext = vs_format_name(self->opts.format);

        d->plan = g_ptr_array_index(plan->disks, i);
        d->image = g_strdup_printf("%s/%s.%s", self->folder, d->plan->target, ext);
        d->part = g_strdup_printf("%s.part", d->image);
        if (self->rbd) {
            VsRbdSpec *spec = &d->plan->rbd_spec;
            VsJournalRbd *jr = g_new0(VsJournalRbd, 1);

            jr->conf = g_strdup(spec->conf);
            jr->hosts = g_strdup(spec->hosts);
            jr->user = g_strdup(spec->user);
            jr->pool = g_strdup(spec->pool);
            jr->ns = g_strdup(spec->ns);
            jr->image = g_strdup(spec->image);
            jr->snap = g_strdup_printf("virtsnap-%s", self->snapshot_id);
            jr->clone_pool = g_strdup(config->rbd.dest_pool ? config->rbd.dest_pool : spec->pool);
            /* Named after the snapshot's name (the id unless given), so that users
             * recognise it; an existing image of that name is refused, never reused. */
            jr->clone = g_strdup_printf("%s-%s", spec->image, self->name);
            g_ptr_array_add(self->journal->rbd, jr);
            d->jr = jr;
        }
        if (self->cold || self->rbd)
            d->delta = NULL; /* cold reads the disk's own chain; rbd copies nothing here */
        else if (self->opts.copy == VS_COPY_DIRECT)
            d->delta = g_strdup(d->part);
        else
            d->delta = g_strdup_printf("%s/%s.delta.qcow2", self->folder, d->plan->target);
        g_ptr_array_add(self->disks, d);
    }
    vs_dbus_job1_set_method(self->iface, vs_method_name(plan->method));
    vs_dbus_job1_set_method_reason(self->iface, plan->method_reason);
    return self;
}

VsJob *
vs_job_new_recovery(guint id, const VsConfig *config, VsLibvirt *libvirt, VsJournalEntry *entry)
{
    VsJob *self = job_new_common(id, config, libvirt, entry->domain, entry->uuid);

    g_autofree char *expected = vs_catalog_partial_dir(config->snapshot_dir, entry->snapshot_id);

    self->recovery = TRUE;
    self->journal = entry;
    self->snapshot_id = g_strdup(entry->snapshot_id);
    self->name = g_strdup(entry->snapshot_id);
    /* A record names a folder; only the one our own naming gives is ever removed. */
    if (g_strcmp0(entry->folder, expected) != 0) {
        g_warning("journal record %s names folder %s, not %s: leaving it alone", entry->snapshot_id,
                  entry->folder, expected);
        g_clear_pointer(&entry->folder, g_free);
    }
    self->folder = g_strdup(entry->folder);
    vs_dbus_job1_set_method_reason(self->iface, "repairing an interrupted job");
    return self;
}
