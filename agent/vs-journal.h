/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The journal: one crash-safe record per running job, written before every step
 * that changes a domain, so that a restarted agent can undo what a job left. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* One RBD disk's objects a job made in the cluster. */
typedef struct {
    char *conf, *hosts, *user; /* how to reach the cluster */
    char *pool, *ns, *image;   /* the source image */
    char *snap;                /* the snapshot made on it */
    char *clone_pool, *clone;  /* the clone made from it */
    gboolean snap_made;
    gboolean clone_made;
    char *client; /* our Ceph client's address: a restarted agent blocklists it (its
                   * watches on the images would hold every snapshot call for 30 s) */
} VsJournalRbd;

/* revert: one disk being written back, and where its safety copy is. */
typedef struct {
    char *target;
    char *image;  /* the disk's top image, written in place */
    char *format; /* its format */
    char *safety; /* the safety snapshot's image of it ("" without one) */
    /* luks: the UUID of the libvirt secret both are encrypted with ("" when not
     * encrypted): undo needs it to write the safety image back */
    char *secret;
} VsJournalRevertDisk;

/* A child process of ours (qemu-img) that runs for the job. */
typedef struct {
    gint64 pid;
    guint64 start; /* its start time, /proc/PID/stat field 22: a reused pid is not it */
} VsJournalChild;

typedef struct {
    char *snapshot_id;
    char *domain;
    char *uuid;
    char *folder;       /* the job's partial folder under the snapshot directory */
    char *phase;        /* last phase entered */
    gboolean undefined; /* we undefined the domain ... */
    char *saved_xml;    /* ... and this is its persistent definition */
    GPtrArray *copies;  /* disk targets with a copy job of ours that may still run */
    gboolean frozen;    /* a freeze may be in effect */
    gboolean suspended; /* we paused the vCPUs */
    gboolean saved;     /* we managed-saved the domain and have not started it again */
    GPtrArray *rbd;     /* VsJournalRbd* */

    /* clone (vs-job-clone.c): set in a clone job's record, whose snapshot_id is the
     * snapshot it clones and whose folder is the clone's partial folder */
    char *clone_name;
    char *clone_uuid;         /* the UUID we give the clone's domain */
    gboolean clone_defined;   /* the domain may be defined: undo undefines it (by UUID) */
    gboolean clone_published; /* the folder may have its final name */
    /* revert: snapshot_id and folder are the safety snapshot's */
    char *revert_of;           /* the snapshot put back (NULL: not a revert) */
    gboolean revert_writing;   /* the disks below may be partly written */
    gboolean revert_published; /* the safety snapshot is in the catalog */
    GPtrArray *revert_disks;   /* VsJournalRevertDisk* */
    /* children (vs-child.c): the processes that run for the job; a restarted agent ends a
     * leftover one before it repairs (it would hold the disks' locks) */
    GArray *children; /* VsJournalChild */
} VsJournalEntry;

VsJournalEntry *vs_journal_entry_new(void);
void vs_journal_entry_free(VsJournalEntry *entry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsJournalEntry, vs_journal_entry_free)

gboolean vs_journal_write(const char *state_dir, const VsJournalEntry *entry, GError **error);
void vs_journal_remove(const char *state_dir, const char *snapshot_id);

/* What names @entry's record (vs_journal_remove's @snapshot_id): the snapshot id, or for
 * a clone job "clone-<name>" (snapshot ids start with a digit: never the same). */
char *vs_journal_entry_key(const VsJournalEntry *entry);

/* Every record in @state_dir (unreadable ones are logged and skipped). */
GPtrArray *vs_journal_load_all(const char *state_dir);

/* Exposed for tests. */
char *vs_journal_entry_to_json(const VsJournalEntry *entry);
VsJournalEntry *vs_journal_entry_from_json(const char *json, GError **error);

G_END_DECLS
