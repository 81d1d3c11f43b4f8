/* The Agent1 object: answers method calls (the libvirt work in worker threads),
 * mirrors the connection state into properties and turns libvirt lifecycle events
 * into DomainEvent signals. */
#include "vs-manager.h"
#include "vs-dbus-generated.h"
#include "vs-error.h"
#include "vs-inventory.h"
#include "vs-names.h"
#include "vs-virt-util.h"
#include "vs-build-config.h"

struct _VsManager {
    GObject parent;
    VsConfig *config;
    VsLibvirt *libvirt;
    VsDbusAgent1 *skeleton;
    GDBusObjectManagerServer *object_manager;
};

G_DEFINE_TYPE(VsManager, vs_manager, G_TYPE_OBJECT)

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
        g_dbus_method_invocation_return_gerror(invocation, error);
        return;
    }
    w = g_new0(ConnWork, 1);
    w->conn = conn;
    w->func = func;
    w->data = data;
    w->data_free = data_free;
    task = g_task_new(self, NULL, done, g_object_ref(invocation));
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
}

static void
vs_manager_class_init(VsManagerClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);

    object_class->dispose = vs_manager_dispose;
    object_class->finalize = vs_manager_finalize;
}

static VsConfig *
config_copy(const VsConfig *config)
{
    VsConfig *copy = g_memdup2(config, sizeof(*config));

    copy->uri = g_strdup(config->uri);
    copy->snapshot_dir = g_strdup(config->snapshot_dir);
    copy->state_dir = g_strdup(config->state_dir);
    return copy;
}

VsManager *
vs_manager_new(const VsConfig *config, VsLibvirt *libvirt)
{
    VsManager *self = g_object_new(VS_TYPE_MANAGER, NULL);

    self->config = config_copy(config);
    self->libvirt = g_object_ref(libvirt);
    self->skeleton = vs_dbus_agent1_skeleton_new();
    self->object_manager = g_dbus_object_manager_server_new(VS_AGENT_PATH);

    vs_dbus_agent1_set_version(self->skeleton, VS_VERSION);
    vs_dbus_agent1_set_api_version(self->skeleton, VS_API_VERSION);
    vs_dbus_agent1_set_libvirt_uri(self->skeleton, config->uri);
    vs_dbus_agent1_set_snapshot_directory(self->skeleton, config->snapshot_dir);
    vs_dbus_agent1_set_connected(self->skeleton, vs_libvirt_is_connected(libvirt));

    g_signal_connect(self->skeleton, "handle-list-domains", G_CALLBACK(handle_list_domains), self);
    g_signal_connect(libvirt, "domain-event", G_CALLBACK(on_domain_event), self);
    g_signal_connect(libvirt, "notify::connected", G_CALLBACK(on_connected_changed), self);
    return self;
}
