/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CreateSnapshot options and snapshot names: what is accepted, what is refused. */
#include "vs-error.h"
#include "vs-names.h"
#include "vs-keys.h"
#include "vs-options.h"
#include "vs-util.h"

#include <string.h>

static gboolean
parse(const char *text, VsSnapshotOptions *opts, GError **error)
{
    g_autoptr(GVariant) dict = g_variant_ref_sink(g_variant_new_parsed(text));

    vs_snapshot_options_init(opts);
    return vs_snapshot_options_parse(opts, dict, error);
}

static void
test_defaults(void)
{
    g_auto(VsSnapshotOptions) opts;
    g_autoptr(GError) error = NULL;

    g_assert_true(parse("@a{sv} {}", &opts, &error));
    g_assert_no_error(error);
    g_assert_cmpint(opts.method, ==, VS_METHOD_AUTO);
    g_assert_cmpint(opts.quiesce, ==, VS_QUIESCE_TRY);
    g_assert_cmpint(opts.format, ==, VS_FORMAT_QCOW2);
    g_assert_cmpint(opts.copy, ==, VS_COPY_DIRECT);
    g_assert_null(opts.disks);
    g_assert_null(opts.name);
    g_assert_false(opts.force);
    g_assert_cmpint(opts.flatten, ==, -1);
}

static void
test_all_set(void)
{
    g_auto(VsSnapshotOptions) opts;
    g_autoptr(GError) error = NULL;

    g_assert_true(parse("{'method': <'live'>, 'disks': <['vda', 'vdb']>, 'quiesce': <'require'>,"
                        " 'format': <'qcow2'>, 'compress': <true>, 'name': <'nightly-1'>,"
                        " 'force': <true>, 'legacy-undefine': <true>,"
                        " 'bandwidth': <uint64 1048576>}",
                        &opts, &error));
    g_assert_no_error(error);
    g_assert_cmpint(opts.method, ==, VS_METHOD_LIVE);
    g_assert_cmpuint(g_strv_length(opts.disks), ==, 2);
    g_assert_cmpstr(opts.disks[1], ==, "vdb");
    g_assert_cmpint(opts.quiesce, ==, VS_QUIESCE_REQUIRE);
    g_assert_true(opts.compress);
    g_assert_cmpstr(opts.name, ==, "nightly-1");
    g_assert_true(opts.force);
    g_assert_true(opts.legacy_undefine);
    g_assert_cmpuint(opts.bandwidth, ==, 1048576);
}

static void
test_compress_picks_shallow(void)
{
    g_auto(VsSnapshotOptions) opts;
    g_autoptr(GError) error = NULL;

    /* The mirror cannot compress: compression without a copy mode goes shallow. */
    g_assert_true(parse("{'compress': <true>}", &opts, &error));
    g_assert_no_error(error);
    g_assert_cmpint(opts.copy, ==, VS_COPY_SHALLOW);
}

