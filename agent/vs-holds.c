/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Holds: the records of clones and exports that keep a snapshot from being removed.
 * The files are written by other components (and could be planted by anyone who can write
 * the directories): every one is opened without following links and checked. */
#include "vs-holds.h"
#include "vs-error.h"
#include "vs-names.h"
#include "vs-util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <libvirt/virterror.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A clone.json or an export record is a few hundred bytes; anything this big is junk. */
#define RECORD_MAX (256 * 1024)

static GMutex holds_lock;

void
vs_holds_lock(void)
{
    g_mutex_lock(&holds_lock);
}

void
vs_holds_unlock(void)
{
    g_mutex_unlock(&holds_lock);
}

void
vs_holder_free(VsHolder *holder)
{
    if (!holder)
        return;
    g_free(holder->snapshot_id);
    g_free(holder->name);
    g_free(holder->uuid);
    g_free(holder);
}

/* The JSON object in @name inside @dfd, or NULL (logged: @shown names the file). */
static JsonObject *
read_record(int dfd, const char *name, const char *shown)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;
    g_autofree char *text = NULL;
    struct stat st;
    ssize_t n = 0, got;
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        if (errno != ENOENT)
            g_warning("holds: skipping %s: %s", shown, g_strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > RECORD_MAX) {
        g_warning("holds: skipping %s: not a small regular file", shown);
        close(fd);
        return NULL;
    }
    text = g_malloc(st.st_size + 1);
    while (n < st.st_size && (got = read(fd, text + n, st.st_size - n)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            break;
        n += got;
    }
    close(fd);
    text[n] = '\0';
    if (!json_parser_load_from_data(parser, text, n, &error) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_warning("holds: skipping %s: %s", shown, error ? error->message : "not a JSON object");
        return NULL;
    }
    return json_object_ref(json_node_get_object(json_parser_get_root(parser)));
}

static const char *
string_member(JsonObject *o, const char *key)
{
    JsonNode *node = json_object_get_member(o, key);

    if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING)
        return NULL;
    return json_node_get_string(node);
}

/* Opens the folder @name inside @dfd (or the path @name when @dfd is AT_FDCWD), never
 * through a link; -1 when it is not there. */
static int
open_folder(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0 && errno != ENOENT)
        g_warning("holds: cannot open %s: %s", name, g_strerror(errno));
    return fd;
}

static void
scan_clones(const char *snapshot_dir, GPtrArray *holders)
{
    g_autofree char *path = g_build_filename(snapshot_dir, VS_CLONES_DIR, NULL);
    int dfd = open_folder(AT_FDCWD, path);
    struct dirent *ent;
    DIR *d;

    if (dfd < 0 || !(d = fdopendir(dfd))) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    while ((ent = readdir(d))) {
        g_autofree char *shown = NULL;
        g_autoptr(JsonObject) o = NULL;
        const char *id, *uuid;
        JsonNode *full;
        VsHolder *h;
        int cfd;

        /* The folder's name is the clone's: only a valid name is ever one. */
        if (!vs_name_is_valid(ent->d_name))
            continue;
        shown = g_build_filename(path, ent->d_name, VS_CLONE_FILE, NULL);
        cfd = openat(dirfd(d), ent->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd < 0) {
            g_warning("holds: skipping %s: %s", shown, g_strerror(errno));
            continue;
        }
        o = read_record(cfd, VS_CLONE_FILE, shown);
        close(cfd);
        if (!o)
            continue;
        id = string_member(o, "snapshot-id");
        uuid = string_member(o, "uuid");
        if (!vs_name_is_valid(id) || !uuid || !*uuid) {
            g_warning("holds: skipping %s: no valid snapshot-id or uuid", shown);
            continue;
        }
        if (g_strcmp0(string_member(o, "name"), ent->d_name) != 0)
            g_message("holds: %s names a clone other than its folder; the folder's name counts",
                      shown);
        full = json_object_get_member(o, "full");
        /* A full clone has its own copy of every disk: it needs nothing of the snapshot. */
        if (full && JSON_NODE_HOLDS_VALUE(full) &&
            json_node_get_value_type(full) == G_TYPE_BOOLEAN && json_node_get_boolean(full))
            continue;
        h = g_new0(VsHolder, 1);
        h->kind = VS_HOLDER_CLONE;
        h->snapshot_id = g_strdup(id);
        h->name = g_strdup(ent->d_name);
        h->uuid = g_strdup(uuid);
        g_ptr_array_add(holders, h);
    }
    closedir(d);
}

