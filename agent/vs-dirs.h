/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The snapshot and state directories, prepared at start-up (see vs-dirs.c). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Creates both directories, gives the snapshot tree the mode QEMU needs to reach a copy
 * target (0711) and the state directory 0700, and checks that we can write in both. With
 * @qemu_is_other_user, every parent of @snapshot_dir must be searchable by others. */
gboolean vs_dirs_prepare(const char *snapshot_dir, const char *state_dir,
                         gboolean qemu_is_other_user, GError **error);

G_END_DECLS
