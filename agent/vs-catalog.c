/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Finished snapshots on disk. A snapshot appears atomically: a job works in a hidden
 * ".<id>.partial" folder and renames it to "<id>" once its metadata is written. */
#include "vs-catalog.h"
#include "vs-error.h"
#include "vs-util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* metadata.json holds the domain XML: a few KiB to a few hundred; anything this big is junk. */
#define METADATA_MAX (16 * 1024 * 1024)

char *
vs_catalog_partial_dir(const char *snapshot_dir, const char *id)
{
    g_autofree char *base = g_strdup_printf(".%s.partial", id);

    return g_build_filename(snapshot_dir, base, NULL);
}

char *
vs_catalog_final_dir(const char *snapshot_dir, const char *id)
{
    return g_build_filename(snapshot_dir, id, NULL);
}

gboolean
vs_catalog_write_metadata(const char *folder, JsonNode *metadata, GError **error)
{
    g_autofree char *path = g_build_filename(folder, VS_METADATA_FILE, NULL);
    g_autofree char *text = json_to_string(metadata, TRUE);

    return vs_write_file_atomic(path, text, -1, 0640, error);
}

gboolean
vs_catalog_publish(const char *snapshot_dir, const char *id, GError **error)
{
    g_autofree char *from = vs_catalog_partial_dir(snapshot_dir, id);
    g_autofree char *to = vs_catalog_final_dir(snapshot_dir, id);

    if (rename(from, to) < 0)
        return vs_set_errno_error(error, errno, "cannot publish snapshot %s", id);
    return TRUE;
}

GVariant *
vs_json_to_variant(JsonNode *node)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObject *o = json_node_get_object(node);
        g_autoptr(GList) members = json_object_get_members(o);
        GVariantBuilder b;

        g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
        for (GList *l = members; l; l = l->next)
            g_variant_builder_add(&b, "{sv}", (const char *)l->data,
                                  vs_json_to_variant(json_object_get_member(o, l->data)));
        return g_variant_builder_end(&b);
    }
    if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *a = json_node_get_array(node);
        guint n = json_array_get_length(a);
        gboolean all_strings = TRUE, all_objects = n > 0;
        GVariantBuilder b;

        for (guint i = 0; i < n; i++) {
            JsonNode *e = json_array_get_element(a, i);

            all_strings &= JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING;
            all_objects &= JSON_NODE_HOLDS_OBJECT(e);
        }
        if (all_objects) {
            g_variant_builder_init(&b, G_VARIANT_TYPE("aa{sv}"));
            for (guint i = 0; i < n; i++)
                g_variant_builder_add_value(&b, vs_json_to_variant(json_array_get_element(a, i)));
        } else if (all_strings) {
            g_variant_builder_init(&b, G_VARIANT_TYPE_STRING_ARRAY);
            for (guint i = 0; i < n; i++)
                g_variant_builder_add(&b, "s", json_array_get_string_element(a, i));
        } else {
            g_variant_builder_init(&b, G_VARIANT_TYPE("av"));
            for (guint i = 0; i < n; i++)
                g_variant_builder_add(&b, "v", vs_json_to_variant(json_array_get_element(a, i)));
        }
        return g_variant_builder_end(&b);
    }
    if (JSON_NODE_HOLDS_VALUE(node)) {
        switch (json_node_get_value_type(node)) {
        case G_TYPE_STRING:
            return g_variant_new_string(json_node_get_string(node));
        case G_TYPE_BOOLEAN:
            return g_variant_new_boolean(json_node_get_boolean(node));
        case G_TYPE_DOUBLE:
            return g_variant_new_double(json_node_get_double(node));
        default:
            return g_variant_new_int64(json_node_get_int(node));
        }
    }
    return g_variant_new_string(""); /* null */
}

/* @name inside @dfd as text, opened without following a link; NULL (errno set) when it is
 * not a regular file of at most METADATA_MAX bytes. */
static char *
read_regular_at(int dfd, const char *name, gsize *len)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    char *text;
    gsize n = 0;
    int errsv;

    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > METADATA_MAX) {
        errsv = fstat(fd, &st) < 0 ? errno : S_ISREG(st.st_mode) ? EFBIG : ENOENT;
        close(fd);
        errno = errsv;
        return NULL;
    }
    text = g_malloc(st.st_size + 1);
    while (n < (gsize)st.st_size) {
        ssize_t got = read(fd, text + n, st.st_size - n);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            errsv = errno;
            close(fd);
            g_free(text);
            errno = errsv;
            return NULL;
        }
        if (got == 0)
            break;
        n += got;
    }
    close(fd);
    text[n] = '\0';
    *len = n;
    return text;
}

/* The snapshot folder @id inside @snapshot_dir, opened without following a link; -1 (errno
 * set, ENOENT for a link or anything not a folder) otherwise. */
