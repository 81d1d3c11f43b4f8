/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl: the command-line client of virtsnapd, over D-Bus. This file is the command
 * table (every command with its options), the one parser, the help and main; the commands
 * are in ctl-*.c. Exit codes are part of its interface (see README.md, "Exit codes"). */
#include <gio/gio.h>
#include <locale.h>
#include <string.h>

#include "ctl.h"
#include "vs-build-config.h"
#include "vs-error.h"
#include "vs-bus.h"
#include "vs-names.h"

/* ---- the command line: types (the tables and the parser are at the end) ----------------- */

typedef enum {
    OPT_FLAG,  /* --wait */
    OPT_VALUE, /* --method=METHOD or --method METHOD; the last one counts */
    OPT_LIST,  /* --disk=TARGET, repeatable */
} OptKind;

typedef struct {
    const char *name; /* long name, without "--" */
    char short_name;  /* 0: none */
    OptKind kind;
    const char *value_name;
    const char *help;
} CtlOption;

/* One parsed command line: global options, the command, its arguments and options. */
struct _Invocation {
    const struct _Command *command;
    GPtrArray *args;    /* positional arguments after the command (borrowed from argv) */
    GHashTable *values; /* option name -> GPtrArray of values ("" for a flag) */
};

gboolean
inv_flag(const Invocation *inv, const char *name)
{
    return g_hash_table_contains(inv->values, name);
}

/* The last value given for option @name, or NULL. */
const char *
inv_value(const Invocation *inv, const char *name)
{
    GPtrArray *values = g_hash_table_lookup(inv->values, name);

    return values ? g_ptr_array_index(values, values->len - 1) : NULL;
}

/* Every value given for option @name, NULL-terminated, or NULL. */
const char *const *
inv_list(const Invocation *inv, const char *name)
{
    GPtrArray *values = g_hash_table_lookup(inv->values, name);

    return values ? (const char *const *)values->pdata : NULL;
}

guint
inv_n_args(const Invocation *inv)
{
    return inv->args->len;
}

const char *
inv_arg(const Invocation *inv, guint i)
{
    return i < inv->args->len ? g_ptr_array_index(inv->args, i) : NULL;
}

/* ---- the command line: every option of every command, and the one parser -------------- */

/* Global options may come before or after the command, as with git and systemctl. */
static const CtlOption global_options[] = {
    {"json", 'j', OPT_FLAG, NULL, "Print JSON: one document per command"},
    {"system", 0, OPT_FLAG, NULL, "Talk to the agent on the system bus (default)"},
    {"session", 0, OPT_FLAG, NULL, "Talk to the agent on the session bus"},
    {"address", 'a', OPT_VALUE, "ADDRESS", "Talk to the agent on the bus at ADDRESS"},
    {"version", 0, OPT_FLAG, NULL, "Print the version and exit"},
    {"help", 'h', OPT_FLAG, NULL, "Show this help and exit"},
    {NULL},
};

static const CtlOption no_options[] = {{NULL}};

static const CtlOption domains_options[] = {
    {"names", 0, OPT_FLAG, NULL, "Print only the domains' names, one a line"},
    {NULL},
};

static const CtlOption ids_options[] = {
    {"ids", 0, OPT_FLAG, NULL, "Print only the ids, one a line"},
    {NULL},
};

