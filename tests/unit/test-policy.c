/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Domain policies: the words users type, the XML libvirt keeps, and the errors. */
#include "vs-error.h"
#include "vs-keys.h"
#include "vs-options.h"
#include "vs-policy.h"

#include <string.h>

static void
test_durations(void)
{
    guint64 s = 0;

    g_assert_true(vs_parse_duration("90", &s) && s == 90);
    g_assert_true(vs_parse_duration("30s", &s) && s == 30);
    g_assert_true(vs_parse_duration("15m", &s) && s == 900);
    g_assert_true(vs_parse_duration("6h", &s) && s == 21600);
    g_assert_true(vs_parse_duration("2d", &s) && s == 172800);
    g_assert_false(vs_parse_duration("0", &s));
    g_assert_false(vs_parse_duration("", &s));
    g_assert_false(vs_parse_duration("h", &s));
    g_assert_false(vs_parse_duration("6hours", &s));
    g_assert_false(vs_parse_duration("-5m", &s));
    g_assert_false(vs_parse_duration("99999999999d", &s));
}

static void
test_round_trip(void)
{
    g_autoptr(VsPolicy) p = vs_policy_new();
    g_autoptr(GError) error = NULL;
    g_autofree char *xml = NULL;
    g_autoptr(VsPolicy) back = NULL;
    g_autoptr(GVariant) words = NULL;
    const char *value;

    g_assert_true(vs_policy_set(p, "on-stop", "snapshot", &error));
    g_assert_true(vs_policy_set(p, "every", "6h", &error));
    g_assert_true(vs_policy_set(p, "keep", "3", &error));
    g_assert_true(vs_policy_set(p, "quiesce", "require", &error));
    g_assert_true(vs_policy_set(p, "format", "raw", &error));
    g_assert_no_error(error);
    xml = vs_policy_to_xml(p);
    g_assert_cmpstr(xml, ==,
                    "<policy><on-stop>snapshot</on-stop><every>6h</every><keep>3</keep>"
                    "<quiesce>require</quiesce><format>raw</format></policy>");
    back = vs_policy_parse(xml, &error);
    g_assert_no_error(error);
    g_assert_true(back->on_stop);
    g_assert_cmpuint(back->every_s, ==, 21600);
    g_assert_cmpuint(back->keep, ==, 3);
    words = g_variant_ref_sink(vs_policy_to_variant(back));
    g_assert_true(g_variant_lookup(words, "every", "&s", &value));
    g_assert_cmpstr(value, ==, "6h");
    g_assert_false(g_variant_lookup(words, "method", "&s", &value));

    /* Clearing keys, one by one. */
    g_assert_true(vs_policy_set(back, "every", "none", &error));
    g_assert_true(vs_policy_set(back, "on-stop", "", &error));
    g_assert_true(vs_policy_set(back, "keep", "none", &error));
    g_assert_true(vs_policy_set(back, "quiesce", "", &error));
    g_assert_true(vs_policy_set(back, "format", "none", &error));
    g_assert_true(vs_policy_is_empty(back));
}

static void
test_prefixed_xml(void)
{
    /* What libvirt's virDomainGetMetadata may hand back. */
    const char *xml = "<virtsnap:policy xmlns:virtsnap=\"https://virtsnap.org/xmlns/policy/1\">\n"
                      "  <virtsnap:every>15m</virtsnap:every>\n"
                      "  <virtsnap:keep> 2 </virtsnap:keep>\n"
                      "</virtsnap:policy>";
    g_autoptr(GError) error = NULL;
    g_autoptr(VsPolicy) p = vs_policy_parse(xml, &error);

    g_assert_no_error(error);
    g_assert_cmpuint(p->every_s, ==, 900);
    g_assert_cmpuint(p->keep, ==, 2);
}

static void
expect_bad(const char *xml, const char *fragment)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VsPolicy) p = vs_policy_parse(xml, &error);

    g_assert_null(p);
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
    if (!strstr(error->message, fragment))
        g_error("'%s': message '%s' lacks '%s'", xml, error->message, fragment);
}

static void
test_bad(void)
{
    expect_bad("<policy><every>soon</every></policy>", "every: 'soon'");
    expect_bad("<policy><keep>-1</keep></policy>", "keep");
    expect_bad("<policy><colour>red</colour></policy>", "unknown policy key 'colour'");
    expect_bad("<policy><on-stop>maybe</on-stop></policy>", "none|snapshot");
    expect_bad("<policy><method>fast</method></policy>", "auto|live|cold|rbd");
    expect_bad("<policy><quiesce>maybe</quiesce></policy>", "off|try|require");
    expect_bad("<policy><format>vmdk</format></policy>", "qcow2|raw");
    expect_bad("<other/>", "no <policy>");
    expect_bad("<policy><every>1h", "not valid XML");
}

/* The policy takes every word CreateSnapshot takes for the same key: one table for both
 * (the policy's own copy once lacked method=rbd). */
static void
test_same_words_as_options(void)
{
    static const struct {
        const char *key;
        const char *const *words;
    } keys[] = {
        {VS_POLICY_METHOD, vs_method_words},
        {VS_POLICY_QUIESCE, vs_quiesce_words},
        {VS_POLICY_FORMAT, vs_format_words},
    };

    for (guint k = 0; k < G_N_ELEMENTS(keys); k++) {
        for (guint i = 0; keys[k].words[i]; i++) {
            g_autoptr(VsPolicy) p = vs_policy_new();
            g_autoptr(GError) error = NULL;
            g_auto(VsSnapshotOptions) opts;
            g_autoptr(GVariant) dict = NULL;
            GVariantBuilder b;

            g_assert_true(vs_policy_set(p, keys[k].key, keys[k].words[i], &error));
            g_assert_no_error(error);
            /* ... and what the scheduler passes on from it, CreateSnapshot accepts. */
            g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
            g_variant_builder_add(&b, "{sv}", keys[k].key, g_variant_new_string(keys[k].words[i]));
            dict = g_variant_ref_sink(g_variant_builder_end(&b));
            vs_snapshot_options_init(&opts);
            g_assert_true(vs_snapshot_options_parse(&opts, dict, &error));
            g_assert_no_error(error);
        }
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/policy/durations", test_durations);
    g_test_add_func("/policy/round-trip", test_round_trip);
    g_test_add_func("/policy/prefixed-xml", test_prefixed_xml);
    g_test_add_func("/policy/bad", test_bad);
    g_test_add_func("/policy/same-words-as-options", test_same_words_as_options);
    return g_test_run();
}
