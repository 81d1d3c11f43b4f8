/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Holds read from a real temp directory: instant clones and exports hold, full clones do
 * not, junk and links are skipped, a clone whose domain is gone (libvirt's test driver
 * says so) no longer holds. */
#include "vs-error.h"
#include "vs-holds.h"
#include "vs-util.h"

#include <libvirt/virterror.h>

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_A "20261123T120000Z-aaaaaa"
#define SNAP_B "20261123T120100Z-bbbbbb"
/* The one domain of libvirt's test:///default. */
#define TEST_UUID "6695eb01-f6a4-8304-79aa-97f2502e193f"
#define GONE_UUID "0e0f2b52-8c7a-4b8e-9d55-8f3c4a1b2c3d"

typedef struct {
    char *dir;
    char *snapshot_dir;
    char *state_dir;
} Fixture;

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
put(const char *dir, const char *name, const char *text)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);

    g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

static void
put_clone(Fixture *f, const char *folder, const char *text)
{
    g_autofree char *dir = g_build_filename(f->snapshot_dir, VS_CLONES_DIR, folder, NULL);

    put(dir, VS_CLONE_FILE, text);
}

static char *
clone_json(const char *name, const char *id, const char *uuid, gboolean full)
{
    return g_strdup_printf("{\"name\": \"%s\", \"uuid\": \"%s\", \"snapshot-id\": \"%s\", "
                           "\"full\": %s, \"created\": 1, \"disks\": []}",
                           name, uuid, id, full ? "true" : "false");
}

static void
setup(Fixture *f, gconstpointer data)
{
    g_autofree char *exports = NULL;
    g_autofree char *web2 = clone_json("web2", SNAP_A, TEST_UUID, FALSE);
    g_autofree char *old = clone_json("old", SNAP_A, GONE_UUID, FALSE);
    g_autofree char *full = clone_json("full1", SNAP_A, TEST_UUID, TRUE);
    g_autofree char *noid = clone_json("noid", "../etc", TEST_UUID, FALSE);
    g_autofree char *big = g_strnfill(300 * 1024, ' ');
    g_autofree char *path = NULL;
    g_autofree char *target = NULL;

    f->dir = g_dir_make_tmp("vs-holds-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    f->snapshot_dir = g_build_filename(f->dir, "snapshots", NULL);
    f->state_dir = g_build_filename(f->dir, "state", NULL);
    exports = g_build_filename(f->state_dir, VS_EXPORTS_DIR, NULL);

    put_clone(f, "web2", web2);
    put_clone(f, "old", old);
    put_clone(f, "full1", full);
    put_clone(f, "noid", noid);
    put_clone(f, "junk", "{not json");
    put_clone(f, ".hidden", web2);
    /* A link to a clone folder, and a clone.json that is a link: neither is read. */
    path = g_build_filename(f->snapshot_dir, VS_CLONES_DIR, "linked", NULL);
    target = g_build_filename(f->snapshot_dir, VS_CLONES_DIR, "web2", NULL);
    g_assert_cmpint(symlink(target, path), ==, 0);
    g_free(path);
    g_free(target);
    path = g_build_filename(f->snapshot_dir, VS_CLONES_DIR, "filelink", NULL);
    g_assert_cmpint(g_mkdir(path, 0700), ==, 0);
    g_free(path);
    path = g_build_filename(f->snapshot_dir, VS_CLONES_DIR, "filelink", VS_CLONE_FILE, NULL);
    target = g_build_filename(f->snapshot_dir, VS_CLONES_DIR, "web2", VS_CLONE_FILE, NULL);
    g_assert_cmpint(symlink(target, path), ==, 0);

    put(exports, "3.json",
        "{\"id\": 3, \"path\": \"/org/virtsnap/Agent1/export/3\", \"snapshot-id\": \"" SNAP_B
        "\", \"disk\": \"vda\", \"socket\": \"/x\", \"pid\": 1, \"owner\": 0, \"created\": 1}");
    put(exports, "4.json", "{\"path\": \"not a path\", \"snapshot-id\": \"" SNAP_B "\"}");
    put(exports, "5.json", big);
    put(exports, "notes.txt", "ignored: not a record");
    g_free(path);
    path = g_build_filename(exports, "6.json", NULL);
    g_assert_cmpint(mkfifo(path, 0600), ==, 0);
}

static void
teardown(Fixture *f, gconstpointer data)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);

    g_assert_true(g_spawn_command_line_sync(cmd, NULL, NULL, NULL, NULL));
    g_free(f->dir);
    g_free(f->snapshot_dir);
    g_free(f->state_dir);
}

