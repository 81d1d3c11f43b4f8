/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The scheduler keeps, per domain, its policy and at most one timer. Policies are read
 * in worker threads (libvirt calls); timers exist only for running domains with an
 * `every` policy, so an agent with no such domain has no timer at all. The policies
 * themselves are stored by vs-policy.c; pruning to `keep` is done by vs-queue.c. */
#include "vs-scheduler.h"
#include "vs-log.h"
#include "vs-error.h"
#include "vs-names.h"
#include "vs-options.h"
#include "vs-virt-util.h"

#include <gio/gio.h>
#include <string.h>

typedef struct {
    char *uuid;
    char *name;
    VsPolicy *policy; /* NULL when unreadable */
    char *problem;
    gboolean running;
    guint timer;
} Entry;

struct _VsScheduler {
    GObject parent;
    VsLibvirt *libvirt;
    char *snapshot_dir;
    VsSnapshotRequestFunc request;
    gpointer request_data;
    GHashTable *entries; /* uuid -> Entry */
    gulong event_handler, connected_handler;
};

G_DEFINE_TYPE(VsScheduler, vs_scheduler, G_TYPE_OBJECT)

static void
entry_free(gpointer p)
{
    Entry *e = p;

    g_clear_handle_id(&e->timer, g_source_remove);
    g_free(e->uuid);
    g_free(e->name);
    vs_policy_free(e->policy);
    g_free(e->problem);
    g_free(e);
}

/* ---- timers ---------------------------------------------------------------------------- */

static GVariant *
policy_options(const VsPolicy *policy, const char *method)
{
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    if (method)
        g_variant_builder_add(&b, "{sv}", VS_OPT_METHOD, g_variant_new_string(method));
    if (policy->quiesce)
        g_variant_builder_add(&b, "{sv}", VS_OPT_QUIESCE, g_variant_new_string(policy->quiesce));
    if (policy->format)
        g_variant_builder_add(&b, "{sv}", VS_OPT_FORMAT, g_variant_new_string(policy->format));
    return g_variant_builder_end(&b);
}

static void schedule(VsScheduler *self, Entry *e);

typedef struct {
    VsScheduler *self;
    char *uuid;
} TimerData;

static void
timer_data_free(gpointer p)
{
    TimerData *t = p;

    g_free(t->uuid);
    g_free(t);
}

static gboolean
on_timer(gpointer data)
{
    TimerData *t = data;
    Entry *e = g_hash_table_lookup(t->self->entries, t->uuid);

    if (!e)
        return G_SOURCE_REMOVE;
    e->timer = 0;
    if (e->policy && e->running)
        t->self->request(e->name, policy_options(e->policy, e->policy->method), "policy every",
                         t->self->request_data);
    schedule(t->self, e);
    return G_SOURCE_REMOVE;
}

/* Timed snapshots wander by up to a tenth of the interval (at most 5 minutes) so that
 * many domains with the same policy do not all start at once. */
static void
schedule(VsScheduler *self, Entry *e)
{
    guint64 ms, jitter;
    TimerData *t;

    g_clear_handle_id(&e->timer, g_source_remove);
    if (!e->policy || !e->policy->every_s || !e->running)
        return;
    ms = e->policy->every_s * 1000;
    jitter = MIN(ms / 10, 300000);
    if (jitter)
        ms = ms - jitter / 2 + g_random_int_range(0, (gint32)MIN(jitter, G_MAXINT32));
    t = g_new0(TimerData, 1);
    t->self = self;
    t->uuid = g_strdup(e->uuid);
    e->timer = g_timeout_add_full(G_PRIORITY_DEFAULT, (guint)MIN(ms, G_MAXUINT), on_timer, t,
                                  timer_data_free);
}

/* ---- loading policies -------------------------------------------------------------------- */

typedef struct {
    char *uuid;
    char *name;
    gboolean running;
    VsPolicy *policy;
    char *problem;
} Loaded;

static void
loaded_free(gpointer p)
{
    Loaded *l = p;

    g_free(l->uuid);
    g_free(l->name);
    vs_policy_free(l->policy);
    g_free(l->problem);
    g_free(l);
}

static Loaded *
load_one(virDomainPtr dom)
{
    Loaded *l = g_new0(Loaded, 1);
    char uuid[VIR_UUID_STRING_BUFLEN] = "";
    g_autoptr(GError) error = NULL;

    virDomainGetUUIDString(dom, uuid);
    l->uuid = g_strdup(uuid);
    l->name = g_strdup(virDomainGetName(dom));
    l->running = virDomainIsActive(dom) == 1;
    l->policy = vs_policy_read(dom, &error);
    if (!l->policy)
        l->problem = g_strdup(error->message);
    return l;
}

typedef struct {
    virConnectPtr conn;
    char *domain; /* NULL: all */
} LoadJob;

static void
load_job_free(gpointer p)
{
    LoadJob *j = p;

    virConnectClose(j->conn);
    g_free(j->domain);
    g_free(j);
}

static void
load_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    LoadJob *j = data;
    GPtrArray *out = g_ptr_array_new_with_free_func(loaded_free);

    if (j->domain) {
        g_autoptr(virDomain) dom = vs_lookup_domain(j->conn, j->domain, NULL);

        if (dom)
            g_ptr_array_add(out, load_one(dom));
    } else {
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(j->conn, &doms, 0);

        for (int i = 0; i < n; i++) {
            g_ptr_array_add(out, load_one(doms[i]));
            virDomainFree(doms[i]);
        }
        g_free(doms);
    }
    g_task_return_pointer(task, out, (GDestroyNotify)g_ptr_array_unref);
}

