/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The agent's directories at start-up: the modes QEMU needs, repaired when too tight,
 * unsearchable parents refused with the fix named. */
#include "vs-dirs.h"
#include "vs-error.h"

#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char *top;
    char *snapshots;
    char *state;
} Fixture;

static void
setup(Fixture *f, gconstpointer data)
{
    f->top = g_dir_make_tmp("vs-dirs-XXXXXX", NULL);
    g_assert_nonnull(f->top);
    g_assert_cmpint(g_chmod(f->top, 0755), ==, 0);
    f->snapshots = g_build_filename(f->top, "lib", "snapshots", NULL);
    f->state = g_build_filename(f->top, "lib", "state", NULL);
}

static void
teardown(Fixture *f, gconstpointer data)
{
    g_autofree char *cmd = g_strdup_printf("chmod -R u+rwx '%s'; rm -rf '%s'", f->top, f->top);

    g_assert_true(g_spawn_command_line_sync(cmd, NULL, NULL, NULL, NULL));
    g_free(f->top);
    g_free(f->snapshots);
    g_free(f->state);
}

static unsigned
mode_of(const char *path)
{
    struct stat st;

    g_assert_cmpint(g_stat(path, &st), ==, 0);
    return st.st_mode & 07777;
}

static void
test_created_with_their_modes(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;

    umask(0077); /* as the agent runs: the modes must not come from the mask */
    g_assert_true(vs_dirs_prepare(f->snapshots, f->state, TRUE, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(mode_of(f->snapshots), ==, 0711);
    g_assert_cmpuint(mode_of(f->state), ==, 0700);
    /* The writability probe leaves nothing behind. */
    g_assert_true(g_rmdir(f->snapshots) == 0 && g_rmdir(f->state) == 0);
}

static void
test_too_tight_is_repaired(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *parent = g_path_get_dirname(f->snapshots);

    g_assert_cmpint(g_mkdir_with_parents(f->snapshots, 0750), ==, 0);
    g_assert_cmpint(g_chmod(parent, 0755), ==, 0);
    g_assert_cmpint(g_chmod(f->snapshots, 0750), ==, 0); /* what 0.1 and its unit made */
    g_assert_cmpint(g_mkdir_with_parents(f->state, 0755), ==, 0);
    g_assert_cmpint(g_chmod(f->state, 0755), ==, 0);
    g_assert_true(vs_dirs_prepare(f->snapshots, f->state, TRUE, &error));
    g_assert_no_error(error);
    /* Search bits added, the group's read bit an admin chose kept; the journal private. */
    g_assert_cmpuint(mode_of(f->snapshots), ==, 0751);
    g_assert_cmpuint(mode_of(f->state), ==, 0700);
}

static void
test_unsearchable_parent_is_refused(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *parent = g_path_get_dirname(f->snapshots);

    g_assert_cmpint(g_mkdir_with_parents(parent, 0700), ==, 0);
    g_assert_cmpint(g_chmod(parent, 0700), ==, 0);
    g_assert_false(vs_dirs_prepare(f->snapshots, f->state, TRUE, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_IO);
    g_assert_nonnull(strstr(error->message, parent));
    g_assert_nonnull(strstr(error->message, "chmod o+x"));
    g_clear_error(&error);
    /* A session agent's QEMU is its own user: nothing to check above the directory. */
    g_assert_true(vs_dirs_prepare(f->snapshots, f->state, FALSE, &error));
    g_assert_no_error(error);
}

static void
test_not_a_directory(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *parent = g_path_get_dirname(f->snapshots);

    g_assert_cmpint(g_mkdir_with_parents(parent, 0755), ==, 0);
    g_assert_true(g_file_set_contents(f->snapshots, "", 0, NULL));
    g_assert_false(vs_dirs_prepare(f->snapshots, f->state, FALSE, &error));
    g_assert_nonnull(error);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/dirs/created-with-their-modes", Fixture, NULL, setup,
               test_created_with_their_modes, teardown);
    g_test_add("/dirs/too-tight-is-repaired", Fixture, NULL, setup, test_too_tight_is_repaired,
               teardown);
    g_test_add("/dirs/unsearchable-parent-is-refused", Fixture, NULL, setup,
               test_unsearchable_parent_is_refused, teardown);
    g_test_add("/dirs/not-a-directory", Fixture, NULL, setup, test_not_a_directory, teardown);
    return g_test_run();
}
