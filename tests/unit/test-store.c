/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The journal and the catalog on a real temp directory: crash-safe records,
 * snapshots appearing whole, deletion confined to a snapshot's own folder. */
#include "vs-catalog.h"
#include "vs-error.h"
#include "vs-journal.h"
#include "vs-qemu-img.h"
#include "vs-util.h"

#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *dir;
} Fixture;

/* Warnings are counted rather than fatal: some tests expect them. */
static guint warnings_seen;

static GLogWriterOutput
count_warnings(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
    if (level & G_LOG_LEVEL_WARNING) {
        warnings_seen++;
        return G_LOG_WRITER_HANDLED;
    }
    return g_log_writer_default(level, fields, n_fields, data);
}

static void
setup(Fixture *f, gconstpointer data)
{
    f->dir = g_dir_make_tmp("vs-store-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
}

static void
teardown(Fixture *f, gconstpointer data)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);

    g_assert_true(g_spawn_command_line_sync(cmd, NULL, NULL, NULL, NULL));
    g_free(f->dir);
}

static void
test_journal_round_trip(Fixture *f, gconstpointer data)
{
    g_autoptr(VsJournalEntry) e = vs_journal_entry_new();
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) all = NULL;
    VsJournalEntry *back;

    e->snapshot_id = g_strdup("20261121T000000Z-abcdef");
    e->domain = g_strdup("guest1");
    e->uuid = g_strdup("0e0f2b52-8c7a-4b8e-9d55-8f3c4a1b2c3d");
    e->folder = g_strdup("/snap/.20261121T000000Z-abcdef.partial");
    e->phase = g_strdup("copy");
    e->undefined = TRUE;
    e->saved_xml = g_strdup("<domain><name>guest1</name></domain>");
    e->frozen = TRUE;
    g_ptr_array_add(e->copies, g_strdup("vda"));
    g_ptr_array_add(e->copies, g_strdup("vdb"));
    {
        VsJournalChild c = {4242, G_GUINT64_CONSTANT(123456789)};

        g_array_append_val(e->children, c);
    }

    g_assert_true(vs_journal_write(f->dir, e, &error));
    g_assert_no_error(error);
    all = vs_journal_load_all(f->dir);
    g_assert_cmpuint(all->len, ==, 1);
    back = g_ptr_array_index(all, 0);
    g_assert_cmpstr(back->snapshot_id, ==, e->snapshot_id);
    g_assert_cmpstr(back->saved_xml, ==, e->saved_xml);
    g_assert_true(back->undefined);
    g_assert_true(back->frozen);
    g_assert_false(back->suspended);
    g_assert_cmpuint(back->copies->len, ==, 2);
    g_assert_cmpstr(g_ptr_array_index(back->copies, 1), ==, "vdb");
    g_assert_cmpuint(back->children->len, ==, 1);
    g_assert_cmpint(g_array_index(back->children, VsJournalChild, 0).pid, ==, 4242);
    g_assert_cmpuint(g_array_index(back->children, VsJournalChild, 0).start, ==, 123456789);

    /* Rewriting replaces the record, it never leaves a temp file behind. */
    e->undefined = FALSE;
    g_assert_true(vs_journal_write(f->dir, e, &error));
    {
        g_autoptr(GDir) d = g_dir_open(f->dir, 0, NULL);
        const char *name;
        guint n = 0;

        while ((name = g_dir_read_name(d))) {
            g_assert_true(g_str_has_prefix(name, "job-"));
            n++;
        }
        g_assert_cmpuint(n, ==, 1);
    }
    vs_journal_remove(f->dir, e->snapshot_id);
    g_clear_pointer(&all, g_ptr_array_unref);
    all = vs_journal_load_all(f->dir);
    g_assert_cmpuint(all->len, ==, 0);
}

/* A clone job's record: its own key (a clone and a snapshot job of one snapshot never
 * share a record), its fields back as written. */