static VsHolder *
find(GPtrArray *holders, const char *name)
{
    for (guint i = 0; i < holders->len; i++) {
        VsHolder *h = g_ptr_array_index(holders, i);

        if (strcmp(h->name, name) == 0)
            return h;
    }
    return NULL;
}

/* The holder @name, which must be there. */
static VsHolder *
get(GPtrArray *holders, const char *name)
{
    VsHolder *h = find(holders, name);

    if (!h)
        g_error("no holder %s", name);
    return h;
}

static void
test_scan(Fixture *f, gconstpointer data)
{
    g_autoptr(GPtrArray) holders = NULL;
    VsHolder *h;

    warnings_seen = 0;
    holders = vs_holds_scan(f->snapshot_dir, f->state_dir);
    /* web2 and old (instant clones), export 3; the rest is junk or does not hold. */
    g_assert_cmpuint(holders->len, ==, 3);
    h = get(holders, "web2");
    g_assert_cmpint(h->kind, ==, VS_HOLDER_CLONE);
    g_assert_cmpstr(h->snapshot_id, ==, SNAP_A);
    g_assert_cmpstr(h->uuid, ==, TEST_UUID);
    g_assert_nonnull(find(holders, "old"));
    g_assert_null(find(holders, "full1"));
    h = get(holders, "/org/virtsnap/Agent1/export/3");
    g_assert_cmpint(h->kind, ==, VS_HOLDER_EXPORT);
    g_assert_cmpstr(h->snapshot_id, ==, SNAP_B);
    g_assert_null(h->uuid);
    /* noid, junk, linked, filelink, 4, 5, 6: each reported. */
    g_assert_cmpuint(warnings_seen, ==, 7);
}

static void
test_missing_dirs(Fixture *f, gconstpointer data)
{
    g_autofree char *nowhere = g_build_filename(f->dir, "nowhere", NULL);
    g_autoptr(GPtrArray) holders = NULL;

    warnings_seen = 0;
    holders = vs_holds_scan(nowhere, nowhere);
    g_assert_cmpuint(holders->len, ==, 0);
    g_assert_cmpuint(warnings_seen, ==, 0);
}

