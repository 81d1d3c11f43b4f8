/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Agent1 object: answers method calls (the libvirt work in worker threads),
 * mirrors the connection state into properties and turns libvirt lifecycle events
 * into DomainEvent signals. */
#include "vs-manager.h"
#include "vs-bouncer.h"
#include "vs-dbus-generated.h"
#include "vs-error.h"
#include "vs-catalog.h"
#include "vs-clone.h"
#include "vs-export.h"
#include "vs-hooks.h"
#include "vs-holds.h"
#include "vs-inventory.h"
#include "vs-job.h"
#include "vs-job-verify.h"
#include "vs-log.h"
#include "vs-plan.h"
#include "vs-policy.h"
#include "vs-queue.h"
#include "vs-revert.h"
#include "vs-scheduler.h"
#include "vs-rbd.h"
#include "vs-util.h"
#include "vs-names.h"
#include "vs-virt-util.h"
#include "vs-build-config.h"

#include <string.h>

struct _VsManager {
    GObject parent;
    VsConfig *config;
    VsLibvirt *libvirt;
    VsDbusAgent1 *skeleton;
    GDBusObjectManagerServer *object_manager;
    VsQueue *queue;
    GHashTable *hook_counts; /* operation -> count */
    guint hook_refused_job;  /* the job of the last refusal logged */
    VsScheduler *scheduler;
    VsBouncer *bouncer; /* every method call passes it first */
    VsExports *exports; /* browse: snapshot disks served over NBD */
};

G_DEFINE_TYPE(VsManager, vs_manager, G_TYPE_OBJECT)

/* Answers @invocation with @error; requests of our own (policy) have none: logged. */
static void
reply_error(GDBusMethodInvocation *invocation, const GError *error)
{
    if (invocation)
        g_dbus_method_invocation_return_gerror(invocation, error);
    else
        g_message("policy snapshot not started: %s", error->message);
}

/* A libvirt call in a worker: the connection reference travels with the task. */
typedef GVariant *(*ConnWorkFunc)(virConnectPtr conn, gpointer data, GError **error);

typedef struct {
    virConnectPtr conn;
    ConnWorkFunc func;
    gpointer data;
    GDestroyNotify data_free;
} ConnWork;

static void
conn_work_free(gpointer p)
{
    ConnWork *w = p;

    if (w->data_free)
        w->data_free(w->data);
    virConnectClose(w->conn);
    g_free(w);
}

static void
conn_work_thread(GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
    ConnWork *w = task_data;
    GError *error = NULL;
    GVariant *result = w->func(w->conn, w->data, &error);

    if (!result)
        g_task_return_error(task, error);
    else
        g_task_return_pointer(task, g_variant_ref_sink(result), (GDestroyNotify)g_variant_unref);
}

/* Runs @func in a worker thread with a reference to the connection, then @done on the
 * main loop. Fails at once (into @invocation) when libvirt is not connected. */
static void
run_with_connection(VsManager *self, GDBusMethodInvocation *invocation, ConnWorkFunc func,
                    gpointer data, GDestroyNotify data_free, GAsyncReadyCallback done)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GTask) task = NULL;
    virConnectPtr conn = vs_libvirt_get_connection(self->libvirt, &error);
    ConnWork *w;

    if (!conn) {
        if (data_free)
            data_free(data);
        reply_error(invocation, error);
        return;
    }
    w = g_new0(ConnWork, 1);
    w->conn = conn;
    w->func = func;
    w->data = data;
    w->data_free = data_free;
    task = g_task_new(self, NULL, done, invocation ? g_object_ref(invocation) : NULL);
    g_task_set_task_data(task, w, conn_work_free);
    g_task_run_in_thread(task, conn_work_thread);
}

static GVariant *
list_domains_work(virConnectPtr conn, gpointer data, GError **error)
{
    return vs_inventory_list(conn, error);
}

static void
list_domains_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GDBusMethodInvocation) invocation = user_data;
    VsManager *self = VS_MANAGER(source);
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) domains = g_task_propagate_pointer(G_TASK(result), &error);

    if (!domains)
        g_dbus_method_invocation_return_gerror(invocation, error);
    else
        vs_dbus_agent1_complete_list_domains(self->skeleton, invocation, domains);
}

