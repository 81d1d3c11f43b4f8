/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapctl's private header: the command line as the commands see it, the exit codes,
 * the commands of each group and the one place that formats output (ctl-output.c). */
#pragma once

#include <gio/gio.h>

#include "vs-dbus-generated.h"

G_BEGIN_DECLS

/* Part of virtsnapctl's interface (README.md, "Exit codes"). */
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
    EXIT_CORRUPT = 11, /* verify found a problem */
};

typedef struct {
    gboolean json;
    const char *command; /* its name, for usage errors */
    GDBusConnection *bus;
    VsDbusAgent1 *agent;
} Ctl;

/* One parsed command line (virtsnapctl.c): the command, its arguments and options. */
typedef struct _Invocation Invocation;

gboolean inv_flag(const Invocation *inv, const char *name);
const char *inv_value(const Invocation *inv, const char *name);
const char *const *inv_list(const Invocation *inv, const char *name);
guint inv_n_args(const Invocation *inv);
const char *inv_arg(const Invocation *inv, guint i);

/* The commands, one file per group. */
int ctl_status(Ctl *ctl, const Invocation *inv); /* ctl-status.c */
int ctl_domains(Ctl *ctl, const Invocation *inv);
int ctl_watch(Ctl *ctl, const Invocation *inv);
int ctl_snapshot(Ctl *ctl, const Invocation *inv); /* ctl-snapshot.c */
int ctl_jobs(Ctl *ctl, const Invocation *inv);
int ctl_job(Ctl *ctl, const Invocation *inv);
int ctl_wait(Ctl *ctl, const Invocation *inv);
int ctl_cancel(Ctl *ctl, const Invocation *inv);
int ctl_snapshots(Ctl *ctl, const Invocation *inv); /* ctl-catalog.c */
int ctl_delete(Ctl *ctl, const Invocation *inv);
int ctl_policy(Ctl *ctl, const Invocation *inv); /* ctl-policy.c */
int ctl_clone(Ctl *ctl, const Invocation *inv);  /* ctl-clone.c */
/* A clone job's Result, for people (ctl-clone.c). */
void ctl_print_clone_result(GVariant *result);
int ctl_mount(Ctl *ctl, const Invocation *inv); /* ctl-browse.c */
int ctl_umount(Ctl *ctl, const Invocation *inv);
int ctl_exports(Ctl *ctl, const Invocation *inv);
int ctl_verify(Ctl *ctl, const Invocation *inv); /* ctl-verify.c */
int ctl_revert(Ctl *ctl, const Invocation *inv); /* ctl-revert.c */

/* ctl-snapshot.c: shared with the commands that start jobs of other kinds. */
int ctl_wait_for_job(Ctl *ctl, const char *path);
/* After a call that started the job at @path: with --wait, waits for it (its exit code);
 * else prints the path (or {"job": path} with --json). */
int ctl_job_started(Ctl *ctl, const Invocation *inv, const char *path);
gboolean ctl_parse_size(const char *text, guint64 *out);

/* ctl-proxy.c: a proxy's properties, loaded by us so that failures are reported. */
gboolean ctl_proxy_load(GDBusProxy *proxy, GError **error);
VsDbusJob1 *ctl_job_new(Ctl *ctl, const char *path, GError **error);
gboolean ctl_job_load(VsDbusJob1 *job, GError **error);
VsDbusJob1 *ctl_job_get(Ctl *ctl, const char *path, GError **error);

/* ctl-output.c: errors and exit codes. */
int ctl_exit_code(const GError *error);
int ctl_fail(const GError *error);
int ctl_usage_error(const char *command, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* ctl-output.c: everything printed on stdout; @json picks JSON or the human form. */
void ctl_print_json(GVariant *value);
void ctl_print_status(VsDbusAgent1 *agent, gboolean json);
void ctl_print_domains(GVariant *domains, gboolean names_only, gboolean json);
void ctl_print_domain_event(const char *domain, const char *uuid, const char *event,
                            const char *detail, gboolean json);
void ctl_print_connected(gboolean connected, gboolean json);
void ctl_print_agent_running(gboolean running, gboolean json);
GVariant *ctl_job_summary(VsDbusJob1 *job);
void ctl_print_job(VsDbusJob1 *job, gboolean json);
void ctl_print_job_error(VsDbusJob1 *job);
void ctl_print_jobs_header(void);
void ctl_print_jobs_row(VsDbusJob1 *job);
void ctl_print_progress(VsDbusJob1 *job);
void ctl_print_snapshots(GVariant *list, gboolean ids_only, gboolean json);
void ctl_print_policy(GVariant *settings, const char *problem, gboolean json);
void ctl_print_exports(GVariant *list, gboolean json);
void ctl_print_mounted(const char *id, const char *disk, const char *dir, const char *export,
                       gboolean json);

G_END_DECLS
