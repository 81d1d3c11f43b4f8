/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who uses a snapshot: instant clones (<snapshot_dir>/clones/NAME/clone.json) and exports
 * (<state_dir>/exports/N.json), read from disk. Deleting and pruning ask here first. */
#pragma once

#include <glib.h>
#include <libvirt/libvirt.h>

G_BEGIN_DECLS

#define VS_CLONES_DIR  "clones"
#define VS_CLONE_FILE  "clone.json"
#define VS_EXPORTS_DIR "exports"

typedef enum {
    VS_HOLDER_CLONE,
    VS_HOLDER_EXPORT,
} VsHolderKind;

typedef struct {
    VsHolderKind kind;
    char *snapshot_id;
    char *name; /* clone: its name (= its folder's); export: its object path */
    char *uuid; /* clone: its domain's UUID; export: NULL */
} VsHolder;

void vs_holder_free(VsHolder *holder);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsHolder, vs_holder_free)

/* Every holder on disk (VsHolder*): clones that are not full copies, and exports. Either
 * directory may be NULL. Unreadable or odd files are logged and skipped; symlinks are
 * never followed. Any thread. */
GPtrArray *vs_holds_scan(const char *snapshot_dir, const char *state_dir);

/* ListSnapshots' used-by word: "clone web2", "export /org/virtsnap/Agent1/export/3". */
char *vs_holder_label(const VsHolder *holder);

/* Whether a clone's domain is still defined: FALSE only when libvirt says there is no
 * domain with that UUID; with no connection (@conn NULL) or any other error, TRUE, so
 * that a snapshot a clone may still use is never removed. */
gboolean vs_holds_domain_defined(virConnectPtr conn, const char *uuid);

/* The holders of snapshot @id out of @all (from vs_holds_scan): those in force go to
 * @held, clones whose domain is gone to @gone (either may be NULL). Borrowed pointers. */
void vs_holds_of(GPtrArray *all, const char *id, virConnectPtr conn, GPtrArray *held,
                 GPtrArray *gone);

/* FALSE with VS_ERROR_BUSY naming every holder of @id in @held ("used by clone 'web2'",
 * "exported as /org/..."); TRUE when @held is empty. */
gboolean vs_holds_check(const char *id, GPtrArray *held, GError **error);

/* Removes the leftover folder of clone @name (its domain is gone). */
gboolean vs_holds_remove_clone(const char *snapshot_dir, const char *name, GError **error);

/* @list (aa{sv}, ListSnapshots') with "used-by" (as of vs_holder_label) in every entry:
 * the holders in force of @all. Floating. */
GVariant *vs_holds_annotate_list(GVariant *list, GPtrArray *all, virConnectPtr conn);

/* Taken around "is it held? then delete it" and around "the snapshot is there? then
 * record a holder", so that a delete and a new clone or export never cross. */
void vs_holds_lock(void);
void vs_holds_unlock(void);

G_END_DECLS
