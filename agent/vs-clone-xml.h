/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A clone's domain XML, made from a snapshot's saved one: a new identity, its disks on the
 * clone's images, and nothing the clone would share with the original while both run. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
    const char *target;
    const char *file;     /* a file disk: the clone's qcow2 image */
    const char *rbd_name; /* an RBD disk: "pool/[namespace/]image" of the clone's image */
} VsCloneXmlDisk;

typedef struct {
    const char *name;
    const char *uuid;   /* chosen by us, so that the journal names it before the define */
    const char *folder; /* the clone's folder: console logs of file-backed consoles go there */
    const VsCloneXmlDisk *disks;
    guint n_disks;
} VsCloneXmlSpec;

/* The clone's XML from the snapshot's @xml. Every disk of @spec must be in @xml. @notes
 * (char*) gets one line for each device left out or changed in a way the user should know.
 * VS_ERROR_INVALID_ARGUMENT when @xml is not a domain or a disk of @spec is missing. */
char *vs_clone_xml_rewrite(const char *xml, const VsCloneXmlSpec *spec, GPtrArray *notes,
                           GError **error);

G_END_DECLS
