/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The job list: at most max_jobs running, the rest queued in arrival order; ended jobs
 * stay visible for a while; journal entries of an interrupted agent come back as repair
 * jobs at the head of the queue; a domain's snapshots are pruned to its policy's keep. */
#include "vs-queue.h"
#include "vs-catalog.h"
#include "vs-dbus-generated.h"
#include "vs-error.h"
#include "vs-holds.h"
#include "vs-journal.h"
#include "vs-log.h"
#include "vs-rbd.h"

struct _VsQueue {
    GObject parent;
    VsConfig *config;
    VsLibvirt *libvirt;
    GDBusObjectManagerServer *object_manager;
    VsBouncer *bouncer;
    GPtrArray *jobs; /* VsJob*, oldest first */
    guint next_job_id;
    gboolean recovered;
    guint rbd_idle_source;
};

/* Ended jobs stay visible for a while so that callers can read their result. */
#define KEEP_ENDED_JOBS 32

enum { SIGNAL_JOB_FINISHED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_TYPE(VsQueue, vs_queue, G_TYPE_OBJECT)

static guint
running_jobs(VsQueue *self)
{
    guint n = 0;

    for (guint i = 0; i < self->jobs->len; i++) {
        VsJob *job = g_ptr_array_index(self->jobs, i);

        n += !vs_job_is_finished(job) && !vs_job_is_queued(job);
    }
    return n;
}

VsJob *
vs_queue_find_active(VsQueue *self, const char *name_or_uuid)
{
    for (guint i = 0; i < self->jobs->len; i++) {
        VsJob *job = g_ptr_array_index(self->jobs, i);

        if (!vs_job_is_finished(job) && vs_job_touches_domain(job) &&
            (g_strcmp0(vs_job_get_uuid(job), name_or_uuid) == 0 ||
             g_strcmp0(vs_job_get_domain(job), name_or_uuid) == 0))
            return job;
    }
    return NULL;
}

gboolean
vs_queue_check_free(VsQueue *self, const char *name_or_uuid, const char *shown, GError **error)
{
    VsJob *other = vs_queue_find_active(self, name_or_uuid);

    if (!other)
        return TRUE;
    g_set_error(error, VS_ERROR, VS_ERROR_BUSY, "domain '%s' already has a snapshot job: %s", shown,
                vs_job_get_path(other));
    return FALSE;
}

VsJob *
vs_queue_find_using(VsQueue *self, const char *id)
{
    for (guint i = 0; i < self->jobs->len; i++) {
        VsJob *job = g_ptr_array_index(self->jobs, i);

        if (!vs_job_is_finished(job) && vs_job_uses_snapshot(job, id))
            return job;
    }
    return NULL;
}

GPtrArray *
vs_queue_get_jobs(VsQueue *self)
{
    return self->jobs;
}

void
vs_queue_schedule(VsQueue *self)
{
    guint ended = 0;

    for (guint i = 0; i < self->jobs->len && running_jobs(self) < self->config->max_jobs; i++) {
        VsJob *job = g_ptr_array_index(self->jobs, i);

        if (vs_job_is_queued(job))
            vs_job_start(job);
    }
    for (guint i = self->jobs->len; i > 0; i--)
        ended += vs_job_is_finished(g_ptr_array_index(self->jobs, i - 1));
    for (guint i = 0; i < self->jobs->len && ended > KEEP_ENDED_JOBS;) {
        VsJob *job = g_ptr_array_index(self->jobs, i);

        if (!vs_job_is_finished(job)) {
            i++;
            continue;
        }
        g_dbus_object_manager_server_unexport(self->object_manager, vs_job_get_path(job));
        g_ptr_array_remove_index(self->jobs, i);
        ended--;
    }
}

/* Ceph connections are kept for a minute after the last job, then closed: no timer
 * and no connection while nothing uses the cluster. */
static gboolean
close_idle_rbd(gpointer data)
{
    VsQueue *self = data;

    self->rbd_idle_source = 0;
    vs_rbd_close_idle();
    return G_SOURCE_REMOVE;
}

static void
on_job_finished(VsJob *job, VsQueue *self)
{
    g_clear_handle_id(&self->rbd_idle_source, g_source_remove);
    self->rbd_idle_source = g_timeout_add_seconds(60, close_idle_rbd, self);
    g_signal_emit(self, signals[SIGNAL_JOB_FINISHED], 0, job);
    vs_queue_schedule(self);
}

static void
add_job(VsQueue *self, VsJob *job)
{
    g_autoptr(VsDbusJob1) iface = vs_dbus_object_get_job1(VS_DBUS_OBJECT(vs_job_get_object(job)));

    vs_bouncer_guard(self->bouncer, G_DBUS_INTERFACE_SKELETON(iface));
    g_ptr_array_add(self->jobs, job);
    g_signal_connect(job, "finished", G_CALLBACK(on_job_finished), self);
    g_dbus_object_manager_server_export(self->object_manager, vs_job_get_object(job));
}

VsJob *
vs_queue_add_snapshot(VsQueue *self, VsPlan *plan, VsSnapshotOptions *opts, gint64 requested_ms)
{
    VsJob *job =
        vs_job_new(++self->next_job_id, self->config, self->libvirt, plan, opts, requested_ms);

    add_job(self, job);
    return job;
}

guint
vs_queue_take_id(VsQueue *self)
{
    return ++self->next_job_id;
}

VsJob *
vs_queue_add(VsQueue *self, VsJob *job)
{
    add_job(self, job);
    return job;
}

void
vs_queue_recover(VsQueue *self)
{
    g_autoptr(GPtrArray) entries = NULL;

    if (self->recovered)
        return;
    self->recovered = TRUE;
    entries = vs_journal_load_all(self->config->state_dir);
    for (guint i = 0; i < entries->len; i++) {
        VsJournalEntry *entry = g_ptr_array_steal_index(entries, i--);

        vs_log_job(G_LOG_LEVEL_MESSAGE, NULL, ++self->next_job_id, entry->domain,
                   "repairing interrupted job for snapshot %s (phase %s)", entry->snapshot_id,
                   entry->phase);
        add_job(self, vs_job_new_recovery(self->next_job_id, self->config, self->libvirt, entry));
    }
    /* Repairs run before anything new starts: they are at the head of the queue. */
    for (guint i = 0; i < self->jobs->len; i++)
        vs_job_start(g_ptr_array_index(self->jobs, i));
}

void
vs_queue_cancel_all(VsQueue *self)
{
    for (guint i = 0; i < self->jobs->len; i++)
        vs_job_cancel(g_ptr_array_index(self->jobs, i));
}

gboolean
vs_queue_is_idle(VsQueue *self)
{
    for (guint i = 0; i < self->jobs->len; i++) {
        if (!vs_job_is_finished(g_ptr_array_index(self->jobs, i)))
            return FALSE;
    }
    return TRUE;
}

/* ---- retention of snapshots (a policy's keep) --------------------------------------------- */

typedef struct {
    char *snapshot_dir;
    char *state_dir;
    char *uuid;
    guint keep;
    virConnectPtr conn; /* NULL when libvirt is away: every clone then holds */
    VsConfig *config;   /* a copy: its [rbd] reaches the cluster of an RBD snapshot */
} Prune;

static void
prune_free(gpointer p)
{
    Prune *pr = p;

    g_free(pr->snapshot_dir);
    g_free(pr->state_dir);
    g_free(pr->uuid);
    g_clear_pointer(&pr->conn, virConnectClose);
    g_clear_pointer(&pr->config, vs_config_free);
    g_free(pr);
}

/* Removes @id (catalog entry @snap) unless a clone or an export uses it (then it is kept,
 * and the log says why): its objects in Ceph first, as DeleteSnapshot does, then its
 * folder, and the leftover folders of its clones whose domain is gone. */
static void
prune_one(Prune *pr, GPtrArray *holders, GVariant *snap, const char *id)
{
    g_autoptr(GPtrArray) held = g_ptr_array_new();
    g_autoptr(GPtrArray) gone = g_ptr_array_new();
    g_autoptr(GError) error = NULL;

    vs_holds_of(holders, id, pr->conn, held, gone);
    if (!vs_holds_check(id, held, &error)) {
        g_message("policy keep=%u: kept %s: %s", pr->keep, id, error->message);
        return;
    }
    if (!vs_rbd_delete_snapshot_objects(&pr->config->rbd, snap, &error) ||
        !vs_catalog_delete(pr->snapshot_dir, id, &error)) {
        g_warning("policy keep=%u: cannot remove %s: %s", pr->keep, id, error->message);
        return;
    }
    g_message("policy keep=%u: removed snapshot %s", pr->keep, id);
    for (guint i = 0; i < gone->len; i++) {
        VsHolder *h = g_ptr_array_index(gone, i);

        if (!vs_holds_remove_clone(pr->snapshot_dir, h->name, &error)) {
            g_warning("policy keep=%u: %s", pr->keep, error->message);
            g_clear_error(&error);
        }
    }
}

/* Keeps the newest @keep snapshots that nothing uses; a snapshot that a clone or an
 * export uses is kept besides them and does not count. */
static void
prune_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    Prune *pr = data;
    g_autoptr(GVariant) list = NULL;
    g_autoptr(GPtrArray) holders = NULL;
    guint kept = 0;