static gboolean
handle_list_domains(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, VsManager *self)
{
    run_with_connection(self, invocation, list_domains_work, NULL, NULL, list_domains_done);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* ---- snapshots ------------------------------------------------------------------------- */

typedef struct {
    char *domain;
    VsSnapshotOptions opts;
    char *snapshot_dir;
    char *why; /* a policy's request; NULL for a caller's */
    gint64 requested_ms;
} CreateData;

static void
create_data_free(gpointer p)
{
    CreateData *c = p;

    g_free(c->domain);
    vs_snapshot_options_clear(&c->opts);
    g_free(c->snapshot_dir);
    g_free(c->why);
    g_free(c);
}

static GVariant *
plan_work(virConnectPtr conn, gpointer data, GError **error)
{
    CreateData *c = data;
    VsPlan *plan = vs_plan_make(conn, c->domain, &c->opts, c->snapshot_dir, error);

    /* A GVariant carries the plan's pointer back to the main loop. */
    return plan ? g_variant_new_uint64((guint64)(guintptr)plan) : NULL;
}

static void
plan_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GDBusMethodInvocation) invocation = user_data;
    VsManager *self = VS_MANAGER(source);
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) value = g_task_propagate_pointer(G_TASK(result), &error);
    ConnWork *w = g_task_get_task_data(G_TASK(result));
    CreateData *c = w->data;
    g_autoptr(VsPlan) plan = value ? (VsPlan *)(guintptr)g_variant_get_uint64(value) : NULL;
    g_autoptr(GError) ours = NULL;
    VsJob *job;

    /* Calls at once: the block job this plan saw may be the copy of a job of ours that
     * started while it was made. Name that job, not a "foreign" one to force away. */
    if (!plan && g_error_matches(error, VS_ERROR, VS_ERROR_BUSY) &&
        !vs_queue_check_free(self->queue, c->domain, c->domain, &ours)) {
        g_clear_error(&error);
        error = g_steal_pointer(&ours);
    }
    if (!plan || !vs_queue_check_free(self->queue, plan->uuid, plan->name, &error)) {
        reply_error(invocation, error);
        return;
    }
    job = vs_queue_add_snapshot(self->queue, g_steal_pointer(&plan), &c->opts, c->requested_ms);
    if (invocation)
        vs_dbus_agent1_complete_create_snapshot(self->skeleton, invocation, vs_job_get_path(job));
    else
        vs_log_job(G_LOG_LEVEL_MESSAGE, VS_MSGID_POLICY_TRIGGERED, vs_job_get_id(job),
                   vs_job_get_domain(job), "%s: started %s", c->why, vs_job_get_path(job));
    vs_queue_schedule(self->queue);
}

/* A snapshot request from a caller (@invocation) or from a policy (NULL, @why). */
static void
start_snapshot(VsManager *self, GDBusMethodInvocation *invocation, const char *domain,
               GVariant *options, const char *why)
{
    CreateData *c = NULL;
    g_autoptr(GError) error = NULL;

    /* Our own job on the domain is known here, without asking libvirt (whose view,
     * a block job on the disk, would look foreign). */
    if (!vs_queue_check_free(self->queue, domain, domain, &error)) {
        reply_error(invocation, error);
        return;
    }
    c = g_new0(CreateData, 1);
    vs_snapshot_options_init(&c->opts);
    if (!vs_snapshot_options_parse(&c->opts, options, &error)) {
        create_data_free(c);
        reply_error(invocation, error);
        return;
    }
    c->domain = g_strdup(domain);
    c->snapshot_dir = g_strdup(self->config->snapshot_dir);
    c->why = g_strdup(why);
    c->requested_ms = vs_now_ms();
    run_with_connection(self, invocation, plan_work, c, create_data_free, plan_done);
}

