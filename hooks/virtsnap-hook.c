/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnap-hook: the libvirt qemu hook (/etc/libvirt/hooks/qemu.d/virtsnap). It forwards each
 * call to the agent (Agent1.HookEvent) and exits with the agent's verdict.
 *
 * libvirtd waits for us before it goes on, so this program never talks to libvirt (that would
 * deadlock) and never takes longer than its timeout: one deadline bounds the connection, the
 * call and the reading of stdin together. A missing or silent agent allows everything: it must
 * never keep a guest from starting.
 *
 * One exception to the short deadline: a start (prepare/start) that the agent refuses because
 * a job reads the domain's disks offline (an on-stop snapshot after `virsh shutdown`, a revert,
 * a clone) waits for that read, asking again every POLL_MS, up to the wait bound, and is
 * refused only past it. The agent answers at once each time: its main loop never waits for us,
 * and each question keeps the short deadline, so an agent that stops answering still allows. */
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
/* How long a start waits for a job reading the domain's disks offline. */
#define DEFAULT_WAIT_MS 60000
#define POLL_MS         250
/* Arguments come from libvirt, or from whoever runs us by hand: they are cut and made valid
 * UTF-8 so that any of them fits in a D-Bus string. */
#define ARG_MAX_BYTES 4096

typedef struct {
    GMainLoop *loop;
    GCancellable *cancellable;
    GDBusConnection *bus;
    GVariant *call_args;
    int timeout_ms;
    gint64 deadline; /* monotonic, µs */
    GSource *deadline_source;
    gboolean may_wait;    /* a start: waits for an offline read */
    int wait_ms;          /* for at most this long */
    gint64 wait_deadline; /* monotonic, µs */
    int waited_ms;
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

static gboolean on_deadline(gpointer data);

/* (Re)starts the deadline: @ms from now. */
static void
set_deadline(Hook *hook, int ms)
{
    hook->deadline = g_get_monotonic_time() + (gint64)ms * 1000;
    if (hook->deadline_source) {
        g_source_destroy(hook->deadline_source);
        g_source_unref(hook->deadline_source);
    }
    hook->deadline_source = g_timeout_source_new(remaining_ms(hook));
    g_source_set_priority(hook->deadline_source, G_PRIORITY_HIGH);
    g_source_set_callback(hook->deadline_source, on_deadline, hook, NULL);
    g_source_attach(hook->deadline_source, NULL);
}

static void on_reply(GObject *source, GAsyncResult *result, gpointer data);

static void
ask(Hook *hook)
{
    /* NO_AUTO_START: activating the agent could take longer than libvirtd should wait. */
    g_dbus_connection_call(hook->bus, VS_BUS_NAME, VS_AGENT_PATH, VS_AGENT_INTERFACE, "HookEvent",
                           g_variant_ref(hook->call_args), G_VARIANT_TYPE("(bs)"),
                           G_DBUS_CALL_FLAGS_NO_AUTO_START, remaining_ms(hook), hook->cancellable,
                           on_reply, hook);
}

static gboolean
on_poll(gpointer data)
{
    Hook *hook = data;

    /* Each question gets the short deadline again: a silent agent still allows. */
    set_deadline(hook, hook->timeout_ms);
    ask(hook);
    return G_SOURCE_REMOVE;
}

static void
on_reply(GObject *source, GAsyncResult *result, gpointer data)
{
    Hook *hook = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = NULL;
    g_autofree char *message = NULL;
    gboolean allow;

    reply = g_dbus_connection_call_finish(G_DBUS_CONNECTION(source), result, &error);
    if (!reply) {
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            hook_give_up(hook, error->message);
        return;
    }
    g_variant_get(reply, "(bs)", &allow, &message);
    /* The agent refuses a start only while a job reads the disks offline: wait for it. */
    if (!allow && hook->may_wait) {
        gint64 now = g_get_monotonic_time();

        if (!hook->wait_deadline)
            hook->wait_deadline = now + (gint64)hook->wait_ms * 1000;
        if (now + POLL_MS * 1000 < hook->wait_deadline) {
            hook->waited_ms += POLL_MS;
            /* No deadline while we sleep: on_poll sets the next one. */
            if (hook->deadline_source) /* NULL once the deadline has given up */
                g_source_destroy(hook->deadline_source);
            g_clear_pointer(&hook->deadline_source, g_source_unref);
            g_timeout_add(POLL_MS, on_poll, hook);
            return;
        }
    }
    hook->allow = allow;
    hook->message = g_steal_pointer(&message);
    hook->answered = TRUE;
    hook_check_done(hook);
}

static void
on_connected(GObject *source, GAsyncResult *result, gpointer data)
{
    Hook *hook = data;
    g_autoptr(GError) error = NULL;

    hook->bus = g_dbus_connection_new_for_address_finish(result, &error);
    if (!hook->bus) {
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            hook_give_up(hook, error->message);
        return;
    }
    ask(hook);
}

static gboolean
on_deadline(gpointer data)
{
    Hook *hook = data;
    g_autofree char *why = g_strdup_printf("no answer within %d ms", hook->timeout_ms);

    g_clear_pointer(&hook->deadline_source, g_source_unref);
    g_cancellable_cancel(hook->cancellable);
    hook_give_up(hook, why);
    /* Still reading stdin: stop here, the deadline is the deadline. */
    g_main_loop_quit(hook->loop);
    return G_SOURCE_REMOVE;
}

static int
parse_ms(const char *variable, guint64 min, int fallback)
{
    const char *text = g_getenv(variable);
    guint64 value = 0;

    if (!text || !g_ascii_string_to_unsigned(text, 10, min, MAX_TIMEOUT_MS, &value, NULL))
        return fallback;
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
    g_autoptr(GSource) input = NULL;
    g_autoptr(GError) error = NULL;
    Hook hook = {.cancellable = cancellable};

    /* First of all: the main context's wakeup fd must not become our stdin. */
    ensure_stdio_open();
    setlocale(LC_ALL, "");
    /* A closed stderr must not kill us with SIGPIPE: libvirtd would take that as a refusal. */
    signal(SIGPIPE, SIG_IGN);
    /* For migrate and restore libvirtd reads stdout as a replacement domain XML. */
    g_log_writer_default_set_use_stderr(TRUE);

    loop = g_main_loop_new(NULL, FALSE);
    hook.loop = loop;
    hook.timeout_ms = parse_ms("VIRTSNAP_HOOK_TIMEOUT_MS", 1, DEFAULT_TIMEOUT_MS);
    hook.wait_ms = parse_ms("VIRTSNAP_HOOK_WAIT_MS", 0, DEFAULT_WAIT_MS);
    hook.may_wait = g_strcmp0(operation, "prepare") == 0 || g_strcmp0(operation, "start") == 0;
    set_deadline(&hook, hook.timeout_ms);
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

    /* Below the D-Bus reply, so that an endless stdin cannot starve it. */
    input = g_unix_fd_source_new(0, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_priority(input, G_PRIORITY_LOW);
    g_source_set_callback(input, G_SOURCE_FUNC(on_stdin), &hook, NULL);
    g_source_attach(input, NULL);

    g_main_loop_run(loop);
    if (hook.deadline_source)
        g_source_destroy(hook.deadline_source);
    g_clear_pointer(&hook.deadline_source, g_source_unref);
    g_source_destroy(input);
    g_clear_pointer(&hook.call_args, g_variant_unref);
    g_clear_object(&hook.bus);
    message = g_steal_pointer(&hook.message);
    problem = g_steal_pointer(&hook.problem);

    if (!hook.allow) {
        g_autofree char *waited = hook.waited_ms
                                      ? g_strdup_printf(" (waited %.1f s)", hook.wait_ms / 1000.0)
                                      : g_strdup("");

        g_printerr("%s%s\n", message && *message ? message : "virtsnap: the agent refused this",
                   waited);
        return 1;
    }
    if (problem && *problem)
        g_printerr("virtsnap-hook: allowing %s of %s: could not ask the agent (%s): %s\n",
                   operation, domain, VS_BUS_NAME, problem);
    return 0;
}