    vs_holds_lock();
    list = g_variant_ref_sink(vs_catalog_list(pr->snapshot_dir, pr->uuid));
    holders = vs_holds_scan(pr->snapshot_dir, pr->state_dir);
    /* The catalog lists oldest first. */
    for (gsize i = g_variant_n_children(list); i > 0; i--) {
        g_autoptr(GVariant) snap = g_variant_get_child_value(list, i - 1);
        g_autoptr(GPtrArray) held = g_ptr_array_new();
        const char *id = NULL;

        if (!g_variant_lookup(snap, "id", "&s", &id))
            continue;
        vs_holds_of(holders, id, pr->conn, held, NULL);
        if (held->len == 0 && kept < pr->keep)
            kept++;
        else
            prune_one(pr, holders, snap, id);
    }
    vs_holds_unlock();
    g_task_return_boolean(task, TRUE);
}

void
vs_queue_prune(VsQueue *self, const char *uuid, guint keep)
{
    g_autoptr(GTask) task = NULL;
    Prune *pr;

    if (!keep)
        return;
    pr = g_new0(Prune, 1);
    pr->snapshot_dir = g_strdup(self->config->snapshot_dir);
    pr->state_dir = g_strdup(self->config->state_dir);
    pr->uuid = g_strdup(uuid);
    pr->conn = vs_libvirt_get_connection(self->libvirt, NULL);
    pr->keep = keep;
    pr->config = vs_config_copy(self->config);
    task = g_task_new(self, NULL, NULL, NULL);
    g_task_set_task_data(task, pr, prune_free);
    g_task_run_in_thread(task, prune_thread);
}

