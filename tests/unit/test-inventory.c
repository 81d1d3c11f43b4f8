/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ListDomains' content, against libvirt's own test driver (test:///default). */
#include "vs-error.h"
#include "vs-inventory.h"
#include "vs-virt-util.h"

static void
silent(void *data, virErrorPtr err)
{
}

static void
test_list(void)
{
    g_autoptr(virConnect) conn = virConnectOpen("test:///default");
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) list = NULL;
    g_autoptr(GVariant) first = NULL;
    const char *name, *state;
    gboolean persistent;
    gint32 id;

    g_assert_nonnull(conn);
    list = g_variant_ref_sink(vs_inventory_list(conn, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(g_variant_n_children(list), ==, 1);
    first = g_variant_get_child_value(list, 0);
    g_assert_true(g_variant_lookup(first, "name", "&s", &name));
    g_assert_cmpstr(name, ==, "test");
    g_assert_true(g_variant_lookup(first, "state", "&s", &state));
    g_assert_cmpstr(state, ==, "running");
    g_assert_true(g_variant_lookup(first, "persistent", "b", &persistent));
    g_assert_true(persistent);
    g_assert_true(g_variant_lookup(first, "id", "i", &id));
    g_assert_cmpint(id, >, 0);
}

static void
test_lookup(void)
{
    g_autoptr(virConnect) conn = virConnectOpen("test:///default");
    g_autoptr(GError) error = NULL;
    g_autoptr(virDomain) by_name = vs_lookup_domain(conn, "test", &error);
    char uuid[VIR_UUID_STRING_BUFLEN];
    g_autoptr(virDomain) by_uuid = NULL;
    g_autoptr(virDomain) missing = NULL;

    g_assert_no_error(error);
    g_assert_nonnull(by_name);
    virDomainGetUUIDString(by_name, uuid);
    by_uuid = vs_lookup_domain(conn, uuid, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(virDomainGetName(by_uuid), ==, "test");

    missing = vs_lookup_domain(conn, "no-such-guest", &error);
    g_assert_null(missing);
    g_assert_error(error, VS_ERROR, VS_ERROR_NO_SUCH_DOMAIN);
    g_clear_error(&error);
    g_assert_null(vs_lookup_domain(conn, "", &error));
    g_assert_error(error, VS_ERROR, VS_ERROR_INVALID_ARGUMENT);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    virSetErrorFunc(NULL, silent);
    g_test_add_func("/inventory/list", test_list);
    g_test_add_func("/inventory/lookup", test_lookup);
    return g_test_run();
}
