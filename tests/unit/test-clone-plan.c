/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CloneSnapshot's checks before any change, on a real snapshot folder in a temp directory
 * and libvirt's test driver (test:///default, whose domain "test" takes a name): unknown
 * ids, names taken by a domain or a clone, images outside the snapshot's folder. */
#include "vs-clone.h"
#include "vs-error.h"
#include "vs-util.h"
#include "vs-virt-util.h"

#include <glib/gstdio.h>
#include <string.h>

#define ID "20261123T125532Z-1a2b3c"

typedef struct {
    char *dir;
    char *image;
    virConnectPtr conn;
} Fixture;

static void
silent(void *data, virErrorPtr err)
{
}

static void
write_metadata(Fixture *f, const char *disk_json)
{
    g_autofree char *folder = g_build_filename(f->dir, ID, NULL);
    g_autofree char *path = g_build_filename(folder, "metadata.json", NULL);
    g_autofree char *json = g_strdup_printf(
        "{\"id\": \"%s\", \"domain\": \"web\", \"domain-xml\": \"<domain type='test'>"
        "<name>web</name><uuid>0e0f2b52-8c7a-4b8e-9d55-8f3c4a1b2c3d</uuid><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='/images/web.qcow2'/><target dev='vda' bus='virtio'/></disk>"
        "</devices></domain>\", \"disks\": [%s]}",
        ID, disk_json);

    g_assert_true(g_file_set_contents(path, json, -1, NULL));
}

static void
setup(Fixture *f, gconstpointer data)
{
    g_autofree char *folder = NULL;
    g_autofree char *disk = NULL;

    f->dir = g_dir_make_tmp("vs-clone-plan-XXXXXX", NULL);
    folder = g_build_filename(f->dir, ID, NULL);
    g_assert_cmpint(g_mkdir(folder, 0711), ==, 0);
    f->image = g_build_filename(folder, "vda.qcow2", NULL);
    g_assert_true(g_file_set_contents(f->image, "", 0, NULL));
    disk = g_strdup_printf("{\"target\": \"vda\", \"image\": \"%s\", \"format\": \"qcow2\", "
                           "\"virtual-size\": 67108864}",
                           f->image);
    write_metadata(f, disk);
    f->conn = virConnectOpen("test:///default");
    g_assert_nonnull(f->conn);
}

static void
teardown(Fixture *f, gconstpointer data)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);

    g_assert_true(g_spawn_command_line_sync(cmd, NULL, NULL, NULL, NULL));
    virConnectClose(f->conn);
    g_free(f->dir);
    g_free(f->image);
}

static void
test_plan(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VsClonePlan) plan =
        vs_clone_plan_make(f->conn, f->dir, ID, "web2", TRUE, FALSE, &error);
    g_autofree char *dest = g_build_filename(f->dir, "clones", "web2", "vda.qcow2", NULL);
    VsCloneDisk *d;

    g_assert_no_error(error);
    g_assert_cmpstr(plan->source_domain, ==, "web");
    g_assert_true(plan->full && !plan->start && !plan->rbd);
    g_assert_true(g_uuid_string_is_valid(plan->uuid));
    g_assert_true(g_str_has_suffix(plan->partial_dir, "/clones/.web2.partial"));
    g_assert_cmpuint(plan->disks->len, ==, 1);
    d = g_ptr_array_index(plan->disks, 0);
    g_assert_cmpstr(d->image, ==, f->image);
    g_assert_cmpstr(d->dest, ==, dest);
    g_assert_cmpuint(d->size, ==, 64 << 20);
    g_assert_nonnull(strstr(plan->xml, "<name>web2</name>"));
    g_assert_nonnull(strstr(plan->xml, plan->uuid));
    g_assert_nonnull(strstr(plan->xml, dest));
    /* Nothing was made by the check. */
    g_assert_false(g_file_test(plan->partial_dir, G_FILE_TEST_EXISTS));
}

