/* virtsnapctl: the command-line client of virtsnapd, over D-Bus.
 * Exit codes are part of its interface (see README.md, "Exit codes"). */
#include <gio/gio.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vs-build-config.h"
#include "vs-dbus-generated.h"
#include "vs-error.h"
#include "vs-names.h"

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_NO_AGENT = 3,
    EXIT_NOT_FOUND = 4,
    EXIT_BUSY = 5,
    EXIT_UNSUPPORTED = 6,
    EXIT_QUIESCE = 7,
    EXIT_NOT_CONNECTED = 8,
    EXIT_CANCELLED = 9,
    EXIT_DENIED = 10,
};

typedef struct {
    gboolean json;
    GDBusConnection *bus;
    VsDbusAgent1 *agent;
} Ctl;

static gboolean opt_system;
static gboolean opt_session;
static char *opt_address;
static gboolean opt_json;
static gboolean opt_version;

static const GOptionEntry global_entries[] = {
    {"system", 0, 0, G_OPTION_ARG_NONE, &opt_system,
     "Talk to the agent on the system bus (default)", NULL},
    {"session", 0, 0, G_OPTION_ARG_NONE, &opt_session, "Talk to the agent on the session bus",
     NULL},
    {"address", 'a', 0, G_OPTION_ARG_STRING, &opt_address,
     "Talk to the agent on the bus at ADDRESS", "ADDRESS"},
    {"json", 'j', 0, G_OPTION_ARG_NONE, &opt_json, "Print JSON", NULL},
    {"version", 0, 0, G_OPTION_ARG_NONE, &opt_version, "Print the version and exit", NULL},
    {NULL},
};

/* ---- errors and exit codes ------------------------------------------------------------ */

static int
exit_code_for(const GError *error)
{
    g_autofree char *remote = g_dbus_error_get_remote_error(error);

    if (g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN) ||
        g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER) ||
        g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_NO_REPLY) ||
        g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
        g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
        return EXIT_NO_AGENT;
    if (g_error_matches(error, G_DBUS_ERROR, G_DBUS_ERROR_ACCESS_DENIED))
        return EXIT_DENIED;
    if (error->domain != VS_ERROR)
        return EXIT_FAILED;
    switch (error->code) {
    case VS_ERROR_INVALID_ARGUMENT:
        return EXIT_USAGE;
    case VS_ERROR_NO_SUCH_DOMAIN:
    case VS_ERROR_NO_SUCH_DISK:
    case VS_ERROR_NO_SUCH_JOB:
    case VS_ERROR_NO_SUCH_SNAPSHOT:
        return EXIT_NOT_FOUND;
    case VS_ERROR_BUSY:
    case VS_ERROR_EXISTS:
        return EXIT_BUSY;
    case VS_ERROR_UNSUPPORTED:
    case VS_ERROR_NOT_RUNNING:
        return EXIT_UNSUPPORTED;
    case VS_ERROR_QUIESCE_FAILED:
        return EXIT_QUIESCE;
    case VS_ERROR_NOT_CONNECTED:
        return EXIT_NOT_CONNECTED;
    case VS_ERROR_CANCELLED:
        return EXIT_CANCELLED;
    case VS_ERROR_PERMISSION_DENIED:
        return EXIT_DENIED;
    default:
        return EXIT_FAILED;
    }
}

/* Prints "virtsnapctl: <message> (<D-Bus error name>)" and returns the exit code. */
static int
fail(const GError *error)
{
    g_autofree char *remote = g_dbus_error_get_remote_error(error);
    g_autoptr(GError) copy = g_error_copy(error);

    g_dbus_error_strip_remote_error(copy);
    if (remote)
        g_printerr("virtsnapctl: %s (%s)\n", copy->message, remote);
    else
        g_printerr("virtsnapctl: %s\n", copy->message);
    return exit_code_for(error);
}

static int usage_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static int
usage_error(const char *fmt, ...)
{
    va_list args;
    g_autofree char *msg = NULL;

    va_start(args, fmt);
    msg = g_strdup_vprintf(fmt, args);
    va_end(args);
    g_printerr("virtsnapctl: %s\nTry 'virtsnapctl --help'.\n", msg);
    return EXIT_USAGE;
}

/* ---- output helpers --------------------------------------------------------------------- */

