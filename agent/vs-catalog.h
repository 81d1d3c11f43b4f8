/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The catalog: finished snapshots, one folder each under the snapshot directory,
 * described by the metadata.json inside. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define VS_METADATA_FILE "metadata.json"

/* Folder of a job in progress: "<snapshot_dir>/.<id>.partial"; finished: "<snapshot_dir>/<id>". */
char *vs_catalog_partial_dir(const char *snapshot_dir, const char *id);
char *vs_catalog_final_dir(const char *snapshot_dir, const char *id);

/* Writes metadata.json into @folder (crash-safe). */
gboolean vs_catalog_write_metadata(const char *folder, JsonNode *metadata, GError **error);

/* Publishes a finished snapshot: renames its partial folder to its final name. */
gboolean vs_catalog_publish(const char *snapshot_dir, const char *id, GError **error);

/* Snapshots of the domain named @domain or with UUID @domain; all when @domain is NULL or "".
 * Returns aa{sv}, floating. */
GVariant *vs_catalog_list(const char *snapshot_dir, const char *domain);

/* Whether a snapshot of domain @uuid is called @name. */
gboolean vs_catalog_name_taken(const char *snapshot_dir, const char *uuid, const char *name);

/* The metadata.json of finished snapshot @id, read without following links (the folder and
 * the file must be a real folder and a regular file). NULL with VS_ERROR_INVALID_ARGUMENT
 * for an id that is not a name, VS_ERROR_NO_SUCH_SNAPSHOT when there is none (or a link),
 * VS_ERROR_IO when it cannot be read or is not a JSON object. */
JsonNode *vs_catalog_read_metadata(const char *snapshot_dir, const char *id, GError **error);

/* Removes the snapshot @id (its files and folder). VS_ERROR_NO_SUCH_SNAPSHOT if absent. */
gboolean vs_catalog_delete(const char *snapshot_dir, const char *id, GError **error);

/* A JSON value as a GVariant: objects a{sv}, strings s, integers x, booleans b, doubles d,
 * arrays of strings as, arrays of objects aa{sv}, other arrays av. Floating. */
GVariant *vs_json_to_variant(JsonNode *node);

G_END_DECLS