static gboolean
handle_create_snapshot(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation,
                       const char *domain, GVariant *options, VsManager *self)
{
    start_snapshot(self, invocation, domain, options, NULL);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
on_policy_request(const char *domain, GVariant *options, const char *why, gpointer data)
{
    g_autoptr(GVariant) owned = g_variant_ref_sink(options);

    vs_log_job(G_LOG_LEVEL_MESSAGE, NULL, 0, domain, "%s: snapshot of %s", why, domain);
    start_snapshot(data, NULL, domain, owned, why);
}

/* ---- policy --------------------------------------------------------------------------- */

typedef struct {
    char *domain;
    GVariant *settings; /* a{ss}, NULL: get; empty with clear: remove */
    gboolean clear;
} PolicyCall;

static void
policy_call_free(gpointer p)
{
    PolicyCall *pc = p;

    g_free(pc->domain);
    g_clear_pointer(&pc->settings, g_variant_unref);
    g_free(pc);
}

static GVariant *
policy_work(virConnectPtr conn, gpointer data, GError **error)
{
    PolicyCall *pc = data;
    g_autoptr(virDomain) dom = vs_lookup_domain(conn, pc->domain, error);

    if (!dom)
        return NULL;
    if (!pc->settings && !pc->clear)
        return vs_policy_get_reply(dom);
    return vs_policy_update(dom, pc->settings, pc->clear, error) ? g_variant_new("()") : NULL;
}

static void
policy_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GDBusMethodInvocation) invocation = user_data;
    VsManager *self = VS_MANAGER(source);
    ConnWork *w = g_task_get_task_data(G_TASK(result));
    PolicyCall *pc = w->data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = g_task_propagate_pointer(G_TASK(result), &error);

    if (!reply) {
        g_dbus_method_invocation_return_gerror(invocation, error);
        return;
    }
    if (pc->settings || pc->clear)
        vs_scheduler_reload(self->scheduler, pc->domain);
    g_dbus_method_invocation_return_value(invocation, g_steal_pointer(&reply));
}

static void
policy_call(VsManager *self, GDBusMethodInvocation *invocation, const char *domain,
            GVariant *settings, gboolean clear)
{
    PolicyCall *pc = g_new0(PolicyCall, 1);

    pc->domain = g_strdup(domain);
    pc->settings = settings ? g_variant_ref(settings) : NULL;
    pc->clear = clear;
    run_with_connection(self, invocation, policy_work, pc, policy_call_free, policy_done);
}