static void
print_json_variant(GVariant *value)
{
    g_autoptr(JsonNode) node = json_gvariant_serialize(value);
    g_autofree char *text = json_to_string(node, FALSE);

    g_print("%s\n", text);
    fflush(stdout);
}

static const char *
dict_str(GVariant *dict, const char *key)
{
    const char *value = NULL;

    if (!g_variant_lookup(dict, key, "&s", &value))
        return "";
    return value;
}

static gboolean
dict_bool(GVariant *dict, const char *key)
{
    gboolean value = FALSE;

    g_variant_lookup(dict, key, "b", &value);
    return value;
}

/* ---- commands --------------------------------------------------------------------------- */

static int
cmd_status(Ctl *ctl, int argc, char **argv)
{
    g_autoptr(GVariant) props = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = g_dbus_connection_call_sync(
        ctl->bus, VS_BUS_NAME, VS_AGENT_PATH, "org.freedesktop.DBus.Properties", "GetAll",
        g_variant_new("(s)", VS_AGENT_INTERFACE), G_VARIANT_TYPE("(a{sv})"), G_DBUS_CALL_FLAGS_NONE,
        -1, NULL, &error);

    if (!reply)
        return fail(error);
    props = g_variant_get_child_value(reply, 0);
    if (ctl->json) {
        print_json_variant(props);
        return EXIT_OK;
    }
    {
        gboolean connected = FALSE;

        g_variant_lookup(props, "Connected", "b", &connected);
        g_print("version:   %s\n", dict_str(props, "Version"));
        g_print("libvirt:   %s (%s)\n", dict_str(props, "LibvirtUri"),
                connected ? "connected" : "not connected");
        g_print("snapshots: %s\n", dict_str(props, "SnapshotDirectory"));
    }
    return EXIT_OK;
}

static int
cmd_domains(Ctl *ctl, int argc, char **argv)
{
    g_autoptr(GVariant) domains = NULL;
    g_autoptr(GError) error = NULL;
    GVariantIter iter;
    GVariant *dom;

    if (argc > 1)
        return usage_error("domains takes no arguments");
    if (!vs_dbus_agent1_call_list_domains_sync(ctl->agent, &domains, NULL, &error))
        return fail(error);
    if (ctl->json) {
        print_json_variant(domains);
        return EXIT_OK;
    }
    g_print("%-24s %-10s %-10s %-6s %s\n", "NAME", "STATE", "PERSISTENT", "AGENT", "DISKS");
    g_variant_iter_init(&iter, domains);
    while ((dom = g_variant_iter_next_value(&iter))) {
        g_autoptr(GVariant) owned = dom;
        g_autoptr(GVariant) disks = g_variant_lookup_value(dom, "disks", G_VARIANT_TYPE("aa{sv}"));
        g_autoptr(GString) disk_text = g_string_new(NULL);
        const char *agent = !dict_bool(dom, "agent-channel")    ? "-"
                            : dict_bool(dom, "agent-connected") ? "yes"
                                                                : "no";

        for (gsize i = 0; disks && i < g_variant_n_children(disks); i++) {
            g_autoptr(GVariant) disk = g_variant_get_child_value(disks, i);
            const char *format = dict_str(disk, "format");
            const char *protocol = dict_str(disk, "protocol");

            g_string_append_printf(disk_text, "%s%s:%s", i ? " " : "", dict_str(disk, "target"),
                                   *protocol ? protocol
                                             : (*format ? format : dict_str(disk, "type")));
        }
        g_print("%-24s %-10s %-10s %-6s %s\n", dict_str(dom, "name"), dict_str(dom, "state"),
                dict_bool(dom, "persistent") ? "yes" : "no", agent, disk_text->str);
    }
    return EXIT_OK;
}

typedef struct {
    Ctl *ctl;
    GMainLoop *loop;
} Watch;

static char *
now_text(void)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();

    return g_date_time_format(now, "%Y-%m-%dT%H:%M:%S.%fZ");
}

static void
on_watch_event(VsDbusAgent1 *agent, const char *domain, const char *uuid, const char *event,
               const char *detail, Watch *w)
{
    g_autofree char *when = now_text();

    if (w->ctl->json) {
        print_json_variant(g_variant_new_parsed(
            "{'time': <%s>, 'domain': <%s>, 'uuid': <%s>, 'event': <%s>, 'detail': <%s>}", when,
            domain, uuid, event, detail));
        return;
    }
    g_print("%s  %-24s %-12s %s\n", when, domain, event, detail);
    fflush(stdout);
}