static void
load_done(GObject *source, GAsyncResult *result, gpointer data)
{
    VsScheduler *self = VS_SCHEDULER(source);
    LoadJob *j = g_task_get_task_data(G_TASK(result));
    g_autoptr(GPtrArray) loaded = g_task_propagate_pointer(G_TASK(result), NULL);

    if (!loaded)
        return;
    if (!j->domain)
        g_hash_table_remove_all(self->entries);
    else if (loaded->len == 0) {
        /* Gone (undefined): forget it, by name or UUID. */
        GHashTableIter iter;
        Entry *e;

        g_hash_table_iter_init(&iter, self->entries);
        while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&e)) {
            if (g_strcmp0(e->name, j->domain) == 0 || g_strcmp0(e->uuid, j->domain) == 0)
                g_hash_table_iter_remove(&iter);
        }
    }
    for (guint i = 0; i < loaded->len; i++) {
        Loaded *l = g_ptr_array_index(loaded, i);
        Entry *e = g_new0(Entry, 1);

        e->uuid = g_steal_pointer(&l->uuid);
        e->name = g_steal_pointer(&l->name);
        e->running = l->running;
        e->policy = g_steal_pointer(&l->policy);
        e->problem = g_steal_pointer(&l->problem);
        if (e->problem)
            vs_log_job(G_LOG_LEVEL_WARNING, NULL, 0, e->name, "domain %s: policy ignored: %s",
                       e->name, e->problem);
        g_hash_table_replace(self->entries, g_strdup(e->uuid), e);
        schedule(self, e);
    }
}

void
vs_scheduler_reload(VsScheduler *self, const char *domain)
{
    g_autoptr(GTask) task = NULL;
    virConnectPtr conn = vs_libvirt_get_connection(self->libvirt, NULL);
    LoadJob *j;

    if (!conn)
        return; /* reloaded in full at the next connect */
    j = g_new0(LoadJob, 1);
    j->conn = conn;
    j->domain = g_strdup(domain);
    task = g_task_new(self, NULL, load_done, NULL);
    g_task_set_task_data(task, j, load_job_free);
    g_task_run_in_thread(task, load_thread);
}

/* ---- events ------------------------------------------------------------------------------ */

static void
on_domain_event(VsLibvirt *libvirt, const char *name, const char *uuid, const char *event,
                const char *detail, VsScheduler *self)
{
    Entry *e = g_hash_table_lookup(self->entries, uuid);

    if (strcmp(event, "defined") == 0 || strcmp(event, "undefined") == 0) {
        vs_scheduler_reload(self, strcmp(event, "defined") == 0 ? uuid : name);
        return;
    }
    if (!e)
        return;
    if (strcmp(event, "started") == 0 || strcmp(event, "resumed") == 0) {
        if (!e->running) {
            e->running = TRUE;
            schedule(self, e);
        }
    } else if (strcmp(event, "stopped") == 0) {
        e->running = FALSE;
        schedule(self, e); /* cancels the timer */
        /* A managed save (ours, for a cold snapshot, or anyone's) or a migration is not
         * the end of the guest's run. */
        if (e->policy && e->policy->on_stop && strcmp(detail, "saved") != 0 &&
            strcmp(detail, "migrated") != 0 && strcmp(detail, "from-snapshot") != 0)
            self->request(e->name, policy_options(e->policy, vs_method_name(VS_METHOD_AUTO)),
                          "policy on-stop", self->request_data);
    }
}

static void
on_connected(VsLibvirt *libvirt, GParamSpec *pspec, VsScheduler *self)
{
    if (vs_libvirt_is_connected(libvirt))
        vs_scheduler_reload(self, NULL);
}

/* ---- keep -------------------------------------------------------------------------------- */

guint
vs_scheduler_get_keep(VsScheduler *self, const char *uuid)
{
    Entry *e = g_hash_table_lookup(self->entries, uuid);

    return e && e->policy ? e->policy->keep : 0;
}

/* ---- object ------------------------------------------------------------------------------ */

static void
vs_scheduler_dispose(GObject *object)
{
    VsScheduler *self = VS_SCHEDULER(object);

    if (self->event_handler)
        g_clear_signal_handler(&self->event_handler, self->libvirt);
    if (self->connected_handler)
        g_clear_signal_handler(&self->connected_handler, self->libvirt);
    g_clear_object(&self->libvirt);
    g_clear_pointer(&self->entries, g_hash_table_unref);
    G_OBJECT_CLASS(vs_scheduler_parent_class)->dispose(object);
}

static void
vs_scheduler_finalize(GObject *object)
{
    g_free(VS_SCHEDULER(object)->snapshot_dir);
    G_OBJECT_CLASS(vs_scheduler_parent_class)->finalize(object);
}

static void
vs_scheduler_init(VsScheduler *self)
{
    self->entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
}

static void
vs_scheduler_class_init(VsSchedulerClass *klass)
{
    G_OBJECT_CLASS(klass)->dispose = vs_scheduler_dispose;
    G_OBJECT_CLASS(klass)->finalize = vs_scheduler_finalize;
}

VsScheduler *
vs_scheduler_new(VsLibvirt *libvirt, const char *snapshot_dir, VsSnapshotRequestFunc request,
                 gpointer data)
{
    VsScheduler *self = g_object_new(VS_TYPE_SCHEDULER, NULL);

    self->libvirt = g_object_ref(libvirt);
    self->snapshot_dir = g_strdup(snapshot_dir);
    self->request = request;
    self->request_data = data;
    self->event_handler =
        g_signal_connect(libvirt, "domain-event", G_CALLBACK(on_domain_event), self);
    self->connected_handler =
        g_signal_connect(libvirt, "notify::connected", G_CALLBACK(on_connected), self);
    if (vs_libvirt_is_connected(libvirt))
        vs_scheduler_reload(self, NULL);
    return self;
}
