/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Bus names, object paths, option keys and value words shared by the agent,
 * virtsnapctl and the libvirt hook: the one place the API spells them. */
#pragma once

#define VS_API_VERSION 1

#define VS_BUS_NAME          "org.virtsnap.Agent1"
#define VS_AGENT_PATH        "/org/virtsnap/Agent1"
#define VS_AGENT_INTERFACE   "org.virtsnap.Agent1"
#define VS_JOB_INTERFACE     "org.virtsnap.Job1"
#define VS_JOB_PATH_PREFIX   VS_AGENT_PATH "/job/"
#define VS_ERROR_NAME_PREFIX "org.virtsnap.Error."

/* Browse: exports of snapshot disks over NBD (ExportSnapshot) */
#define VS_EXPORT_INTERFACE   "org.virtsnap.Export1"
#define VS_EXPORT_PATH_PREFIX VS_AGENT_PATH "/export/"
#define VS_OPT_DISK           "disk" /* s: ExportSnapshot: the disk target to serve */

/* CreateSnapshot options (a{sv}) */
#define VS_OPT_METHOD          "method"   /* s: auto|live|cold|rbd */
#define VS_OPT_DISKS           "disks"    /* as: disk targets (vda ...) */
#define VS_OPT_QUIESCE         "quiesce"  /* s: off|try|require */
#define VS_OPT_FORMAT          "format"   /* s: qcow2|raw */
#define VS_OPT_COMPRESS        "compress" /* b */
#define VS_OPT_COPY            "copy"     /* s: shallow|direct */
#define VS_OPT_NAME            "name"     /* s: snapshot name, [A-Za-z0-9._-], no leading dot */
#define VS_OPT_FORCE           "force"    /* b: abort block jobs that are not ours */
#define VS_OPT_LEGACY_UNDEFINE "legacy-undefine" /* b: use undefine/rebase, not a transient job */
#define VS_OPT_BANDWIDTH       "bandwidth"       /* t: copy bandwidth limit, bytes/s (0: none) */
#define VS_OPT_FLATTEN         "flatten" /* b: rbd: flatten the clone (default: [rbd] flatten) */
/* RevertSnapshot's options (and "bandwidth": the write-back's limit) */
#define VS_OPT_STOP   "stop"   /* b: shut a running domain down first */
#define VS_OPT_SAFETY "safety" /* b: keep the current content as a snapshot (default) */

/* CloneSnapshot options (a{sv}) */
#define VS_OPT_CLONE_NAME  "name"  /* s, required: the clone domain's name (as a snapshot name) */
#define VS_OPT_CLONE_START "start" /* b: start the clone once defined */
#define VS_OPT_CLONE_FULL  "full"  /* b: copy the images instead of overlays on the snapshot's */
/* VerifySnapshot options (a{sv}) */
#define VS_OPT_DEEP "deep" /* b: also check the file systems (e2fsck -fn, xfs_repair -n) */

/* Job states, as seen in Job1.State */
#define VS_STATE_QUEUED      "queued"
#define VS_STATE_RUNNING     "running"
#define VS_STATE_SUCCEEDED   "succeeded"
#define VS_STATE_FAILED      "failed"
#define VS_STATE_CANCELLED   "cancelled"
#define VS_STATE_INTERRUPTED "interrupted"

/* Job phases, as seen in Job1.Phase (clients wait on these words) */
#define VS_PHASE_NAME_QUEUED        "queued"
#define VS_PHASE_NAME_CLEAR_JOBS    "clear-jobs"
#define VS_PHASE_NAME_PREPARE       "prepare"
#define VS_PHASE_NAME_SAVE          "save"
#define VS_PHASE_NAME_COPY          "copy"
#define VS_PHASE_NAME_WAIT_READY    "wait-ready"
#define VS_PHASE_NAME_FREEZE_WINDOW "freeze-window"
#define VS_PHASE_NAME_REDEFINE      "redefine"
#define VS_PHASE_NAME_FLATTEN       "flatten"
#define VS_PHASE_NAME_EXTRACT       "extract"
#define VS_PHASE_NAME_CLONE         "clone"
#define VS_PHASE_NAME_RESTORE       "restore"
#define VS_PHASE_NAME_OVERLAY       "overlay" /* clone */
#define VS_PHASE_NAME_DEFINE        "define"  /* clone */
#define VS_PHASE_NAME_START         "start"   /* clone */
#define VS_PHASE_NAME_CHECK         "check"
#define VS_PHASE_NAME_DEEP_CHECK    "deep-check"
#define VS_PHASE_NAME_RECORD        "record"
#define VS_PHASE_NAME_CATALOG       "catalog"
#define VS_PHASE_NAME_DONE          "done"
#define VS_PHASE_NAME_UNDO          "cleanup"
#define VS_PHASE_NAME_ENDED         "ended"
/* revert */
#define VS_PHASE_NAME_STOP       "stop"
#define VS_PHASE_NAME_WRITE_BACK "write-back"

/* Longest snapshot name a caller may give: it becomes one path component. */
#define VS_NAME_MAX 64

/* polkit actions of the mutating methods (packaging/org.virtsnap.policy) */
#define VS_ACTION_PREFIX          "org.virtsnap."
#define VS_ACTION_SNAPSHOT_CREATE "org.virtsnap.snapshot.create"
#define VS_ACTION_SNAPSHOT_DELETE "org.virtsnap.snapshot.delete"
#define VS_ACTION_POLICY_SET      "org.virtsnap.policy.set"
#define VS_ACTION_JOB_CANCEL      "org.virtsnap.job.cancel"
#define VS_ACTION_SNAPSHOT_CLONE  "org.virtsnap.snapshot.clone"
#define VS_ACTION_SNAPSHOT_EXPORT "org.virtsnap.snapshot.export"
#define VS_ACTION_SNAPSHOT_VERIFY "org.virtsnap.snapshot.verify"
#define VS_ACTION_SNAPSHOT_REVERT "org.virtsnap.snapshot.revert"
/* Who may change things when polkitd is not there (and in the shipped rule): root and
 * this group, like libvirt's own policy. */
#define VS_ADMIN_GROUP "libvirt"
