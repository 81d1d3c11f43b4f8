/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the job engine and its method files share: the job's struct, its disks, and the
 * helpers every step uses (vs-job-common.c). Only agent/vs-job*.c and their utilities. */
#pragma once

#include "vs-dbus-generated.h"
#include "vs-job-method.h"
#include "vs-job.h"
#include "vs-log.h"
#include "vs-rbd.h"

G_BEGIN_DECLS

typedef struct _VsClonePlan VsClonePlan; /* vs-clone.h */

/* Every line about a job carries its number and domain as journal fields. */
#define JOB_LOG(job, level, ...) vs_log_job((level), NULL, (job)->id, (job)->domain, __VA_ARGS__)

/* Share of Progress that the mirror phase stands for; the rest is flattening. */
#define COPY_SHARE 0.5

struct _VsJobDisk {
    VsPlanDisk *plan; /* borrowed from job->plan */
    char *delta;      /* what the mirror writes */
    char *image;      /* the finished image, inside the job's folder */
    char *part;       /* qemu-img convert's output until it is complete */
    gboolean ready;
    gboolean failed;  /* the mirror ended by itself before we stopped it */
    gboolean stopped; /* we stopped the mirror */
    guint64 done, total;
    guint64 size;     /* virtual size (rbd: the source image's, read in prepare) */
    VsRbdImage *src;  /* rbd: the disk's image, open from prepare to clone */
    VsJournalRbd *jr; /* rbd: its journal record (owned by the journal) */
    /* resume: libvirt showed our mirror on it when it came back */
    gboolean mirrored;
};

struct _VsJob {
    GObject parent;
    guint id;
    char *path;
    char *snapshot_dir;
    char *state_dir;
    guint freeze_limit_ms;
    VsLibvirt *libvirt;
    VsDbusObjectSkeleton *object;
    VsDbusJob1 *iface;

    const VsJobMethod *method;
    /* How a step reports that it ended (error NULL: it succeeded), set by the engine. */
    void (*step_done)(VsJob *job, GError *error);

    VsPlan *plan; /* NULL for a recovery job */
    VsSnapshotOptions opts;
    gboolean recovery;
    char *domain;
    char *uuid;
    char *snapshot_id;
    char *name;
    char *folder;
    GPtrArray *disks; /* VsJobDisk* */

    GMutex lock; /* guards journal between the main loop and worker threads */
    VsJournalEntry *journal;

    VsPhase phase;
    gboolean cancel_requested;
    GCancellable *cancellable;
    GError *error;
    gulong block_job_handler;
    gulong connected_handler;
    guint progress_source;
    gboolean progress_query_running;
    guint watchdog_source;
    gint thaw_claimed; /* atomic: whoever sets it thaws (window or watchdog) */
    gboolean watchdog_fired;
    guint flatten_index;
    const struct _VsConvertInput *convert; /* vs-convert.c's, while it runs */
    VsUndoParts undo_parts;                /* of every step begun */
    virConnectPtr undo_conn;
    GString *undo_notes;

    /* results */
    GVariant *facts; /* built once, by the catalog step */
    gboolean quiesced;
    char *quiesce_note;
    gint64 freeze_ms;
    gint64 pause_ms;
    gint64 t_start, t_copy_start, t_copy_end, t_flatten_start, t_flatten_end;
    gint64 t_down_start, downtime_ms;
    gint64 t_requested; /* CreateSnapshot's arrival: total-ms counts validation too */
    gboolean flatten;
    VsConfig *config;
    char *fsid;

    /* clone (vs-job-clone.c) */
    VsClonePlan *clone_plan;
    GPtrArray *clone_plan_disks; /* VsPlanDisk*: what job->disks borrow for a full copy */
    /* verify (vs-job-verify.c) */
    struct _VsVerify *verify;
    gboolean domain_untouched; /* changes nothing of its domain: not a job "on" it */
    /* revert (vs-job-revert.c) */
    struct _VsRevert *revert;
    /* resume after libvirtd went away (vs-job.c) */
    gboolean resume_wait;      /* the step resumes on the next connection */
    VsPhase resume_phase;      /* the step the resume under way is for */
    virConnectPtr resume_conn; /* the new connection, while the resume runs */
    GPtrArray *stale_doms;     /* the dead connection's domains: a progress query may hold one */
    /* mixed (vs-job-mixed.c): its RBD disks; job->disks holds its file disks, the ones the
     * live steps see, until the catalog step joins both. NULL for every other method. */
    GPtrArray *rbd_disks;
};

/* A queued job with its Job1 object and nothing of any method yet: the constructors of
 * every kind of job (snapshot, recovery, clone, revert, verify) start here. */
VsJob *vs_job_new_common(guint id, const VsConfig *config, VsLibvirt *libvirt, const char *domain,
                         const char *uuid);

VsJobDisk *vs_job_find_disk(VsJob *job, const char *target);
VsJobDisk *vs_job_disk(VsJob *job, guint i);

/* Writes the journal record, with the phase the job is in. Any thread. */
gboolean vs_job_journal_save(VsJob *job, GError **error);

void vs_job_set_progress(VsJob *job, double fraction, guint64 done, guint64 total);
/* The same from a worker thread: set on the main loop (the job is kept until then). */
void vs_job_set_progress_later(VsJob *job, double fraction, guint64 done, guint64 total);

/* Runs @func in a worker thread; @done gets a boolean GTask on the main loop. */
void vs_job_run_in_thread(VsJob *job, VsStepThreadFunc func, GAsyncReadyCallback done);

/* Reports the step's success from a fresh main-loop iteration. */
void vs_job_step_done_later(VsJob *job);

/* The steps every method shares. */
gboolean vs_job_clear_jobs_thread(VsJob *job, GError **error);
gboolean vs_job_foreign_jobs_wanted(VsJob *job);
/* Journal first, then the folder: a crash after mkdir is cleaned up. */
gboolean vs_job_prepare_folder(VsJob *job, GError **error);
gboolean vs_job_catalog_thread(VsJob *job, GError **error);
/* The cut is taken (cold: the disks hold still): the freeze watchdog goes, FreezeMs is
 * published and the second half's timer starts. Main loop, as a step begins. */
void vs_job_after_cut(VsJob *job);

/* Undo (vs-job-undo.c): everything the journal says is ours to take back, limited to
 * job->undo_parts. Worker thread. */
gboolean vs_job_undo_thread(VsJob *job, GError **error);
/* Its clone part (vs-job-clone.c): stop and undefine the clone we defined, remove its
 * published folder. */
gboolean vs_job_clone_undo(VsJob *job, GError **error);

/* The pieces the mixed method (vs-job-mixed.c) takes from live and rbd. The live cut:
 * stop every mirror of job->disks (vs-job-live.c). */
gboolean vs_job_live_cut(VsJob *job, GError **error);
/* The rbd side (vs-job-rbd.c), on job->rbd_disks when set: open every image and check the
 * clone's name and pool; mark the snapshots made (before they are); the cut. */
gboolean vs_job_rbd_open_images(VsJob *job, GError **error);
void vs_job_rbd_journal_snaps(VsJob *job);
gboolean vs_job_rbd_cut(VsJob *job, GError **error);

G_END_DECLS