static void
test_check_without_libvirt(Fixture *f, gconstpointer data)
{
    g_autoptr(GPtrArray) holders = vs_holds_scan(f->snapshot_dir, f->state_dir);
    g_autoptr(GPtrArray) held = g_ptr_array_new();
    g_autoptr(GPtrArray) gone = g_ptr_array_new();
    g_autoptr(GPtrArray) none = g_ptr_array_new();
    g_autoptr(GError) error = NULL;

    /* No connection: every clone counts, nothing a clone may use is removed. */
    vs_holds_of(holders, SNAP_A, NULL, held, gone);
    g_assert_cmpuint(held->len, ==, 2);
    g_assert_cmpuint(gone->len, ==, 0);
    g_assert_false(vs_holds_check(SNAP_A, held, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_BUSY);
    g_assert_nonnull(strstr(error->message, "used by clone 'web2'"));
    g_assert_nonnull(strstr(error->message, "used by clone 'old'"));
    g_clear_error(&error);

    g_ptr_array_set_size(held, 0);
    vs_holds_of(holders, SNAP_B, NULL, held, NULL);
    g_assert_false(vs_holds_check(SNAP_B, held, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_BUSY);
    g_assert_nonnull(strstr(error->message, "exported as /org/virtsnap/Agent1/export/3"));
    g_clear_error(&error);

    vs_holds_of(holders, "20261123T000000Z-cccccc", NULL, none, NULL);
    g_assert_true(vs_holds_check("20261123T000000Z-cccccc", none, &error));
    g_assert_no_error(error);
}

static void
test_check_with_libvirt(Fixture *f, gconstpointer data)
{
    g_autoptr(GPtrArray) holders = vs_holds_scan(f->snapshot_dir, f->state_dir);
    g_autoptr(GPtrArray) held = g_ptr_array_new();
    g_autoptr(GPtrArray) gone = g_ptr_array_new();
    virConnectPtr conn = virConnectOpen("test:///default");

    g_assert_nonnull(conn);
    g_assert_true(vs_holds_domain_defined(conn, TEST_UUID));
    g_assert_false(vs_holds_domain_defined(conn, GONE_UUID));
    g_assert_false(vs_holds_domain_defined(conn, "not-a-uuid"));
    vs_holds_of(holders, SNAP_A, conn, held, gone);
    g_assert_cmpuint(held->len, ==, 1);
    g_assert_cmpstr(((VsHolder *)g_ptr_array_index(held, 0))->name, ==, "web2");
    g_assert_cmpuint(gone->len, ==, 1);
    g_assert_cmpstr(((VsHolder *)g_ptr_array_index(gone, 0))->name, ==, "old");
    virConnectClose(conn);
}

static void
test_annotate(Fixture *f, gconstpointer data)
{
    g_autoptr(GPtrArray) holders = vs_holds_scan(f->snapshot_dir, f->state_dir);
    GVariantBuilder b;
    g_autoptr(GVariant) list = NULL;
    g_autoptr(GVariant) out = NULL;
    g_autoptr(GVariant) a = NULL;
    g_autoptr(GVariant) bb = NULL;
    g_autofree const char **used_a = NULL;
    g_autofree const char **used_b = NULL;

    g_variant_builder_init(&b, G_VARIANT_TYPE("aa{sv}"));
    g_variant_builder_add_parsed(&b, "{'id': <%s>, 'used-by': <'stale'>}", SNAP_A);
    g_variant_builder_add_parsed(&b, "{'id': <%s>, 'name': <'x'>}", SNAP_B);
    list = g_variant_ref_sink(g_variant_builder_end(&b));
    out = g_variant_ref_sink(vs_holds_annotate_list(list, holders, NULL));
    g_assert_cmpuint(g_variant_n_children(out), ==, 2);
    a = g_variant_get_child_value(out, 0);
    bb = g_variant_get_child_value(out, 1);
    g_assert_true(g_variant_lookup(a, "used-by", "^a&s", &used_a));
    g_assert_cmpuint(g_strv_length((char **)used_a), ==, 2);
    g_assert_true(g_strv_contains(used_a, "clone web2"));
    g_assert_true(g_strv_contains(used_a, "clone old"));
    g_assert_true(g_variant_lookup(bb, "used-by", "^a&s", &used_b));
    g_assert_cmpuint(g_strv_length((char **)used_b), ==, 1);
    g_assert_cmpstr(used_b[0], ==, "export /org/virtsnap/Agent1/export/3");
    g_assert_true(g_variant_lookup(bb, "name", "&s", NULL));
}

static void
test_remove_clone(Fixture *f, gconstpointer data)
{
    g_autofree char *folder = g_build_filename(f->snapshot_dir, VS_CLONES_DIR, "old", NULL);
    g_autofree char *overlay = g_build_filename(folder, "vda.qcow2", NULL);
    g_autofree char *other = g_build_filename(f->snapshot_dir, VS_CLONES_DIR, "web2", NULL);
    g_autoptr(GError) error = NULL;

    g_assert_true(g_file_set_contents(overlay, "qcow2", -1, NULL));
    g_assert_true(vs_holds_remove_clone(f->snapshot_dir, "old", &error));
    g_assert_no_error(error);
    g_assert_false(g_file_test(folder, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(other, G_FILE_TEST_IS_DIR));

    g_assert_false(vs_holds_remove_clone(f->snapshot_dir, "../snapshots", &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    g_assert_true(g_file_test(f->snapshot_dir, G_FILE_TEST_IS_DIR));
}

static void
quiet_libvirt(void *data, virErrorPtr error)
{
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_writer_func(count_warnings, NULL, NULL);
    /* libvirt's test driver must not print its errors into the TAP stream. */
    virSetErrorFunc(NULL, quiet_libvirt);
    g_test_add("/holds/scan", Fixture, NULL, setup, test_scan, teardown);
    g_test_add("/holds/missing-dirs", Fixture, NULL, setup, test_missing_dirs, teardown);
    g_test_add("/holds/check-without-libvirt", Fixture, NULL, setup, test_check_without_libvirt,
               teardown);
    g_test_add("/holds/check-with-libvirt", Fixture, NULL, setup, test_check_with_libvirt,
               teardown);
    g_test_add("/holds/annotate", Fixture, NULL, setup, test_annotate, teardown);
    g_test_add("/holds/remove-clone", Fixture, NULL, setup, test_remove_clone, teardown);
    return g_test_run();
}
