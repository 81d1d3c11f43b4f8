/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The job engine: the org.virtsnap.Job1 object and the walk through its method's steps
 * (vs-job-live.c, vs-job-cold.c, vs-job-rbd.c). vs_job_method_next_step() decides what
 * follows a step; every failure and cancel goes through undo (vs-job-undo.c). Blocking
 * calls run in GTask threads; steps report their end through job->step_done. */
#include "vs-job-private.h"
#include "vs-job-verify.h"
#include "vs-catalog.h"
#include "vs-clone.h"
#include "vs-build-config.h"
#include "vs-error.h"
#include "vs-fault.h"
#include "vs-names.h"
#include "vs-result.h"
#include "vs-revert.h"
#include "vs-util.h"
#include "vs-virt-util.h"

#include <string.h>

G_DEFINE_TYPE(VsJob, vs_job, G_TYPE_OBJECT)

enum { SIGNAL_FINISHED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void enter_phase(VsJob *job, VsPhase phase);
static void fail(VsJob *job, GError *error);
static gboolean resume_later(VsJob *job, GError *error);

static const VsJobStep *
current_step(VsJob *job)
{
    return vs_job_method_step(job->method, job->phase);
}

/* Goes on to the step that follows: the one place that decides it is the method's table
 * (vs_job_method_next_step); a step that is not wanted for this job is passed over. */
static void
advance(VsJob *job, VsOutcome outcome)
{
    VsPhase next = vs_job_method_next_step(job->method, job->phase, outcome);
    const VsJobStep *step;

    while ((step = vs_job_method_step(job->method, next)) && step->wanted && !step->wanted(job))
        next = vs_job_method_next_step(job->method, next, VS_OUTCOME_OK);
    enter_phase(job, next);
}

/* job->step_done: a step ended, with @error (taken) or without. */
static void
step_complete(VsJob *job, GError *error)
{
    if (job->phase == VS_PHASE_UNDO || job->phase == VS_PHASE_ENDED) {
        g_clear_error(&error); /* undo has its own completion */
        return;
    }
#ifdef VS_FAULT_INJECTION
    if (!error)
        error = vs_fault_step_succeeded(vs_dbus_job1_get_method(job->iface), job->phase);
#endif
    if (error) {
        if (resume_later(job, error))
            return;
        fail(job, error);
        return;
    }
    if (job->cancel_requested) {
        fail(job, g_error_new(VS_ERROR, VS_ERROR_CANCELLED, "cancelled"));
        return;
    }
    advance(job, VS_OUTCOME_OK);
}

static void
step_thread_done(GObject *source, GAsyncResult *result, gpointer data)
{
    GError *error = NULL;

    g_task_propagate_boolean(G_TASK(result), &error);
    step_complete(VS_JOB(source), error);
}

/* ---- ending --------------------------------------------------------------------------- */

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
    job->phase = VS_PHASE_ENDED;
    g_clear_handle_id(&job->progress_source, g_source_remove);
    g_clear_handle_id(&job->watchdog_source, g_source_remove);
    if (job->block_job_handler)
        g_clear_signal_handler(&job->block_job_handler, job->libvirt);
    if (job->connected_handler)
        g_clear_signal_handler(&job->connected_handler, job->libvirt);
    if (strcmp(state, VS_STATE_SUCCEEDED) == 0) {
        vs_dbus_job1_set_result(
            job->iface,
            vs_result_dbus(job->facts, job->method->result_fields,
                           vs_now_ms() - (job->t_requested ? job->t_requested : job->t_start)));
        vs_job_set_progress(job, 1.0, vs_dbus_job1_get_bytes_total(job->iface),
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
    vs_dbus_job1_set_phase(job->iface, vs_phase_name(VS_PHASE_DONE));
    vs_dbus_job1_set_finished(job->iface, g_get_real_time());
    vs_dbus_job1_set_state(job->iface, state);
    log_outcome(job, state);
    /* The domain connection and the cluster's images are not needed any more. */
    g_clear_pointer(&job->undo_conn, virConnectClose);
    for (guint i = 0; job->disks && i < job->disks->len; i++)
        g_clear_pointer(&vs_job_disk(job, i)->src, vs_rbd_close);
    for (guint i = 0; job->rbd_disks && i < job->rbd_disks->len; i++)
        g_clear_pointer(&((VsJobDisk *)g_ptr_array_index(job->rbd_disks, i))->src, vs_rbd_close);
    g_signal_emit(job, signals[SIGNAL_FINISHED], 0);
}

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
        finish(job, vs_job_end_state(FALSE, job->cancel_requested, TRUE));
        return;
    }
    if (job->undo_notes->len && job->error) {
        GError *e = job->error;

        job->error =
            g_error_new(e->domain, e->code, "%s (cleanup: %s)", e->message, job->undo_notes->str);
        g_error_free(e);
    }
    finish(job, vs_job_end_state(FALSE, job->cancel_requested, FALSE));
}

