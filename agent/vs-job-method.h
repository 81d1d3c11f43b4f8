/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A method of snapshotting as data: its ordered steps, what each step may leave for undo,
 * and the fields its Result shows; plus the pure function that decides the next step. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Every step any method has, and the engine's own states around them. */
typedef enum {
    VS_PHASE_QUEUED,
    VS_PHASE_CLEAR_JOBS,    /* abort foreign block jobs (only with force) */
    VS_PHASE_PREPARE,       /* journal, folder; live: qemu-img create a delta per disk */
    VS_PHASE_SAVE,          /* cold: managed save of the running or paused domain */
    VS_PHASE_COPY,          /* start a block copy per disk (undefine first on the legacy path) */
    VS_PHASE_WAIT_READY,    /* until every mirror reports READY */
    VS_PHASE_FREEZE_WINDOW, /* freeze, take the cut (stop every copy / snapshot), thaw */
    VS_PHASE_REDEFINE,      /* legacy path: define the domain again */
    VS_PHASE_FLATTEN,       /* qemu-img convert the deltas into the images */
    VS_PHASE_EXTRACT,       /* cold: qemu-img convert each disk's chain into an image */
    VS_PHASE_CLONE,         /* rbd: protect, clone, (flatten), protected "snap" on the clone */
    VS_PHASE_RESTORE,       /* cold: start the domain again from its managed save */
    VS_PHASE_OVERLAY,       /* clone: a qcow2 overlay per disk (rbd: an RBD clone) */
    VS_PHASE_DEFINE,        /* clone: define its domain, publish its folder */
    VS_PHASE_START,         /* clone: start it (option "start") */
    VS_PHASE_CHECK,         /* verify: qemu-img check and info of every image, or its RBD snap */
    VS_PHASE_DEEP_CHECK,    /* verify --deep: e2fsck -fn / xfs_repair -n of a private copy */
    VS_PHASE_RECORD,        /* verify: "verified" into metadata.json */
    VS_PHASE_STOP,          /* revert: shut the domain down (only with stop) */
    VS_PHASE_WRITE_BACK,    /* revert: qemu-img convert -n the snapshot into each disk */
    VS_PHASE_CATALOG,       /* metadata, publish the folder */
    VS_PHASE_DONE,
    VS_PHASE_UNDO, /* the one way back, on failure, cancel or recovery */
    VS_PHASE_ENDED,
} VsPhase;

/* The word Job1.Phase shows for @phase. */
const char *vs_phase_name(VsPhase phase);

typedef enum {
    VS_OUTCOME_OK,
    VS_OUTCOME_FAILED,
    VS_OUTCOME_CANCELLED,
} VsOutcome;

typedef enum {
    /* It waits for libvirt events, not for a call: a cancel or a lost connection ends it
     * at once (the events in between would be lost). */
    VS_STEP_WAITS_EVENTS = 1 << 0,
    /* A cancel does not interrupt it: the freeze window always reaches its thaw. */
    VS_STEP_RUNS_TO_END = 1 << 1,
    /* Too late to cancel: the snapshot is being published. */
    VS_STEP_NOT_CANCELLABLE = 1 << 2,
    /* It reads the disks of a domain that is not running: a start would race it. */
    VS_STEP_DISKS_OFFLINE = 1 << 3,
} VsStepFlags;

/* What undo may have to take back once a step has begun; each part reads the journal,
 * so that a crashed agent's job is repaired by the same code (with every part). */
typedef enum {
    VS_UNDO_COPIES = 1 << 0,   /* stop the mirrors that write into our folder */
    VS_UNDO_RESUME = 1 << 1,   /* resume the vCPUs we paused */
    VS_UNDO_RESTART = 1 << 2,  /* start the domain again from our managed save */
    VS_UNDO_THAW = 1 << 3,     /* thaw a freeze that may still hold */
    VS_UNDO_REDEFINE = 1 << 4, /* define the domain we undefined again */
    VS_UNDO_RBD = 1 << 5,      /* remove our clone and our snapshot in the cluster */
    VS_UNDO_CLONE = 1 << 6,    /* stop and undefine the clone's domain, remove its folder */
    VS_UNDO_REVERT = 1 << 7,   /* write the safety copy back, drop the safety snapshot */
    VS_UNDO_ALL = (1 << 8) - 1,
} VsUndoParts;

