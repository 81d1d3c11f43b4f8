/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Job records as small JSON files in the state directory, replaced atomically. */
#include "vs-journal.h"
#include "vs-error.h"
#include "vs-util.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#define PREFIX "job-"
#define SUFFIX ".json"

static void
rbd_item_free(gpointer p)
{
    VsJournalRbd *r = p;

    g_free(r->conf);
    g_free(r->hosts);
    g_free(r->user);
    g_free(r->pool);
    g_free(r->ns);
    g_free(r->image);
    g_free(r->snap);
    g_free(r->clone_pool);
    g_free(r->clone);
    g_free(r->client);
    g_free(r);
}

static void
revert_disk_free(gpointer p)
{
    VsJournalRevertDisk *r = p;

    g_free(r->target);
    g_free(r->image);
    g_free(r->format);
    g_free(r->safety);
    g_free(r->secret);
    g_free(r);
}

VsJournalEntry *
vs_journal_entry_new(void)
{
    VsJournalEntry *entry = g_new0(VsJournalEntry, 1);

    entry->copies = g_ptr_array_new_with_free_func(g_free);
    entry->rbd = g_ptr_array_new_with_free_func(rbd_item_free);
    entry->revert_disks = g_ptr_array_new_with_free_func(revert_disk_free);
    entry->children = g_array_new(FALSE, FALSE, sizeof(VsJournalChild));
    return entry;
}

void
vs_journal_entry_free(VsJournalEntry *entry)
{
    if (!entry)
        return;
    g_free(entry->snapshot_id);
    g_free(entry->domain);
    g_free(entry->uuid);
    g_free(entry->folder);
    g_free(entry->phase);
    g_free(entry->saved_xml);
    g_ptr_array_unref(entry->copies);
    g_ptr_array_unref(entry->rbd);
    g_free(entry->clone_name);
    g_free(entry->clone_uuid);
    g_free(entry->revert_of);
    g_ptr_array_unref(entry->revert_disks);
    g_array_unref(entry->children);
    g_free(entry);
}