static void
undo_start(VsJob *job)
{
    if (job->undo_conn || job->resume_conn)
        return; /* already under way; or after the resume (resume_done) */
    job->undo_conn = vs_libvirt_get_connection(job->libvirt, NULL);
    if (!job->undo_conn) {
        JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "cleanup waits for libvirt to come back");
        return;
    }
    vs_job_run_in_thread(job, vs_job_undo_thread, undo_done);
}

/* ---- libvirtd went away and came back --------------------------------------------------- */

/* The job's own connection (the plan's) is dead: libvirtd went away under it. A local
 * check, no call. */
static gboolean
conn_lost(VsJob *job)
{
    return job->plan && job->plan->conn && virConnectIsAlive(job->plan->conn) != 1;
}

/* Worker thread: the domain again on the new connection, then the step's own stock-taking. */
static gboolean
resume_thread(VsJob *job, GError **error)
{
    const VsJobStep *step = vs_job_method_step(job->method, job->resume_phase);
    virDomainPtr dom = virDomainLookupByUUIDString(job->resume_conn, job->uuid);

    if (!dom)
        return vs_set_libvirt_error(error, "looking up '%s' again", job->domain);
    g_mutex_lock(&job->lock);
    /* The old handle stays alive until the job goes: a progress query may be using it. Its
     * domain holds the dead connection. */
    g_ptr_array_add(job->stale_doms, job->plan->dom);
    virConnectClose(job->plan->conn);
    virConnectRef(job->resume_conn);
    job->plan->conn = job->resume_conn;
    job->plan->dom = dom;
    g_mutex_unlock(&job->lock);
    return step->resume(job, error);
}

static void resume_start(VsJob *job);

static void
resume_done(GObject *source, GAsyncResult *result, gpointer data)
{
    VsJob *job = VS_JOB(source);
    GError *error = NULL;
    const VsJobStep *step;
    gboolean lost_again;

    g_task_propagate_boolean(G_TASK(result), &error);
    /* Gone again means the new connection died too; a failure on a live one (the domain
     * gone with its QEMU, say) is the job's failure, never a reason to try once more. */
    lost_again = job->resume_conn && virConnectIsAlive(job->resume_conn) != 1;
    g_clear_pointer(&job->resume_conn, virConnectClose);
    if (job->phase != job->resume_phase) { /* failed or cancelled meanwhile: undo's turn */
        g_clear_error(&error);
        if (job->phase == VS_PHASE_UNDO)
            undo_start(job);
        return;
    }
    if (error && lost_again) { /* gone again: wait for the next connection */
        JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "resume: %s", error->message);
        g_error_free(error);
        resume_start(job);
        return;
    }
    job->resume_wait = FALSE;
    if (error) {
        fail(job, error);
        return;
    }
    if (job->cancel_requested) {
        fail(job, g_error_new(VS_ERROR, VS_ERROR_CANCELLED, "cancelled"));
        return;
    }
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE, "libvirt is back: phase %s goes on",
            vs_phase_name(job->phase));
    step = current_step(job);
    g_clear_handle_id(&job->progress_source, g_source_remove);
    g_clear_handle_id(&job->watchdog_source, g_source_remove);
    if (step->thread)
        vs_job_run_in_thread(job, step->thread, step_thread_done);
    else
        step->start(job);
}

