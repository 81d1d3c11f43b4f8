/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnap-hook: the libvirt qemu hook (/etc/libvirt/hooks/qemu.d/virtsnap). It forwards each
 * call to the agent (Agent1.HookEvent) and exits with the agent's verdict.
 *
 * libvirtd waits for us before it goes on, so this program never talks to libvirt (that would
 * deadlock) and never takes longer than its timeout: one deadline bounds the connection, the
 * call and the reading of stdin together. A missing or silent agent allows everything: it must
 * never keep a guest from starting. */
#include <fcntl.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "vs-names.h"

#define DEFAULT_TIMEOUT_MS 2000
#define MAX_TIMEOUT_MS     600000
/* Arguments come from libvirt, or from whoever runs us by hand: they are cut and made valid
 * UTF-8 so that any of them fits in a D-Bus string. */
#define ARG_MAX_BYTES 4096

typedef struct {
    GMainLoop *loop;
    GCancellable *cancellable;
    GVariant *call_args;
    int timeout_ms;
    gint64 deadline; /* monotonic, µs */
    gboolean stdin_done;
    gboolean answered;
    gboolean allow;
    char *message; /* the agent's, with its refusal */
    char *problem; /* why we could not ask the agent */
} Hook;

static void
hook_check_done(Hook *hook)
{
    if (hook->answered && hook->stdin_done)
        g_main_loop_quit(hook->loop);
}

static int
remaining_ms(Hook *hook)
{
    gint64 left = hook->deadline - g_get_monotonic_time();

    return left > 0 ? (int)MAX(left / 1000, 1) : 1;
}

/* libvirt writes the domain XML on stdin and waits until it is written: read it all, keep
 * none of it (the agent does not need it), so memory stays bounded whatever comes. */
static gboolean
on_stdin(int fd, GIOCondition condition, gpointer data)
{
    Hook *hook = data;
    char buf[65536];

    if (condition & (G_IO_IN | G_IO_HUP)) {
        ssize_t n = read(fd, buf, sizeof buf);

        if (n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN)))
            return G_SOURCE_CONTINUE;
    }
    hook->stdin_done = TRUE;
    hook_check_done(hook);
    return G_SOURCE_REMOVE;
}

static void
hook_give_up(Hook *hook, const char *why)
{
    if (hook->answered)
        return;
    hook->answered = TRUE;
    hook->allow = TRUE;
    hook->problem = g_strdup(why ? why : "");
    hook_check_done(hook);
}

static void
on_reply(GObject *source, GAsyncResult *result, gpointer data)
{
    Hook *hook = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = NULL;
    g_autofree char *message = NULL;

    reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &error);
    if (!reply) {
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            hook_give_up(hook, error->message);
        return;
    }
    g_variant_get(reply, "(bs)", &hook->allow, &message);
    hook->message = g_steal_pointer(&message);
    hook->answered = TRUE;
    hook_check_done(hook);
}

static void
on_connected(GObject *source, GAsyncResult *result, gpointer data)
{
    Hook *hook = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GDBusConnection) bus = g_dbus_connection_new_for_address_finish(result, &error);

    if (!bus) {
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            hook_give_up(hook, error->message);
        return;
    }
    /* NO_AUTO_START: activating the agent could take longer than libvirtd should wait. */
    g_dbus_connection_call(bus, VS_BUS_NAME, VS_AGENT_PATH, VS_AGENT_INTERFACE, "HookEvent",
                           g_steal_pointer(&hook->call_args), G_VARIANT_TYPE("(bs)"),
                           G_DBUS_CALL_FLAGS_NO_AUTO_START, remaining_ms(hook), hook->cancellable,
                           on_reply, hook);
}

static gboolean
on_deadline(gpointer data)
{
    Hook *hook = data;
    g_autofree char *why = g_strdup_printf("no answer within %d ms", hook->timeout_ms);

    g_cancellable_cancel(hook->cancellable);
    hook_give_up(hook, why);
    /* Still reading stdin: stop here, the deadline is the deadline. */
    g_main_loop_quit(hook->loop);
    return G_SOURCE_REMOVE;
}