static void
test_journal_clone_record(Fixture *f, gconstpointer data)
{
    g_autoptr(VsJournalEntry) e = vs_journal_entry_new();
    g_autoptr(VsJournalEntry) plain = vs_journal_entry_new();
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) all = NULL;
    g_autofree char *key = NULL;
    g_autofree char *json = NULL;
    VsJournalEntry *back = NULL;

    e->snapshot_id = g_strdup("20261121T000000Z-abcdef");
    e->domain = g_strdup("web2");
    e->uuid = g_strdup("9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d");
    e->folder = g_strdup("/snap/clones/.web2.partial");
    e->clone_name = g_strdup("web2");
    e->clone_uuid = g_strdup(e->uuid);
    e->clone_defined = TRUE;
    plain->snapshot_id = g_strdup(e->snapshot_id);
    plain->folder = g_strdup("/snap/.20261121T000000Z-abcdef.partial");

    key = vs_journal_entry_key(e);
    g_assert_cmpstr(key, ==, "clone-web2");
    g_assert_true(vs_journal_write(f->dir, e, &error));
    g_assert_true(vs_journal_write(f->dir, plain, &error));
    g_assert_no_error(error);
    all = vs_journal_load_all(f->dir);
    g_assert_cmpuint(all->len, ==, 2);
    for (guint i = 0; i < all->len; i++) {
        VsJournalEntry *x = g_ptr_array_index(all, i);

        if (x->clone_name)
            back = x;
    }
    g_assert_nonnull(back);
    g_assert_cmpstr(back->clone_name, ==, "web2");
    g_assert_cmpstr(back->clone_uuid, ==, e->clone_uuid);
    g_assert_true(back->clone_defined);
    g_assert_false(back->clone_published);
    vs_journal_remove(f->dir, key);
    vs_journal_remove(f->dir, plain->snapshot_id);
    g_clear_pointer(&all, g_ptr_array_unref);
    all = vs_journal_load_all(f->dir);
    g_assert_cmpuint(all->len, ==, 0);

    /* A clone name that could step out of the clones folder is refused. */
    g_free(e->clone_name);
    e->clone_name = g_strdup("../web2");
    json = vs_journal_entry_to_json(e);
    g_assert_null(vs_journal_entry_from_json(json, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_IO);
}

/* A revert's record: which disks may be partly written and where their safety copy is. */
static void
test_journal_revert(Fixture *f, gconstpointer data)
{
    g_autoptr(VsJournalEntry) e = vs_journal_entry_new();
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) all = NULL;
    VsJournalRevertDisk *d = g_new0(VsJournalRevertDisk, 1);
    VsJournalEntry *back;
    VsJournalRevertDisk *bd;

    e->snapshot_id = g_strdup("20261121T000000Z-abcdef");
    e->folder = g_strdup("/snap/.20261121T000000Z-abcdef.partial");
    e->revert_of = g_strdup("20261120T000000Z-123456");
    e->revert_writing = TRUE;
    d->target = g_strdup("vda");
    d->image = g_strdup("/images/g-vda.qcow2");
    d->format = g_strdup("qcow2");
    d->safety = g_strdup("/snap/20261121T000000Z-abcdef/vda.qcow2");
    d->secret = g_strdup("0b0e6f2a-95b2-4b8e-9d6e-3f1c2a4d5e6f");
    g_ptr_array_add(e->revert_disks, d);
    g_assert_true(vs_journal_write(f->dir, e, &error));
    g_assert_no_error(error);
    all = vs_journal_load_all(f->dir);
    g_assert_cmpuint(all->len, ==, 1);
    back = g_ptr_array_index(all, 0);
    g_assert_cmpstr(back->revert_of, ==, e->revert_of);
    g_assert_true(back->revert_writing);
    g_assert_false(back->revert_published);
    g_assert_cmpuint(back->revert_disks->len, ==, 1);
    bd = g_ptr_array_index(back->revert_disks, 0);
    g_assert_cmpstr(bd->target, ==, "vda");
    g_assert_cmpstr(bd->image, ==, d->image);
    g_assert_cmpstr(bd->format, ==, "qcow2");
    g_assert_cmpstr(bd->safety, ==, d->safety);
    g_assert_cmpstr(bd->secret, ==, d->secret);
    vs_journal_remove(f->dir, e->snapshot_id);

    /* A snapshot job's record is not a revert. */
    g_clear_pointer(&all, g_ptr_array_unref);
    g_clear_pointer(&e->revert_of, g_free);
    g_assert_true(vs_journal_write(f->dir, e, &error));
    all = vs_journal_load_all(f->dir);
    g_assert_null(((VsJournalEntry *)g_ptr_array_index(all, 0))->revert_of);
}

/* An rbd record keeps the Ceph client that had the images open (recovery blocklists it),
 * and a child whose pid cannot be a child of ours is dropped on load. */