static const CtlOption snapshot_options[] = {
    {"disk", 'd', OPT_LIST, "TARGET",
     "Snapshot this disk (repeatable; default: every writable file disk)"},
    {"method", 'm', OPT_VALUE, "METHOD", "auto|live|cold|rbd|mixed (default auto)"},
    {"quiesce", 'q', OPT_VALUE, "MODE", "off|try|require (default try)"},
    {"format", 'f', OPT_VALUE, "FORMAT", "qcow2|raw (default qcow2)"},
    {"compress", 'c', OPT_FLAG, NULL, "Compress the qcow2 image"},
    {"copy", 0, OPT_VALUE, "MODE", "direct|shallow (default direct; shallow with --compress)"},
    {"name", 'n', OPT_VALUE, "NAME", "Name of the snapshot (A-Z a-z 0-9 . _ -)"},
    {"bandwidth", 0, OPT_VALUE, "RATE", "Copy at most RATE bytes/s, e.g. 50M (suffix K, M, G)"},
    {"force", 0, OPT_FLAG, NULL, "Abort block jobs that are not ours"},
    {"legacy-undefine", 0, OPT_FLAG, NULL, "Use undefine/rebase instead of a transient copy job"},
    {"flatten", 0, OPT_FLAG, NULL, "rbd: flatten the clone (a full copy)"},
    {"no-flatten", 0, OPT_FLAG, NULL, "rbd: keep the clone thin"},
    {"wait", 'w', OPT_FLAG, NULL,
     "Wait for the job: progress on a terminal, the result at the end (first Ctrl-C cancels "
     "the job, a second stops waiting)"},
    {NULL},
};

static const CtlOption clone_options[] = {
    {"start", 0, OPT_FLAG, NULL, "Start the clone once it is defined"},
    {"full", 0, OPT_FLAG, NULL,
     "Copy the images (standalone, takes time) instead of instant overlays on the snapshot's"},
    {"wait", 'w', OPT_FLAG, NULL,
     "Wait for the job: progress on a terminal, the result at the end (first Ctrl-C cancels "
     "the job, a second stops waiting)"},
    {NULL},
};

/* revert */
static const CtlOption revert_options[] = {
    {"stop", 0, OPT_FLAG, NULL,
     "Shut a running domain down first (destroyed if it does not stop within 60 s)"},
    {"no-safety", 0, OPT_FLAG, NULL,
     "Keep no safety snapshot of the current content (the write-back cannot be undone or "
     "cancelled)"},
    {"bandwidth", 0, OPT_VALUE, "RATE", "Write at most RATE bytes/s, e.g. 50M (suffix K, M, G)"},
    {"wait", 'w', OPT_FLAG, NULL,
     "Wait for the job: progress on a terminal, the result at the end (first Ctrl-C cancels "
     "the job, a second stops waiting)"},
    {NULL},
};

static const CtlOption mount_options[] = {
    {"disk", 'd', OPT_VALUE, "TARGET", "Mount this disk of the snapshot (default: its first)"},
    {NULL},
};

static const CtlOption verify_options[] = {
    {"deep", 0, OPT_FLAG, NULL,
     "Also check the file systems (e2fsck -fn, xfs_repair -n on a private copy)"},
    {"wait", 'w', OPT_FLAG, NULL,
     "Wait for the job and exit with its outcome (11: the snapshot failed verification)"},
    {NULL},
};

typedef struct _Command {
    const char *name;
    const char *synopsis; /* the arguments, for "Usage:" */
    const char *summary;
    const char *details; /* more for its --help, or NULL */
    guint min_args, max_args;
    const CtlOption *options;
    int (*run)(Ctl *ctl, const Invocation *inv); /* NULL: help, which needs no agent */
} Command;

#define ANY_NUMBER G_MAXUINT