char *
vs_journal_entry_to_json(const VsJournalEntry *entry)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) root = NULL;

    json_builder_begin_object(b);
    vs_json_add_string(b, "snapshot-id", entry->snapshot_id);
    vs_json_add_string(b, "domain", entry->domain);
    vs_json_add_string(b, "uuid", entry->uuid);
    vs_json_add_string(b, "folder", entry->folder);
    vs_json_add_string(b, "phase", entry->phase ? entry->phase : "");
    vs_json_add_bool(b, "undefined", entry->undefined);
    vs_json_add_string(b, "saved-xml", entry->saved_xml ? entry->saved_xml : "");
    json_builder_set_member_name(b, "copies");
    json_builder_begin_array(b);
    for (guint i = 0; i < entry->copies->len; i++)
        json_builder_add_string_value(b, g_ptr_array_index(entry->copies, i));
    json_builder_end_array(b);
    vs_json_add_bool(b, "frozen", entry->frozen);
    vs_json_add_bool(b, "suspended", entry->suspended);
    vs_json_add_bool(b, "saved", entry->saved);
    json_builder_set_member_name(b, "rbd");
    json_builder_begin_array(b);
    for (guint i = 0; i < entry->rbd->len; i++) {
        VsJournalRbd *r = g_ptr_array_index(entry->rbd, i);
        const char *fields[][2] = {{"conf", r->conf},  {"hosts", r->hosts},
                                   {"user", r->user},  {"pool", r->pool},
                                   {"ns", r->ns},      {"image", r->image},
                                   {"snap", r->snap},  {"clone-pool", r->clone_pool},
                                   {"clone", r->clone}};

        json_builder_begin_object(b);
        for (guint f = 0; f < G_N_ELEMENTS(fields); f++)
            vs_json_add_string(b, fields[f][0], fields[f][1]);
        vs_json_add_bool(b, "snap-made", r->snap_made);
        vs_json_add_bool(b, "clone-made", r->clone_made);
        vs_json_add_string(b, "client", r->client ? r->client : "");
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    if (entry->clone_name) {
        vs_json_add_string(b, "clone-name", entry->clone_name);
        vs_json_add_string(b, "clone-uuid", entry->clone_uuid);
        vs_json_add_bool(b, "clone-defined", entry->clone_defined);
        vs_json_add_bool(b, "clone-published", entry->clone_published);
    }
    /* revert */
    vs_json_add_string(b, "revert-of", entry->revert_of ? entry->revert_of : "");
    vs_json_add_bool(b, "revert-writing", entry->revert_writing);
    vs_json_add_bool(b, "revert-published", entry->revert_published);
    json_builder_set_member_name(b, "revert-disks");
    json_builder_begin_array(b);
    for (guint i = 0; i < entry->revert_disks->len; i++) {
        VsJournalRevertDisk *r = g_ptr_array_index(entry->revert_disks, i);

        json_builder_begin_object(b);
        vs_json_add_string(b, "target", r->target);
        vs_json_add_string(b, "image", r->image);
        vs_json_add_string(b, "format", r->format);
        vs_json_add_string(b, "safety", r->safety ? r->safety : "");
        vs_json_add_string(b, "secret", r->secret ? r->secret : "");
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    /* children */
    json_builder_set_member_name(b, "children");
    json_builder_begin_array(b);
    for (guint i = 0; i < entry->children->len; i++) {
        const VsJournalChild *c = &g_array_index(entry->children, VsJournalChild, i);

        json_builder_begin_object(b);
        vs_json_add_int(b, "pid", c->pid);
        vs_json_add_int(b, "start", (gint64)c->start);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);

    root = json_builder_get_root(b);
    return json_to_string(root, TRUE);
}

VsJournalEntry *
vs_journal_entry_from_json(const char *json, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(VsJournalEntry) entry = vs_journal_entry_new();
    g_autoptr(GError) local = NULL;
    JsonObject *o;
    JsonArray *copies;

    if (!json_parser_load_from_data(parser, json, -1, &local)) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "bad journal record: %s", local->message);
        return NULL;
    }
    if (!JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "bad journal record: not an object");
        return NULL;
    }
    o = json_node_get_object(json_parser_get_root(parser));
    entry->snapshot_id =
        g_strdup(json_object_get_string_member_with_default(o, "snapshot-id", NULL));
    entry->domain = g_strdup(json_object_get_string_member_with_default(o, "domain", ""));
    entry->uuid = g_strdup(json_object_get_string_member_with_default(o, "uuid", ""));
    entry->folder = g_strdup(json_object_get_string_member_with_default(o, "folder", NULL));
    entry->phase = g_strdup(json_object_get_string_member_with_default(o, "phase", ""));
    entry->undefined = json_object_get_boolean_member_with_default(o, "undefined", FALSE);
    entry->saved_xml = g_strdup(json_object_get_string_member_with_default(o, "saved-xml", ""));
    entry->frozen = json_object_get_boolean_member_with_default(o, "frozen", FALSE);
    entry->suspended = json_object_get_boolean_member_with_default(o, "suspended", FALSE);
    entry->saved = json_object_get_boolean_member_with_default(o, "saved", FALSE);
    if (json_object_has_member(o, "rbd") &&
        JSON_NODE_HOLDS_ARRAY(json_object_get_member(o, "rbd"))) {
        JsonArray *items = json_object_get_array_member(o, "rbd");

        for (guint i = 0; i < json_array_get_length(items); i++) {
            JsonObject *ro = json_array_get_object_element(items, i);
            VsJournalRbd *r = g_new0(VsJournalRbd, 1);

            if (!ro) {
                g_free(r);
                continue;
            }
#define STR(key) g_strdup(json_object_get_string_member_with_default(ro, key, ""))
            r->conf = STR("conf");
            r->hosts = STR("hosts");
            r->user = STR("user");
            r->pool = STR("pool");
            r->ns = STR("ns");
            r->image = STR("image");
            r->snap = STR("snap");
            r->clone_pool = STR("clone-pool");
            r->clone = STR("clone");
            r->client = STR("client");
#undef STR
            r->snap_made = json_object_get_boolean_member_with_default(ro, "snap-made", FALSE);
            r->clone_made = json_object_get_boolean_member_with_default(ro, "clone-made", FALSE);
            g_ptr_array_add(entry->rbd, r);
        }
    }
    if (json_object_has_member(o, "clone-name")) {
        entry->clone_name =
            g_strdup(json_object_get_string_member_with_default(o, "clone-name", NULL));
        entry->clone_uuid =
            g_strdup(json_object_get_string_member_with_default(o, "clone-uuid", ""));
        entry->clone_defined =
            json_object_get_boolean_member_with_default(o, "clone-defined", FALSE);
        entry->clone_published =
            json_object_get_boolean_member_with_default(o, "clone-published", FALSE);
        if (!vs_name_is_valid(entry->clone_name)) {
            g_set_error(error, VS_ERROR, VS_ERROR_IO, "bad journal record: bad clone name");
            return NULL;
        }
    }
    /* revert */
    if (*json_object_get_string_member_with_default(o, "revert-of", ""))
        entry->revert_of = g_strdup(json_object_get_string_member(o, "revert-of"));
    entry->revert_writing = json_object_get_boolean_member_with_default(o, "revert-writing", FALSE);
    entry->revert_published =
        json_object_get_boolean_member_with_default(o, "revert-published", FALSE);
    if (json_object_has_member(o, "revert-disks") &&
        JSON_NODE_HOLDS_ARRAY(json_object_get_member(o, "revert-disks"))) {
        JsonArray *items = json_object_get_array_member(o, "revert-disks");

        for (guint i = 0; i < json_array_get_length(items); i++) {
            JsonObject *ro = json_array_get_object_element(items, i);
            VsJournalRevertDisk *r;

            if (!ro)
                continue;
            r = g_new0(VsJournalRevertDisk, 1);
            r->target = g_strdup(json_object_get_string_member_with_default(ro, "target", ""));
            r->image = g_strdup(json_object_get_string_member_with_default(ro, "image", ""));
            r->format = g_strdup(json_object_get_string_member_with_default(ro, "format", ""));
            r->safety = g_strdup(json_object_get_string_member_with_default(ro, "safety", ""));
            r->secret = g_strdup(json_object_get_string_member_with_default(ro, "secret", ""));
            g_ptr_array_add(entry->revert_disks, r);
        }
    }
    /* children */
    if (json_object_has_member(o, "children") &&
        JSON_NODE_HOLDS_ARRAY(json_object_get_member(o, "children"))) {
        JsonArray *items = json_object_get_array_member(o, "children");

        for (guint i = 0; i < json_array_get_length(items); i++) {
            JsonObject *co = json_array_get_object_element(items, i);
            VsJournalChild c = {0};

            if (!co)
                continue;
            c.pid = json_object_get_int_member_with_default(co, "pid", 0);
            c.start = (guint64)json_object_get_int_member_with_default(co, "start", 0);
            if (c.pid > 1 && c.start > 0) /* never anything but a child's own pid */
                g_array_append_val(entry->children, c);
        }
    }
    copies = json_object_has_member(o, "copies") ? json_object_get_array_member(o, "copies") : NULL;
    for (guint i = 0; copies && i < json_array_get_length(copies); i++)
        g_ptr_array_add(entry->copies, g_strdup(json_array_get_string_element(copies, i)));

    if (!entry->snapshot_id || !vs_name_is_valid(entry->snapshot_id) || !entry->folder) {
        g_set_error(error, VS_ERROR, VS_ERROR_IO, "bad journal record: no snapshot id or folder");
        return NULL;
    }
    return g_steal_pointer(&entry);
}

