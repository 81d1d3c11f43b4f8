/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The scheduler keeps, per domain, its policy and when its next timed snapshot is due.
 * Policies are read in worker threads (libvirt calls). `every` counts on the wall clock
 * from the domain's last successful snapshot in the catalog, so that neither an agent
 * restart, a domain start nor a libvirt reconnect resets it, and a slot missed while the
 * agent was down (or the host suspended) is caught up once. One timerfd on CLOCK_REALTIME,
 * armed for the earliest due time of the running domains, wakes us: a monotonic timer
 * would stand still across a suspend. With no such domain it is disarmed: an idle agent
 * never wakes. The policies themselves are stored by vs-policy.c; pruning to `keep` is
 * done by vs-queue.c. */
#include "vs-scheduler.h"
#include "vs-catalog.h"
#include "vs-log.h"
#include "vs-error.h"
#include "vs-names.h"
#include "vs-options.h"
#include "vs-virt-util.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

typedef struct {
    char *uuid;
    char *name;
    VsPolicy *policy; /* NULL when unreadable */
    char *problem;
    gboolean running;
    gint64 last_us; /* creation time of its last successful snapshot; 0: none */
    gint64 due_us;  /* next timed snapshot, wall clock; 0: none (no `every`) */
} Entry;

struct _VsScheduler {
    GObject parent;
    VsLibvirt *libvirt;
    char *snapshot_dir;
    VsSnapshotRequestFunc request;
    gpointer request_data;
    GHashTable *entries; /* uuid -> Entry */
    gulong event_handler, connected_handler;
    int timer_fd; /* CLOCK_REALTIME; -1 if it could not be made */
    guint timer_source;
    gint64 armed_us; /* what timer_fd is armed for; 0: disarmed */
};

G_DEFINE_TYPE(VsScheduler, vs_scheduler, G_TYPE_OBJECT)

static void
entry_free(gpointer p)
{
    Entry *e = p;

    g_free(e->uuid);
    g_free(e->name);
    vs_policy_free(e->policy);
    g_free(e->problem);
    g_free(e);
}

/* ---- when ------------------------------------------------------------------------------ */

gint64
vs_schedule_due(gint64 last_us, gint64 every_us, gint64 jitter_us, gint64 now_us)
{
    gint64 due = (last_us > 0 ? last_us : now_us) + every_us + jitter_us;

    return MAX(due, now_us);
}

/* Timed snapshots wander by up to a tenth of the interval (at most 5 minutes) so that
 * many domains with the same policy do not all start at once. */
static gint64
pick_jitter_us(gint64 every_us)
{
    gint64 spread = MIN(every_us / 10, (gint64)300 * G_USEC_PER_SEC);

    if (spread <= 0)
        return 0;
    return g_random_int_range(0, (gint32)MIN(spread, G_MAXINT32)) - spread / 2;
}

static gint64
every_us(const Entry *e)
{
    return e->policy ? (gint64)e->policy->every_s * G_USEC_PER_SEC : 0;
}

/* Sets @e's next due time from its last success (or now, when @from_now: a slot just
 * fired, whatever comes of its snapshot, the next try is a slot later). */
static void
plan(Entry *e, gboolean from_now)
{
    gint64 now = g_get_real_time();
    gint64 every = every_us(e);
    g_autoptr(GDateTime) when = NULL;
    g_autofree char *text = NULL;

    if (!every) {
        e->due_us = 0;
        return;
    }
    e->due_us = vs_schedule_due(from_now ? now : e->last_us, every, pick_jitter_us(every), now);
    when = g_date_time_new_from_unix_local(e->due_us / G_USEC_PER_SEC);
    text = when ? g_date_time_format_iso8601(when) : g_strdup("?");
    vs_log_job(G_LOG_LEVEL_MESSAGE, NULL, 0, e->name,
               "policy every: next snapshot of %s due %s (in %" G_GINT64_FORMAT " s)", e->name,
               text, (e->due_us - now + G_USEC_PER_SEC / 2) / G_USEC_PER_SEC);
}

