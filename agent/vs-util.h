/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers: names callers may give, ids we make, files written crash-safely,
 * and removal confined to the snapshot directory. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* 1..VS_NAME_MAX of [A-Za-z0-9._-], not starting with '.' or '-'. */
gboolean vs_name_is_valid(const char *name);

/* A fresh snapshot id: "20261121T231500Z-1a2b3c" (UTC time, 24 random bits). */
char *vs_make_snapshot_id(void);

/* Writes @len bytes to @path through a temp file in the same folder: write, fsync,
 * rename, fsync the folder. A crash leaves the old file or the new one, never half. */
gboolean vs_write_file_atomic(const char *path, const char *data, gssize len, int mode,
                              GError **error);

/* Removes the regular files directly inside @dir (no recursion, symlinks removed
 * as links, never followed) and then @dir. A missing @dir is fine. */
gboolean vs_remove_flat_dir(const char *dir, GError **error);

/* Sets @error from errno (ENOSPC becomes VS_ERROR_NO_SPACE). Returns FALSE. */
gboolean vs_set_errno_error(GError **error, int errsv, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* One object member each: json-glib's set_member_name + add_*_value in one call. */
void vs_json_add_string(JsonBuilder *b, const char *key, const char *value);
void vs_json_add_int(JsonBuilder *b, const char *key, gint64 value);
void vs_json_add_bool(JsonBuilder *b, const char *key, gboolean value);

/* Monotonic milliseconds. */
gint64 vs_now_ms(void);

G_END_DECLS