static void
expect_refused(const char *text, const char *fragment)
{
    g_auto(VsSnapshotOptions) opts;
    g_autoptr(GError) error = NULL;

    g_assert_false(parse(text, &opts, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    if (!strstr(error->message, fragment))
        g_error("'%s': message '%s' lacks '%s'", text, error->message, fragment);
}

static void
test_refused(void)
{
    expect_refused("{'colour': <'red'>}", "unknown option 'colour'");
    expect_refused("{'quiesce': <true>}", "must be of type 's'");
    expect_refused("{'quiesce': <'maybe'>}", "off|try|require");
    expect_refused("{'method': <'teleport'>}", "auto|live|cold|rbd");
    expect_refused("{'format': <'vmdk'>}", "qcow2|raw");
    expect_refused("{'copy': <'deep'>}", "shallow|direct");
    expect_refused("{'disks': <'vda'>}", "must be of type 'as'");
    expect_refused("{'disks': <@as []>}", "empty");
    expect_refused("{'disks': <['vda', 'vda']>}", "named twice");
    expect_refused("{'disks': <['../vda']>}", "not a disk target");
    expect_refused("{'name': <'a/b'>}", "not a valid name");
    expect_refused("{'name': <42>}", "must be of type 's'");
    expect_refused("{'compress': <'yes'>}", "must be of type 'b'");
    expect_refused("{'bandwidth': <1048576>}", "must be of type 't'");
    expect_refused("{'flatten': <'yes'>}", "must be of type 'b'");
    expect_refused("{'compress': <true>, 'format': <'raw'>}", "needs format qcow2");
    expect_refused("{'compress': <true>, 'copy': <'direct'>}", "copy=direct");
}

static void
test_names(void)
{
    g_autofree char *longest = g_strnfill(VS_NAME_MAX, 'a');
    g_autofree char *too_long = g_strnfill(VS_NAME_MAX + 1, 'a');
    g_autofree char *id = vs_make_snapshot_id();

    g_assert_true(vs_name_is_valid("nightly"));
    g_assert_true(vs_name_is_valid("pre-upgrade_2026.11.21"));
    g_assert_true(vs_name_is_valid(longest));
    g_assert_true(vs_name_is_valid(id));
    g_assert_false(vs_name_is_valid(too_long));
    g_assert_false(vs_name_is_valid(""));
    g_assert_false(vs_name_is_valid(NULL));
    g_assert_false(vs_name_is_valid("."));
    g_assert_false(vs_name_is_valid(".."));
    g_assert_false(vs_name_is_valid(".hidden"));
    g_assert_false(vs_name_is_valid("-rf"));
    g_assert_false(vs_name_is_valid("a/b"));
    g_assert_false(vs_name_is_valid("a b"));
    g_assert_false(vs_name_is_valid("snap\n"));
    g_assert_false(vs_name_is_valid("é"));
}

/* Each word of the shared table parses to the enum value whose name it is. */
static void
test_words(void)
{
    for (int i = 0; vs_method_words[i]; i++) {
        g_auto(VsSnapshotOptions) opts;
        g_autoptr(GVariant) dict =
            g_variant_ref_sink(g_variant_new_parsed("{'method': <%s>}", vs_method_words[i]));

        vs_snapshot_options_init(&opts);
        g_assert_true(vs_snapshot_options_parse(&opts, dict, NULL));
        g_assert_cmpint(opts.method, ==, i);
        g_assert_cmpstr(vs_method_name(opts.method), ==, vs_method_words[i]);
    }
    g_assert_cmpstr(vs_method_name(VS_METHOD_RBD), ==, "rbd");
    g_assert_cmpstr(vs_quiesce_name(VS_QUIESCE_REQUIRE), ==, "require");
    g_assert_cmpstr(vs_format_name(VS_FORMAT_RAW), ==, "raw");
    g_assert_cmpstr(vs_copy_name(VS_COPY_SHALLOW), ==, "shallow");
}

/* The table-driven parser the other methods (clone, revert, verify) use. */
typedef struct {
    char *name;
    gboolean flag;
    guint64 rate;
} Fields;

static const VsOptionField fields[] = {
    {"name", "s", G_STRUCT_OFFSET(Fields, name)},
    {"flag", "b", G_STRUCT_OFFSET(Fields, flag)},
    {"rate", "t", G_STRUCT_OFFSET(Fields, rate)},
    {NULL},
};

static gboolean
parse_fields(const char *text, Fields *f, GError **error)
{
    g_autoptr(GVariant) dict = g_variant_ref_sink(g_variant_new_parsed(text));

    return vs_options_parse_fields(dict, fields, f, "Test", error);
}

static void
test_fields(void)
{
    Fields f = {NULL, FALSE, 7};
    g_autoptr(GError) error = NULL;

    g_assert_true(parse_fields("@a{sv} {}", &f, &error));
    g_assert_null(f.name);
    g_assert_cmpuint(f.rate, ==, 7); /* untouched when not given */
    g_assert_true(parse_fields("{'name': <'a'>, 'name': <'b'>, 'flag': <true>, "
                               "'rate': <uint64 5>}",
                               &f, &error));
    g_assert_cmpstr(f.name, ==, "b"); /* the last one wins, the first is freed */
    g_assert_true(f.flag);
    g_assert_cmpuint(f.rate, ==, 5);

    g_assert_false(parse_fields("{'colour': <'red'>}", &f, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull(
        strstr(error->message, "unknown option 'colour' (Test takes name, flag, rate)"));
    g_clear_error(&error);
    g_assert_false(parse_fields("{'rate': <5>}", &f, &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull(strstr(error->message, "must be of type 't'"));
    g_clear_error(&error);
    g_assert_false(parse_fields("{'flag': <'yes'>}", &f, &error));
    g_assert_nonnull(strstr(error->message, "must be of type 'b'"));
    g_free(f.name);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/options/defaults", test_defaults);
    g_test_add_func("/options/all-set", test_all_set);
    g_test_add_func("/options/refused", test_refused);
    g_test_add_func("/options/compress-picks-shallow", test_compress_picks_shallow);
    g_test_add_func("/options/names", test_names);
    g_test_add_func("/options/words", test_words);
    g_test_add_func("/options/fields", test_fields);
    return g_test_run();
}