/* ---- the timer --------------------------------------------------------------------------- */

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

/* Arms the timer for the earliest due time of the running domains, or disarms it. */
static void
arm(VsScheduler *self)
{
    struct itimerspec spec = {0};
    GHashTableIter iter;
    Entry *e;
    gint64 next = 0;

    g_hash_table_iter_init(&iter, self->entries);
    while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&e)) {
        if (e->running && e->due_us && (!next || e->due_us < next))
            next = e->due_us;
    }
    if (next == self->armed_us || self->timer_fd < 0)
        return;
    spec.it_value.tv_sec = next / G_USEC_PER_SEC;
    spec.it_value.tv_nsec = (next % G_USEC_PER_SEC) * 1000;
    /* CANCEL_ON_SET: a clock set by hand (or by NTP stepping it) wakes us to look again. */
    if (timerfd_settime(self->timer_fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &spec, NULL) <
        0) {
        g_warning("timerfd_settime: %s", g_strerror(errno));
        return;
    }
    self->armed_us = next;
}

static gboolean
on_timer(int fd, GIOCondition condition, gpointer data)
{
    VsScheduler *self = data;
    guint64 expirations;
    gint64 now = g_get_real_time();
    GHashTableIter iter;
    Entry *e;

    /* ECANCELED: the clock was set; the due times are wall-clock times, so we just look. */
    if (read(fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN && errno != ECANCELED)
        g_warning("timerfd read: %s", g_strerror(errno));
    self->armed_us = 0;
    g_hash_table_iter_init(&iter, self->entries);
    while (g_hash_table_iter_next(&iter, NULL, (gpointer *)&e)) {
        if (!e->running || !e->due_us || e->due_us > now)
            continue;
        self->request(e->name, policy_options(e->policy, e->policy->method), "policy every",
                      self->request_data);
        /* A failed snapshot does not count as a success: the next try is a slot later. A
         * success moves it to the snapshot's time + every (vs_scheduler_snapshot_made). */
        plan(e, TRUE);
    }
    arm(self);
    return G_SOURCE_CONTINUE;
}

/* ---- loading policies -------------------------------------------------------------------- */

typedef struct {
    char *uuid;
    char *name;
    gboolean running;
    VsPolicy *policy;
    char *problem;
    gint64 last_us;
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

/* Creation time of the last snapshot of domain @uuid in the catalog (only finished
 * snapshots are there); 0: none. Reads files: worker threads only. */
static gint64
last_success_us(const char *snapshot_dir, const char *uuid)
{
    g_autoptr(GVariant) list = g_variant_ref_sink(vs_catalog_list(snapshot_dir, uuid));
    GVariantIter iter;
    GVariant *snap;
    gint64 last = 0;

    g_variant_iter_init(&iter, list);
    while ((snap = g_variant_iter_next_value(&iter))) {
        gint64 created = 0;

        /* By UUID only: a snapshot of an earlier domain of the same name is not ours. */
        if (g_variant_lookup(snap, "created-us", "x", &created) && created > last) {
            const char *u = NULL;

            if (g_variant_lookup(snap, "uuid", "&s", &u) && g_strcmp0(u, uuid) == 0)
                last = created;
        }
        g_variant_unref(snap);
    }
    return last;
}

static Loaded *
load_one(virDomainPtr dom, const char *snapshot_dir)
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
    else if (l->policy->every_s)
        l->last_us = last_success_us(snapshot_dir, uuid);
    return l;
}

typedef struct {
    virConnectPtr conn;
    char *domain; /* NULL: all */
    char *snapshot_dir;
} LoadJob;

static void
load_job_free(gpointer p)
{
    LoadJob *j = p;

    virConnectClose(j->conn);
    g_free(j->domain);
    g_free(j->snapshot_dir);
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
            g_ptr_array_add(out, load_one(dom, j->snapshot_dir));
    } else {
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(j->conn, &doms, 0);

        for (int i = 0; i < n; i++) {
            g_ptr_array_add(out, load_one(doms[i], j->snapshot_dir));
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

    g_autoptr(GHashTable) old = NULL;

    if (!loaded)
        return;
    if (!j->domain) {
        /* Kept until the new entries have taken over their due times. */
        old = g_steal_pointer(&self->entries);
        self->entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
    } else if (loaded->len == 0) {
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
        Entry *was = g_hash_table_lookup(old ? old : self->entries, l->uuid);

        e->uuid = g_steal_pointer(&l->uuid);
        e->name = g_steal_pointer(&l->name);
        e->running = l->running;
        e->policy = g_steal_pointer(&l->policy);
        e->problem = g_steal_pointer(&l->problem);
        e->last_us = l->last_us;
        if (e->problem)
            vs_log_job(G_LOG_LEVEL_WARNING, NULL, 0, e->name, "domain %s: policy ignored: %s",
                       e->name, e->problem);
        /* A reload (reconnect, policy edit) keeps a due time that still holds: one set when a
         * slot fired, whose snapshot may still run, must not fire again. */
        if (was && was->due_us && every_us(was) == every_us(e) && was->last_us >= e->last_us) {
            e->last_us = was->last_us;
            e->due_us = was->due_us;
        } else {
            plan(e, FALSE);
        }
        g_hash_table_replace(self->entries, g_strdup(e->uuid), e);
    }
    arm(self);
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
    j->snapshot_dir = g_strdup(self->snapshot_dir);
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
            /* A slot missed while it was down is caught up now, once (its due time is past). */
            e->running = TRUE;
            arm(self);
        }
    } else if (strcmp(event, "stopped") == 0) {
        e->running = FALSE;
        arm(self); /* its due time stays */
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

/* ---- successes ------------------------------------------------------------------------- */

typedef struct {
    char *snapshot_dir;
    char *uuid;
    gint64 last_us;
} Made;

static void
made_free(gpointer p)
{
    Made *m = p;

    g_free(m->snapshot_dir);
    g_free(m->uuid);
    g_free(m);
}

static void
made_thread(GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
    Made *m = data;

    m->last_us = last_success_us(m->snapshot_dir, m->uuid);
    g_task_return_boolean(task, TRUE);
}

static void
made_done(GObject *source, GAsyncResult *result, gpointer data)
{
    VsScheduler *self = VS_SCHEDULER(source);
    Made *m = g_task_get_task_data(G_TASK(result));
    Entry *e = g_hash_table_lookup(self->entries, m->uuid);

    if (!e || !every_us(e) || m->last_us <= e->last_us)
        return;
    e->last_us = m->last_us;
    plan(e, FALSE);
    arm(self);
}

void
vs_scheduler_snapshot_made(VsScheduler *self, const char *uuid)
{
    g_autoptr(GTask) task = NULL;
    Made *m;

    if (!uuid || !g_hash_table_contains(self->entries, uuid))
        return;
    m = g_new0(Made, 1);
    m->snapshot_dir = g_strdup(self->snapshot_dir);
    m->uuid = g_strdup(uuid);
    task = g_task_new(self, NULL, made_done, NULL);
    g_task_set_task_data(task, m, made_free);
    g_task_run_in_thread(task, made_thread);
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
    g_clear_handle_id(&self->timer_source, g_source_remove);
    if (self->timer_fd >= 0)
        close(self->timer_fd);
    self->timer_fd = -1;
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
    self->timer_fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    if (self->timer_fd < 0)
        g_warning("timerfd_create: %s: no timed snapshots", g_strerror(errno));
    else
        self->timer_source = g_unix_fd_add(self->timer_fd, G_IO_IN, on_timer, self);
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
