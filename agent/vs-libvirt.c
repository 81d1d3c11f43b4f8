/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Owns the libvirt connection. Opening it is a blocking RPC, so it happens in a
 * GTask thread; events arrive on the GLib main loop through libvirt-glib. While
 * connected there are no timers at all: a dead libvirtd is noticed through the
 * connection's close callback, and only then does a backoff timer run. */
#include "vs-libvirt.h"
#include "vs-error.h"
#include "vs-virt-util.h"

#include <gio/gio.h>
#include <libvirt-glib/libvirt-glib.h>

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000

struct _VsLibvirt {
    GObject parent;
    char *uri;
    virConnectPtr conn;
    int callback_ids[3];
    gboolean connecting;
    guint retry_source;
    guint backoff_ms;
    gboolean disposed;
};

G_DEFINE_TYPE(VsLibvirt, vs_libvirt, G_TYPE_OBJECT)

enum { PROP_0, PROP_CONNECTED, N_PROPS };
static GParamSpec *props[N_PROPS];

enum { SIGNAL_DOMAIN_EVENT, SIGNAL_BLOCK_JOB, SIGNAL_AGENT_EVENT, N_SIGNALS };
static guint signals[N_SIGNALS];

static void connect_async(VsLibvirt *self);

void
vs_libvirt_init_event_loop(void)
{
    gvir_event_register();
}

static int
on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
    VsLibvirt *self = opaque;
    char uuid[VIR_UUID_STRING_BUFLEN] = "";

    virDomainGetUUIDString(dom, uuid);
    g_signal_emit(self, signals[SIGNAL_DOMAIN_EVENT], 0, virDomainGetName(dom), uuid,
                  vs_lifecycle_event_name(event), vs_lifecycle_detail_name(event, detail));
    return 0;
}

static void
on_block_job(virConnectPtr conn, virDomainPtr dom, const char *target, int type, int status,
             void *opaque)
{
    VsLibvirt *self = opaque;
    char uuid[VIR_UUID_STRING_BUFLEN] = "";

    virDomainGetUUIDString(dom, uuid);
    g_debug("block job event: %s %s type=%d status=%d", virDomainGetName(dom), target, type,
            status);
    g_signal_emit(self, signals[SIGNAL_BLOCK_JOB], 0, uuid, target, type, status);
}

static void
on_agent_lifecycle(virConnectPtr conn, virDomainPtr dom, int state, int reason, void *opaque)
{
    VsLibvirt *self = opaque;
    char uuid[VIR_UUID_STRING_BUFLEN] = "";

    virDomainGetUUIDString(dom, uuid);
    g_signal_emit(self, signals[SIGNAL_AGENT_EVENT], 0, uuid, state, reason);
}

static void
set_connected(VsLibvirt *self, virConnectPtr conn)
{
    self->conn = conn;
    g_object_notify_by_pspec(G_OBJECT(self), props[PROP_CONNECTED]);
}

static gboolean
retry_cb(gpointer data)
{
    VsLibvirt *self = data;

    self->retry_source = 0;
    connect_async(self);
    return G_SOURCE_REMOVE;
}

static void
schedule_retry(VsLibvirt *self)
{
    if (self->disposed || self->retry_source)
        return;
    self->backoff_ms =
        self->backoff_ms ? MIN(self->backoff_ms * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
    self->retry_source = g_timeout_add(self->backoff_ms, retry_cb, self);
}

static void
drop_connection(VsLibvirt *self)
{
    virConnectPtr conn = g_steal_pointer(&self->conn);

    if (!conn)
        return;
    for (guint i = 0; i < G_N_ELEMENTS(self->callback_ids); i++) {
        if (self->callback_ids[i] >= 0)
            virConnectDomainEventDeregisterAny(conn, self->callback_ids[i]);
        self->callback_ids[i] = -1;
    }
    virConnectUnregisterCloseCallback(conn, NULL);
    virConnectClose(conn);
    virResetLastError();
    g_object_notify_by_pspec(G_OBJECT(self), props[PROP_CONNECTED]);
}

static gboolean
reconnect_idle(gpointer data)
{
    g_autoptr(VsLibvirt) self = data;

    if (self->disposed)
        return G_SOURCE_REMOVE;
    drop_connection(self);
    self->backoff_ms = 0;
    schedule_retry(self);
    return G_SOURCE_REMOVE;
}

static void
on_close(virConnectPtr conn, int reason, void *opaque)
{
    VsLibvirt *self = opaque;

    g_message("libvirt connection to %s closed (reason %d); reconnecting", self->uri, reason);
    /* Tearing the connection down from inside its own close callback is not allowed. */
    g_idle_add(reconnect_idle, g_object_ref(self));
}

static void
close_connection(gpointer conn)
{
    virConnectClose(conn);
}

static void
open_thread(GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
    const char *uri = task_data;
    virConnectPtr conn = virConnectOpen(uri);
    GError *error = NULL;

    if (!conn) {
        vs_set_libvirt_error(&error, "cannot connect to %s", uri);
        g_task_return_error(task, error);
        return;
    }
    g_task_return_pointer(task, conn, close_connection);
}

static gboolean
register_callbacks(VsLibvirt *self, virConnectPtr conn, GError **error)
{
    self->callback_ids[0] =
        virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                         VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), self, NULL);
    self->callback_ids[1] =
        virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
                                         VIR_DOMAIN_EVENT_CALLBACK(on_block_job), self, NULL);
    self->callback_ids[2] =
        virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
                                         VIR_DOMAIN_EVENT_CALLBACK(on_agent_lifecycle), self, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(self->callback_ids); i++) {
        if (self->callback_ids[i] < 0)
            return vs_set_libvirt_error(error, "cannot register libvirt events");
    }
    if (virConnectRegisterCloseCallback(conn, on_close, self, NULL) < 0)
        return vs_set_libvirt_error(error, "cannot register libvirt close callback");
    return TRUE;
}