static void
scan_exports(const char *state_dir, GPtrArray *holders)
{
    g_autofree char *path = g_build_filename(state_dir, VS_EXPORTS_DIR, NULL);
    int dfd = open_folder(AT_FDCWD, path);
    struct dirent *ent;
    DIR *d;

    if (dfd < 0 || !(d = fdopendir(dfd))) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    while ((ent = readdir(d))) {
        g_autofree char *shown = NULL;
        g_autoptr(JsonObject) o = NULL;
        const char *id, *object_path;
        VsHolder *h;

        if (ent->d_name[0] == '.' || !g_str_has_suffix(ent->d_name, ".json"))
            continue;
        shown = g_build_filename(path, ent->d_name, NULL);
        if (!(o = read_record(dirfd(d), ent->d_name, shown)))
            continue;
        id = string_member(o, "snapshot-id");
        object_path = string_member(o, "path");
        if (!vs_name_is_valid(id) || !object_path || !g_variant_is_object_path(object_path)) {
            g_warning("holds: skipping %s: no valid snapshot-id or path", shown);
            continue;
        }
        h = g_new0(VsHolder, 1);
        h->kind = VS_HOLDER_EXPORT;
        h->snapshot_id = g_strdup(id);
        h->name = g_strdup(object_path);
        g_ptr_array_add(holders, h);
    }
    closedir(d);
}

GPtrArray *
vs_holds_scan(const char *snapshot_dir, const char *state_dir)
{
    GPtrArray *holders = g_ptr_array_new_with_free_func((GDestroyNotify)vs_holder_free);

    if (snapshot_dir)
        scan_clones(snapshot_dir, holders);
    if (state_dir)
        scan_exports(state_dir, holders);
    return holders;
}

char *
vs_holder_label(const VsHolder *holder)
{
    return g_strdup_printf("%s %s", holder->kind == VS_HOLDER_CLONE ? "clone" : "export",
                           holder->name);
}

gboolean
vs_holds_domain_defined(virConnectPtr conn, const char *uuid)
{
    virDomainPtr dom;

    if (!conn)
        return TRUE;
    dom = virDomainLookupByUUIDString(conn, uuid);
    if (dom) {
        virDomainFree(dom);
        return TRUE;
    }
    /* A malformed UUID cannot name a domain: libvirt answers INVALID_ARG for it. */
    return virGetLastErrorCode() != VIR_ERR_NO_DOMAIN &&
           virGetLastErrorCode() != VIR_ERR_INVALID_ARG;
}

void
vs_holds_of(GPtrArray *all, const char *id, virConnectPtr conn, GPtrArray *held, GPtrArray *gone)
{
    for (guint i = 0; i < all->len; i++) {
        VsHolder *h = g_ptr_array_index(all, i);

        if (g_strcmp0(h->snapshot_id, id) != 0)
            continue;
        if (h->kind == VS_HOLDER_CLONE && !vs_holds_domain_defined(conn, h->uuid)) {
            if (gone)
                g_ptr_array_add(gone, h);
        } else if (held) {
            g_ptr_array_add(held, h);
        }
    }
}

gboolean
vs_holds_check(const char *id, GPtrArray *held, GError **error)
{
    g_autoptr(GString) who = NULL;

    if (held->len == 0)
        return TRUE;
    who = g_string_new(NULL);
    for (guint i = 0; i < held->len; i++) {
        VsHolder *h = g_ptr_array_index(held, i);

        if (i)
            g_string_append(who, ", ");
        if (h->kind == VS_HOLDER_CLONE)
            g_string_append_printf(who, "used by clone '%s'", h->name);
        else
            g_string_append_printf(who, "exported as %s", h->name);
    }
    g_set_error(error, VS_ERROR, VS_ERROR_BUSY, "snapshot %s is %s", id, who->str);
    return FALSE;
}

GVariant *
vs_holds_annotate_list(GVariant *list, GPtrArray *all, virConnectPtr conn)
{
    GVariantBuilder b;

    g_variant_builder_init(&b, G_VARIANT_TYPE("aa{sv}"));
    for (gsize i = 0; i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) snap = g_variant_get_child_value(list, i);
        g_autoptr(GPtrArray) held = g_ptr_array_new();
        const char *id = NULL;
        GVariantBuilder entry, used_by;
        GVariantIter iter;
        const char *key;
        GVariant *value;

        g_variant_lookup(snap, "id", "&s", &id);
        if (id)
            vs_holds_of(all, id, conn, held, NULL);
        g_variant_builder_init(&entry, G_VARIANT_TYPE_VARDICT);
        g_variant_iter_init(&iter, snap);
        while (g_variant_iter_next(&iter, "{&sv}", &key, &value)) {
            if (strcmp(key, "used-by") != 0)
                g_variant_builder_add(&entry, "{sv}", key, value);
            g_variant_unref(value);
        }
        g_variant_builder_init(&used_by, G_VARIANT_TYPE_STRING_ARRAY);
        for (guint k = 0; k < held->len; k++) {
            g_autofree char *label = vs_holder_label(g_ptr_array_index(held, k));

            g_variant_builder_add(&used_by, "s", label);
        }
        g_variant_builder_add(&entry, "{sv}", "used-by", g_variant_builder_end(&used_by));
        g_variant_builder_add_value(&b, g_variant_builder_end(&entry));
    }
    return g_variant_builder_end(&b);
}

gboolean
vs_holds_remove_clone(const char *snapshot_dir, const char *name, GError **error)
{
    g_autofree char *folder = NULL;

    if (!vs_name_is_valid(name)) {
        g_set_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT, "'%s' is not a clone name", name);
        return FALSE;
    }
    folder = g_build_filename(snapshot_dir, VS_CLONES_DIR, name, NULL);
    return vs_remove_flat_dir(folder, error);
}