static const Command commands[] = {
    {"status", "", "Show the agent's version, libvirt connection and hook calls", NULL, 0, 0,
     no_options, ctl_status},
    {"domains", "", "List libvirt domains with their disks", NULL, 0, 0, domains_options,
     ctl_domains},
    {"watch", "", "Print domain lifecycle events as they happen (Ctrl-C stops)", NULL, 0, 0,
     no_options, ctl_watch},
    {"snapshot", "DOMAIN", "Take a snapshot of DOMAIN (a name or UUID)",
     "Starts a snapshot job and prints its object path; with --wait, waits for it and exits "
     "with its outcome.",
     1, 1, snapshot_options, ctl_snapshot},
    {"jobs", "", "List jobs, running and recently ended", NULL, 0, 0, ids_options, ctl_jobs},
    {"job", "ID", "Show one job (ID: its number or object path)", NULL, 1, 1, no_options, ctl_job},
    {"wait", "ID", "Wait for a job to end; exit with its outcome",
     "Shows progress on a terminal. The first Ctrl-C cancels the job, a second stops waiting.", 1,
     1, no_options, ctl_wait},
    {"cancel", "ID", "Cancel a job (it undoes its work, then ends)", NULL, 1, 1, no_options,
     ctl_cancel},
    {"snapshots", "[DOMAIN]", "List finished snapshots, of every domain or of DOMAIN", NULL, 0, 1,
     ids_options, ctl_snapshots},
    {"delete", "ID", "Delete a snapshot (its images and folder)", NULL, 1, 1, no_options,
     ctl_delete},
    {"clone", "ID NEWNAME", "Define a new domain NEWNAME from snapshot ID",
     "The clone gets a new UUID and MAC addresses, its own disks and none of the original's "
     "NVRAM, TPM or managed save; the original is never touched. By default each disk is an "
     "instant qcow2 overlay on the snapshot's image (the snapshot then cannot be deleted while "
     "the clone is defined); --full copies the images instead. Prints the job path; with "
     "--wait, waits for it.",
     2, 2, clone_options, ctl_clone},
    {"verify", "ID", "Check a snapshot's images (and with --deep its file systems)",
     "qemu-img check of every image against its recorded format and virtual size (an RBD disk: "
     "its image and protected snap); --deep also runs e2fsck -fn / xfs_repair -n on a private "
     "copy. The images are only read. The outcome is recorded in the snapshot's metadata "
     "(virtsnapctl snapshots shows it).",
     1, 1, verify_options, ctl_verify},
    {"policy", "show|set|clear DOMAIN [KEY=VALUE...]", "Show, set or clear a domain's policy",
     "Keys: every=30s|15m|6h|1d|none, on-stop=none|snapshot, keep=1..10000, "
     "quiesce=off|try|require, method=auto|live|cold|rbd|mixed, format=qcow2|raw. "
     "set changes only the keys given; KEY= or KEY=none clears one.",
     2, ANY_NUMBER, no_options, ctl_policy},
    /* browse */
    {"mount", "ID DIR", "Show a snapshot's file system read-only in the empty directory DIR",
     "The agent serves the disk over NBD (ExportSnapshot) to you alone; the file system "
     "(ext2/3/4 on the whole disk) is mounted with FUSE as you, no root needed, and stays "
     "until 'virtsnapctl umount DIR'. The snapshot cannot be deleted meanwhile.",
     2, 2, mount_options, ctl_mount},
    {"umount", "DIR", "Unmount a snapshot mounted at DIR and end its export", NULL, 1, 1,
     no_options, ctl_umount},
    {"exports", "", "List snapshot disks the agent serves over NBD (mounts among them)", NULL, 0, 0,
     no_options, ctl_exports},
    /* revert */
    {"revert", "ID", "Put snapshot ID back into its domain's disks (the domain must be off)",
     "The current content of each disk is kept first as a new snapshot, the safety snapshot "
     "(unless --no-safety), which a failed, cancelled or interrupted revert writes back. The "
     "domain's XML and disk files stay; it is left shut off. Prints the job's object path; "
     "with --wait, waits for it and exits with its outcome.",
     1, 1, revert_options, ctl_revert},
    {"help", "[COMMAND]", "Show the help of virtsnapctl or of COMMAND", NULL, 0, 1, no_options,
     NULL},
};

static const Command *
command_find(const char *name)
{
    for (guint i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    }
    return NULL;
}

/* The option called @name (long, @len bytes) or @short_name, of @command or global. */
static const CtlOption *
option_find(const Command *command, const char *name, gsize len, char short_name)
{
    const CtlOption *tables[] = {command ? command->options : no_options, global_options};

    for (guint t = 0; t < G_N_ELEMENTS(tables); t++) {
        for (const CtlOption *o = tables[t]; o->name; o++) {
            if (name && strlen(o->name) == len && strncmp(o->name, name, len) == 0)
                return o;
            if (!name && short_name && o->short_name == short_name)
                return o;
        }
    }
    return NULL;
}

static void
invocation_add(Invocation *inv, const CtlOption *option, const char *value)
{
    GPtrArray *values = g_hash_table_lookup(inv->values, option->name);

    if (!values) {
        values = g_ptr_array_new_null_terminated(1, NULL, TRUE);
        g_hash_table_insert(inv->values, (gpointer)option->name, values);
    }
    g_ptr_array_add(values, (gpointer)(value ? value : ""));
}