static void
vs_queue_dispose(GObject *object)
{
    VsQueue *self = VS_QUEUE(object);

    /* A job still referenced elsewhere (a worker finishing) must not call back into us. */
    for (guint i = 0; self->jobs && i < self->jobs->len; i++)
        g_signal_handlers_disconnect_by_data(g_ptr_array_index(self->jobs, i), self);
    g_clear_pointer(&self->jobs, g_ptr_array_unref);
    g_clear_object(&self->libvirt);
    g_clear_object(&self->object_manager);
    g_clear_object(&self->bouncer);
    g_clear_handle_id(&self->rbd_idle_source, g_source_remove);
    G_OBJECT_CLASS(vs_queue_parent_class)->dispose(object);
}

static void
vs_queue_finalize(GObject *object)
{
    vs_config_free(VS_QUEUE(object)->config);
    G_OBJECT_CLASS(vs_queue_parent_class)->finalize(object);
}

static void
vs_queue_init(VsQueue *self)
{
    self->jobs = g_ptr_array_new_with_free_func(g_object_unref);
}

static void
vs_queue_class_init(VsQueueClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);

    object_class->dispose = vs_queue_dispose;
    object_class->finalize = vs_queue_finalize;
    signals[SIGNAL_JOB_FINISHED] =
        g_signal_new("job-finished", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                     NULL, G_TYPE_NONE, 1, VS_TYPE_JOB);
}

VsQueue *
vs_queue_new(const VsConfig *config, VsLibvirt *libvirt, GDBusObjectManagerServer *object_manager,
             VsBouncer *bouncer)
{
    VsQueue *self = g_object_new(VS_TYPE_QUEUE, NULL);

    self->config = vs_config_copy(config);
    self->libvirt = g_object_ref(libvirt);
    self->object_manager = g_object_ref(object_manager);
    self->bouncer = g_object_ref(bouncer);
    return self;
}
