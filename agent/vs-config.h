/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapd.conf: what the agent connects to and where it keeps its files. */
#pragma once

#include <glib.h>

#include "vs-rbd.h"

G_BEGIN_DECLS

typedef struct {
    char *uri;             /* libvirt URI */
    char *snapshot_dir;    /* finished snapshots (and deltas while a job runs) */
    char *state_dir;       /* the journal */
    char *runtime_dir;     /* sockets callers reach (exports' NBD sockets), 0711 */
    guint max_jobs;        /* jobs running at once, 1..64 */
    guint freeze_limit_ms; /* longest a guest may stay frozen before we thaw anyway */
    guint agent_timeout_s; /* guest-agent call timeout (freeze, thaw, ping) */
    VsRbdConfig rbd;       /* [rbd] */
} VsConfig;

VsConfig *vs_config_new_default(void);
VsConfig *vs_config_copy(const VsConfig *config);
void vs_config_free(VsConfig *config);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VsConfig, vs_config_free)

/* Loads @path over the defaults. A missing file is fine when @must_exist is FALSE.
 * Unknown keys are reported as warnings in @warnings (may be NULL), never fatal;
 * bad values are errors (VS_ERROR_INVALID_ARGUMENT). */
VsConfig *vs_config_load(const char *path, gboolean must_exist, GPtrArray *warnings,
                         GError **error);

/* Same, from text (for tests and for --config - ). */
VsConfig *vs_config_load_data(const char *data, GPtrArray *warnings, GError **error);

G_END_DECLS