static void parse_error(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Keeps the first problem of a command line. */
static void
parse_error(GError **error, const char *fmt, ...)
{
    va_list args;

    if (*error)
        return;
    va_start(args, fmt);
    *error = g_error_new_valist(G_OPTION_ERROR, G_OPTION_ERROR_FAILED, fmt, args);
    va_end(args);
}

/* Parses @argv (the program's name left out) into @inv. The first word that is not an option
 * names the command; options may come before it (global ones only) or anywhere after it, and
 * "--" ends the options. Goes on after a bad option, so that a --help further on still counts;
 * the first problem is in @error (which must not be NULL). */
static gboolean
invocation_parse(Invocation *inv, int argc, char **argv, GError **error)
{
    gboolean options_done = FALSE;

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const CtlOption *option;

        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = TRUE;
        } else if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (inv->command) {
                g_ptr_array_add(inv->args, (gpointer)arg);
            } else if (!(inv->command = command_find(arg))) {
                g_clear_error(error);
                parse_error(error, "unknown command '%s'", arg);
                return FALSE;
            }
        } else if (arg[1] == '-') {
            const char *name = arg + 2, *eq = strchr(name, '=');
            gsize len = eq ? (gsize)(eq - name) : strlen(name);

            option = option_find(inv->command, name, len, 0);
            if (!option) {
                parse_error(error, "unknown option '--%.*s'%s", (int)len, name,
                            inv->command ? "" : " before the command");
            } else if (option->kind == OPT_FLAG) {
                if (eq)
                    parse_error(error, "option '--%s' takes no value", option->name);
                invocation_add(inv, option, NULL);
            } else if (eq || i + 1 < argc) {
                invocation_add(inv, option, eq ? eq + 1 : argv[++i]);
            } else {
                parse_error(error, "option '--%s' needs a value (%s)", option->name,
                            option->value_name);
            }
        } else {
            /* Short options may be grouped (-jw); a value follows at once or as the next word. */
            for (const char *p = arg + 1; *p; p++) {
                option = option_find(inv->command, NULL, 0, *p == '?' ? 'h' : *p);
                if (!option) {
                    parse_error(error, "unknown option '-%c'%s", *p,
                                inv->command ? "" : " before the command");
                    break;
                }
                if (option->kind == OPT_FLAG) {
                    invocation_add(inv, option, NULL);
                    continue;
                }
                if (p[1])
                    invocation_add(inv, option, p + 1);
                else if (i + 1 < argc)
                    invocation_add(inv, option, argv[++i]);
                else
                    parse_error(error, "option '-%c' needs a value (%s)", *p, option->value_name);
                break;
            }
        }
    }
    return *error == NULL;
}

#define HELP_WIDTH 79

/* Prints @text word-wrapped, starting at column @col, continuing lines at column @indent. */
static void
print_wrapped(const char *text, int col, int indent)
{
    g_auto(GStrv) words = g_strsplit(text, " ", -1);
    int start = col;

    for (guint i = 0; words[i]; i++) {
        int len = (int)g_utf8_strlen(words[i], -1);

        if (col > start && col + 1 + len > HELP_WIDTH) {
            g_print("\n%*s", indent, "");
            col = start = indent;
        }
        g_print("%s%s", col > start ? " " : "", words[i]);
        col += (col > start ? 1 : 0) + len;
    }
    g_print("\n");
}

static void
print_options(const char *title, const CtlOption *options)
{
    if (!options->name)
        return;
    g_print("\n%s:\n", title);
    for (const CtlOption *o = options; o->name; o++) {
        g_autofree char *left =
            g_strdup_printf("  %c%c%s --%s%s%s", o->short_name ? '-' : ' ',
                            o->short_name ? o->short_name : ' ', o->short_name ? "," : " ", o->name,
                            o->value_name ? "=" : "", o->value_name ? o->value_name : "");

        if (strlen(left) > 29)
            g_print("%s\n%-30s", left, "");
        else
            g_print("%-30s", left);
        print_wrapped(o->help, 30, 30);
    }
}

