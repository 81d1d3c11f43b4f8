/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl status, domains and watch: the agent itself and the domains it sees. */
#include <glib-unix.h>
#include <stdio.h>

#include "ctl.h"
#include "vs-names.h"

int
ctl_status(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GError) error = NULL;

    /* Read now, not what the proxy cached at its start (and no agent is an error here). */
    if (!ctl_proxy_load(G_DBUS_PROXY(ctl->agent), &error))
        return ctl_fail(error);
    ctl_print_status(ctl->agent, ctl->json);
    return EXIT_OK;
}

int
ctl_domains(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GVariant) domains = NULL;
    g_autoptr(GError) error = NULL;

    if (!vs_dbus_agent1_call_list_domains_sync(ctl->agent, &domains, NULL, &error))
        return ctl_fail(error);
    ctl_print_domains(domains, inv_flag(inv, "names"), ctl->json);
    return EXIT_OK;
}

typedef struct {
    Ctl *ctl;
    GMainLoop *loop;
} Watch;

static void
on_watch_event(VsDbusAgent1 *agent, const char *domain, const char *uuid, const char *event,
               const char *detail, Watch *w)
{
    ctl_print_domain_event(domain, uuid, event, detail, w->ctl->json);
}

/* Only when Connected is among the changed values: the proxy also reports its whole cache
 * dropped when the agent leaves, and that is on_watch_owner's news, not a lost libvirt. */
static void
on_watch_props(VsDbusAgent1 *agent, GVariant *changed, GStrv invalidated, Watch *w)
{
    g_autoptr(GVariant) connected = g_variant_lookup_value(changed, "Connected", NULL);

    if (connected)
        ctl_print_connected(vs_dbus_agent1_get_connected(agent), w->ctl->json);
}

static void
on_watch_owner(GObject *proxy, GParamSpec *pspec, Watch *w)
{
    g_autofree char *owner = g_dbus_proxy_get_name_owner(G_DBUS_PROXY(proxy));

    ctl_print_agent_running(owner != NULL, w->ctl->json);
}

static gboolean
on_watch_signal(gpointer data)
{
    g_main_loop_quit(((Watch *)data)->loop);
    return G_SOURCE_REMOVE;
}

int
ctl_watch(Ctl *ctl, const Invocation *inv)
{
    g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
    g_autofree char *owner = g_dbus_proxy_get_name_owner(G_DBUS_PROXY(ctl->agent));
    Watch w = {ctl, loop};

    if (!owner) {
        g_printerr("virtsnapctl: the agent (%s) is not running\n", VS_BUS_NAME);
        return EXIT_NO_AGENT;
    }
    g_signal_connect(ctl->agent, "domain-event", G_CALLBACK(on_watch_event), &w);
    g_signal_connect(ctl->agent, "g-properties-changed", G_CALLBACK(on_watch_props), &w);
    g_signal_connect(ctl->agent, "notify::g-name-owner", G_CALLBACK(on_watch_owner), &w);
    g_unix_signal_add(SIGINT, on_watch_signal, &w);
    g_unix_signal_add(SIGTERM, on_watch_signal, &w);
    if (!ctl->json) {
        g_print("watching domain events (Ctrl-C to stop)\n");
        fflush(stdout);
    }
    g_main_loop_run(loop);
    g_signal_handlers_disconnect_by_data(ctl->agent, &w);
    return EXIT_OK;
}