/* Once libvirt is back on a new connection (now, or at the next notify::connected). */
static void
resume_start(VsJob *job)
{
    const VsJobStep *step = current_step(job);
    virConnectPtr conn;

    if (!step || !step->resume || !conn_lost(job)) {
        job->resume_wait = FALSE; /* nothing to resume: the job's connection is alive */
        return;
    }
    if (job->resume_conn || !(conn = vs_libvirt_get_connection(job->libvirt, NULL)))
        return;
    if (conn == job->plan->conn || virConnectIsAlive(conn) != 1) {
        virConnectClose(conn); /* the loss is not noticed yet: the reconnect follows */
        return;
    }
    job->resume_conn = conn;
    job->resume_phase = job->phase;
    /* The first window's watchdog must not claim the thaw of the window taken again. */
    g_clear_handle_id(&job->watchdog_source, g_source_remove);
    vs_job_run_in_thread(job, resume_thread, resume_done);
}

/* A step that failed because libvirtd went away under it resumes on the next connection
 * when it knows how (its resume function); any other failure is a failure. */
static gboolean
resume_later(VsJob *job, GError *error)
{
    const VsJobStep *step = current_step(job);

    if (!step || !step->resume || job->cancel_requested || !conn_lost(job))
        return FALSE;
    JOB_LOG(job, G_LOG_LEVEL_MESSAGE,
            "libvirt went away in phase %s (%s): resuming when it is back",
            vs_phase_name(job->phase), error->message);
    g_error_free(error);
    job->resume_wait = TRUE;
    resume_start(job);
    return TRUE;
}

