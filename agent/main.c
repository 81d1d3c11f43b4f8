/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapd: options, the bus, the libvirt connection, the main loop, shutdown. */
#include <glib-unix.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vs-build-config.h"
#include "vs-config.h"
#include "vs-dirs.h"
#include "vs-job-verify.h"
#include "vs-error.h"
#include "vs-fault.h"
#include "vs-libvirt.h"
#include "vs-manager.h"
#include "vs-bus.h"
#include "vs-names.h"
#include "vs-virt-util.h"

static gboolean opt_version;
static gboolean opt_verbose;
static gboolean opt_session;
static char *opt_address;
static char *opt_config;
static char *opt_uri;
static char *opt_snapshot_dir;
static char *opt_state_dir;

static const GOptionEntry entries[] = {
    {"version", 0, 0, G_OPTION_ARG_NONE, &opt_version, "Print the version and exit", NULL},
    {"verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose, "Log debug messages", NULL},
    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &opt_config,
     "Configuration file (default " VS_DEFAULT_CONFIG ")", "FILE"},
    {"session", 0, 0, G_OPTION_ARG_NONE, &opt_session, "Use the session bus, not the system bus",
     NULL},
    {"bus-address", 0, 0, G_OPTION_ARG_STRING, &opt_address, "Use the bus at ADDRESS", "ADDRESS"},
    {"uri", 0, 0, G_OPTION_ARG_STRING, &opt_uri, "libvirt URI (overrides the configuration)",
     "URI"},
    {"snapshot-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_snapshot_dir,
     "Snapshot directory (overrides the configuration)", "DIR"},
    {"state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_state_dir,
     "State directory (overrides the configuration)", "DIR"},
    {NULL},
};

/* How long shutdown waits for running jobs to undo their work. */
#define SHUTDOWN_GRACE_S 60

typedef struct {
    GMainLoop *loop;
    VsManager *manager;
    gint64 deadline;
    int exit_code;
} Daemon;

static gboolean
check_idle(gpointer data)
{
    Daemon *d = data;

    if (vs_manager_is_idle(d->manager) || g_get_monotonic_time() > d->deadline) {
        if (!vs_manager_is_idle(d->manager))
            g_warning("jobs still running after %d s; their journal records stay for the next "
                      "start",
                      SHUTDOWN_GRACE_S);
        g_main_loop_quit(d->loop);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

/* SIGTERM/SIGINT: running jobs are cancelled, which undoes their changes (thaw,
 * define, remove files); the loop ends when they have. A second signal ends it now. */
static gboolean
on_signal(gpointer data)
{
    Daemon *d = data;

    if (d->deadline) {
        g_main_loop_quit(d->loop);
        return G_SOURCE_CONTINUE;
    }
    g_message("shutting down");
    d->deadline = g_get_monotonic_time() + SHUTDOWN_GRACE_S * G_USEC_PER_SEC;
    vs_manager_cancel_all(d->manager);
    if (check_idle(d))
        g_timeout_add(100, check_idle, d);
    return G_SOURCE_CONTINUE;
}

static void
on_name_acquired(GDBusConnection *bus, const char *name, gpointer data)
{
    g_message("ready: %s on the bus", name);
}

static void
on_name_lost(GDBusConnection *bus, const char *name, gpointer data)
{
    Daemon *d = data;

    g_warning("could not own %s on the bus (another virtsnapd, or not allowed by bus policy)",
              name);
    d->exit_code = 3;
    g_main_loop_quit(d->loop);
}

/* Start-up errors go to the log (the journal under systemd), like every other message. */
static int
startup_failed(const GError *error, int code)
{
    g_warning("%s", error->message);
    return code;
}

static void
replace_str(char **slot, const char *value)
{
    g_free(*slot);
    *slot = g_strdup(value);
}

static void
silent_libvirt_errors(void *data, virErrorPtr err)
{
    /* libvirt's default handler prints every error; ours are reported where they matter. */
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) context = g_option_context_new("- live snapshots of libvirt domains");
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(VsConfig) config = NULL;
    g_autoptr(GDBusConnection) bus = NULL;
    g_autoptr(VsLibvirt) libvirt = NULL;
    g_autoptr(VsManager) manager = NULL;
    g_autoptr(GMainLoop) loop = NULL;
    Daemon d = {0};
    guint owner_id;

    setlocale(LC_ALL, "");
    /* Everything we write holds guest data or names guests: ours alone. QEMU still reaches a
     * copy target, because libvirt (dynamic_ownership) chowns it to the QEMU user for the copy
     * and gives it back when the copy ends; the directories are opened up on purpose
     * (vs-dirs.c). qemu-img, our child, inherits this mask. */
    umask(0077);
    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("virtsnapd: %s\n", error->message);
        return 2;
    }
    if (opt_version) {
        g_print("virtsnapd %s (API %d)\n", VS_VERSION, VS_API_VERSION);
        return 0;
    }
    if (opt_verbose)
        g_setenv("G_MESSAGES_DEBUG", G_LOG_DOMAIN, TRUE);
#ifdef VS_FAULT_INJECTION
    if (!vs_fault_arm(&error))
        return startup_failed(error, 2);
#endif

    config = vs_config_load(opt_config ? opt_config : VS_DEFAULT_CONFIG, opt_config != NULL,
                            warnings, &error);
    if (!config)
        return startup_failed(error, 2);
    for (guint i = 0; i < warnings->len; i++)
        g_warning("configuration: %s", (char *)g_ptr_array_index(warnings, i));
    if (opt_uri)
        replace_str(&config->uri, opt_uri);
    if (opt_snapshot_dir)
        replace_str(&config->snapshot_dir, opt_snapshot_dir);
    if (opt_state_dir)
        replace_str(&config->state_dir, opt_state_dir);
    if (!g_path_is_absolute(config->snapshot_dir) || !g_path_is_absolute(config->state_dir)) {
        g_warning("the snapshot and state directories must be absolute paths");
        return 2;
    }
    /* As root, the URI is a system libvirtd's, whose QEMU runs as another user. */
    if (!vs_dirs_prepare(config->snapshot_dir, config->state_dir,
                         geteuid() == 0 && !strstr(config->uri, "/session"), &error))
        return startup_failed(error, 1);
    vs_verify_sweep(config->snapshot_dir); /* before any job: no verification runs yet */

    (void)vs_error_quark(); /* registers the D-Bus error names */
    virSetErrorFunc(NULL, silent_libvirt_errors);
    vs_libvirt_init_event_loop();

    bus = vs_bus_open(opt_address, opt_session, &error);
    if (!bus) {
        g_warning("cannot connect to the bus: %s", error->message);
        return 1;
    }
    g_dbus_connection_set_exit_on_close(bus, FALSE);

    libvirt = vs_libvirt_new(config->uri);
    manager = vs_manager_new(config, libvirt);
    if (!vs_manager_export(manager, bus, &error))
        return startup_failed(error, 1);

    loop = g_main_loop_new(NULL, FALSE);
    d.loop = loop;
    d.manager = manager;
    g_unix_signal_add(SIGTERM, on_signal, &d);
    g_unix_signal_add(SIGINT, on_signal, &d);

    vs_libvirt_start(libvirt);
    owner_id = g_bus_own_name_on_connection(bus, VS_BUS_NAME, G_BUS_NAME_OWNER_FLAGS_NONE,
                                            on_name_acquired, on_name_lost, &d, NULL);
    g_main_loop_run(loop);

    g_bus_unown_name(owner_id);
    vs_manager_unexport(manager);
    g_dbus_connection_flush_sync(bus, NULL, NULL);
    return d.exit_code;
}