static char *
record_path(const char *state_dir, const char *snapshot_id)
{
    g_autofree char *base = g_strconcat(PREFIX, snapshot_id, SUFFIX, NULL);

    return g_build_filename(state_dir, base, NULL);
}

char *
vs_journal_entry_key(const VsJournalEntry *entry)
{
    if (entry->clone_name)
        return g_strconcat("clone-", entry->clone_name, NULL);
    return g_strdup(entry->snapshot_id);
}

gboolean
vs_journal_write(const char *state_dir, const VsJournalEntry *entry, GError **error)
{
    g_autofree char *key = vs_journal_entry_key(entry);
    g_autofree char *path = record_path(state_dir, key);
    g_autofree char *json = vs_journal_entry_to_json(entry);

    return vs_write_file_atomic(path, json, -1, 0600, error);
}

void
vs_journal_remove(const char *state_dir, const char *snapshot_id)
{
    g_autofree char *path = record_path(state_dir, snapshot_id);

    if (g_unlink(path) < 0 && errno != ENOENT)
        g_warning("cannot remove journal record %s: %s", path, g_strerror(errno));
}

GPtrArray *
vs_journal_load_all(const char *state_dir)
{
    GPtrArray *entries = g_ptr_array_new_with_free_func((GDestroyNotify)vs_journal_entry_free);
    g_autoptr(GDir) dir = g_dir_open(state_dir, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *path = NULL;
        g_autofree char *json = NULL;
        g_autoptr(GError) error = NULL;
        VsJournalEntry *entry;

        if (!g_str_has_prefix(name, PREFIX) || !g_str_has_suffix(name, SUFFIX))
            continue;
        path = g_build_filename(state_dir, name, NULL);
        if (!g_file_get_contents(path, &json, NULL, &error) ||
            !(entry = vs_journal_entry_from_json(json, &error))) {
            g_warning("%s: %s", path, error->message);
            continue;
        }
        g_ptr_array_add(entries, entry);
    }
    return entries;
}