static void
test_journal_fault_fields(Fixture *f, gconstpointer data)
{
    g_autoptr(VsJournalEntry) e = vs_journal_entry_new();
    g_autoptr(VsJournalEntry) back = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *json = NULL;
    VsJournalRbd *r = g_new0(VsJournalRbd, 1);
    VsJournalChild good = {777, 42}, init = {1, 42}, unknown = {778, 0};

    e->snapshot_id = g_strdup("20261121T000000Z-abcdef");
    e->folder = g_strdup("/snap/.20261121T000000Z-abcdef.partial");
    r->pool = g_strdup("vs");
    r->image = g_strdup("img");
    r->snap = g_strdup("virtsnap-20261121T000000Z-abcdef");
    r->client = g_strdup("v2:127.0.0.1:0/123456");
    g_ptr_array_add(e->rbd, r);
    g_array_append_val(e->children, good);
    g_array_append_val(e->children, init);
    g_array_append_val(e->children, unknown);
    json = vs_journal_entry_to_json(e);
    back = vs_journal_entry_from_json(json, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(back->rbd->len, ==, 1);
    g_assert_cmpstr(((VsJournalRbd *)g_ptr_array_index(back->rbd, 0))->client, ==,
                    "v2:127.0.0.1:0/123456");
    g_assert_cmpuint(back->children->len, ==, 1);
    g_assert_cmpint(g_array_index(back->children, VsJournalChild, 0).pid, ==, 777);
}

static void
test_journal_bad_records(Fixture *f, gconstpointer data)
{
    g_autofree char *garbage = g_build_filename(f->dir, "job-x.json", NULL);
    g_autofree char *evil = g_build_filename(f->dir, "job-y.json", NULL);
    g_autoptr(GPtrArray) all = NULL;
    g_autoptr(GError) error = NULL;

    g_assert_true(g_file_set_contents(garbage, "{not json", -1, NULL));
    g_assert_true(
        g_file_set_contents(evil, "{\"snapshot-id\": \"../../etc\", \"folder\": \"/\"}", -1, NULL));
    warnings_seen = 0;
    all = vs_journal_load_all(f->dir);
    g_assert_cmpuint(warnings_seen, ==, 2); /* each bad record is reported */
    g_assert_cmpuint(all->len, ==, 0);
    g_assert_null(vs_journal_entry_from_json("[]", &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_IO);
}

static JsonNode *
metadata(const char *id, const char *name, const char *domain, gint64 created)
{
    g_autofree char *text = g_strdup_printf(
        "{\"id\": \"%s\", \"name\": \"%s\", \"domain\": \"%s\", \"uuid\": \"u-%s\", "
        "\"created-us\": %" G_GINT64_FORMAT ", \"quiesced\": true, \"domain-xml\": \"<x/>\", "
        "\"disks\": [{\"target\": \"vda\", \"bytes\": 12}]}",
        id, name, domain, domain, created);

    return json_from_string(text, NULL);
}

static void
make_snapshot(Fixture *f, const char *id, const char *name, const char *domain, gint64 created)
{
    g_autofree char *partial = vs_catalog_partial_dir(f->dir, id);
    g_autofree char *image = g_build_filename(partial, "vda.qcow2", NULL);
    g_autoptr(JsonNode) meta = metadata(id, name, domain, created);
    g_autoptr(GError) error = NULL;

    g_assert_cmpint(g_mkdir(partial, 0711), ==, 0);
    g_assert_true(g_file_set_contents(image, "image", -1, NULL));
    g_assert_true(vs_catalog_write_metadata(partial, meta, &error));
    /* Not listed until published. */
    g_assert_false(vs_catalog_name_taken(f->dir, NULL, name));
    g_assert_true(vs_catalog_publish(f->dir, id, &error));
    g_assert_no_error(error);
}

static void
test_catalog(Fixture *f, gconstpointer data)
{
    g_autoptr(GVariant) all = NULL;
    g_autoptr(GVariant) one = NULL;
    g_autoptr(GVariant) first = NULL;
    g_autoptr(GVariant) disks = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *outside = g_build_filename(f->dir, "outside", NULL);
    g_autofree char *link = g_build_filename(f->dir, "snap-c", NULL);
    const char *s;
    gint64 created;
    gboolean quiesced;

    make_snapshot(f, "snap-b", "second", "web", 200);
    make_snapshot(f, "snap-a", "first", "web", 100);
    make_snapshot(f, "snap-d", "other", "db", 300);

    all = g_variant_ref_sink(vs_catalog_list(f->dir, NULL));
    g_assert_cmpuint(g_variant_n_children(all), ==, 3);
    first = g_variant_get_child_value(all, 0);
    g_assert_true(g_variant_lookup(first, "id", "&s", &s));
    g_assert_cmpstr(s, ==, "snap-a"); /* oldest first */
    g_assert_true(g_variant_lookup(first, "created-us", "x", &created));
    g_assert_cmpint(created, ==, 100);
    g_assert_true(g_variant_lookup(first, "quiesced", "b", &quiesced));
    g_assert_true(quiesced);
    g_assert_false(g_variant_lookup(first, "domain-xml", "&s", &s));
    disks = g_variant_lookup_value(first, "disks", G_VARIANT_TYPE("aa{sv}"));
    g_assert_nonnull(disks);

    one = g_variant_ref_sink(vs_catalog_list(f->dir, "db"));
    g_assert_cmpuint(g_variant_n_children(one), ==, 1);
    g_assert_true(vs_catalog_name_taken(f->dir, "u-web", "first"));
    g_assert_false(vs_catalog_name_taken(f->dir, "u-db", "first"));

    g_assert_true(vs_catalog_delete(f->dir, "snap-a", &error));
    g_assert_no_error(error);
    g_assert_false(vs_catalog_delete(f->dir, "snap-a", &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT);
    g_clear_error(&error);
    g_assert_false(vs_catalog_delete(f->dir, "../snap-b", &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    g_clear_error(&error);

    /* A symlink planted in the snapshot directory is never followed. */
    g_assert_cmpint(g_mkdir(outside, 0700), ==, 0);
    {
        g_autofree char *victim = g_build_filename(outside, VS_METADATA_FILE, NULL);

        g_assert_true(g_file_set_contents(victim, "{}", -1, NULL));
        g_assert_cmpint(symlink(outside, link), ==, 0);
        g_assert_false(vs_catalog_delete(f->dir, "snap-c", &error));
        g_assert_true(g_file_test(victim, G_FILE_TEST_EXISTS));
    }
}

/* Links planted in the snapshot directory (a folder, a metadata.json, a partial folder, a
 * dangling one) are never followed: not listed, not a name taken, NoSuchSnapshot for
 * delete, and what they point to stays as it was. */
static void
test_catalog_links(Fixture *f, gconstpointer data)
{
    /* Hidden: a folder of the snapshot directory that is not a snapshot either way. */
    g_autofree char *outside = g_build_filename(f->dir, ".outside", NULL);
    g_autofree char *outside_meta = g_build_filename(outside, VS_METADATA_FILE, NULL);
    g_autofree char *outside_image = g_build_filename(outside, "vda.qcow2", NULL);
    g_autofree char *folder_link = g_build_filename(f->dir, "snap-link", NULL);
    g_autofree char *real = g_build_filename(f->dir, "snap-real", NULL);
    g_autofree char *meta_link = g_build_filename(real, VS_METADATA_FILE, NULL);
    g_autofree char *image_in_real = g_build_filename(real, "vda.qcow2", NULL);
    g_autofree char *partial = vs_catalog_partial_dir(f->dir, "snap-partial");
    g_autofree char *dangling = g_build_filename(f->dir, "snap-dangling", NULL);
    g_autofree char *fifo_dir = g_build_filename(f->dir, "snap-fifo", NULL);
    g_autofree char *fifo = g_build_filename(fifo_dir, VS_METADATA_FILE, NULL);
    g_autoptr(JsonNode) victim = metadata("snap-link", "planted", "web", 50);
    g_autofree char *victim_text = json_to_string(victim, FALSE);
    g_autoptr(GVariant) all = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *text = NULL;
    guint warnings_before = warnings_seen;
    const char *ids[] = {"snap-link", "snap-real", "snap-dangling", "snap-fifo"};

    make_snapshot(f, "snap-ok", "kept", "web", 100);
    g_assert_cmpint(g_mkdir(outside, 0700), ==, 0);
    g_assert_true(g_file_set_contents(outside_meta, victim_text, -1, NULL));
    g_assert_true(g_file_set_contents(outside_image, "outside", -1, NULL));
    g_assert_cmpint(symlink(outside, folder_link), ==, 0);
    g_assert_cmpint(g_mkdir(real, 0711), ==, 0);
    g_assert_cmpint(symlink(outside_meta, meta_link), ==, 0);
    g_assert_cmpint(symlink(outside_image, image_in_real), ==, 0);
    g_assert_cmpint(symlink(outside, partial), ==, 0);
    g_assert_cmpint(symlink("/nonexistent/virtsnap", dangling), ==, 0);
    g_assert_cmpint(g_mkdir(fifo_dir, 0711), ==, 0);
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0); /* opened, it would block a reader */

    all = g_variant_ref_sink(vs_catalog_list(f->dir, NULL));
    g_assert_cmpuint(g_variant_n_children(all), ==, 1);
    g_assert_false(vs_catalog_name_taken(f->dir, "u-web", "planted"));
    g_assert_true(vs_catalog_name_taken(f->dir, "u-web", "kept"));
    g_assert_cmpuint(warnings_seen, >, warnings_before); /* the links are logged */

    for (guint i = 0; i < G_N_ELEMENTS(ids); i++) {
        g_autoptr(JsonNode) node = vs_catalog_read_metadata(f->dir, ids[i], &error);

        g_assert_null(node);
        g_assert_error(error, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT);
        g_clear_error(&error);
        g_assert_false(vs_catalog_delete(f->dir, ids[i], &error));
        g_assert_error(error, VS_ERROR, VS_ERROR_NO_SUCH_SNAPSHOT);
        g_clear_error(&error);
    }
    g_assert_null(vs_catalog_read_metadata(f->dir, "../outside", &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    g_clear_error(&error);

    /* Everything outside is as it was; the links are still links. */
    g_assert_true(g_file_get_contents(outside_meta, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, victim_text);
    g_clear_pointer(&text, g_free);
    g_assert_true(g_file_get_contents(outside_image, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "outside");
    g_assert_true(g_file_test(folder_link, G_FILE_TEST_IS_SYMLINK));
    g_assert_true(g_file_test(partial, G_FILE_TEST_IS_SYMLINK));
    g_assert_true(g_file_test(meta_link, G_FILE_TEST_IS_SYMLINK));

    /* A real snapshot folder holding a linked image: delete removes the link, not its target. */
    {
        g_autofree char *ok_image = g_build_filename(f->dir, "snap-ok", "vdb.qcow2", NULL);

        g_assert_cmpint(symlink(outside_image, ok_image), ==, 0);
        g_assert_true(vs_catalog_delete(f->dir, "snap-ok", &error));
        g_assert_no_error(error);
        g_assert_true(g_file_test(outside_image, G_FILE_TEST_IS_REGULAR));
    }
}

static void
test_progress_parse(Fixture *f, gconstpointer data)
{
    const char *out = "    (0.00/100%)\r    (12.50/100%)\r    (37.25/100%)\r";

    g_assert_cmpfloat_with_epsilon(vs_qemu_img_parse_progress(out, strlen(out)), 0.3725, 1e-6);
    g_assert_cmpfloat(vs_qemu_img_parse_progress("no progress", 11), <, 0);
    g_assert_cmpfloat(vs_qemu_img_parse_progress("(12.5/100", 9), <, 0);
    g_assert_cmpfloat_with_epsilon(vs_qemu_img_parse_progress("(100.00/100%)", 13), 1.0, 1e-9);
}

static void
test_qemu_img_without_paths(void)
{
    static const char *const cases[][2] = {
        {"qemu-img: /srv/snaps/.20261123T162248Z-40a099.partial/vda.delta.qcow2: Could not write "
         "qcow2 header: No space left on device",
         "qemu-img: vda.delta.qcow2: Could not write qcow2 header: No space left on device"},
        {"Could not open '/var/lib/x/vda.qcow2': Permission denied",
         "Could not open 'vda.qcow2': Permission denied"},
        {"error while writing at byte 0: No space left on device",
         "error while writing at byte 0: No space left on device"},
        {"a/b and (/c/d) and /", "a/b and (d) and /"},
    };

    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *got = vs_qemu_img_without_paths(cases[i][0]);

        g_assert_cmpstr(got, ==, cases[i][1]);
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_writer_func(count_warnings, NULL, NULL);
    g_test_add("/store/journal-round-trip", Fixture, NULL, setup, test_journal_round_trip,
               teardown);
    g_test_add("/store/journal-clone-record", Fixture, NULL, setup, test_journal_clone_record,
               teardown);
    g_test_add("/store/journal-bad-records", Fixture, NULL, setup, test_journal_bad_records,
               teardown);
    g_test_add("/store/journal-revert", Fixture, NULL, setup, test_journal_revert, teardown);
    g_test_add("/store/journal-fault-fields", Fixture, NULL, setup, test_journal_fault_fields,
               teardown);
    g_test_add("/store/catalog", Fixture, NULL, setup, test_catalog, teardown);
    g_test_add("/store/catalog-links", Fixture, NULL, setup, test_catalog_links, teardown);
    g_test_add("/store/progress-parse", Fixture, NULL, setup, test_progress_parse, teardown);
    g_test_add_func("/store/qemu-img-without-paths", test_qemu_img_without_paths);
    return g_test_run();
}
