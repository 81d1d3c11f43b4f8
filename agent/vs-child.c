/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Children that do not outlive the agent (see vs-child.h). */
#include "vs-child.h"
#include "vs-job-private.h"
#include "vs-fault.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* In the child, before exec. */
static void
die_with_parent(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != (pid_t)GPOINTER_TO_INT(data))
        _exit(127); /* the agent died before prctl */
}

GSubprocessLauncher *
vs_child_launcher_new(GSubprocessFlags flags)
{
    GSubprocessLauncher *launcher = g_subprocess_launcher_new(flags);

    g_subprocess_launcher_set_child_setup(launcher, die_with_parent, GINT_TO_POINTER(getpid()),
                                          NULL);
    return launcher;
}

GPid
vs_child_pid(GSubprocess *proc)
{
    const char *id = g_subprocess_get_identifier(proc);

    return id ? (GPid)atoi(id) : 0;
}

/* /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold anything, even ") ". */
static char *
stat_after_comm(GPid pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree char *text = NULL;
    const char *end;

    if (!g_file_get_contents(path, &text, NULL, NULL) || !(end = strrchr(text, ')')))
        return NULL;
    return g_strdup(end + 1);
}

guint64
vs_child_start_time(GPid pid)
{
    g_autofree char *rest = stat_after_comm(pid);
    g_auto(GStrv) fields = NULL;

    if (!rest)
        return 0;
    fields = g_strsplit_set(g_strchug(rest), " ", -1);
    /* field 3 (state) is fields[0]: field 22 (starttime) is fields[19] */
    if (g_strv_length(fields) < 20)
        return 0;
    return g_ascii_strtoull(fields[19], NULL, 10);
}

static gboolean
is_gone(GPid pid)
{
    g_autofree char *rest = stat_after_comm(pid);

    return !rest || g_str_has_prefix(g_strchug(rest), "Z"); /* a zombie holds nothing */
}

/* @arg is @name, a path inside it, or a qemu-img json: image name holding one (an
 * encrypted image is named that way): never a sibling that merely starts alike. */
static gboolean
arg_names(const char *arg, const char *name)
{
    gsize n = strlen(name);

    if (strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '/'))
        return TRUE;
    if (g_str_has_prefix(arg, "json:")) {
        for (const char *p = strstr(arg, name); p; p = strstr(p + 1, name)) {
            if (p[n] == '"' || p[n] == '/')
                return TRUE;
        }
    }
    return FALSE;
}

static gboolean
cmdline_names(GPid pid, const char *folder)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/cmdline", (int)pid);
    g_autofree char *text = NULL;
    gsize len = 0;

    if (!folder || !*folder || !g_file_get_contents(path, &text, &len, NULL))
        return FALSE;
    for (gsize i = 0; i < len; i += strlen(text + i) + 1) {
        if (arg_names(text + i, folder))
            return TRUE;
    }
    return FALSE;
}

gboolean
vs_child_end_leftover(GPid pid, guint64 start, const char *folder)
{
    const char *names[] = {folder, NULL};

    return vs_child_end_leftover_names(pid, start, folder ? names : NULL);
}

gboolean
vs_child_end_leftover_names(GPid pid, guint64 start, const char *const *names)
{
    gboolean named = FALSE;

    if (pid <= 1 || vs_child_start_time(pid) != start || is_gone(pid))
        return TRUE; /* gone, or the pid is another process's now */
    for (guint i = 0; names && names[i] && !named; i++)
        named = cmdline_names(pid, names[i]);
    if (!named) {
        g_message("process %d is not the job's child any more (it names no %s): left alone",
                  (int)pid, names && names[0] ? names[0] : "folder");
        return TRUE;
    }
    g_message("ending leftover child process %d of an interrupted job", (int)pid);
    if (kill(pid, SIGKILL) < 0 && errno != ESRCH)
        return FALSE;
    for (int i = 0; i < 100 && !is_gone(pid); i++)
        g_usleep(50 * 1000);
    return is_gone(pid);
}

void
vs_job_child_note(GPid pid, gboolean running, gpointer data)
{
    VsJob *job = data;
    GArray *children;

    g_mutex_lock(&job->lock);
    children = job->journal->children;
    if (running) {
        VsJournalChild c = {pid, vs_child_start_time(pid)};

        if (c.start)
            g_array_append_val(children, c);
    } else {
        for (guint i = children->len; i > 0; i--) {
            if (g_array_index(children, VsJournalChild, i - 1).pid == pid)
                g_array_remove_index(children, i - 1);
        }
    }
    g_mutex_unlock(&job->lock);
    /* Undo removes the record: an end seen after that must not write it again. */
    if (!running && (job->phase == VS_PHASE_UNDO || job->phase == VS_PHASE_ENDED))
        return;
    /* A child not in the record still dies with us (PDEATHSIG): a failed write only loses
     * the second line of defence. */
    vs_job_journal_save(job, NULL);
#ifdef VS_FAULT_INJECTION
    if (running)
        vs_fault_child_started(vs_dbus_job1_get_method(job->iface), job->phase, pid);
#endif
}
