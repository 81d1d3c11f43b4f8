/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CreateSnapshot's a{sv} options, checked and typed. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
    VS_METHOD_AUTO,
    VS_METHOD_LIVE,
    VS_METHOD_COLD,
    VS_METHOD_RBD,
    VS_METHOD_MIXED, /* RBD and local disks: cluster snapshots and mirrors, one window */
} VsMethod;
typedef enum { VS_QUIESCE_OFF, VS_QUIESCE_TRY, VS_QUIESCE_REQUIRE } VsQuiesce;
typedef enum { VS_FORMAT_QCOW2, VS_FORMAT_RAW } VsFormat;
typedef enum { VS_COPY_SHALLOW, VS_COPY_DIRECT } VsCopy;

typedef struct {
    VsMethod method;
    GStrv disks; /* NULL: the default set */
    VsQuiesce quiesce;
    VsFormat format;
    gboolean compress;
    VsCopy copy;
    char *name; /* NULL: the snapshot id */
    gboolean force;
    gboolean legacy_undefine;
    guint64 bandwidth; /* bytes/s for the mirror, 0: unlimited */
    int flatten;       /* rbd: -1 the configured default, 0 no, 1 yes */
} VsSnapshotOptions;

void vs_snapshot_options_init(VsSnapshotOptions *opts);
void vs_snapshot_options_clear(VsSnapshotOptions *opts);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VsSnapshotOptions, vs_snapshot_options_clear)

/* Fills @opts from @dict (a{sv}). Unknown keys, wrong types and bad values are
 * VS_ERROR_INVALID_ARGUMENT naming the option. */
gboolean vs_snapshot_options_parse(VsSnapshotOptions *opts, GVariant *dict, GError **error);

/* One option of a method's a{sv} and where it goes: a char * (type "s", replaced), a
 * gboolean ("b") or a guint64 ("t") at @offset in the caller's struct. */
typedef struct {
    const char *key;
    const char *type;
    gsize offset;
} VsOptionField;

/* Fills @target from @dict by @fields (ended by a NULL key); what is not in @dict is left
 * as it was. An unknown key or a wrong type is VS_ERROR_INVALID_ARGUMENT naming the key
 * (and, for an unknown one, the keys @method takes). */
gboolean vs_options_parse_fields(GVariant *dict, const VsOptionField *fields, gpointer target,
                                 const char *method, GError **error);

const char *vs_method_name(VsMethod method);
const char *vs_quiesce_name(VsQuiesce quiesce);
const char *vs_format_name(VsFormat format);
const char *vs_copy_name(VsCopy copy);

G_END_DECLS