static void
on_connected_changed(VsLibvirt *libvirt, GParamSpec *pspec, VsJob *job)
{
    if (!vs_libvirt_is_connected(libvirt))
        return;
    const VsJobStep *step = current_step(job);

    if (job->phase == VS_PHASE_UNDO) {
        undo_start(job);
    } else if (job->resume_wait) {
        resume_start(job);
    } else if (step && (step->flags & VS_STEP_WAITS_EVENTS) && step->resume) {
        /* Events sent while we were away are lost: the step takes stock on the new
         * connection (a READY in between shows in the live XML) and waits on. */
        job->resume_wait = TRUE;
        resume_start(job);
    } else if (step && (step->flags & VS_STEP_WAITS_EVENTS)) {
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
    if (job->phase == VS_PHASE_UNDO || job->phase == VS_PHASE_ENDED)
        return;
    g_clear_handle_id(&job->progress_source, g_source_remove);
    if (job->phase != VS_PHASE_QUEUED)
        g_cancellable_cancel(job->cancellable);
    advance(job, job->cancel_requested ? VS_OUTCOME_CANCELLED : VS_OUTCOME_FAILED);
}

static void
enter_phase(VsJob *job, VsPhase phase)
{
    const VsJobStep *step;

    if (phase == VS_PHASE_ENDED) { /* ended before it began */
        finish(job, vs_job_end_state(FALSE, job->cancel_requested, FALSE));
        return;
    }
    job->phase = phase;
    vs_dbus_job1_set_phase(job->iface, vs_phase_name(phase));
    JOB_LOG(job, G_LOG_LEVEL_DEBUG, "phase %s", vs_phase_name(phase));

    if (phase == VS_PHASE_DONE) {
        finish(job, vs_job_end_state(TRUE, FALSE, FALSE));
        return;
    }
    if (phase == VS_PHASE_UNDO) {
        g_clear_handle_id(&job->watchdog_source, g_source_remove);
        undo_start(job);
        return;
    }
    step = current_step(job);
    g_return_if_fail(step != NULL);
    job->undo_parts |= step->undo;
#ifdef VS_FAULT_INJECTION
    {
        GError *fault = vs_fault_step_entered(vs_dbus_job1_get_method(job->iface), phase);

        if (fault) { /* fails before its work, with the step's undo parts */
            fail(job, fault);
            return;
        }
    }
#endif
    if (step->enter)
        step->enter(job);
    if (step->thread)
        vs_job_run_in_thread(job, step->thread, step_thread_done);
    else
        step->start(job);
}

static void
on_block_job(VsLibvirt *libvirt, const char *uuid, const char *target, int type, int status,
             VsJob *job)
{
    if (job->plan && g_strcmp0(uuid, job->uuid) == 0)
        job->method->block_job(job, target, status);
}

static void
job_disk_free(gpointer p)
{
    VsJobDisk *d = p;

    g_clear_pointer(&d->src, vs_rbd_close);
    g_free(d->delta);
    g_free(d->image);
    g_free(d->part);
    g_free(d);
}

/* ---- public ----------------------------------------------------------------------------- */

void
vs_job_start(VsJob *self)
{
    g_return_if_fail(self->phase == VS_PHASE_QUEUED);

    self->t_start = vs_now_ms();
    vs_dbus_job1_set_state(self->iface, VS_STATE_RUNNING);
    if (!self->recovery)
        vs_log_job(G_LOG_LEVEL_MESSAGE, VS_MSGID_JOB_STARTED, self->id, self->domain,
                   "started (%s)", vs_dbus_job1_get_method(self->iface));
    self->connected_handler = g_signal_connect(self->libvirt, "notify::connected",
                                               G_CALLBACK(on_connected_changed), self);
    if (self->method->block_job)
        self->block_job_handler =
            g_signal_connect(self->libvirt, "block-job", G_CALLBACK(on_block_job), self);
    advance(self, VS_OUTCOME_OK);
}

void
vs_job_cancel(VsJob *self)
{
    const VsJobStep *step = current_step(self);

    if (self->phase == VS_PHASE_ENDED || self->phase == VS_PHASE_UNDO ||
        self->phase == VS_PHASE_DONE || (step && (step->flags & VS_STEP_NOT_CANCELLABLE)))
        return;
    JOB_LOG(self, G_LOG_LEVEL_MESSAGE, "cancel requested in phase %s", vs_phase_name(self->phase));
    self->cancel_requested = TRUE;
    /* Kills a running qemu-img; a libvirt call in a thread finishes first, and the
     * freeze window always runs to its thaw. */
    if (!step || !(step->flags & VS_STEP_RUNS_TO_END))
        g_cancellable_cancel(self->cancellable);
    if (self->phase == VS_PHASE_QUEUED || self->resume_wait ||
        (step && (step->flags & VS_STEP_WAITS_EVENTS)))
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
    return self->phase == VS_PHASE_ENDED;
}

gboolean
vs_job_succeeded(VsJob *self)
{
    return self->phase == VS_PHASE_ENDED &&
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
    const VsJobStep *step = current_step(self);

    /* Our own virDomainCreate (restore, or undo's restart) must pass the hook. */
    return step && (step->flags & VS_STEP_DISKS_OFFLINE);
}

gboolean
vs_job_made_snapshot(VsJob *self)
{
    /* A revert's safety snapshot does not count: pruning right after it could remove the
     * very snapshot just put back, the oldest one, which is seldom what a user wants. */
    return self->plan && !self->revert && vs_job_succeeded(self);
}

const char *
vs_job_get_method(VsJob *self)
{
    return vs_dbus_job1_get_method(self->iface);
}

gboolean
vs_job_uses_snapshot(VsJob *self, const char *id)
{
    /* A snapshot job's own id; a clone's source; a revert's safety snapshot and the
     * snapshot it puts back (its journal names both). A verification holds nothing: a
     * delete wins, and the verification ends NoSuchSnapshot. */
    if (self->verify)
        return FALSE;
    if (g_strcmp0(self->snapshot_id, id) == 0)
        return TRUE;
    return self->journal && g_strcmp0(self->journal->revert_of, id) == 0;
}

gboolean
vs_job_touches_domain(VsJob *self)
{
    return !self->domain_untouched;
}

gboolean
vs_job_is_queued(VsJob *self)
{
    return self->phase == VS_PHASE_QUEUED;
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
    g_clear_pointer(&self->resume_conn, virConnectClose);
    g_clear_pointer(&self->stale_doms, g_ptr_array_unref);
    g_clear_pointer(&self->disks, g_ptr_array_unref);
    g_clear_pointer(&self->rbd_disks, g_ptr_array_unref);
    g_clear_pointer(&self->plan, vs_plan_free);
    g_clear_pointer(&self->clone_plan, vs_clone_plan_free);
    g_clear_pointer(&self->clone_plan_disks, g_ptr_array_unref);
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
    g_clear_pointer(&self->facts, g_variant_unref);
    vs_config_free(self->config);
    g_clear_pointer(&self->verify, vs_verify_free);
    g_clear_pointer(&self->revert, vs_revert_free);
    G_OBJECT_CLASS(vs_job_parent_class)->finalize(object);
}

static void
stale_dom_free(gpointer dom)
{
    virDomainFree(dom);
}

static void
vs_job_init(VsJob *self)
{
    g_mutex_init(&self->lock);
    self->cancellable = g_cancellable_new();
    self->undo_notes = g_string_new(NULL);
    self->stale_doms = g_ptr_array_new_with_free_func(stale_dom_free);
    self->step_done = step_complete;
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

VsJob *
vs_job_new_common(guint id, const VsConfig *config, VsLibvirt *libvirt, const char *domain,
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
    vs_dbus_job1_set_phase(self->iface, vs_phase_name(VS_PHASE_QUEUED));
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
    VsJob *self = vs_job_new_common(id, config, libvirt, plan->name, plan->uuid);

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

    self->method = plan->method == VS_METHOD_RBD     ? &vs_job_method_rbd
                   : plan->method == VS_METHOD_MIXED ? &vs_job_method_mixed
                   : plan->method != VS_METHOD_COLD  ? &vs_job_method_live
                   : plan->active                    ? &vs_job_method_cold
                                                     : &vs_job_method_offline;
    self->flatten = self->opts.flatten < 0 ? config->rbd.flatten : self->opts.flatten;
    self->disks = g_ptr_array_new_with_free_func(job_disk_free);
    if (plan->method == VS_METHOD_MIXED)
        self->rbd_disks = g_ptr_array_new_with_free_func(job_disk_free);
    for (guint i = 0; i < plan->disks->len; i++) {
        VsJobDisk *d = g_new0(VsJobDisk, 1);
        const char *ext = vs_format_name(self->opts.format);

        d->plan = g_ptr_array_index(plan->disks, i);
        d->image = g_strdup_printf("%s/%s.%s", self->folder, d->plan->target, ext);
        d->part = g_strdup_printf("%s.part", d->image);
        d->size = d->plan->capacity;
        if (d->plan->rbd) {
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
        if (plan->method == VS_METHOD_COLD || d->plan->rbd)
            d->delta = NULL; /* cold reads the disk's own chain; rbd copies nothing here */
        else if (self->opts.copy == VS_COPY_DIRECT)
            d->delta = g_strdup(d->part);
        else
            d->delta = g_strdup_printf("%s/%s.delta.qcow2", self->folder, d->plan->target);
        g_ptr_array_add(d->plan->rbd && self->rbd_disks ? self->rbd_disks : self->disks, d);
    }
    vs_dbus_job1_set_method(self->iface, vs_method_name(plan->method));
    vs_dbus_job1_set_method_reason(self->iface, plan->method_reason);
    return self;
}

VsJob *
vs_job_new_recovery(guint id, const VsConfig *config, VsLibvirt *libvirt, VsJournalEntry *entry)
{
    VsJob *self = vs_job_new_common(id, config, libvirt, entry->domain, entry->uuid);

    /* A clone job's folder is the clone's (vs-clone.h). */
    g_autofree char *expected =
        entry->clone_name ? vs_clone_partial_dir(config->snapshot_dir, entry->clone_name)
                          : vs_catalog_partial_dir(config->snapshot_dir, entry->snapshot_id);

    self->recovery = TRUE;
    self->method = &vs_job_method_recovery;
    self->undo_parts = VS_UNDO_ALL;
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