static gboolean
handle_get_policy(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *domain,
                  VsManager *self)
{
    policy_call(self, invocation, domain, NULL, FALSE);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_set_policy(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *domain,
                  GVariant *settings, VsManager *self)
{
    policy_call(self, invocation, domain, settings, FALSE);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_clear_policy(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *domain,
                    VsManager *self)
{
    policy_call(self, invocation, domain, NULL, TRUE);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_list_jobs(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, VsManager *self)
{
    GPtrArray *jobs = vs_queue_get_jobs(self->queue);
    g_autoptr(GPtrArray) paths = g_ptr_array_new();

    for (guint i = 0; i < jobs->len; i++)
        g_ptr_array_add(paths, (gpointer)vs_job_get_path(g_ptr_array_index(jobs, i)));
    g_ptr_array_add(paths, NULL);
    vs_dbus_agent1_complete_list_jobs(skeleton, invocation, (const char *const *)paths->pdata);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* Catalog reads and deletes are plain file work: a thread keeps the loop free. The
 * connection (NULL when libvirt is away) tells whether a clone's domain is still there. */
typedef struct {
    char *arg; /* the domain of a listing, the id of a delete */
    virConnectPtr conn;
} CatalogCall;

static void
catalog_call_free(gpointer p)
{
    CatalogCall *cc = p;

    g_free(cc->arg);
    g_clear_pointer(&cc->conn, virConnectClose);
    g_free(cc);
}

static GTask *
catalog_task(VsManager *self, GDBusMethodInvocation *invocation, const char *arg,
             GAsyncReadyCallback done)
{
    GTask *task = g_task_new(self, NULL, done, g_object_ref(invocation));
    CatalogCall *cc = g_new0(CatalogCall, 1);

    cc->arg = g_strdup(arg);
    cc->conn = vs_libvirt_get_connection(self->libvirt, NULL);
    g_task_set_task_data(task, cc, catalog_call_free);
    return task;
}

static void
list_snapshots_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    VsManager *self = source;
    CatalogCall *cc = data;
    g_autoptr(GVariant) list =
        g_variant_ref_sink(vs_catalog_list(self->config->snapshot_dir, cc->arg));
    g_autoptr(GPtrArray) holders =
        vs_holds_scan(self->config->snapshot_dir, self->config->state_dir);

    g_autoptr(GVariant) used = g_variant_ref_sink(vs_holds_annotate_list(list, holders, cc->conn));

    g_task_return_pointer(task, g_variant_ref_sink(vs_verify_annotate_list(used)),
                          (GDestroyNotify)g_variant_unref);
}

static void
list_snapshots_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GDBusMethodInvocation) invocation = user_data;
    g_autoptr(GVariant) list = g_task_propagate_pointer(G_TASK(result), NULL);

    vs_dbus_agent1_complete_list_snapshots(VS_MANAGER(source)->skeleton, invocation, list);
}

static gboolean
handle_list_snapshots(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *domain,
                      VsManager *self)
{
    g_autoptr(GTask) task = catalog_task(self, invocation, domain, list_snapshots_done);

    g_task_run_in_thread(task, list_snapshots_thread);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* An RBD snapshot's clone lives in the cluster: it goes first, then the folder. */
static gboolean
delete_rbd_objects(VsManager *self, const char *id, GError **error)
{
    g_autoptr(GVariant) list = g_variant_ref_sink(vs_catalog_list(self->config->snapshot_dir, ""));

    for (gsize i = 0; i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) snap = g_variant_get_child_value(list, i);
        const char *sid = NULL;

        if (g_variant_lookup(snap, "id", "&s", &sid) && g_strcmp0(sid, id) == 0)
            return vs_rbd_delete_snapshot_objects(&self->config->rbd, snap, error);
    }
    return TRUE;
}

/* A snapshot that a clone or an export uses stays (Busy); the leftover folders of clones
 * whose domain is gone go with it. */
static gboolean
delete_snapshot(VsManager *self, CatalogCall *cc, GError **error)
{
    const char *snapshot_dir = self->config->snapshot_dir;
    g_autoptr(GPtrArray) holders = NULL;
    g_autoptr(GPtrArray) held = g_ptr_array_new();
    g_autoptr(GPtrArray) gone = g_ptr_array_new();
    g_autoptr(JsonNode) meta = NULL;
    g_autoptr(GError) unread = NULL;

    if (!vs_name_is_valid(cc->arg))
        return vs_catalog_delete(snapshot_dir, cc->arg, error); /* its own error */
    /* Never through a link (vs_catalog_delete refuses those too). */
    meta = vs_catalog_read_metadata(snapshot_dir, cc->arg, &unread);
    if (meta || !g_error_matches(unread, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT)) {
        holders = vs_holds_scan(snapshot_dir, self->config->state_dir);
        vs_holds_of(holders, cc->arg, cc->conn, held, gone);
        if (!vs_holds_check(cc->arg, held, error))
            return FALSE;
    }
    if (!delete_rbd_objects(self, cc->arg, error) ||
        !vs_catalog_delete(snapshot_dir, cc->arg, error))
        return FALSE;
    for (guint i = 0; i < gone->len; i++) {
        VsHolder *h = g_ptr_array_index(gone, i);
        g_autoptr(GError) local = NULL;

        if (vs_holds_remove_clone(snapshot_dir, h->name, &local))
            g_message("snapshot %s: removed the folder of clone '%s' (its domain is gone)", cc->arg,
                      h->name);
        else
            g_warning("snapshot %s: %s", cc->arg, local->message);
    }
    return TRUE;
}

static void
delete_snapshot_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    GError *error = NULL;
    gboolean ok;

    vs_holds_lock();
    ok = delete_snapshot(source, data, &error);
    vs_holds_unlock();
    if (ok)
        g_task_return_boolean(task, TRUE);
    else
        g_task_return_error(task, error);
}

static void
delete_snapshot_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GDBusMethodInvocation) invocation = user_data;
    g_autoptr(GError) error = NULL;

    if (!g_task_propagate_boolean(G_TASK(result), &error))
        g_dbus_method_invocation_return_gerror(invocation, error);
    else
        vs_dbus_agent1_complete_delete_snapshot(VS_MANAGER(source)->skeleton, invocation);
}

