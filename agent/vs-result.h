/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A finished job's facts, built once as one GVariant, and the two views derived from it:
 * metadata.json and the D-Bus Result. */
#pragma once

#include <json-glib/json-glib.h>

#include "vs-job-method.h"

G_BEGIN_DECLS

/* The facts (a{sv}, floating) about @job, which just finished its last step but the
 * catalog. Worker thread. */
GVariant *vs_result_facts(VsJob *job);

/* The facts of a disk that is an image file in the job's folder (all but its target). */
void vs_result_file_disk_facts(VsJob *job, VsJobDisk *disk, GVariantBuilder *facts);

/* metadata.json: the facts under their own names, less the ones only the Result shows. */
JsonNode *vs_result_metadata(GVariant *facts);

/* The Job1 Result (a{sv}, floating): the fields every method shows, then @fields. */
GVariant *vs_result_dbus(GVariant *facts, const VsResultField *fields, gint64 total_ms);

G_END_DECLS