static void
print_help(const Command *command)
{
    if (!command) {
        g_print("Usage: virtsnapctl [OPTIONS] COMMAND [ARGS...]\n\n"
                "Take and manage live snapshots of libvirt domains, through the virtsnapd "
                "agent.\n\nCommands:\n");
        for (guint i = 0; i < G_N_ELEMENTS(commands); i++)
            g_print("  %-10s %s\n", commands[i].name, commands[i].summary);
        print_options("Options (before or after the command)", global_options);
        g_print("\n");
        print_wrapped("'virtsnapctl COMMAND --help' or 'virtsnapctl help COMMAND' shows a "
                      "command's options. See virtsnapctl(1).",
                      0, 0);
        return;
    }
    g_print("Usage: virtsnapctl %s [OPTIONS]%s%s\n\n%s.\n", command->name,
            *command->synopsis ? " " : "", command->synopsis, command->summary);
    if (command->details) {
        g_print("\n");
        print_wrapped(command->details, 0, 0);
    }
    print_options("Options", command->options);
    print_options("Global options", global_options);
}

static void
invocation_clear(Invocation *inv)
{
    g_clear_pointer(&inv->args, g_ptr_array_unref);
    g_clear_pointer(&inv->values, g_hash_table_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Invocation, invocation_clear)

/* ---- main ------------------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
    g_auto(Invocation) inv = {
        NULL, g_ptr_array_new(),
        g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_ptr_array_unref)};
    g_autoptr(GError) error = NULL;
    g_autoptr(GDBusConnection) bus = NULL;
    g_autoptr(VsDbusAgent1) agent = NULL;
    const char *name;
    Ctl ctl = {0};

    setlocale(LC_ALL, "");
    invocation_parse(&inv, argc - 1, argv + 1, &error);
    name = inv.command ? inv.command->name : NULL;
    /* A command's --help and help need no agent, and win over the rest of the line. */
    if (inv_flag(&inv, "help")) {
        print_help(inv.command);
        return EXIT_OK;
    }
    if (inv_flag(&inv, "version")) {
        g_print("virtsnapctl %s\n", VS_VERSION);
        return EXIT_OK;
    }
    if (error)
        return ctl_usage_error(name, "%s", error->message);
    if (!inv.command)
        return ctl_usage_error(NULL, "no command given");
    if (inv_n_args(&inv) < inv.command->min_args)
        return ctl_usage_error(name, "missing argument; usage: virtsnapctl %s [OPTIONS] %s", name,
                               inv.command->synopsis);
    if (inv_n_args(&inv) > inv.command->max_args)
        return ctl_usage_error(name, "unexpected argument '%s'",
                               inv_arg(&inv, inv.command->max_args));
    if (!inv.command->run) {
        const Command *topic = inv_n_args(&inv) ? command_find(inv_arg(&inv, 0)) : NULL;

        if (inv_n_args(&inv) && !topic)
            return ctl_usage_error(NULL, "unknown command '%s'", inv_arg(&inv, 0));
        print_help(topic);
        return EXIT_OK;
    }
    if (inv_flag(&inv, "system") + inv_flag(&inv, "session") + inv_flag(&inv, "address") > 1)
        return ctl_usage_error(name, "--system, --session and --address exclude each other");

    (void)vs_error_quark(); /* so remote errors come back as VsError */
    bus = vs_bus_open(inv_value(&inv, "address"), inv_flag(&inv, "session"), &error);
    if (!bus) {
        g_printerr("virtsnapctl: cannot connect to the bus: %s\n", error->message);
        return EXIT_NO_AGENT;
    }
    agent = vs_dbus_agent1_proxy_new_sync(bus, G_DBUS_PROXY_FLAGS_NONE, VS_BUS_NAME, VS_AGENT_PATH,
                                          NULL, &error);
    if (!agent)
        return ctl_fail(error);
    ctl.json = inv_flag(&inv, "json");
    ctl.command = name;
    ctl.bus = bus;
    ctl.agent = agent;
    return inv.command->run(&ctl, &inv);
}