static gboolean
handle_delete_snapshot(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *id,
                       VsManager *self)
{
    g_autoptr(GTask) task = NULL;
    VsJob *job = vs_queue_find_using(self->queue, id);

    if (job) {
        g_dbus_method_invocation_return_error(invocation, VS_ERROR, VS_ERROR_BUSY,
                                              "snapshot %s is in use by job %s (%s)", id,
                                              vs_job_get_path(job), vs_job_get_method(job));
        return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
    task = catalog_task(self, invocation, id, delete_snapshot_done);
    g_task_run_in_thread(task, delete_snapshot_thread);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* ---- getting data back ---------------------------------------------------------------- */

static gboolean
handle_clone_snapshot(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *id,
                      GVariant *options, VsManager *self)
{
    vs_clone_handle(self->queue, self->config, self->libvirt, invocation, id, options);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* ---- verify ----------------------------------------------------------------------------- */

typedef struct {
    char *id;
    gboolean deep;
} VerifyCall;

static void
verify_call_free(gpointer p)
{
    VerifyCall *vc = p;

    g_free(vc->id);
    g_free(vc);
}

/* metadata.json is read off the loop; a missing snapshot is answered at once. */
static void
verify_load_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    VsManager *self = source;
    VerifyCall *vc = data;
    GError *error = NULL;
    VsVerify *v = vs_verify_load(self->config->snapshot_dir, vc->id, &error);

    if (v)
        g_task_return_pointer(task, v, (GDestroyNotify)vs_verify_free);
    else
        g_task_return_error(task, error);
}

static void
verify_load_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GDBusMethodInvocation) invocation = user_data;
    VsManager *self = VS_MANAGER(source);
    VerifyCall *vc = g_task_get_task_data(G_TASK(result));
    g_autoptr(GError) error = NULL;
    VsVerify *v = g_task_propagate_pointer(G_TASK(result), &error);
    VsJob *job;

    if (!v) {
        g_dbus_method_invocation_return_gerror(invocation, error);
        return;
    }
    if (vc->deep && !vs_verify_deep_allowed(v, &error)) {
        vs_verify_free(v);
        g_dbus_method_invocation_return_gerror(invocation, error);
        return;
    }
    job = vs_queue_add(self->queue, vs_job_new_verify(vs_queue_take_id(self->queue), self->config,
                                                      self->libvirt, v, vc->deep));
    vs_dbus_agent1_complete_verify_snapshot(self->skeleton, invocation, vs_job_get_path(job));
    vs_queue_schedule(self->queue);
}

static gboolean
handle_verify_snapshot(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *id,
                       GVariant *options, VsManager *self)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GTask) task = NULL;
    VerifyCall *vc = g_new0(VerifyCall, 1);

    if (!vs_verify_parse_options(options, &vc->deep, &error)) {
        verify_call_free(vc);
        g_dbus_method_invocation_return_gerror(invocation, error);
        return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
    vc->id = g_strdup(id);
    task = g_task_new(self, NULL, verify_load_done, g_object_ref(invocation));
    g_task_set_task_data(task, vc, verify_call_free);
    g_task_run_in_thread(task, verify_load_thread);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* ---- revert ------------------------------------------------------------------------------ */

typedef struct {
    char *id;
    VsConfig *config;
    VsRevertOptions opts;
} RevertCall;

static void
revert_call_free(gpointer p)
{
    RevertCall *rc = p;

    g_free(rc->id);
    vs_config_free(rc->config);
    g_free(rc);
}

static GVariant *
revert_check_work(virConnectPtr conn, gpointer data, GError **error)
{
    RevertCall *rc = data;
    VsRevert *revert = vs_revert_check(conn, rc->config, rc->id, &rc->opts, error);

    /* A GVariant carries the pointer back to the main loop, as for a plan. */
    return revert ? g_variant_new_uint64((guint64)(guintptr)revert) : NULL;
}

static void
revert_check_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GDBusMethodInvocation) invocation = user_data;
    VsManager *self = VS_MANAGER(source);
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) value = g_task_propagate_pointer(G_TASK(result), &error);
    g_autoptr(VsRevert) revert = value ? (VsRevert *)(guintptr)g_variant_get_uint64(value) : NULL;
    VsJob *job;

    if (!revert || !vs_queue_check_free(self->queue, vs_revert_get_uuid(revert),
                                        vs_revert_get_domain(revert), &error)) {
        g_dbus_method_invocation_return_gerror(invocation, error);
        return;
    }
    job = vs_queue_add(self->queue, vs_job_new_revert(vs_queue_take_id(self->queue), self->config,
                                                      self->libvirt, g_steal_pointer(&revert)));
    vs_dbus_agent1_complete_revert_snapshot(self->skeleton, invocation, vs_job_get_path(job));
    vs_queue_schedule(self->queue);
}