static int
parse_timeout_ms(void)
{
    const char *text = g_getenv("VIRTSNAP_HOOK_TIMEOUT_MS");
    guint64 value = 0;

    if (!text || !g_ascii_string_to_unsigned(text, 10, 1, MAX_TIMEOUT_MS, &value, NULL))
        return DEFAULT_TIMEOUT_MS;
    return (int)value;
}

static char *
safe_arg(int argc, char **argv, int i)
{
    const char *arg = i < argc ? argv[i] : "";

    return g_utf8_make_valid(arg, MIN(strlen(arg), ARG_MAX_BYTES));
}

/* libvirtd runs us with open stdio, but a caller that closed one would have the bus socket
 * take its number: our stderr text would then go into the D-Bus stream. */
static void
ensure_stdio_open(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) < 0)
            _exit(0);
    }
}

int
main(int argc, char **argv)
{
    g_autoptr(GMainLoop) loop = NULL;
    g_autoptr(GCancellable) cancellable = g_cancellable_new();
    g_autofree char *domain = safe_arg(argc, argv, 1);
    g_autofree char *operation = safe_arg(argc, argv, 2);
    g_autofree char *sub_operation = safe_arg(argc, argv, 3);
    g_autofree char *extra = safe_arg(argc, argv, 4);
    g_autofree char *address = NULL;
    g_autofree char *message = NULL;
    g_autofree char *problem = NULL;
    g_autoptr(GSource) timer = NULL;
    g_autoptr(GSource) input = NULL;
    g_autoptr(GError) error = NULL;
    Hook hook = {.cancellable = cancellable};

    hook.deadline = g_get_monotonic_time();
    /* First of all: the main context's wakeup fd must not become our stdin. */
    ensure_stdio_open();
    setlocale(LC_ALL, "");
    /* A closed stderr must not kill us with SIGPIPE: libvirtd would take that as a refusal. */
    signal(SIGPIPE, SIG_IGN);
    /* For migrate and restore libvirtd reads stdout as a replacement domain XML. */
    g_log_writer_default_set_use_stderr(TRUE);

    loop = g_main_loop_new(NULL, FALSE);
    hook.loop = loop;
    hook.timeout_ms = parse_timeout_ms();
    hook.deadline += (gint64)hook.timeout_ms * 1000;
    hook.call_args =
        g_variant_ref_sink(g_variant_new("(ssss)", domain, operation, sub_operation, extra));

    if (argc < 3) {
        g_printerr("usage: virtsnap-hook DOMAIN OPERATION SUB-OPERATION EXTRA (a libvirt qemu "
                   "hook); allowing\n");
        hook_give_up(&hook, NULL);
    } else if (g_getenv("VIRTSNAP_HOOK_BUS_ADDRESS")) {
        address = g_strdup(g_getenv("VIRTSNAP_HOOK_BUS_ADDRESS"));
    } else {
        address = g_dbus_address_get_for_bus_sync(G_BUS_TYPE_SYSTEM, NULL, &error);
        if (!address)
            hook_give_up(&hook, error->message);
    }
    if (address)
        g_dbus_connection_new_for_address(address,
                                          G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
                                              G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
                                          NULL, cancellable, on_connected, &hook);

    timer = g_timeout_source_new(remaining_ms(&hook));
    g_source_set_priority(timer, G_PRIORITY_HIGH);
    g_source_set_callback(timer, on_deadline, &hook, NULL);
    g_source_attach(timer, NULL);
    /* Below the D-Bus reply, so that an endless stdin cannot starve it. */
    input = g_unix_fd_source_new(0, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_priority(input, G_PRIORITY_LOW);
    g_source_set_callback(input, G_SOURCE_FUNC(on_stdin), &hook, NULL);
    g_source_attach(input, NULL);

    g_main_loop_run(loop);
    g_source_destroy(timer);
    g_source_destroy(input);
    g_clear_pointer(&hook.call_args, g_variant_unref);
    message = g_steal_pointer(&hook.message);
    problem = g_steal_pointer(&hook.problem);

    if (!hook.allow) {
        g_printerr("%s\n", message && *message ? message : "virtsnap: the agent refused this");
        return 1;
    }
    if (problem && *problem)
        g_printerr("virtsnap-hook: allowing %s of %s: could not ask the agent (%s): %s\n",
                   operation, domain, VS_BUS_NAME, problem);
    return 0;
}