typedef struct _VsJob VsJob;
typedef struct _VsJobDisk VsJobDisk;

typedef gboolean (*VsStepThreadFunc)(VsJob *job, GError **error);
typedef void (*VsStepFunc)(VsJob *job);
typedef gboolean (*VsStepWantedFunc)(VsJob *job);

typedef struct {
    VsPhase phase;
    VsStepWantedFunc wanted; /* NULL: always; else the step is skipped when it says FALSE */
    VsStepFunc enter;        /* on the main loop, as the step begins */
    VsStepThreadFunc thread; /* the step's work, in a worker thread; or: */
    VsStepFunc start;        /* asynchronous work that ends through job->step_done */
    VsUndoParts undo;
    VsStepFlags flags;
    /* libvirtd went away under the step and came back (the job's connection and domain are
     * new ones): in a worker thread, takes stock and puts things right (thaw, ...); TRUE:
     * the step begins again on the new connection. NULL: the step fails NotConnected. */
    VsStepThreadFunc resume;
} VsJobStep;

/* A key of the D-Bus Result and the fact it shows. */
typedef struct {
    const char *key;
    const char *fact;
} VsResultField;

typedef struct {
    const char *name;
    const VsJobStep *steps;
    guint n_steps;
    /* The method's own Result fields, after the ones every method has; NULL-terminated. */
    const VsResultField *result_fields;
    /* A BLOCK_JOB_2 event for one of the job's disks (NULL: not listened to). */
    void (*block_job)(VsJob *job, const char *target, int status);
    /* The facts of a finished disk but its target: where and what it is, its source
     * (NULL: an image file in the folder, vs_result_file_disk_facts). Worker thread. */
    void (*disk_facts)(VsJob *job, VsJobDisk *disk, GVariantBuilder *facts);
} VsJobMethod;

extern const VsJobMethod vs_job_method_live;
extern const VsJobMethod vs_job_method_cold;    /* a running or paused domain: saved first */
extern const VsJobMethod vs_job_method_offline; /* a domain that is off */
extern const VsJobMethod vs_job_method_rbd;
extern const VsJobMethod vs_job_method_recovery;      /* no steps: only undo */
extern const VsJobMethod vs_job_method_clone;         /* a new domain from a snapshot */
extern const VsJobMethod vs_job_method_verify;        /* reads a finished snapshot's images */
extern const VsJobMethod vs_job_method_revert;        /* with a safety snapshot */
extern const VsJobMethod vs_job_method_revert_unsafe; /* safety=false */
extern const VsJobMethod vs_job_method_revert_rbd;    /* disks in Ceph RBD */
extern const VsJobMethod vs_job_method_revert_rbd_unsafe;
extern const VsJobMethod vs_job_method_mixed; /* RBD and file disks, one freeze window */

/* @phase's step in @method, or NULL (the engine's own states, or not one of its steps). */
const VsJobStep *vs_job_method_step(const VsJobMethod *method, VsPhase phase);

/* What follows @phase when it ended with @outcome: the method's next step, DONE after its
 * last, UNDO after any failure or cancel, ENDED after DONE and UNDO. A job that is still
 * queued goes to the first step (UNDO for a method without steps), or ends at once. */
VsPhase vs_job_method_next_step(const VsJobMethod *method, VsPhase phase, VsOutcome outcome);

/* The job's final State: @done when it reached DONE; a recovery job ends "interrupted". */
const char *vs_job_end_state(gboolean done, gboolean cancelled, gboolean recovery);

G_END_DECLS