static gboolean
handle_revert_snapshot(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *id,
                       GVariant *options, VsManager *self)
{
    RevertCall *rc = g_new0(RevertCall, 1);
    g_autoptr(GError) error = NULL;

    if (!vs_revert_options_parse(&rc->opts, options, &error)) {
        revert_call_free(rc);
        g_dbus_method_invocation_return_gerror(invocation, error);
        return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
    rc->id = g_strdup(id);
    rc->config = vs_config_copy(self->config);
    run_with_connection(self, invocation, revert_check_work, rc, revert_call_free,
                        revert_check_done);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_hook_event(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *domain,
                  const char *operation, const char *sub_operation, const char *extra,
                  VsManager *self)
{
    g_autofree char *message = NULL;
    VsJob *job = vs_queue_find_active(self->queue, domain);
    gboolean allow;

    if (job && vs_job_is_queued(job))
        job = NULL; /* a queued job holds nothing of the domain yet */
    vs_dbus_agent1_set_hook_counts(self->skeleton, vs_hook_count(self->hook_counts, operation));
    allow = vs_hook_allows(operation, job ? vs_job_get_id(job) : 0,
                           job && vs_job_holds_disks_offline(job), &message);
    /* A refused start is asked again every 250 ms while the hook waits: one line per job. */
    if (!allow && vs_job_get_id(job) != self->hook_refused_job)
        vs_log_job(G_LOG_LEVEL_MESSAGE, NULL, 0, domain, "hook: refused %s of %s: %s", operation,
                   domain, message);
    if (!allow)
        self->hook_refused_job = vs_job_get_id(job);
    vs_dbus_agent1_complete_hook_event(skeleton, invocation, allow, message);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* ---- browse: exports ------------------------------------------------------------------ */

static gboolean
handle_export_snapshot(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, const char *id,
                       GVariant *options, VsManager *self)
{
    vs_exports_handle_export(self->exports, invocation, id, options);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_list_exports(VsDbusAgent1 *skeleton, GDBusMethodInvocation *invocation, VsManager *self)
{
    g_autofree const char **paths = vs_exports_list_paths(self->exports);

    vs_dbus_agent1_complete_list_exports(skeleton, invocation, paths);
    return G_DBUS_METHOD_INVOCATION_HANDLED;
}

void
vs_manager_cancel_all(VsManager *self)
{
    vs_queue_cancel_all(self->queue);
}

gboolean
vs_manager_is_idle(VsManager *self)
{
    return vs_queue_is_idle(self->queue);
}

static void
on_job_finished(VsQueue *queue, VsJob *job, VsManager *self)
{
    /* Only a new snapshot changes what a policy's keep counts. */
    if (vs_job_made_snapshot(job)) {
        vs_queue_prune(self->queue, vs_job_get_uuid(job),
                       vs_scheduler_get_keep(self->scheduler, vs_job_get_uuid(job)));
        /* `every` counts from this success. */
        vs_scheduler_snapshot_made(self->scheduler, vs_job_get_uuid(job));
    }
}

static void
on_domain_event(VsLibvirt *libvirt, const char *name, const char *uuid, const char *event,
                const char *detail, VsManager *self)
{
    g_debug("domain event: %s %s %s", name, event, detail);
    vs_dbus_agent1_emit_domain_event(self->skeleton, name, uuid, event, detail);
}

static void
on_connected_changed(VsLibvirt *libvirt, GParamSpec *pspec, VsManager *self)
{
    vs_dbus_agent1_set_connected(self->skeleton, vs_libvirt_is_connected(libvirt));
    if (vs_libvirt_is_connected(libvirt))
        vs_queue_recover(self->queue);
}

gboolean
vs_manager_export(VsManager *self, GDBusConnection *bus, GError **error)
{
    if (!g_dbus_interface_skeleton_export(G_DBUS_INTERFACE_SKELETON(self->skeleton), bus,
                                          VS_AGENT_PATH, error))
        return FALSE;
    g_dbus_object_manager_server_set_connection(self->object_manager, bus);
    return TRUE;
}

void
vs_manager_unexport(VsManager *self)
{
    g_dbus_interface_skeleton_unexport(G_DBUS_INTERFACE_SKELETON(self->skeleton));
    g_dbus_object_manager_server_set_connection(self->object_manager, NULL);
}

static void
vs_manager_dispose(GObject *object)
{
    VsManager *self = VS_MANAGER(object);

    if (self->libvirt)
        g_signal_handlers_disconnect_by_data(self->libvirt, self);
    g_clear_object(&self->libvirt);
    g_clear_object(&self->skeleton);
    g_clear_object(&self->object_manager);
    if (self->queue)
        g_signal_handlers_disconnect_by_data(self->queue, self);
    g_clear_object(&self->queue);
    g_clear_pointer(&self->hook_counts, g_hash_table_unref);
    g_clear_object(&self->scheduler);
    g_clear_object(&self->exports);
    g_clear_object(&self->bouncer);
    G_OBJECT_CLASS(vs_manager_parent_class)->dispose(object);
}

static void
vs_manager_finalize(GObject *object)
{
    VsManager *self = VS_MANAGER(object);

    vs_config_free(self->config);
    G_OBJECT_CLASS(vs_manager_parent_class)->finalize(object);
}

static void
vs_manager_init(VsManager *self)
{
    self->hook_counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}

static void
vs_manager_class_init(VsManagerClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);

    object_class->dispose = vs_manager_dispose;
    object_class->finalize = vs_manager_finalize;
}

VsManager *
vs_manager_new(const VsConfig *config, VsLibvirt *libvirt)
{
    VsManager *self = g_object_new(VS_TYPE_MANAGER, NULL);

    self->config = vs_config_copy(config);
    self->libvirt = g_object_ref(libvirt);
    self->skeleton = vs_dbus_agent1_skeleton_new();
    self->object_manager = g_dbus_object_manager_server_new(VS_AGENT_PATH);
    self->bouncer = vs_bouncer_new();
    vs_bouncer_guard(self->bouncer, G_DBUS_INTERFACE_SKELETON(self->skeleton));
    self->queue = vs_queue_new(config, libvirt, self->object_manager, self->bouncer);
    g_signal_connect(self->queue, "job-finished", G_CALLBACK(on_job_finished), self);

    vs_dbus_agent1_set_version(self->skeleton, VS_VERSION);
    vs_dbus_agent1_set_api_version(self->skeleton, VS_API_VERSION);
    vs_dbus_agent1_set_libvirt_uri(self->skeleton, config->uri);
    vs_dbus_agent1_set_snapshot_directory(self->skeleton, config->snapshot_dir);
    vs_dbus_agent1_set_connected(self->skeleton, vs_libvirt_is_connected(libvirt));

    g_signal_connect(self->skeleton, "handle-list-domains", G_CALLBACK(handle_list_domains), self);
    g_signal_connect(self->skeleton, "handle-create-snapshot", G_CALLBACK(handle_create_snapshot),
                     self);
    g_signal_connect(self->skeleton, "handle-list-jobs", G_CALLBACK(handle_list_jobs), self);
    g_signal_connect(self->skeleton, "handle-list-snapshots", G_CALLBACK(handle_list_snapshots),
                     self);
    g_signal_connect(self->skeleton, "handle-hook-event", G_CALLBACK(handle_hook_event), self);
    g_signal_connect(self->skeleton, "handle-get-policy", G_CALLBACK(handle_get_policy), self);
    g_signal_connect(self->skeleton, "handle-set-policy", G_CALLBACK(handle_set_policy), self);
    g_signal_connect(self->skeleton, "handle-clear-policy", G_CALLBACK(handle_clear_policy), self);
    self->scheduler = vs_scheduler_new(libvirt, config->snapshot_dir, on_policy_request, self);
    vs_dbus_agent1_set_hook_counts(self->skeleton, g_variant_new("a{su}", NULL));
    g_signal_connect(self->skeleton, "handle-delete-snapshot", G_CALLBACK(handle_delete_snapshot),
                     self);
    g_signal_connect(self->skeleton, "handle-clone-snapshot", G_CALLBACK(handle_clone_snapshot),
                     self);
    self->exports = vs_exports_new(config, self->object_manager, self->bouncer);
    g_signal_connect(self->skeleton, "handle-export-snapshot", G_CALLBACK(handle_export_snapshot),
                     self);
    g_signal_connect(self->skeleton, "handle-list-exports", G_CALLBACK(handle_list_exports), self);
    /* verify */
    g_signal_connect(self->skeleton, "handle-verify-snapshot", G_CALLBACK(handle_verify_snapshot),
                     self);
    /* revert */
    g_signal_connect(self->skeleton, "handle-revert-snapshot", G_CALLBACK(handle_revert_snapshot),
                     self);
    g_signal_connect(libvirt, "domain-event", G_CALLBACK(on_domain_event), self);
    g_signal_connect(libvirt, "notify::connected", G_CALLBACK(on_connected_changed), self);
    return self;
}