static void
on_watch_props(GDBusProxy *proxy, GVariant *changed, GStrv invalidated, Watch *w)
{
    gboolean connected;
    g_autofree char *when = now_text();

    if (!g_variant_lookup(changed, "Connected", "b", &connected))
        return;
    if (w->ctl->json)
        print_json_variant(
            g_variant_new_parsed("{'time': <%s>, 'connected': <%b>}", when, connected));
    else
        g_print("%s  (agent %s libvirt)\n", when, connected ? "reconnected to" : "lost");
    fflush(stdout);
}

static void
on_watch_owner(GObject *proxy, GParamSpec *pspec, Watch *w)
{
    g_autofree char *owner = g_dbus_proxy_get_name_owner(G_DBUS_PROXY(proxy));
    g_autofree char *when = now_text();

    if (w->ctl->json)
        print_json_variant(
            g_variant_new_parsed("{'time': <%s>, 'agent-running': <%b>}", when, owner != NULL));
    else
        g_print("%s  (agent %s)\n", when, owner ? "started" : "went away");
    fflush(stdout);
}

static gboolean
on_watch_signal(gpointer data)
{
    g_main_loop_quit(((Watch *)data)->loop);
    return G_SOURCE_REMOVE;
}

static int
cmd_watch(Ctl *ctl, int argc, char **argv)
{
    g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
    g_autofree char *owner = g_dbus_proxy_get_name_owner(G_DBUS_PROXY(ctl->agent));
    Watch w = {ctl, loop};

    if (argc > 1)
        return usage_error("watch takes no arguments");
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

/* ---- main ------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(Ctl *ctl, int argc, char **argv);
} Command;

static const Command commands[] = {
    {"status", "", "Show the agent's version and libvirt connection", cmd_status},
    {"domains", "", "List libvirt domains with their disks", cmd_domains},
    {"watch", "", "Print domain lifecycle events as they happen", cmd_watch},
};

static char *
command_summary(void)
{
    GString *s = g_string_new("Commands:\n");

    for (guint i = 0; i < G_N_ELEMENTS(commands); i++)
        g_string_append_printf(s, "  %-10s %-40s %s\n", commands[i].name, commands[i].args,
                               commands[i].help);
    return g_string_free(s, FALSE);
}

static GDBusConnection *
open_bus(GError **error)
{
    if (opt_address)
        return g_dbus_connection_new_for_address_sync(
            opt_address,
            G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
            NULL, NULL, error);
    return g_bus_get_sync(opt_session ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM, NULL, error);
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) context = g_option_context_new("COMMAND [ARGS...]");
    g_autoptr(GError) error = NULL;
    g_autoptr(GDBusConnection) bus = NULL;
    g_autoptr(VsDbusAgent1) agent = NULL;
    g_autofree char *summary = command_summary();
    const Command *command = NULL;
    Ctl ctl = {0};

    setlocale(LC_ALL, "");
    g_option_context_add_main_entries(context, global_entries, NULL);
    g_option_context_set_strict_posix(context, TRUE);
    g_option_context_set_summary(context, "Take and manage snapshots of libvirt domains.");
    g_option_context_set_description(context, summary);
    if (!g_option_context_parse(context, &argc, &argv, &error))
        return usage_error("%s", error->message);
    if (opt_version) {
        g_print("virtsnapctl %s\n", VS_VERSION);
        return EXIT_OK;
    }
    if (argc < 2)
        return usage_error("no command given");
    if ((opt_system + opt_session + (opt_address != NULL)) > 1)
        return usage_error("--system, --session and --address exclude each other");
    for (guint i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            command = &commands[i];
    }
    if (!command)
        return usage_error("unknown command '%s'", argv[1]);

    (void)vs_error_quark(); /* so remote errors come back as VsError */
    bus = open_bus(&error);
    if (!bus) {
        g_printerr("virtsnapctl: cannot connect to the bus: %s\n", error->message);
        return EXIT_NO_AGENT;
    }
    agent = vs_dbus_agent1_proxy_new_sync(bus, G_DBUS_PROXY_FLAGS_NONE, VS_BUS_NAME, VS_AGENT_PATH,
                                          NULL, &error);
    if (!agent)
        return fail(error);
    ctl.json = opt_json;
    ctl.bus = bus;
    ctl.agent = agent;
    return command->run(&ctl, argc - 1, argv + 1);
}
