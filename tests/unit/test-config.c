/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtsnapd.conf parsing: defaults, values, and the errors a user sees. */
#include "vs-config.h"
#include "vs-error.h"

#include <glib/gstdio.h>
#include <string.h>

static void
test_defaults(void)
{
    g_autoptr(VsConfig) c = vs_config_load_data("", NULL, NULL);

    g_assert_nonnull(c);
    g_assert_cmpstr(c->uri, ==, "qemu:///system");
    g_assert_true(g_str_has_suffix(c->snapshot_dir, "/lib/virtsnap/snapshots"));
    g_assert_cmpuint(c->max_jobs, ==, 2);
    g_assert_cmpuint(c->freeze_limit_ms, ==, 10000);
    g_assert_cmpstr(c->runtime_dir, ==, "/run/virtsnap");
}

static void
test_values(void)
{
    g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) error = NULL;
    g_autoptr(VsConfig) c = vs_config_load_data("[agent]\n"
                                                "uri = qemu:///session\n"
                                                "snapshot_dir = /srv/snaps\n"
                                                "state_dir=/srv/state\n"
                                                "runtime_dir = /run/vs-test\n"
                                                "max_jobs = 4\n"
                                                "freeze_limit_ms = 2500\n"
                                                "colour = blue\n"
                                                "[rbd]\n"
                                                "ceph_conf = /etc/ceph/lab.conf\n"
                                                "dest_pool = backups\n"
                                                "flatten = true\n"
                                                "connect_timeout_s = 3\n"
                                                "[nonsense]\n",
                                                warnings, &error);

    g_assert_no_error(error);
    g_assert_cmpstr(c->uri, ==, "qemu:///session");
    g_assert_cmpstr(c->snapshot_dir, ==, "/srv/snaps");
    g_assert_cmpstr(c->state_dir, ==, "/srv/state");
    g_assert_cmpstr(c->runtime_dir, ==, "/run/vs-test");
    g_assert_cmpuint(c->max_jobs, ==, 4);
    g_assert_cmpuint(c->freeze_limit_ms, ==, 2500);
    g_assert_cmpstr(c->rbd.ceph_conf, ==, "/etc/ceph/lab.conf");
    g_assert_cmpstr(c->rbd.dest_pool, ==, "backups");
    g_assert_true(c->rbd.flatten);
    g_assert_cmpuint(c->rbd.connect_timeout_s, ==, 3);
    {
        g_autoptr(VsConfig) copy = vs_config_copy(c);

        g_assert_cmpstr(copy->rbd.dest_pool, ==, "backups");
        g_assert_true(copy->rbd.dest_pool != c->rbd.dest_pool);
        g_assert_cmpstr(copy->runtime_dir, ==, "/run/vs-test");
    }
    /* The unknown key and section are reported, [rbd] is not (it belongs to the RBD path). */
    g_assert_cmpuint(warnings->len, ==, 2);
    g_assert_nonnull(strstr(g_ptr_array_index(warnings, 0), "colour"));
    g_assert_nonnull(strstr(g_ptr_array_index(warnings, 1), "nonsense"));
}

static void
expect_invalid(const char *text, const char *fragment)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VsConfig) c = vs_config_load_data(text, NULL, &error);

    g_assert_null(c);
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    if (!strstr(error->message, fragment))
        g_error("message '%s' lacks '%s'", error->message, fragment);
}

static void
test_invalid(void)
{
    expect_invalid("[agent]\nmax_jobs = 0\n", "max_jobs");
    expect_invalid("[agent]\nruntime_dir = run\n", "not an absolute path");
    expect_invalid("[agent]\nmax_jobs = lots\n", "'lots'");
    expect_invalid("[agent]\nmax_jobs = 65\n", "from 1 to 64");
    expect_invalid("[agent]\nsnapshot_dir = relative/dir\n", "not an absolute path");
    expect_invalid("[agent]\nuri =\n", "empty value");
    expect_invalid("this is not a key file", "");
    expect_invalid("[rbd]\nflatten = sometimes\n", "[rbd] flatten");
    expect_invalid("[rbd]\nconnect_timeout_s = 0\n", "connect_timeout_s");
}

static void
test_files(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *dir = g_dir_make_tmp("vs-config-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "virtsnapd.conf", NULL);
    g_autoptr(VsConfig) missing_ok = vs_config_load(path, FALSE, NULL, &error);
    VsConfig *missing_required;

    g_assert_no_error(error);
    g_assert_nonnull(missing_ok);
    missing_required = vs_config_load(path, TRUE, NULL, &error);
    g_assert_null(missing_required);
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    g_clear_error(&error);

    g_assert_true(g_file_set_contents(path, "[agent]\nmax_jobs = x\n", -1, NULL));
    g_assert_null(vs_config_load(path, TRUE, NULL, &error));
    g_assert_true(strstr(error->message, path) != NULL); /* the file is named */
    g_remove(path);
    g_rmdir(dir);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/config/defaults", test_defaults);
    g_test_add_func("/config/values", test_values);
    g_test_add_func("/config/invalid", test_invalid);
    g_test_add_func("/config/files", test_files);
    return g_test_run();
}