static void
open_done(GObject *source, GAsyncResult *result, gpointer data)
{
    g_autoptr(VsLibvirt) self = data;
    g_autoptr(GError) error = NULL;
    virConnectPtr conn = g_task_propagate_pointer(G_TASK(result), &error);

    self->connecting = FALSE;
    if (self->disposed) {
        if (conn)
            virConnectClose(conn);
        return;
    }
    if (!conn) {
        if (self->backoff_ms <= BACKOFF_MIN_MS)
            g_warning("%s", error->message);
        else
            g_debug("%s", error->message);
        schedule_retry(self);
        return;
    }
    if (!register_callbacks(self, conn, &error)) {
        g_warning("%s", error->message);
        self->conn = conn;
        drop_connection(self);
        schedule_retry(self);
        return;
    }
    g_message("connected to %s", self->uri);
    self->backoff_ms = 0;
    set_connected(self, conn);
}

static void
connect_async(VsLibvirt *self)
{
    g_autoptr(GTask) task = NULL;

    if (self->connecting || self->conn || self->disposed)
        return;
    self->connecting = TRUE;
    task = g_task_new(NULL, NULL, open_done, g_object_ref(self));
    g_task_set_task_data(task, g_strdup(self->uri), g_free);
    g_task_run_in_thread(task, open_thread);
}

void
vs_libvirt_start(VsLibvirt *self)
{
    connect_async(self);
}

const char *
vs_libvirt_get_uri(VsLibvirt *self)
{
    return self->uri;
}

gboolean
vs_libvirt_is_connected(VsLibvirt *self)
{
    return self->conn != NULL;
}

virConnectPtr
vs_libvirt_get_connection(VsLibvirt *self, GError **error)
{
    if (!self->conn) {
        g_set_error(error, VS_ERROR, VS_ERROR_NOT_CONNECTED,
                    "not connected to libvirt (%s); retrying in the background", self->uri);
        return NULL;
    }
    virConnectRef(self->conn);
    return self->conn;
}

static void
vs_libvirt_get_property(GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
    VsLibvirt *self = VS_LIBVIRT(object);

    switch (prop_id) {
    case PROP_CONNECTED:
        g_value_set_boolean(value, self->conn != NULL);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    }
}

static void
vs_libvirt_dispose(GObject *object)
{
    VsLibvirt *self = VS_LIBVIRT(object);

    self->disposed = TRUE;
    g_clear_handle_id(&self->retry_source, g_source_remove);
    if (self->conn) {
        g_signal_handlers_destroy(object);
        drop_connection(self);
    }
    G_OBJECT_CLASS(vs_libvirt_parent_class)->dispose(object);
}

static void
vs_libvirt_finalize(GObject *object)
{
    VsLibvirt *self = VS_LIBVIRT(object);

    g_free(self->uri);
    G_OBJECT_CLASS(vs_libvirt_parent_class)->finalize(object);
}

static void
vs_libvirt_init(VsLibvirt *self)
{
    for (guint i = 0; i < G_N_ELEMENTS(self->callback_ids); i++)
        self->callback_ids[i] = -1;
}

static void
vs_libvirt_class_init(VsLibvirtClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);

    object_class->get_property = vs_libvirt_get_property;
    object_class->dispose = vs_libvirt_dispose;
    object_class->finalize = vs_libvirt_finalize;

    props[PROP_CONNECTED] = g_param_spec_boolean("connected", NULL, NULL, FALSE,
                                                 G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
    g_object_class_install_properties(object_class, N_PROPS, props);

    signals[SIGNAL_DOMAIN_EVENT] = g_signal_new(
        "domain-event", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
        G_TYPE_NONE, 4, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING);
    signals[SIGNAL_BLOCK_JOB] =
        g_signal_new("block-job", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                     G_TYPE_NONE, 4, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_INT, G_TYPE_INT);
    signals[SIGNAL_AGENT_EVENT] =
        g_signal_new("agent-event", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                     NULL, G_TYPE_NONE, 3, G_TYPE_STRING, G_TYPE_INT, G_TYPE_INT);
}

VsLibvirt *
vs_libvirt_new(const char *uri)
{
    VsLibvirt *self = g_object_new(VS_TYPE_LIBVIRT, NULL);

    self->uri = g_strdup(uri);
    return self;
}