static void
test_refused(Fixture *f, gconstpointer data)
{
    g_autofree char *taken = g_build_filename(f->dir, "clones", "web3", NULL);
    const struct {
        const char *id, *name;
        VsError code;
    } cases[] = {
        {"20200101T000000Z-000000", "web2", VS_ERROR_NO_SUCH_SNAPSHOT},
        {"clones", "web2", VS_ERROR_NO_SUCH_SNAPSHOT},
        {"../" ID, "web2", VS_ERROR_INVALID_ARGUMENT},
        {ID, "test", VS_ERROR_EXISTS}, /* the test driver's domain */
        {ID, "web3", VS_ERROR_EXISTS}, /* a clone's folder */
    };

    g_assert_cmpint(g_mkdir_with_parents(taken, 0711), ==, 0);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(VsClonePlan) plan =
            vs_clone_plan_make(f->conn, f->dir, cases[i].id, cases[i].name, FALSE, FALSE, &error);

        g_assert_null(plan);
        g_assert_error(error, VS_ERROR, (gint)cases[i].code);
    }
    g_assert_true(vs_clone_name_is_valid("web-2.b_c"));
    g_assert_false(vs_clone_name_is_valid("a..b"));
    g_assert_false(vs_clone_name_is_valid("a/b"));
    g_assert_false(vs_clone_name_is_valid(".x"));
    g_assert_false(vs_clone_name_is_valid("-x"));
    g_assert_false(vs_clone_name_is_valid(""));
}

/* The metadata is ours, but an image is only ever taken from the snapshot's own folder: it
 * is made read-only and becomes a backing file. */
static void
test_image_outside_folder(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VsClonePlan) plan = NULL;

    write_metadata(f, "{\"target\": \"vda\", \"image\": \"/etc/passwd\", \"format\": \"raw\"}");
    plan = vs_clone_plan_make(f->conn, f->dir, ID, "web2", FALSE, FALSE, &error);
    g_assert_null(plan);
    g_assert_error(error, VS_ERROR, VS_ERROR_IO);
    g_clear_error(&error);
    write_metadata(f, "{\"target\": \"../vda\", \"image\": \"x\", \"format\": \"raw\"}");
    plan = vs_clone_plan_make(f->conn, f->dir, ID, "web2", FALSE, FALSE, &error);
    g_assert_null(plan);
    g_assert_error(error, VS_ERROR, VS_ERROR_IO);
}

static void
test_rbd(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VsClonePlan) plan = NULL;
    VsCloneDisk *d;

    write_metadata(f, "{\"target\": \"vda\", \"image\": \"rbd://f/vsdest/img-x/snap\", "
                      "\"format\": \"rbd\", \"rbd\": {\"pool\": \"vsdest\", \"namespace\": \"\", "
                      "\"image\": \"img-x\", \"snap\": \"snap\", \"conf\": \"/c.conf\", "
                      "\"hosts\": \"\", \"user\": \"\"}}");
    plan = vs_clone_plan_make(f->conn, f->dir, ID, "db2", FALSE, TRUE, &error);
    g_assert_no_error(error);
    g_assert_true(plan->rbd && plan->start);
    d = g_ptr_array_index(plan->disks, 0);
    g_assert_cmpstr(d->dest, ==, "vsdest/db2-vda");
    g_assert_cmpstr(d->parent, ==, "img-x");
    g_assert_cmpstr(d->rbd_image, ==, "db2-vda");
}

/* A snapshot of the mixed method: refused, whichever kind of disk comes first. */
static void
test_mixed(Fixture *f, gconstpointer data)
{
    g_autofree char *file = g_strdup_printf(
        "{\"target\": \"vdb\", \"image\": \"%s\", \"format\": \"qcow2\"}", f->image);
    const char *rbd = "{\"target\": \"vda\", \"image\": \"rbd://f/vsdest/img-x/snap\", "
                      "\"format\": \"rbd\", \"rbd\": {\"pool\": \"vsdest\", \"namespace\": "
                      "\"\", \"image\": \"img-x\", \"snap\": \"snap\"}}";

    for (int order = 0; order < 2; order++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(VsClonePlan) plan = NULL;
        g_autofree char *disks = g_strdup_printf("%s, %s", order ? file : rbd, order ? rbd : file);

        write_metadata(f, disks);
        plan = vs_clone_plan_make(f->conn, f->dir, ID, "mix2", FALSE, FALSE, &error);
        g_assert_null(plan);
        g_assert_error(error, VS_ERROR, VS_ERROR_UNSUPPORTED);
        g_assert_nonnull(strstr(error->message, "has RBD and file disks (disk vdb is a file)"));
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    virSetErrorFunc(NULL, silent);
    g_test_add("/clone-plan/plan", Fixture, NULL, setup, test_plan, teardown);
    g_test_add("/clone-plan/refused", Fixture, NULL, setup, test_refused, teardown);
    g_test_add("/clone-plan/image-outside-folder", Fixture, NULL, setup, test_image_outside_folder,
               teardown);
    g_test_add("/clone-plan/rbd", Fixture, NULL, setup, test_rbd, teardown);
    g_test_add("/clone-plan/mixed", Fixture, NULL, setup, test_mixed, teardown);
    return g_test_run();
}