static int
open_snapshot_folder(const char *snapshot_dir, const char *id)
{
    int dfd = open(snapshot_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int fd, errsv;

    if (dfd < 0)
        return -1;
    fd = openat(dfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    errsv = errno;
    close(dfd);
    /* ELOOP (a link) and ENOTDIR (a file, or a link on older kernels): not a snapshot. */
    errno = fd < 0 && (errsv == ELOOP || errsv == ENOTDIR) ? ENOENT : errsv;
    return fd;
}

JsonNode *
vs_catalog_read_metadata(const char *snapshot_dir, const char *id, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    g_autofree char *text = NULL;
    gsize len = 0;
    int fd, errsv;

    if (!vs_name_is_valid(id)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "'%s' is not a snapshot id", id);
        return NULL;
    }
    fd = open_snapshot_folder(snapshot_dir, id);
    if (fd >= 0) {
        text = read_regular_at(fd, VS_METADATA_FILE, &len);
        errsv = errno;
        close(fd);
        /* A metadata.json that is a link is not ours either. */
        errno = errsv == ELOOP ? ENOENT : errsv;
    }
    if (!text && errno == ENOENT) {
        g_set_error(error, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT, "no snapshot with id '%s'", id);
        return NULL;
    }
    if (!text) {
        vs_set_errno_error(error, errno, "cannot read the metadata of snapshot %s", id);
        return NULL;
    }
    if (!json_parser_load_from_data(parser, text, len, &local) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "cannot read the metadata of snapshot %s: %s", id,
                    local ? local->message : "not a JSON object");
        return NULL;
    }
    return json_node_copy(json_parser_get_root(parser));
}

/* Reads one finished snapshot's metadata; NULL for entries that are not snapshots. A link
 * planted in the snapshot directory (the folder or its metadata.json) is skipped, never
 * followed: we only make real folders and files there. */
static JsonNode *
read_metadata(const char *snapshot_dir, const char *id)
{
    g_autoptr(GError) error = NULL;
    JsonNode *node;

    if (!vs_name_is_valid(id))
        return NULL;
    node = vs_catalog_read_metadata(snapshot_dir, id, &error);
    if (!node && !g_error_matches(error, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT))
        g_warning("%s/%s: %s", snapshot_dir, id, error->message);
    return node;
}

/* A link among the snapshot folders is none of ours: logged, never followed. */
static gboolean
is_link(const char *snapshot_dir, const char *name)
{
    g_autofree char *path = g_build_filename(snapshot_dir, name, NULL);
    struct stat st;

    if (lstat(path, &st) < 0 || !S_ISLNK(st.st_mode))
        return FALSE;
    g_warning("%s: a symbolic link in the snapshot directory, skipped", path);
    return TRUE;
}

static gboolean
matches_domain(JsonObject *o, const char *domain)
{
    if (!domain || !*domain)
        return TRUE;
    return g_strcmp0(json_object_get_string_member_with_default(o, "domain", ""), domain) == 0 ||
           g_strcmp0(json_object_get_string_member_with_default(o, "uuid", ""), domain) == 0;
}

static gint
by_created(gconstpointer a, gconstpointer b)
{
    JsonObject *oa = json_node_get_object(*(JsonNode **)a);
    JsonObject *ob = json_node_get_object(*(JsonNode **)b);
    gint64 ca = json_object_get_int_member_with_default(oa, "created-us", 0);
    gint64 cb = json_object_get_int_member_with_default(ob, "created-us", 0);

    return ca < cb ? -1 : ca > cb;
}

/* Every finished snapshot's metadata, oldest first. */
static GPtrArray *
load_all(const char *snapshot_dir, const char *domain)
{
    GPtrArray *nodes = g_ptr_array_new_with_free_func((GDestroyNotify)json_node_unref);
    g_autoptr(GDir) dir = g_dir_open(snapshot_dir, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        JsonNode *node = is_link(snapshot_dir, name) ? NULL : read_metadata(snapshot_dir, name);

        if (node && matches_domain(json_node_get_object(node), domain))
            g_ptr_array_add(nodes, node);
        else if (node)
            json_node_unref(node);
    }
    g_ptr_array_sort(nodes, by_created);
    return nodes;
}

GVariant *
vs_catalog_list(const char *snapshot_dir, const char *domain)
{
    g_autoptr(GPtrArray) nodes = load_all(snapshot_dir, domain);
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE("aa{sv}"));
    for (guint i = 0; i < nodes->len; i++) {
        JsonObject *o = json_node_get_object(g_ptr_array_index(nodes, i));

        /* The domain XML is in metadata.json for restores; listings stay small. */
        json_object_remove_member(o, "domain-xml");
        g_variant_builder_add_value(&b, vs_json_to_variant(g_ptr_array_index(nodes, i)));
    }
    return g_variant_builder_end(&b);
}

gboolean
vs_catalog_name_taken(const char *snapshot_dir, const char *uuid, const char *name)
{
    g_autoptr(GPtrArray) nodes = load_all(snapshot_dir, uuid);

    for (guint i = 0; i < nodes->len; i++) {
        JsonObject *o = json_node_get_object(g_ptr_array_index(nodes, i));

        if (g_strcmp0(json_object_get_string_member_with_default(o, "name", ""), name) == 0)
            return TRUE;
    }
    return FALSE;
}

gboolean
vs_catalog_delete(const char *snapshot_dir, const char *id, GError **error)
{
    g_autoptr(JsonNode) meta = NULL;
    g_autoptr(GError) local = NULL;
    g_autofree char *folder = NULL;

    /* Only a real folder with a real metadata.json is a snapshot: a planted link (or a
     * folder holding one) is NoSuchSnapshot and nothing it points to is touched. */
    meta = vs_catalog_read_metadata(snapshot_dir, id, &local);
    if (!meta && (g_error_matches(local, VS_ERROR, VS_ERROR_INVALID_ARGUMENT) ||
                  g_error_matches(local, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT))) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    /* An unreadable metadata.json in a real folder of ours: still removable. */
    folder = vs_catalog_final_dir(snapshot_dir, id);
    return vs_remove_flat_dir(folder, error);
}
